"""The Method protocol, the training-data bundle and the method registry.

Every method (baselines, scPPDM, StateXDiff, PerturbDiff, scDFM) subclasses :class:`Method` and
registers under a name with :func:`register`. The generic ``train`` and ``sample`` rules dispatch on
the ``{method}`` wildcard through :func:`get_method`; config-level variants (ablations) name a
``base`` method plus parameters and are resolved by the workflow, not here.

Lifecycle: ``m = cls(params, seed)`` -> ``m.fit(train, device=...)`` -> ``m.save(dir)``;
later ``cls.load(dir, device)`` -> ``m.predict(controls, conditions, seed)``.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anndata as ad
import numpy as np
import pandas as pd

from scpert.data import schema

#: modules whose import registers methods; later issues append their module here.
METHOD_MODULES = (
    "scpert.methods.baselines",
    "scpert.methods.baseline_mlp",
    "scpert.methods.scppdm",
)

_REGISTRY: dict[str, type[Method]] = {}


@dataclass
class PerturbData:
    """What a method may learn from: training cells of one split, plus drug and context metadata.

    adata: log-normalised cells of the split's TRAIN conditions and all control cells, restricted to
        the split's genes (``X`` dense or CSR float32; obs follows :mod:`scpert.data.schema`).
    drugs: the drug table (index ``drug``; columns smiles, moa, targets) covering every single drug
        of the dataset, including held-out ones (structure is known for unseen drugs).
    control: the control label in ``obs["drug"]``.
    priors: paths of pretrained priors (drug embeddings, latent model, ...) keyed by name; empty
        for methods that use none.
    """

    adata: ad.AnnData
    drugs: pd.DataFrame
    control: str = schema.DEFAULT_CONTROL
    priors: dict[str, Path] = field(default_factory=dict)

    @property
    def is_control(self) -> np.ndarray:
        return (self.adata.obs[schema.DRUG].astype(str) == self.control).to_numpy()


class Method(ABC):
    """A perturbation-response model.

    Subclasses set ``name`` and ``presets`` (preset name -> hyper-parameter dict; ``"tiny"`` for CPU
    and ``"paper"`` with the paper's values), and implement fit/predict/_save_state/_load_state.
    """

    name: ClassVar[str]
    presets: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {}, "paper": {}}
    #: True for methods whose training/sampling wants a GPU (the workflow requests one on SLURM).
    uses_gpu: ClassVar[bool] = False
    #: names of pretrained priors the method needs at fit time (e.g. ``"latent"``, ``"drug_tokens"``);
    #: the workflow adds the producing rules' outputs as inputs of ``train`` and passes their paths
    #: in ``PerturbData.priors``. A saved model must be self-contained (copy what predict needs).
    requires_priors: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: dict[str, Any] | None = None, seed: int = 0):
        self.params = {**self.presets.get("tiny", {}), **(params or {})}
        self.seed = int(seed)
        self.genes: list[str] = []

    @classmethod
    def from_preset(
        cls, preset: str, overrides: dict[str, Any] | None = None, seed: int = 0
    ) -> Method:
        if preset not in cls.presets:
            raise KeyError(
                f"method '{cls.name}' has no preset '{preset}' (has: {', '.join(cls.presets)})"
            )
        return cls({**cls.presets[preset], **(overrides or {})}, seed=seed)

    @abstractmethod
    def fit(self, train: PerturbData, device: str = "cpu") -> None:
        """Learn from the training split."""

    @abstractmethod
    def predict(self, controls: ad.AnnData, conditions: pd.DataFrame, seed: int = 0) -> ad.AnnData:
        """Predict cells for each row of ``conditions``.

        controls: log-normalised control cells (all contexts) in the training gene space.
        conditions: one row per condition to predict, columns ``condition, cell_line, drug, dose,
            n_cells``.
        Returns log-normalised cells with obs ``cell_line, drug, dose, plate, condition`` (``plate``
        is the plate of the control cell a prediction started from, or ``"predicted"``), var = genes,
        ``uns["method"]``, ``uns["seed"]``, ``uns["sampler"]``.
        """

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per module (StateXDiff Table 8 layout); empty for non-parametric."""
        return {}

    @classmethod
    def describe(cls, preset: str) -> dict[str, int]:
        """Trainable parameter count per module for a preset, without data (``scpert describe``)."""
        return cls.from_preset(preset).parameter_counts()

    # -- persistence: model dir holds method.json (name, params, seed, genes) + the method's state
    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"method": self.name, "params": self.params, "seed": self.seed, "genes": self.genes}
        self._save_state(path)
        (path / "method.json").write_text(json.dumps(meta, indent=1, default=_json_default))

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Method:
        path = Path(path)
        meta = json.loads((path / "method.json").read_text())
        method_cls = saved_method_class(path) if cls is Method else cls
        obj = method_cls(meta["params"], seed=meta["seed"])
        obj.genes = list(meta["genes"])
        obj._load_state(path, device)
        return obj

    @abstractmethod
    def _save_state(self, path: Path) -> None: ...

    @abstractmethod
    def _load_state(self, path: Path, device: str) -> None: ...


def saved_method_class(path: str | Path) -> type[Method]:
    """The registered class of a model saved in ``path`` (from its ``method.json``)."""
    return get_method(json.loads((Path(path) / "method.json").read_text())["method"])


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available to the workflow and the CLI under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name '{cls.name}' registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _import_until(name: str | None = None) -> None:
    """Import method modules in order until ``name`` is registered (all modules when None), so a
    job that loads one baseline does not pay for importing every deep-learning method."""
    for module in METHOD_MODULES:
        if name is not None and name in _REGISTRY:
            return
        importlib.import_module(module)


def available_methods() -> list[str]:
    _import_until(None)
    return sorted(_REGISTRY)


def get_method(name: str) -> type[Method]:
    _import_until(name)
    if name not in _REGISTRY:
        raise KeyError(f"unknown method '{name}' (available: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]
