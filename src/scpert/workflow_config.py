"""Resolve the validated Snakemake config into the jobs the workflow builds.

JSON-schema validation (``config/schema.yaml``) checks shapes and values; this module checks what
a schema cannot: cross-references (a dataset's split names, a method's base and preset, a method's
split restriction), every method parameter against its method's spec (unknown names, types,
allowed values), the priors a method needs against the priors the workflow builds
(:data:`scpert.layout.PRIORS`), split names the results layout reserves, and source-specific
fields. Every error names the offending config key. It runs in the Snakemake head process and
imports only the light method specs (:mod:`scpert.methods.registry`) and :mod:`scpert.layout`: no
torch, RDKit or scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scpert.errors import ConfigError

__all__ = ["ConfigError", "MethodEntry", "Run", "resolve_config"]


@dataclass(frozen=True)
class MethodEntry:
    """One configured method: a registered ``base`` method, a preset and its resolved parameters.

    params: the complete parameter dict (preset overlaid with the config's overrides).
    """

    name: str
    base: str
    preset: str
    params: dict[str, Any] = field(default_factory=dict)
    splits: tuple[str, ...] | None = None
    uses_gpu: bool = False
    priors: tuple[str, ...] = ()

    def recordable(self) -> dict[str, Any]:
        """Plain values for a rule's ``params`` (Snakemake records them and reruns on a change)."""
        return {"name": self.name, "base": self.base, "preset": self.preset, "params": self.params}


@dataclass(frozen=True)
class Run:
    methods: dict[str, MethodEntry]
    #: (dataset, split, method) triples to train, sample and evaluate
    jobs: list[tuple[str, str, str]]


def resolve_config(config: dict) -> Run:
    from scpert.layout import PRIORS, RESERVED_SPLIT_NAMES
    from scpert.methods.registry import get_spec

    for split in config["splits"]:
        if split in RESERVED_SPLIT_NAMES:
            raise ConfigError(
                f"splits.{split}: the name is reserved by the results layout "
                f"(reserved: {', '.join(RESERVED_SPLIT_NAMES)})"
            )
    for name, ds in config["datasets"].items():
        if ds["source"] == "h5ad":
            for key in ("counts", "drugs"):
                if not ds.get(key):
                    raise ConfigError(f"datasets.{name}.{key} is required when source is 'h5ad'")
        for split in ds["splits"]:
            if split not in config["splits"]:
                raise ConfigError(
                    f"datasets.{name}.splits: '{split}' is not defined under 'splits'"
                )

    methods = {}
    for name, entry in config["methods"].items():
        base = entry.get("base", name)
        try:
            spec = get_spec(base)
        except KeyError as err:
            key = f"methods.{name}.base" if "base" in entry else f"methods.{name}"
            raise ConfigError(f"{key}: {err.args[0]}") from None
        preset = entry.get("preset", "tiny")
        params = spec.resolve(preset, entry.get("params"), key=f"methods.{name}")
        restrict = entry.get("splits")
        for split in restrict or ():
            if split not in config["splits"]:
                raise ConfigError(f"methods.{name}.splits: '{split}' is not defined under 'splits'")
        priors = spec.required_priors(params)
        unknown = [p for p in priors if p not in PRIORS]
        if unknown:
            raise ConfigError(
                f"methods.{name}: method '{base}' needs prior '{unknown[0]}', which no rule "
                f"provides (priors: {', '.join(PRIORS)})"
            )
        methods[name] = MethodEntry(
            name,
            base,
            preset,
            params,
            tuple(restrict) if restrict else None,
            spec.uses_gpu,
            priors,
        )

    jobs = [
        (ds_name, split, m.name)
        for ds_name, ds in config["datasets"].items()
        for split in ds["splits"]
        for m in methods.values()
        if m.splits is None or split in m.splits
    ]
    if not jobs:
        raise ConfigError("methods: no method applies to any configured split")
    return Run(methods=methods, jobs=jobs)
