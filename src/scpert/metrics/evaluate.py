"""One pass over the test conditions, shared DE, and the metric-protocol registry (DESIGN §9).

:class:`GroundTruth` holds, per test condition, the ground-truth cells (``obs["condition"]``) and
the true control cells of the same ``cell_line`` (``obs["drug"] == control``); it is prepared once
and scores any number of predictions (:meth:`GroundTruth.evaluate`), so the workflow scores every
method of a split in one process and computes the truth side once. :func:`evaluate_predictions` is
the one-prediction shorthand. Per condition and prediction one :class:`ConditionContext` goes to
every requested protocol. The context computes shared quantities lazily and at most once: those
of the prediction (scanpy-style means and variances, t-test scores and Mann-Whitney p-values
against the control, |score| rankings, the cell subsample) per prediction, those of the truth and
of the controls (the same statistics of the truth; per cell line the control statistics and the
control cloud for E-distances) once for all predictions.

A protocol registers with :func:`register_protocol`: a function ``ctx -> [(metric, deg_set,
value), ...]``; optionally ``summarize(ctx) -> summary`` (kept per condition) and ``across({condition:
summary}, shared) -> [(condition, metric, deg_set, value), ...]`` for metrics that compare conditions
with each other (discrimination scores, across-perturbation correlations); ``shared`` is a dict the
protocol keeps across the predictions scored against one :class:`GroundTruth` (e.g. clusters of the
true centroids). Conditions are compared only with conditions of the same cell line (as cell-eval
run per cell type); a value that summarises all test conditions of a cell line gets the condition
label :func:`across_label` (``"<cell_line>|*"``).
"""

from __future__ import annotations

import importlib
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scpert.data import schema
from scpert.data.schema import SchemaError
from scpert.metrics import de
from scpert.metrics.distances import EnergyReference

#: modules whose import registers protocols; later protocols append their module here.
PROTOCOL_MODULES = (
    "scpert.metrics.scperturbench",
    "scpert.metrics.celleval",
    "scpert.metrics.scppdm",
    "scpert.metrics.systema",
)
RESULT_COLUMNS = ("condition", "protocol", "metric", "deg_set", "value")
#: seconds between progress lines while one prediction is scored
PROGRESS_SECONDS = 10.0
log = logging.getLogger(__name__)

MetricRow = tuple[str, str, float]  # (metric, deg_set, value)
ConditionRow = tuple[str, str, str, float]  # (condition, metric, deg_set, value)


@dataclass(frozen=True)
class Protocol:
    name: str
    per_condition: Callable[[ConditionContext], Iterable[MetricRow]]
    summarize: Callable[[ConditionContext], Any] | None = None
    across: Callable[[dict[str, Any], dict[Any, Any]], Iterable[ConditionRow]] | None = None


_REGISTRY: dict[str, Protocol] = {}

#: condition label suffix of values that summarise all test conditions of a cell line
ALL_CONDITIONS = "*"


def across_label(cell_line: str) -> str:
    """Condition label of a value computed across all test conditions of ``cell_line``."""
    return f"{cell_line}{schema.CONDITION_SEP}{ALL_CONDITIONS}"


def register_protocol(
    name: str,
    *,
    summarize: Callable[[ConditionContext], Any] | None = None,
    across: Callable[[dict[str, Any], dict[Any, Any]], Iterable[ConditionRow]] | None = None,
):
    """Decorator registering ``fn(ctx) -> [(metric, deg_set, value)]`` as protocol ``name``."""

    def decorate(fn: Callable[[ConditionContext], Iterable[MetricRow]]):
        protocol = Protocol(name, fn, summarize, across)
        if name in _REGISTRY and _REGISTRY[name].per_condition is not fn:
            raise ValueError(f"metric protocol '{name}' registered twice")
        _REGISTRY[name] = protocol
        return fn

    return decorate


def _import_all() -> None:
    for module in PROTOCOL_MODULES:
        importlib.import_module(module)


def available_protocols() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def get_protocol(name: str) -> Protocol:
    _import_all()
    if name not in _REGISTRY:
        raise KeyError(
            f"unknown metric protocol '{name}' (available: {', '.join(sorted(_REGISTRY))})"
        )
    return _REGISTRY[name]


