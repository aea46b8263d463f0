"""Reference rows of every table: the ``oracle`` and the data ``ceiling`` (docs/architecture.md
"Reference rows").

They are not methods: they show the headroom of a split, what a perfect model could score on it.
Tables list them after the methods, in brackets, unranked (:mod:`scpert.tables`); the paired
statistics (:mod:`scpert.stats`) leave them out.

``oracle`` (simulated datasets only)
    The synthetic world's noise-free truth sampled with the world's own noise: for every test
    condition and plate, as many new cells as a method is asked for (``steps.methods.
    conditions_to_predict``), drawn from the world's cell model (phase mix, program noise, size
    factors, negative-binomial counts; :func:`scpert.data.simulate.sample_cells`) with a seed of
    its own, then normalised as ``processed.h5ad`` (``normalize_total(1e4)`` over the genes kept
    by QC, ``log1p``) and restricted to the split's genes. It is scored by the evaluate job like
    any prediction, so it is the best any model can do on that data in expectation; on a finite
    sample a method may beat it by chance on one metric and split.

``ceiling`` (every dataset)
    cell-eval 0.8's data ceiling (``MetricsEvaluator.compute_ceiling``) for every protocol: each
    test condition's true cells are split into two disjoint halves of ``floor(n/2)`` cells (one
    leftover cell dropped when ``n`` is odd; conditions with < 2 cells dropped), one half is
    scored as the prediction of the other with the protocol's own code, and the mean over the
    split's test conditions of a reliability metric ``r`` is mapped from half to full depth by the
    Spearman-Brown prophecy ``r' = 2r / (1 + r)``, NaN where ``r <= 0`` (cell-eval's
    ``_spearman_brown_correct``). As in cell-eval the ceiling exists only for bounded,
    higher-is-better agreement metrics (:data:`CEILING_METRICS`; cell-eval's ``SB_METRICS`` for
    the cell-eval protocol and the correlation/overlap metrics of the other protocols); error
    metrics and distances get no ceiling row. The halves are drawn as cell-eval draws them per
    context (cell line): ``numpy.random.default_rng(seed)``, groups in sorted label order, the
    control group included, ``rng.permutation`` of each group's rows.

    One departure from cell-eval, to bound what the tables score: cell-eval also halves the
    control cells (each half against its own control half); here both halves are scored against
    all of the line's true controls, because every method is scored against those same controls
    (the protocols' "identical control cells", scpert.metrics.celleval). The cross-check with the
    package (``tests/test_reference_rows.py``) therefore runs cell-eval's pipeline on cell-eval's
    own halves with the full controls appended, and its ``_spearman_brown_correct`` on the mean.

In ``metrics_long.tsv`` the ceiling rows hold the raw half-depth values per condition (the
Spearman-Brown correction applies to a mean, not to one condition); ``summary.tsv`` and the
tables hold the corrected mean (:func:`ceiling_stats`) with no sd.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scpert.data import schema
from scpert.layout import CEILING, ORACLE, REFERENCE_ROWS

__all__ = [
    "CEILING",
    "CEILING_METRICS",
    "ORACLE",
    "REFERENCE_ROWS",
    "ceiling_metrics",
    "ceiling_stats",
    "disjoint_halves",
    "oracle_prediction",
    "spearman_brown",
]

log = logging.getLogger(__name__)

#: protocol -> metrics that get a ceiling (bounded, higher-is-better agreement metrics)
CEILING_METRICS: dict[str, frozenset[str]] = {
    # cell-eval 0.8.2 SB_METRICS (cell_eval/_evaluator.py), restricted to the metrics we compute
    "celleval": frozenset(
        {
            "pearson_delta",
            "discrimination_score_l1",
            "discrimination_score_l2",
            "discrimination_score_cosine",
            "overlap_at_N",
            "overlap_at_50",
            "overlap_at_100",
            "overlap_at_200",
            "overlap_at_500",
            "precision_at_N",
            "precision_at_50",
            "precision_at_100",
            "precision_at_200",
            "precision_at_500",
            "de_spearman_sig",
            "de_spearman_lfc_sig",
            "de_direction_match",
            "de_sig_genes_recall",
            "pr_auc",
            "roc_auc",
        }
    ),
    "scperturbench": frozenset({"pcc_delta", "common_degs"}),
    "scppdm": frozenset(
        {"logfc_pearson", "logfc_spearman", "delta_pearson", "delta_spearman", "deg_accuracy"}
    ),
    "systema": frozenset({"pearson_delta_hat", "discrimination_score"}),
}


def spearman_brown(r) -> np.ndarray:
    """``2r / (1 + r)`` where ``r > 0``, NaN elsewhere (and for NaN), as cell-eval 0.8."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r > 0, 2.0 * r / (1.0 + r), np.nan)


def has_ceiling(protocol: str, metric: str) -> bool:
    return metric in CEILING_METRICS.get(protocol, ())


