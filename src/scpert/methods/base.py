"""The Method protocol and the training-data bundle.

Every method (baselines, scPPDM, StateXDiff, PerturbDiff, scDFM) declares a
:class:`~scpert.methods.registry.MethodSpec` (presets, GPU, priors) in a light module and
subclasses :class:`Method` in the module the spec names, registering it with
:func:`~scpert.methods.registry.register`. The generic ``train`` and ``sample`` rules dispatch on
the ``{method}`` wildcard through :func:`~scpert.methods.registry.get_method`; config-level variants
(ablations) name a ``base`` method plus parameters and are resolved by the workflow
(:mod:`scpert.workflow_config`), not here.

Lifecycle: ``m = cls.from_preset(preset, overrides, seed)`` (or ``cls(complete_params, seed)``)
-> ``m.fit(train, device=...)`` -> ``m.save(dir)``; later ``cls.load(dir, device)`` ->
``m.predict(controls, conditions, seed)``. The train step sets ``m.checkpoint_dir`` (a folder
beside the model output that survives a failed job) before ``fit``; methods on the shared
trainer (:mod:`scpert.generative.trainer`) checkpoint there and resume from it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anndata as ad
import numpy as np
import pandas as pd

from scpert.data import schema
from scpert.methods.registry import MethodSpec, get_method, get_spec


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

    Subclasses set ``name`` (the name of their :class:`MethodSpec`) and implement
    fit/predict/_save_state/_load_state. ``params`` are complete (a resolved preset).
    """

    name: ClassVar[str]

    def __init__(self, params: dict[str, Any], seed: int = 0):
        self.params = dict(params)
        self.seed = int(seed)
        self.genes: list[str] = []
        self.checkpoint_dir: Path | None = None

    @classmethod
    def spec(cls) -> MethodSpec:
        return get_spec(cls.name)

    @classmethod
    def from_preset(
        cls, preset: str, overrides: dict[str, Any] | None = None, seed: int = 0
    ) -> Method:
        """The method with ``preset`` overlaid by ``overrides`` (checked against the spec)."""
        return cls(cls.spec().resolve(preset, overrides), seed=seed)

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
