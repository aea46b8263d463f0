"""Simple baselines (DESIGN §8): base_control, train_mean, perturb_mean, context_mean, base_reg,
base_mlp, additive.

Common design
-------------
Every baseline predicts, per test condition (cell line c, drug, dose), a pseudobulk DELTA in
log-normalised space relative to the control mean of c::

    delta(c, drug, dose) = mean(X | c, drug, dose) - mean(X | controls of c)

Training deltas are computed per training condition against the control mean of that condition's
own cell line (:func:`scpert.data.pairing.condition_deltas`), and every condition weighs the same
(not every cell). Cells are realised by :mod:`scpert.data.pairing`: ``n_cells`` control cells of
the target cell line (of the condition row's plate when it names one), drawn with a Generator
seeded by ``(seed, crc32(condition)[, crc32(plate)])`` (so a condition's cells do not depend on
which other conditions are predicted; with replacement only when the pool has fewer controls
than ``n_cells``), plus the delta, clipped at 0. ``obs["plate"]`` is the plate of the control cell
a prediction started from. The predicted pseudobulk is therefore the drawn controls' mean plus
the delta (up to the clip and the draw), and the spread around it is the observed control
spread.

Definitions (lookups fall back in the order given)
--------------------------------------------------
- ``base_control``: delta 0.
- ``train_mean``: mean delta over all training conditions (scPerturBench trainMean, as a delta).
- ``perturb_mean``: mean delta of the same drug at the same dose across training cell lines; else
  the same drug at any dose; else train_mean.
- ``context_mean``: mean delta over the training conditions of the target line; else train_mean.
- ``additive``: for ``A+B`` at ``dA+dB`` the sum of the single-drug deltas; each single is the
  target line's training delta of that drug at the nearest training dose (nearest in log1p(dose));
  else the perturb_mean of the single across lines (same dose, else any dose); else 0. For a
  single drug this is the in-line nearest-dose delta.
- ``base_reg``: ridge regression (scikit-learn's ``Ridge``, computed by :func:`ridge_fit`) from
  ``[sum_c FP_c * log1p(d_c)/log1p(max train dose), sum_c FP_c, context PCs]`` to the delta. FP = Morgan bits (radius 2, 1024 bits); context
  PCs = the target line's control mean in a whitened PCA (``min(n_context_pcs, n_lines - 1)``
  components) fitted on the per-line control pseudobulks of the training data, whose controls
  include held-out lines' (unsupervised, and controls are observed at predict time anyway).
  Structure covers unseen drugs and control-derived context features cover unseen lines.
  Paper preset: scPerturBench
  ``chemical_baseReg.py`` (sklearn ``Ridge`` default alpha 1).
- ``base_mlp``: the same features -> MLP (Linear-ReLU blocks, linear output) trained with Adam on
  the MSE of the delta. Paper preset: scPerturBench ``chemical_baseMLP.py`` (one hidden layer of
  1024, Adam lr 1e-3, batch 128, up to 200 epochs, 80/20 split with early stopping, patience 20,
  min improvement 1e-4); our MLP puts the ReLU between the layers and none on the output, since it
  predicts signed deltas, where theirs applied it to the output expression.

scPerturBench's cell-context baseReg/baseMLP unpack ``generatePairedSample`` in the wrong order and
so learn perturbed -> control while predicting from control cells. Here the regression input is
built from the control side (context PCs of the control mean) and the target is always
``perturbed - control``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scpert.chem.featurize import drug_features
from scpert.data import pairing, schema
from scpert.data.schema import CELL_LINE, CONDITION, DOSE, DRUG, SchemaError
from scpert.methods.base import Method, PerturbData
from scpert.methods.registry import register
from scpert.perturbations import method_features

STATE_FILE = "state.npz"
SAMPLER = "control+delta"


# ---------------------------------------------------------------- training pseudobulk deltas
def _factorize_rows(table: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Code of each row's key and the distinct keys, in order of first appearance."""
    codes = table.groupby(list(table.columns), sort=False).ngroup().to_numpy()
    return codes, table.drop_duplicates().reset_index(drop=True)


