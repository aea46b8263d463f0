"""Resolve the validated Snakemake config into the jobs the workflow builds.

JSON-schema validation (``config/schema.yaml``, run by ``workflow/rules/common.smk`` through
``snakemake.utils.validate``) checks shapes and values; :func:`schema_error_message` turns its
failure into one line naming the key (and, for an unknown key, its allowed siblings) instead of a
dump of the schema and the config. This module then checks what a schema cannot:
cross-references (a dataset's split names, a method's base and preset, a method's split
restriction), every method parameter against its method's spec (unknown names, types, allowed
values), the priors a method needs against the priors the workflow builds
(:data:`scpert.layout.PRIORS`), split names the results layout reserves, source-specific fields
and that a user dataset's files exist. Every error names the offending config key. It runs in the
Snakemake head process and imports only the light method specs (:mod:`scpert.methods.registry`)
and :mod:`scpert.layout`: no torch, RDKit or scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scpert.errors import ConfigError

__all__ = ["ConfigError", "MethodEntry", "Run", "resolve_config", "schema_error_message"]


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
    #: the seed of its train and sample jobs (``seeds`` in the config; else ``seed``)
    seed: int = 0

    def recordable(self) -> dict[str, Any]:
        """Plain values for a rule's ``params`` (Snakemake records them and reruns on a change)."""
        return {"name": self.name, "base": self.base, "preset": self.preset, "params": self.params}


@dataclass(frozen=True)
class Run:
    methods: dict[str, MethodEntry]
    #: (dataset, split, method) triples to train, sample and evaluate
    jobs: list[tuple[str, str, str]]


def resolve_config(config: dict) -> Run:
    from scpert.layout import (
        PRIORS,
        REFERENCE_ROWS,
        RESERVED_SPLIT_NAMES,
        SEED_SUFFIX,
        seed_replicate,
        split_seed_replicate,
    )
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
                # relative to the working directory (snakemake -d), as the rules read it
                if not Path(ds[key]).is_file():
                    raise ConfigError(f"datasets.{name}.{key}: file not found: {ds[key]}")
        for split in ds["splits"]:
            if split not in config["splits"]:
                raise ConfigError(
                    f"datasets.{name}.splits: '{split}' is not defined under 'splits'"
                )

    seeds = config.get("seeds") or [config.get("seed", 0)]
    methods = {}
    for name, entry in config["methods"].items():
        if split_seed_replicate(name)[1] is not None:
            raise ConfigError(
                f"methods.{name}: names ending in '{SEED_SUFFIX}<n>' are reserved for the seed "
                "replicates of `seeds`"
            )
        if name in REFERENCE_ROWS:
            raise ConfigError(
                f"methods.{name}: the name is reserved for a reference row of the tables "
                f"(reserved: {', '.join(REFERENCE_ROWS)})"
            )
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
        for i, seed in enumerate(seeds):
            replicate = name if i == 0 else seed_replicate(name, seed)
            methods[replicate] = MethodEntry(
                replicate,
                base,
                preset,
                params,
                tuple(restrict) if restrict else None,
                spec.uses_gpu,
                priors,
                seed,
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


# ------------------------------------------------------------------------- schema error messages
def schema_error_message(err: BaseException) -> str | None:
    """One line for a failed ``snakemake.utils.validate`` of the config, or None if ``err`` does
    not come from a JSON-schema validation (it wraps the jsonschema ``ValidationError``, which is
    found on the exception's ``__cause__``/``__context__`` chain or its arguments)."""
    error = _validation_error(err)
    return None if error is None else describe_validation_error(error)


def _validation_error(err: BaseException | None):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if _is_validation_error(err):
            return err
        for arg in getattr(err, "args", ()):
            if _is_validation_error(arg):
                return arg
        err = err.__cause__ or err.__context__
    return None


def _is_validation_error(obj) -> bool:
    return type(obj).__name__ == "ValidationError" and hasattr(obj, "absolute_path")


def describe_validation_error(error) -> str:
    """``<key>: <what is wrong>`` for a jsonschema ``ValidationError`` of the config."""
    path = list(error.absolute_path)
    schema, instance, kind = error.schema, error.instance, error.validator
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        unknown = [k for k in instance if k not in allowed]
        key = _key(path + unknown[:1])
        return f"{key}: unknown key (allowed{_under(path)}: {', '.join(allowed) or 'none'})"
    if kind == "required" and isinstance(instance, dict):
        missing = [k for k in error.validator_value if k not in instance]
        return f"{_key(path + missing[:1])}: required key is missing"
    key = _key(path)
    if kind == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"{key}: {_show(instance)} is not allowed (allowed: {allowed})"
    if kind == "type":
        wanted = error.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        return f"{key}: expected {wanted}, got {type(instance).__name__} {_show(instance)}"
    if kind == "pattern" and isinstance(instance, str):
        return f"{key}: {instance!r} does not match the pattern {error.validator_value}"
    return f"{key}: {_trim(error.message, 300)}"


def _key(path: list) -> str:
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "(top level)"


def _under(path: list) -> str:
    return f" under {_key(path)}" if path else " at the top level"


def _show(value) -> str:
    return _trim(repr(value), 80)


def _trim(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
