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

#: columns of the conditions handed to :meth:`Method.predict` (``plate`` only for methods whose
#: spec sets ``predicts_plates``)
CONDITION_COLUMNS = (schema.CONDITION, schema.CELL_LINE, schema.DRUG, schema.DOSE, "n_cells")
PLATE_CONDITION_COLUMNS = (*CONDITION_COLUMNS[:4], schema.PLATE, "n_cells")


@dataclass
class PerturbData:
    """What a method may learn from: training cells of one split, plus drug and context metadata.

    adata: log-normalised cells of the split's TRAIN conditions and all control cells, in the
        method's training gene space (``X`` dense or CSR float32; obs follows
        :mod:`scpert.data.schema`). That space is the split's evaluated genes, or more of the
        split's HVG ranking for a method with the reserved parameter ``train_genes``
        (:mod:`scpert.methods.registry`); it always contains ``eval_genes``.
    drugs: the drug table (index ``drug``; columns smiles, moa, targets) covering every single drug
        of the dataset, including held-out ones (structure is known for unseen drugs).
    control: the control label in ``obs["drug"]``.
    priors: prior folders (:data:`scpert.layout.PRIORS`: ``latent``, ``graph``, ``mdt``, ...) keyed
        by name, those the method's spec asks for; empty for methods that use none.
    val: cells of the split's ``val`` conditions (``val_fraction``, :mod:`scpert.data.splits`) in
        the same gene space, for checkpoint selection or early stopping; never test conditions,
        never part of ``adata``. None when the split has no validation conditions.
    eval_genes: the split's evaluated genes (``genes.tsv``), in which predictions are scored;
        defaults to ``adata.var_names``.
    """

    adata: ad.AnnData
    drugs: pd.DataFrame
    control: str = schema.DEFAULT_CONTROL
    priors: dict[str, Path] = field(default_factory=dict)
    val: ad.AnnData | None = None
    eval_genes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.eval_genes:
            self.eval_genes = [str(g) for g in self.adata.var_names]

    @property
    def is_control(self) -> np.ndarray:
        return (self.adata.obs[schema.DRUG].astype(str) == self.control).to_numpy()


def per_condition(conditions: pd.DataFrame) -> pd.DataFrame:
    """Conditions without plates: one row per condition (first-appearance order), ``n_cells``
    summed over its plates (what :meth:`Method.predict` gets when the method ignores plates)."""
    if schema.PLATE not in conditions.columns:
        return conditions.reset_index(drop=True)
    keys = list(CONDITION_COLUMNS[:4])
    return (
        conditions.groupby(keys, sort=False, observed=True)["n_cells"]
        .sum()
        .reset_index()[list(CONDITION_COLUMNS)]
    )


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
        """Predict ``n_cells`` cells for each row of ``conditions``.

        controls: log-normalised control cells of every context (all plates, obs ``cell_line``,
            ``plate``, ...) in the method's training gene space (``self.genes``).
        conditions: columns ``condition, cell_line, drug, dose, plate, n_cells``
            (:data:`PLATE_CONDITION_COLUMNS`), one row per (test condition, plate of its true
            cells) with that plate's cell count, when the spec sets ``predicts_plates``; else
            ``condition, cell_line, drug, dose, n_cells`` (:data:`CONDITION_COLUMNS`), one row per
            condition (:func:`per_condition`). Rows may come in any order; a condition's cells must
            not depend on the order or on which other conditions are asked for.
        seed: the sampling seed; the same fitted model, conditions and seed give the same cells.

        Returns log-normalised cells (the scale of ``processed.h5ad``) with obs ``cell_line, drug,
        dose, plate, condition`` and var = ``self.genes``: a method trained in a larger gene space
        returns all of it and the ``sample`` step keeps the split's evaluated genes. ``plate`` is
        the row's plate when ``predicts_plates``; otherwise the plate of the control cell a
        prediction started from, or ``"predicted"``. ``uns``: ``method``, ``seed``, ``sampler``.
        ``tests/test_method_contract.py`` checks all of this for every registered method.
        """

    def add_perturbations(
        self, drugs: pd.DataFrame, names: list[str], priors: dict[str, Path] | None = None
    ) -> list[str]:
        """Make perturbations that were absent from the training data predictable (a screen of
        chemicals the model has never featurised): feature rows of ``names`` (rows of the drug
        table ``drugs``, :func:`scpert.data.io.read_drug_table`) are added to the model's feature
        table; rows it already has are kept as they are. ``priors``: the prior folders the
        method's spec asks for (as in :attr:`PerturbData.priors`), for features that come from a
        prior (MDT templates). Returns the names added.

        A method that can predict an unseen chemical overrides this; the default raises (the mean
        baselines have nothing to featurise an unseen drug with)."""
        raise NotImplementedError(
            f"{self.name}: cannot featurise perturbations absent from its training data "
            f"(e.g. '{names[0] if names else ''}'; it does not implement add_perturbations)"
        )

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