@dataclass
class KeyedMeans:
    """Mean training delta per key tuple (e.g. per (drug, dose)); stored as string arrays."""

    keys: np.ndarray  # (n, k) str
    values: np.ndarray  # (n, n_genes)
    _index: dict[tuple[str, ...], int] = field(init=False, repr=False)

    def __post_init__(self):
        self._index = {tuple(map(str, row)): i for i, row in enumerate(self.keys)}

    @classmethod
    def of(
        cls, td: pairing.ConditionDeltas, columns: Sequence[str], rows: np.ndarray | None = None
    ) -> KeyedMeans:
        """Mean of ``td.deltas`` per distinct ``columns`` key (over ``rows`` only, if given)."""
        rows = np.arange(len(td.conditions)) if rows is None else rows
        table = td.conditions.iloc[rows][list(columns)]
        codes, uniques = _factorize_rows(table)
        keys = uniques.to_numpy(dtype=str).reshape(len(uniques), len(columns))
        values = (
            pairing.group_means(td.deltas[rows], codes, len(uniques))
            if len(rows)
            else td.deltas[:0]
        )
        return cls(keys, values)

    def get(self, key: tuple[str, ...]) -> np.ndarray | None:
        i = self._index.get(key)
        return None if i is None else self.values[i]

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.keys": self.keys, f"{prefix}.values": self.values}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> KeyedMeans:
        return cls(arrays[f"{prefix}.keys"], arrays[f"{prefix}.values"])


# ---------------------------------------------------------------- the shared predict path
class DeltaBaseline(Method):
    """A baseline = a rule for the pseudobulk delta + the shared control-plus-delta realisation
    (:mod:`scpert.data.pairing`)."""

    def fit(self, train: PerturbData, device: str = "cpu") -> None:
        self.genes = [str(g) for g in train.adata.var_names]
        self._fit_deltas(pairing.condition_deltas(train.adata, train.control), train, device)

    def _fit_deltas(self, td: pairing.ConditionDeltas, train: PerturbData, device: str) -> None:
        """Learn the delta rule from the training deltas (default: nothing to learn)."""

    @abstractmethod
    def _deltas(self, conditions: pd.DataFrame, control_means: pd.DataFrame) -> np.ndarray:
        """(n_conditions, n_genes) deltas; control_means: index cell_line, columns genes."""

    def _state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, arrays) -> None:
        """Restore what :meth:`_state` stored."""

    def _save_state(self, path: Path) -> None:
        np.savez(path / STATE_FILE, **self._state())

    def _load_state(self, path: Path, device: str) -> None:
        with np.load(path / STATE_FILE, allow_pickle=False) as arrays:
            self._set_state({k: arrays[k] for k in arrays.files})

    # -- prediction
    def _predicted_deltas(self, controls: pairing.ControlCells, table: pd.DataFrame) -> np.ndarray:
        """Deltas of the table's rows, from the control means of their cell lines."""
        lines = list(dict.fromkeys(table[CELL_LINE]))
        if not lines:
            return np.zeros((0, len(self.genes)))
        first = dict(zip(table[CELL_LINE], table[CONDITION]))
        means = pd.DataFrame(
            np.stack(
                [controls.index.mean(line, None, f"condition '{first[line]}'") for line in lines]
            ),
            index=pd.Index(lines, name=CELL_LINE),
            columns=self.genes,
        )
        return np.asarray(self._deltas(table, means), dtype=np.float64)

    def predict_deltas(self, controls: ad.AnnData, conditions: pd.DataFrame) -> pd.DataFrame:
        """Pseudobulk delta per condition row (index ``condition``, columns genes)."""
        table = pairing.prediction_table(conditions)
        deltas = self._predicted_deltas(pairing.ControlCells(controls, self.genes), table)
        return pd.DataFrame(
            deltas, index=pd.Index(table[CONDITION], name=CONDITION), columns=self.genes
        )

    def predict(self, controls: ad.AnnData, conditions: pd.DataFrame, seed: int = 0) -> ad.AnnData:
        cells = pairing.ControlCells(controls, self.genes)
        table = pairing.prediction_table(conditions)
        deltas = self._predicted_deltas(cells, table)
        uns = {"method": self.name, "seed": int(seed), "sampler": SAMPLER}
        return pairing.realise_cells(cells, table, deltas, seed, uns)


# ---------------------------------------------------------------- mean baselines
@register
class BaseControl(DeltaBaseline):
    """The target line's control cells (delta 0)."""

    name = "base_control"

    def _deltas(self, conditions, control_means):
        return np.zeros((len(conditions), len(self.genes)))