def disjoint_halves(
    obs: pd.DataFrame, conditions: Sequence[str], control: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the two disjoint halves of every test condition's cells.

    Per cell line, in cell-eval's order: ``rng = default_rng(seed)``; the line's control label and
    its test conditions sorted; per group ``perm = rng.permutation(rows)``, halves ``perm[:h]``
    and ``perm[h:2h]`` with ``h = n // 2`` (the control's permutation is drawn and discarded: the
    controls stay whole). Returns (truth half, prediction half), positions into ``obs``.
    """
    labels = obs[schema.CONDITION].astype(str).to_numpy()
    lines = obs[schema.CELL_LINE].astype(str).to_numpy()
    is_control = (obs[schema.DRUG].astype(str) == control).to_numpy()
    wanted = set(map(str, conditions))
    first, second = [], []
    for line in sorted(set(lines[np.isin(labels, list(wanted))])):
        in_line = lines == line
        groups = {c: np.flatnonzero(in_line & (labels == c)) for c in wanted}
        groups = {c: rows for c, rows in groups.items() if rows.size}
        groups[control] = np.flatnonzero(in_line & is_control)
        rng = np.random.default_rng(seed)
        for label in sorted(groups):
            perm = rng.permutation(groups[label])
            h = perm.size // 2
            if label == control or h < 1:
                continue
            first.append(perm[:h])
            second.append(perm[h : 2 * h])
    empty = np.empty(0, dtype=np.int64)
    return (
        np.concatenate(first) if first else empty,
        np.concatenate(second) if second else empty,
    )


def ceiling_metrics(
    truth: ad.AnnData,
    conditions: Sequence[str],
    control: str,
    protocols: Sequence[str],
    *,
    seed: int = 0,
    eval_seed: int = 42,
    max_cells: int = 2000,
    train_reference: np.ndarray | None = None,
) -> pd.DataFrame:
    """Raw half-depth values of the ceiling metrics (columns of
    :data:`scpert.metrics.evaluate.RESULT_COLUMNS`): one half of each test condition scored as the
    prediction of the other by the protocols' own code, against all true controls.

    truth: the split's test conditions and controls (as the evaluate step holds them). seed: the
    split-half seed; eval_seed, max_cells, train_reference: as for the methods.
    """
    from scpert.metrics.evaluate import RESULT_COLUMNS, GroundTruth

    first, second = disjoint_halves(truth.obs, conditions, control, seed)
    if first.size == 0:
        raise schema.SchemaError("ground truth: no test condition has >= 2 cells for the ceiling")
    kept = list(dict.fromkeys(truth.obs[schema.CONDITION].astype(str).to_numpy()[first]))
    dropped = len(set(map(str, conditions))) - len(kept)
    if dropped:
        log.warning("ceiling: %d test conditions with < 2 cells left out", dropped)
    controls = np.flatnonzero((truth.obs[schema.DRUG].astype(str) == control).to_numpy())
    half_truth = truth[np.concatenate([first, controls])]
    half_pred = truth[second]
    ground = GroundTruth(
        half_truth,
        kept,
        control,
        seed=eval_seed,
        max_cells=max_cells,
        train_reference=train_reference,
    )
    table = ground.evaluate(half_pred, protocols)
    keep = [has_ceiling(p, m) for p, m in zip(table["protocol"], table["metric"])]
    return table.loc[keep, list(RESULT_COLUMNS)].reset_index(drop=True)


def ceiling_stats(stats: pd.DataFrame) -> pd.DataFrame:
    """Summary rows with the Spearman-Brown ceiling: for ``method == "ceiling"`` the mean (and the
    median, where present) of the raw half-depth values is corrected, the sd left empty; rows of
    metrics without a ceiling are dropped. Other rows are returned unchanged."""
    is_ceiling = (stats["method"] == CEILING).to_numpy()
    if not is_ceiling.any():
        return stats
    defined = np.array([has_ceiling(p, m) for p, m in zip(stats["protocol"], stats["metric"])])
    stats = stats[~is_ceiling | defined].copy()
    rows = (stats["method"] == CEILING).to_numpy()
    for column in ("mean", "median"):
        if column in stats:
            stats.loc[rows, column] = spearman_brown(stats.loc[rows, column].to_numpy())
    stats.loc[rows, "sd"] = np.nan
    return stats


def oracle_prediction(
    world_truth: ad.AnnData,
    requests: pd.DataFrame,
    qc_genes: Sequence[str],
    genes: Sequence[str],
    seed: int,
    target_sum: float = 1e4,
) -> ad.AnnData:
    """The oracle's prediction: new cells of the world for every requested (condition, plate),
    normalised as ``processed.h5ad`` (``target_sum`` over ``qc_genes``, log1p) in ``genes``.

    requests: ``conditions_to_predict`` rows (``condition, cell_line, drug, dose, plate,
    n_cells``). Returns the prediction contract's obs and float32 CSR X.
    """
    from scpert.data.simulate import sample_cells

    processed = set(qc_genes)
    missing = [g for g in genes if g not in processed]
    if missing:
        raise schema.SchemaError(f"oracle: split genes not in the processed genes: {missing[:3]}")
    absent = [g for g in qc_genes if g not in world_truth.var_names]
    if absent:
        raise schema.SchemaError(
            f"ground truth: genes of processed.h5ad are not in the world, e.g. {absent[:3]}"
        )
    cells = sample_cells(world_truth, requests, seed)
    counts = cells[:, list(qc_genes)].X.tocsr().astype(np.float64)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    x = sp.diags(scale) @ counts
    x = x.tocsc()[:, [list(qc_genes).index(g) for g in genes]].tocsr()
    x.data = np.log1p(x.data)
    described = requests.drop_duplicates("condition").set_index("condition")
    obs = cells.obs.copy()
    condition = obs[schema.CONDITION].astype(str)
    for key in (schema.CELL_LINE, schema.DRUG, schema.DOSE):
        obs[key] = condition.map(described[key].astype(str)).to_numpy()
    obs = obs[[schema.CELL_LINE, schema.DRUG, schema.DOSE, schema.PLATE, schema.CONDITION]]
    pred = ad.AnnData(
        sp.csr_matrix(x, dtype=np.float32), obs=obs, var=pd.DataFrame(index=pd.Index(genes))
    )
    pred.uns["method"] = ORACLE
    pred.uns["base_method"] = ORACLE
    pred.uns["seed"] = int(seed)
    pred.uns["sampler"] = "world"
    return pred
