"""The method registry: light declarations that the Snakemake head process reads, and the Method
classes, which only the jobs that train or sample a method import.

A method declares a :class:`MethodSpec` in a light module (stdlib only at import: no torch, RDKit,
scikit-learn or anndata): its presets, the allowed values of its enumerated parameters, whether it
wants a GPU, and the priors it needs (a function of its resolved parameters, so that a variant can
need other priors). The config resolver (:mod:`scpert.workflow_config`) checks every configured
method against its spec at parse time, so ``snakemake -n`` rejects an unknown preset, an unknown or
ill-typed parameter or a disallowed value with one line naming the config key.

Presets are complete: every preset lists every parameter, and a preset never borrows a key from
another preset (``paper`` is the paper's model and nothing of ``tiny`` leaks into it).

The Method class itself lives in ``spec.module`` and registers with :func:`register`;
:func:`get_method` imports that module on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scpert.presets import resolve_preset

#: light modules whose import declares method specs; a new method appends its package here
SPEC_MODULES = ("scpert.methods.baselines", "scpert.methods.scppdm")

_SPECS: dict[str, MethodSpec] = {}
_CLASSES: dict[str, type] = {}


@dataclass(frozen=True)
class MethodSpec:
    """What the workflow needs to know about a method without importing it.

    name: the registered name (config ``methods.<name>`` or ``base: <name>``).
    module: the module whose import registers the Method class (imported by jobs only).
    presets: preset name -> complete parameter dict (``tiny`` for CPU, ``paper`` = the paper).
    uses_gpu: the method's train/sample jobs want a GPU (SLURM requests one).
    priors: names of pretrained priors needed at fit time (keys of the workflow's prior table), or
        a function of the resolved parameters returning them.
    choices: parameter -> allowed values, for enumerated parameters (ablation switches).
    summary: one line for ``scpert methods``.
    """

    name: str
    module: str
    presets: Mapping[str, Mapping[str, Any]]
    uses_gpu: bool = False
    priors: Sequence[str] | Callable[[Mapping[str, Any]], Sequence[str]] = ()
    choices: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    summary: str = ""

    def resolve(
        self, preset: str, overrides: Mapping[str, Any] | None = None, key: str | None = None
    ) -> dict[str, Any]:
        """``presets[preset]`` overlaid with ``overrides``, checked (:mod:`scpert.presets`);
        errors name ``key`` (default ``methods.<name>``): ``<key>.preset``, ``<key>.params.<p>``."""
        return resolve_preset(
            self.presets, preset, overrides, key or f"methods.{self.name}", self.choices
        )

    def required_priors(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The priors a method with these resolved parameters needs."""
        names = self.priors(params) if callable(self.priors) else self.priors
        return tuple(names)


def register_spec(spec: MethodSpec) -> MethodSpec:
    if spec.name in _SPECS and _SPECS[spec.name] != spec:
        raise ValueError(f"method spec '{spec.name}' declared twice")
    _SPECS[spec.name] = spec
    return spec


def register(cls: type) -> type:
    """Class decorator: the Method class of the spec named ``cls.name``."""
    if cls.name in _CLASSES and _CLASSES[cls.name] is not cls:
        raise ValueError(f"method name '{cls.name}' registered twice")
    _CLASSES[cls.name] = cls
    return cls


def _load_specs() -> None:
    for module in SPEC_MODULES:
        importlib.import_module(module)


def available_methods() -> list[str]:
    _load_specs()
    return sorted(_SPECS)


def get_spec(name: str) -> MethodSpec:
    _load_specs()
    if name not in _SPECS:
        raise KeyError(f"unknown method '{name}' (available: {', '.join(sorted(_SPECS))})")
    return _SPECS[name]


def get_method(name: str) -> type:
    """The Method class of ``name`` (imports its module: torch for deep-learning methods)."""
    spec = get_spec(name)
    if name not in _CLASSES:
        importlib.import_module(spec.module)
    if name not in _CLASSES:
        raise KeyError(f"module {spec.module} does not register method '{name}'")
    return _CLASSES[name]