@register
class TrainMean(DeltaBaseline):
    """Mean delta over all training conditions."""

    name = "train_mean"

    def _fit_deltas(self, td, train, device):
        self.train_mean = td.deltas.mean(axis=0)

    def _deltas(self, conditions, control_means):
        return np.tile(self.train_mean, (len(conditions), 1))

    def _state(self):
        return {"train_mean": self.train_mean}

    def _set_state(self, arrays):
        self.train_mean = arrays["train_mean"]


@register
class ContextMean(TrainMean):
    """Mean delta over the target line's training conditions; else train_mean."""

    name = "context_mean"

    def _fit_deltas(self, td, train, device):
        super()._fit_deltas(td, train, device)
        self.by_line = KeyedMeans.of(td, [CELL_LINE])

    def _deltas(self, conditions, control_means):
        return np.vstack(
            [_first(self.train_mean, self.by_line.get((line,))) for line in conditions[CELL_LINE]]
        )

    def _state(self):
        return {**super()._state(), **self.by_line.arrays("line")}

    def _set_state(self, arrays):
        super()._set_state(arrays)
        self.by_line = KeyedMeans.from_arrays(arrays, "line")


@register
class PerturbMean(TrainMean):
    """Mean delta of the drug at that dose across lines; else at any dose; else train_mean."""

    name = "perturb_mean"

    def _fit_deltas(self, td, train, device):
        super()._fit_deltas(td, train, device)
        self.by_drug_dose = KeyedMeans.of(td, [DRUG, DOSE])
        self.by_drug = KeyedMeans.of(td, [DRUG])

    def _deltas(self, conditions, control_means):
        return np.vstack(
            [
                _first(
                    self.train_mean, self.by_drug_dose.get((drug, dose)), self.by_drug.get((drug,))
                )
                for drug, dose in zip(conditions[DRUG], conditions[DOSE])
            ]
        )

    def _state(self):
        return {
            **super()._state(),
            **self.by_drug_dose.arrays("drug_dose"),
            **self.by_drug.arrays("drug"),
        }

    def _set_state(self, arrays):
        super()._set_state(arrays)
        self.by_drug_dose = KeyedMeans.from_arrays(arrays, "drug_dose")
        self.by_drug = KeyedMeans.from_arrays(arrays, "drug")


def _first(default: np.ndarray, *candidates: np.ndarray | None) -> np.ndarray:
    """The first candidate that exists, else the default."""
    return next((c for c in candidates if c is not None), default)


@register
class Additive(DeltaBaseline):
    """Sum over combination components of their single-drug deltas (nearest training dose)."""

    name = "additive"

    def _fit_deltas(self, td, train, device):
        singles = np.flatnonzero(~td.conditions[DRUG].map(schema.is_combo).to_numpy(dtype=bool))
        self._set_tables(
            KeyedMeans.of(td, [CELL_LINE, DRUG, DOSE], singles),
            KeyedMeans.of(td, [DRUG, DOSE], singles),
            KeyedMeans.of(td, [DRUG], singles),
        )

    def _set_tables(
        self, in_line: KeyedMeans, by_drug_dose: KeyedMeans, by_drug: KeyedMeans
    ) -> None:
        self.in_line, self.by_drug_dose, self.by_drug = in_line, by_drug_dose, by_drug
        self.line_doses: dict[tuple[str, str], list[str]] = {}
        for line, drug, dose in self.in_line.keys:
            self.line_doses.setdefault((str(line), str(drug)), []).append(str(dose))

    def single_delta(self, line: str, drug: str, dose: float) -> np.ndarray:
        """Delta of one single drug in a line: nearest in-line training dose, else across lines."""
        doses = self.line_doses.get((line, drug))
        if doses:
            nearest = min(doses, key=lambda d: (abs(np.log1p(float(d)) - np.log1p(dose)), float(d)))
            return self.in_line.get((line, drug, nearest))
        return _first(
            np.zeros(len(self.genes)),
            self.by_drug_dose.get((drug, schema.format_dose(dose))),
            self.by_drug.get((drug,)),
        )

    def combination_delta(self, line: str, drug: str, dose: str) -> np.ndarray:
        """Sum of :meth:`single_delta` over the components of ``drug`` at ``dose``."""
        parts = zip(schema.components(drug), schema.component_doses(dose))
        return np.sum([self.single_delta(line, name, amount) for name, amount in parts], axis=0)

    def _deltas(self, conditions, control_means):
        keys = zip(conditions[CELL_LINE], conditions[DRUG], conditions[DOSE])
        return np.vstack([self.combination_delta(line, drug, dose) for line, drug, dose in keys])

    def _state(self):
        return {
            **self.in_line.arrays("line_drug_dose"),
            **self.by_drug_dose.arrays("drug_dose"),
            **self.by_drug.arrays("drug"),
        }

    def _set_state(self, arrays):
        self._set_tables(
            *(KeyedMeans.from_arrays(arrays, p) for p in ("line_drug_dose", "drug_dose", "drug"))
        )