@dataclass(eq=False)
class ControlCells:
    """True control cells of one cell line (dense, stored dtype) with scanpy-style mean/var."""

    x: np.ndarray

    @cached_property
    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        return de.mean_var(self.x)

    @property
    def mean(self) -> np.ndarray:
        return self.stats[0]

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @cached_property
    def dtype_mean(self) -> np.ndarray:
        """Per-gene mean accumulated in the stored dtype (numpy), as pdex forms pseudobulks."""
        return self.x.mean(axis=0)

    @cached_property
    def mannwhitney(self) -> de.MannWhitneyReference:
        """The control cells prepared for Mann-Whitney tests of many groups against them."""
        return de.MannWhitneyReference(self.x)

    @cached_property
    def energy_reference(self) -> EnergyReference:
        """The control cloud prepared for E-distances of many conditions to it."""
        return EnergyReference(self.x)


@dataclass(eq=False)
class ConditionContext:
    """Everything a protocol needs for one test condition; shared results are computed once.

    truth, pred: dense cells x genes in their stored dtype (NaN prediction rows already replaced
    by the control mean). control: the true controls of the condition's cell line.
    train_reference: optional per-gene reference (Systema: mean of training-perturbation
    centroids), passed through from :func:`evaluate_predictions`.
    truth_shared: results that depend on the truth and the control only, kept across the
    predictions scored against the same truth (:class:`GroundTruth`); protocols keep theirs
    under their name. scratch: per-protocol results of this prediction, so a protocol's
    per-condition function and its ``summarize`` share intermediate results.
    """

    condition: str
    cell_line: str
    genes: pd.Index
    truth: np.ndarray
    pred: np.ndarray
    control: ControlCells
    seed: int = 42
    max_cells: int = 2000
    train_reference: np.ndarray | None = None
    truth_shared: dict[str, Any] = field(default_factory=dict, repr=False)
    scratch: dict[str, Any] = field(default_factory=dict, repr=False)
    _subsamples: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def truth_side(self, key: str, compute: Callable[[], Any]) -> Any:
        """``truth_shared[key]``, computed by ``compute()`` the first time."""
        if key not in self.truth_shared:
            self.truth_shared[key] = compute()
        return self.truth_shared[key]

    @property
    def truth_stats(self) -> tuple[np.ndarray, np.ndarray]:
        return self.truth_side("stats", lambda: de.mean_var(self.truth, mean=self.truth_mean))

    @cached_property
    def pred_stats(self) -> tuple[np.ndarray, np.ndarray]:
        return de.mean_var(self.pred, mean=self.pred_mean)

    @property
    def truth_mean(self) -> np.ndarray:
        """Per-gene mean (float64 accumulation); alone, without the variance, for the protocols
        that need only the mean (cell-eval)."""
        return self.truth_side("mean", lambda: de.column_mean(self.truth))

    @cached_property
    def pred_mean(self) -> np.ndarray:
        return de.column_mean(self.pred)

    @property
    def control_mean(self) -> np.ndarray:
        return self.control.mean

    @property
    def truth_scores(self) -> np.ndarray:
        """scanpy t-test scores, truth vs control."""
        return self.truth_side(
            "scores",
            lambda: de.welch_t(
                *self.truth_stats, self.truth.shape[0], *self.control.stats, self.control.n
            ),
        )

    @cached_property
    def pred_scores(self) -> np.ndarray:
        """scanpy t-test scores, prediction vs the true control."""
        return de.welch_t(*self.pred_stats, self.pred.shape[0], *self.control.stats, self.control.n)

    @property
    def truth_mwu_p(self) -> np.ndarray:
        """Two-sided Mann-Whitney U p-values, truth vs control, per gene."""
        return self.truth_side("mwu_p", lambda: self.control.mannwhitney.test(self.truth)[1])

    @cached_property
    def pred_mwu_p(self) -> np.ndarray:
        """Two-sided Mann-Whitney U p-values, prediction vs the true control, per gene."""
        return self.control.mannwhitney.test(self.pred)[1]

    @property
    def truth_ranking(self) -> np.ndarray:
        """All gene indices by |truth score| descending (ties in gene order)."""
        return self.truth_side("ranking", lambda: de.top_by_abs(self.truth_scores))

    def tie_rng(self, stream: int) -> np.random.Generator:
        """Generator for the random tie order of a prediction's gene ranking: seeded by the
        evaluation seed, the condition and ``stream`` (one per ranking), not by the method."""
        return np.random.default_rng([self.seed, zlib.crc32(self.condition.encode()), stream])

    @cached_property
    def pred_ranking(self) -> np.ndarray:
        """All gene indices by |prediction score| descending, ties in random order (stream 0)."""
        return de.top_by_abs(self.pred_scores, rng=self.tie_rng(0))

    def subsample(self, max_cells: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of at most ``max_cells`` prediction and truth cells.

        scPerturBench ``f_subSample``: ``np.random.seed(seed)``, then the prediction group and then
        the truth group each draw ``choice(n, max_cells, replace=False)`` only when larger than
        ``max_cells`` (legacy RandomState stream, so the same cells as theirs for equal inputs).
        """
        if max_cells not in self._subsamples:
            rng = np.random.RandomState(self.seed)
            picks = []
            for n in (self.pred.shape[0], self.truth.shape[0]):
                picks.append(
                    rng.choice(n, max_cells, replace=False) if n > max_cells else np.arange(n)
                )
            self._subsamples[max_cells] = (picks[0], picks[1])
        return self._subsamples[max_cells]


def _dense_rows(x, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (sorted, unique) of ``x`` as a dense array: a read-only view of a dense
    ``x`` when they are consecutive (the usual layout: cells grouped by condition), else a copy."""
    if not sp.issparse(x) and rows.size and (np.diff(rows) == 1).all():
        block = np.asarray(x[rows[0] : rows[-1] + 1])
        if np.issubdtype(block.dtype, np.floating):
            block = block.view()
            block.flags.writeable = False
            return block
    block = x[rows]
    block = block.toarray() if sp.issparse(block) else np.asarray(block)  # fancy indexing copied
    if not np.issubdtype(block.dtype, np.floating):
        block = block.astype(np.float64)
    return block


def _check_inputs(truth: ad.AnnData, pred: ad.AnnData) -> None:
    if not truth.var_names.equals(pred.var_names):
        if truth.n_vars != pred.n_vars:
            detail = f"{pred.n_vars} genes vs {truth.n_vars}"
        else:
            i = int(np.flatnonzero(truth.var_names != pred.var_names)[0])
            detail = f"position {i}: '{pred.var_names[i]}' vs '{truth.var_names[i]}'"
        raise SchemaError(
            f"prediction: var_names differ from the ground truth's var_names ({detail})"
        )
    for name, adata, keys in (
        ("ground truth", truth, (schema.CONDITION, schema.CELL_LINE, schema.DRUG)),
        ("prediction", pred, (schema.CONDITION,)),
    ):
        for key in keys:
            if key not in adata.obs.columns:
                raise SchemaError(f"{name}: obs['{key}'] is missing")


def _replace_nan_rows(pred: np.ndarray, control_mean: np.ndarray) -> np.ndarray:
    """``pred`` with the rows holding NaN replaced by the control mean (on a copy)."""
    bad = np.isnan(pred).any(axis=1)
    if bad.any():
        pred = pred.copy()
        pred[bad] = control_mean.astype(pred.dtype)
    return pred


@dataclass(eq=False)
class _TruthCondition:
    cell_line: str
    rows: np.ndarray
    shared: dict[str, Any] = field(default_factory=dict)


class _Progress:
    """A log line at most every ``PROGRESS_SECONDS`` of scoring: conditions done, rate, ETA."""

    def __init__(self, total: int):
        self.total, self.done = total, 0
        self.start = self.last = time.monotonic()

    def step(self) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS and self.done:
            rate = self.done / (now - self.start)
            log.info(
                "scored %d/%d conditions (%.1f/s, about %.0f s left)",
                self.done,
                self.total,
                rate,
                (self.total - self.done) / rate,
            )
            self.last = now
        self.done += 1


class GroundTruth:
    """The ground truth of a set of test conditions, prepared once to score many predictions.

    truth: log-normalised ground truth holding the test conditions and the control cells
        (``obs``: condition, cell_line, drug). conditions: the test conditions (duplicates
        ignored). max_cells: per-group subsample for cell-level distances (scPerturBench: 2000,
        seed 42). train_reference: Systema's per-gene reference (see :mod:`.systema`).
    Errors in the truth (a condition without cells, spanning several cell lines, a cell line
    without controls) are raised here, naming the field.
    """

    def __init__(
        self,
        truth: ad.AnnData,
        conditions: Sequence[str],
        control: str,
        seed: int = 42,
        max_cells: int = 2000,
        train_reference: np.ndarray | None = None,
    ):
        for key in (schema.CONDITION, schema.CELL_LINE, schema.DRUG):
            if key not in truth.obs.columns:
                raise SchemaError(f"ground truth: obs['{key}'] is missing")
        if train_reference is not None:
            train_reference = np.asarray(train_reference, dtype=np.float64)
            if train_reference.shape != (truth.n_vars,):
                raise ValueError(
                    f"train_reference must have shape ({truth.n_vars},), "
                    f"got {train_reference.shape}"
                )
        self.truth = truth
        self.control_label = control
        self.seed = seed
        self.max_cells = max_cells
        self.train_reference = train_reference
        obs = truth.obs
        groups = obs.groupby(obs[schema.CONDITION].astype(str), observed=True).indices
        is_control = (obs[schema.DRUG].astype(str) == control).to_numpy()
        lines = obs[schema.CELL_LINE].astype(str).to_numpy()
        self.conditions: dict[str, _TruthCondition] = {}
        self.controls: dict[str, ControlCells] = {}
        for condition in dict.fromkeys(str(c) for c in conditions):
            if condition not in groups:
                raise SchemaError(
                    f"ground truth: no cells with obs['{schema.CONDITION}'] == '{condition}'"
                )
            rows = groups[condition]
            line_values = np.unique(lines[rows])
            if line_values.size != 1:
                raise SchemaError(
                    f"ground truth: condition '{condition}' spans several "
                    f"obs['{schema.CELL_LINE}'] values: {line_values.tolist()}"
                )
            line = str(line_values[0])
            if line not in self.controls:
                control_rows = np.flatnonzero(is_control & (lines == line))
                if control_rows.size == 0:
                    raise SchemaError(
                        f"ground truth: no control cells (obs['{schema.DRUG}'] == '{control}') "
                        f"for obs['{schema.CELL_LINE}'] == '{line}'"
                    )
                self.controls[line] = ControlCells(_dense_rows(truth.X, control_rows))
            self.conditions[condition] = _TruthCondition(line, rows)
        #: per protocol, what its ``across`` keeps between predictions
        self.across_shared: dict[str, dict[Any, Any]] = {}

    def evaluate(
        self, pred: ad.AnnData, protocols: Sequence[str] = ("scperturbench",)
    ) -> pd.DataFrame:
        """Metrics of ``pred`` for every test condition, one tidy row per value.

        pred: predicted cells, the truth's var_names in the same order, ``obs["condition"]``.
        Prediction rows containing NaN are replaced by the mean of the true controls of the
        condition's cell line (on a copy). Returns columns ``condition, protocol, metric,
        deg_set, value`` sorted by the first four.
        """
        _check_inputs(self.truth, pred)
        chosen = [get_protocol(name) for name in protocols]
        pred_obs = pred.obs
        pred_groups = pred_obs.groupby(
            pred_obs[schema.CONDITION].astype(str), observed=True
        ).indices
        for condition in self.conditions:
            if condition not in pred_groups:
                raise SchemaError(
                    f"prediction: no cells for condition '{condition}' (obs['{schema.CONDITION}'])"
                )
        rows: list[tuple[str, str, str, str, float]] = []
        summaries: dict[str, dict[str, Any]] = {p.name: {} for p in chosen}
        progress = _Progress(len(self.conditions))
        for condition, truth_condition in self.conditions.items():
            progress.step()
            ctrl = self.controls[truth_condition.cell_line]
            ctx = ConditionContext(
                condition=condition,
                cell_line=truth_condition.cell_line,
                genes=self.truth.var_names,
                truth=_dense_rows(self.truth.X, truth_condition.rows),
                pred=_replace_nan_rows(_dense_rows(pred.X, pred_groups[condition]), ctrl.mean),
                control=ctrl,
                seed=self.seed,
                max_cells=self.max_cells,
                train_reference=self.train_reference,
                truth_shared=truth_condition.shared,
            )
            for protocol in chosen:
                rows += [
                    (condition, protocol.name, metric, deg_set, float(value))
                    for metric, deg_set, value in protocol.per_condition(ctx)
                ]
                if protocol.summarize is not None:
                    summaries[protocol.name][condition] = protocol.summarize(ctx)
        for protocol in chosen:
            if protocol.across is not None:
                shared = self.across_shared.setdefault(protocol.name, {})
                rows += [
                    (condition, protocol.name, metric, deg_set, float(value))
                    for condition, metric, deg_set, value in protocol.across(
                        summaries[protocol.name], shared
                    )
                ]
        table = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
        return table.sort_values(list(RESULT_COLUMNS[:4]), kind="stable").reset_index(drop=True)


def evaluate_predictions(
    truth: ad.AnnData,
    pred: ad.AnnData,
    conditions: Sequence[str],
    control: str,
    protocols: Sequence[str] = ("scperturbench",),
    seed: int = 42,
    train_reference: np.ndarray | None = None,
    max_cells: int = 2000,
) -> pd.DataFrame:
    """Metrics of one prediction: ``GroundTruth(truth, conditions, ...).evaluate(pred, protocols)``.

    The var_names check comes first, then the truth, then the prediction's conditions.
    """
    _check_inputs(truth, pred)
    reference = GroundTruth(truth, conditions, control, seed, max_cells, train_reference)
    return reference.evaluate(pred, protocols)
