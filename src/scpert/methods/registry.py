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

Reserved parameter: a method that can train in a larger gene space than the split's evaluated
genes lists :data:`TRAIN_GENES` (``train_genes``, int) in its presets: 0 = the split's genes,
N > 0 = the split's genes plus the best-ranked others of its HVG ranking, N genes in all
(:func:`scpert.data.preprocess.training_genes`). Its predictions still come back in the split's
genes (the ``sample`` step restricts them). Methods without the parameter train on the split's
genes.

The Method class itself lives in ``spec.module`` and registers with :func:`register`;
:func:`get_method` imports that module on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scpert.errors import ConfigError
from scpert.presets import resolve_preset

#: light modules whose import declares method specs; a new method appends its package here
SPEC_MODULES = (
    "scpert.methods.baselines",
    "scpert.methods.scppdm",
    "scpert.methods.perturbdiff",
    "scpert.methods.scdfm",
    "scpert.methods.statexdiff",
)

#: reserved parameter: size of the method's training gene space (module docstring)
TRAIN_GENES = "train_genes"

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
    predicts_plates: ``predict`` honours the ``plate`` column of its conditions (one row per
        condition and plate, each row's cells predicted for that plate and labelled with it in
        ``obs["plate"]``). False: the method predicts per condition; the ``sample`` step then
        hands it one row per condition (cells summed over plates, no ``plate`` column).
    test_overrides: parameters overlaid on the ``tiny`` preset by the method contract test
        (``tests/test_method_contract.py``) to keep it fast, e.g. fewer training steps.
    """

    name: str
    module: str
    presets: Mapping[str, Mapping[str, Any]]
    uses_gpu: bool = False
    priors: Sequence[str] | Callable[[Mapping[str, Any]], Sequence[str]] = ()
    choices: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    summary: str = ""
    predicts_plates: bool = False
    test_overrides: Mapping[str, Any] = field(default_factory=dict)

    def resolve(
        self, preset: str, overrides: Mapping[str, Any] | None = None, key: str | None = None
    ) -> dict[str, Any]:
        """``presets[preset]`` overlaid with ``overrides``, checked (:mod:`scpert.presets`);
        errors name ``key`` (default ``methods.<name>``): ``<key>.preset``, ``<key>.params.<p>``."""
        key = key or f"methods.{self.name}"
        params = resolve_preset(self.presets, preset, overrides, key, self.choices)
        if TRAIN_GENES in params and params[TRAIN_GENES] < 0:
            raise ConfigError(
                f"{key}.params.{TRAIN_GENES}: {params[TRAIN_GENES]} is negative "
                "(0 = the split's genes, N = N genes of the split's HVG ranking)"
            )
        return params

    @staticmethod
    def train_genes(params: Mapping[str, Any]) -> int:
        """Size of the training gene space of resolved ``params`` (0: the split's genes)."""
        return int(params.get(TRAIN_GENES, 0))

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