# ---------------------------------------------------------------- structure + context features
# PCA and ridge in numpy: scikit-learn's import alone (~1 CPU s) cost more than both fits on the
# default world; tests/test_baselines.py checks both against scikit-learn.
def pca_fit(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``mean_, components_, explained_variance_`` of scikit-learn's
    ``PCA(n_components=k, svd_solver="full").fit(X)``: SVD of the centred rows, each component's
    sign fixed so that its largest-magnitude loading is positive (``svd_flip(...,
    u_based_decision=False)``), variances ``s**2 / (n - 1)``."""
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    vt *= np.where(signs == 0, 1.0, signs)[:, None]
    return mean, vt[:k], (s**2 / max(len(X) - 1, 1))[:k]


def ridge_fit(X: np.ndarray, Y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``coef_`` (n_targets, n_features) and ``intercept_`` of scikit-learn's
    ``Ridge(alpha).fit(X, Y)`` (intercept fitted, no sample weights): the centred normal equations
    ``(Xc' Xc + alpha I) w = Xc' Yc``, solved in their dual form ``(Xc Xc' + alpha I) a = Yc``,
    ``w = Xc' a`` when there are more features than rows (scikit-learn's cholesky solver does the
    same). Always in float64: scikit-learn keeps float32 input (the feature matrix) in float32,
    so its coefficients differ from these by float32 rounding (docs/decisions.md "Jobs without
    scanpy and scikit-learn imports")."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    x_mean, y_mean = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - x_mean, Y - y_mean
    if X.shape[1] > X.shape[0]:
        K = Xc @ Xc.T
        K.flat[:: len(K) + 1] += alpha
        coef = (Xc.T @ np.linalg.solve(K, Yc)).T
    else:
        A = Xc.T @ Xc
        A.flat[:: len(A) + 1] += alpha
        coef = np.linalg.solve(A, Xc.T @ Yc).T
    return coef, y_mean - x_mean @ coef.T


@dataclass
class ConditionFeatures:
    """``[drug_features(drug, dose), whitened context PCs of the line's control mean]``."""

    fps: pd.DataFrame
    max_dose: float
    pca_mean: np.ndarray  # (n_genes,)
    pca_components: np.ndarray  # (k, n_genes)
    pca_scale: np.ndarray  # (k,)

    @classmethod
    def fit(
        cls,
        train: PerturbData,
        td: pairing.ConditionDeltas,
        *,
        radius: int,
        n_bits: int,
        n_context_pcs: int,
    ) -> ConditionFeatures:
        names = [str(d) for d in train.drugs.index if str(d) != train.control]
        fps = method_features(train, names, n_bits=n_bits, radius=radius)
        doses = [d for text in td.conditions[DOSE] for d in schema.component_doses(text)]
        contexts = td.control_means.to_numpy()
        k = min(int(n_context_pcs), len(contexts) - 1)
        if k > 0:
            mean, comps, var = pca_fit(contexts, k)
        else:
            mean, comps, var = contexts.mean(axis=0), np.zeros((0, contexts.shape[1])), np.zeros(0)
        scale = np.where(var > 1e-12, np.sqrt(var), 1.0)  # identical lines: no whitening
        return cls(fps, float(max(doses, default=1.0)), mean, comps, scale)

    @property
    def n_features(self) -> int:
        return 2 * self.fps.shape[1] + len(self.pca_scale)

    def matrix(self, conditions: pd.DataFrame, control_means: pd.DataFrame) -> np.ndarray:
        """(n_conditions, n_features) float32."""
        context = (
            (control_means.to_numpy() - self.pca_mean) @ self.pca_components.T
        ) / self.pca_scale
        row_of = {line: i for i, line in enumerate(control_means.index)}
        return np.vstack(
            [
                np.concatenate(
                    [drug_features(drug, dose, self.fps, self.max_dose), context[row_of[line]]]
                )
                for line, drug, dose in zip(
                    conditions[CELL_LINE], conditions[DRUG], conditions[DOSE]
                )
            ]
        ).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "fp.drugs": self.fps.index.to_numpy(dtype=str),
            "fp.bits": self.fps.to_numpy(),
            # perturbations without features (an unseen protein) and why, for the error
            "fp.unpredictable": np.array(
                [f"{k}\t{v}" for k, v in self.fps.attrs.get("unpredictable", {}).items()], dtype=str
            ),
            "max_dose": np.array(self.max_dose),
            "pca.mean": self.pca_mean,
            "pca.components": self.pca_components,
            "pca.scale": self.pca_scale,
        }

    @classmethod
    def from_arrays(cls, arrays) -> ConditionFeatures:
        bits = arrays["fp.bits"]
        fps = pd.DataFrame(
            bits,
            index=pd.Index(arrays["fp.drugs"], name="drug"),
            columns=pd.RangeIndex(bits.shape[1], name="bit"),
        )
        rows = arrays["fp.unpredictable"] if "fp.unpredictable" in arrays else []
        fps.attrs["unpredictable"] = dict(str(r).split("\t", 1) for r in rows)
        return cls(
            fps,
            float(arrays["max_dose"]),
            arrays["pca.mean"],
            arrays["pca.components"],
            arrays["pca.scale"],
        )


class FeatureBaseline(DeltaBaseline):
    """Shared fit/state for the baselines that regress deltas on condition features."""

    def _fit_deltas(self, td, train, device):
        if len(td.conditions) == 0:
            raise SchemaError("training data: no perturbed cells (every cell is a control)")
        self.features = ConditionFeatures.fit(
            train,
            td,
            radius=self.params["radius"],
            n_bits=self.params["n_bits"],
            n_context_pcs=self.params["n_context_pcs"],
        )
        self._fit_model(self.features.matrix(td.conditions, td.control_means), td.deltas, device)

    @abstractmethod
    def _fit_model(self, X: np.ndarray, Y: np.ndarray, device: str) -> None:
        """Fit the regressor from features X (n_conditions, n_features) to deltas Y."""

    def _describe_sizes(self) -> tuple[int, int]:
        """(n_features, n_genes): fitted sizes, or the preset's (context PCs at their maximum)."""
        if hasattr(self, "features"):
            return self.features.n_features, len(self.genes)
        p = self.params
        return 2 * p["n_bits"] + p["n_context_pcs"], p["describe_n_genes"]

    def add_perturbations(self, drugs, names, priors=None):
        from scpert.perturbations import added_features

        fps = self.features.fps
        new = added_features(
            drugs, names, fps.index, n_bits=self.params["n_bits"], radius=self.params["radius"]
        )
        if len(new):
            grown = pd.concat([fps, new.set_axis(fps.columns, axis=1)])
            grown.attrs["unpredictable"] = dict(fps.attrs.get("unpredictable", {}))
            self.features.fps = grown
        return list(new.index)

    def _state(self):
        return self.features.arrays()

    def _set_state(self, arrays):
        self.features = ConditionFeatures.from_arrays(arrays)


@register
class BaseReg(FeatureBaseline):
    """Ridge regression from drug structure x dose + context PCs to the pseudobulk delta."""

    name = "base_reg"

    def _fit_model(self, X, Y, device):
        coef, intercept = ridge_fit(X, Y, float(self.params["alpha"]))
        self.coef = coef.astype(np.float32)  # (n_genes, n_features)
        self.intercept = intercept.astype(np.float32)

    def _deltas(self, conditions, control_means):
        X = self.features.matrix(conditions, control_means).astype(np.float64)
        return X @ self.coef.T.astype(np.float64) + self.intercept

    def parameter_counts(self) -> dict[str, int]:
        n_features, n_genes = self._describe_sizes()
        return {"ridge.coef": n_features * n_genes, "ridge.intercept": n_genes}

    def _state(self):
        return {**super()._state(), "ridge.coef": self.coef, "ridge.intercept": self.intercept}

    def _set_state(self, arrays):
        super()._set_state(arrays)
        self.coef, self.intercept = arrays["ridge.coef"], arrays["ridge.intercept"]
