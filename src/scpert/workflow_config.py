"""Resolve the validated Snakemake config into the jobs the workflow builds.

JSON-schema validation (``config/schema.yaml``) checks shapes and values; this module checks what
a schema cannot: cross-references (a dataset's split names, a method's base and preset, a method's
split restriction) and source-specific fields. Every error names the offending config key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scpert.errors import InputError


class ConfigError(InputError):
    """The config is well-formed but inconsistent; the message names the key."""


@dataclass(frozen=True)
class MethodEntry:
    """One configured method: a registered ``base`` method, a preset and parameter overrides."""

    name: str
    base: str
    preset: str
    params: dict[str, Any] = field(default_factory=dict)
    splits: tuple[str, ...] | None = None
    uses_gpu: bool = False
    priors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Run:
    methods: dict[str, MethodEntry]
    #: (dataset, split, method) triples to train, sample and evaluate
    jobs: list[tuple[str, str, str]]


def resolve_config(config: dict) -> Run:
    from scpert.methods import get_method

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
            cls = get_method(base)
        except KeyError as err:
            key = f"methods.{name}.base" if "base" in entry else f"methods.{name}"
            raise ConfigError(f"{key}: {err.args[0]}") from None
        preset = entry.get("preset", "tiny")
        if preset not in cls.presets:
            raise ConfigError(
                f"methods.{name}.preset: '{preset}' is not a preset of '{base}' "
                f"(has: {', '.join(cls.presets)})"
            )
        restrict = entry.get("splits")
        for split in restrict or ():
            if split not in config["splits"]:
                raise ConfigError(f"methods.{name}.splits: '{split}' is not defined under 'splits'")
        methods[name] = MethodEntry(
            name,
            base,
            preset,
            dict(entry.get("params", {})),
            tuple(restrict) if restrict else None,
            cls.uses_gpu,
            tuple(cls.requires_priors),
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
