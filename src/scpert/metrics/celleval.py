"""The cell-eval protocol: ``cell_eval.MetricsEvaluator(...).compute(profile="full")`` of cell-eval
0.8.2 (source read from the installed package), the protocol of PerturbDiff Table 4 (App. C.2),
plus R2 as PerturbDiff takes it from CellFlow.

A condition is one cell-eval "perturbation". Its inputs are the ground-truth cells, the predicted
cells and the true control cells of its cell line. cell-eval wants control cells inside the
prediction too; we use the true controls on both sides (PerturbDiff App. C.2 fixes the control cells
to be identical for prediction and truth), so cell-eval run per cell line on the same cells, with
the true controls appended to the prediction, gives the same values
(``tests/test_metrics_crosscheck.py``). Conditions are compared only within their cell line, as
``cell-eval run --celltype-col`` does.

Pseudobulk ``p``: mean over cells accumulated in float64 and rounded to the data's dtype (cell-eval's
polars group mean); ``delta = p(condition) - p(control)`` in that dtype.

Per condition (``deg_set`` ``all`` = every gene, ``sig`` = the FDR < 0.05 DE genes):
- ``pearson_delta`` (all): Pearson r of the predicted and true deltas (PerturbDiff PDCorr).
- ``mse``, ``mae`` (all) on ``p``; ``mse_delta``, ``mae_delta`` on the deltas (equal to ``mse``/
  ``mae`` up to rounding, the control being shared).
- ``r2`` (all): CellFlow ``compute_r_squared``: ``sklearn.metrics.r2_score(mean(truth), mean(pred))``
  over genes, i.e. ``1 - sum (y - y_hat)^2 / sum (y - mean y)^2``, on float64 means.
- DE as cell-eval calls pdex (``mode="ref"``, ``is_log1p=True``, ``epsilon=0``, geometric mean):
  two-sided Mann-Whitney U p-values against the control (:func:`scpert.metrics.de.mannwhitney_u`),
  BH FDR within the condition (:func:`scpert.metrics.de.bh_fdr`),
  ``log2FC = log2(expm1(m_cond) / expm1(m_ctrl))`` with ``m`` the mean of X accumulated in the
  data's dtype (numpy, as pdex on dense X), ``expm1`` rounded to that dtype, ``0/0 = 0`` and
  one-sided zeros giving ``+-inf`` (epsilon 0, kept: an infinite fold change ranks first). cell-eval
  casts log2FC and FDR to float32 before every DE metric; so do we. ``S`` = genes with
  ``FDR < 0.05``, ranked by ``|log2FC|`` descending, ties in gene order (polars ordinal rank).
- ``overlap_at_{N,50,100,200,500}`` (sig): ``k = min(k or |S_true|, |S_true|)``,
  ``|top_k(S_true) & top_k(S_pred)| / k``, 0 when ``k = 0`` (PerturbDiff DEOver = ``overlap_at_N``).
- ``precision_at_{N,50,100,200,500}`` (sig): the same with ``k = min(k or |S_pred|, |S_pred|)``
  (DEPrec = ``precision_at_N``).
- ``de_direction_match`` (sig): over ``S_true``, the fraction of genes whose predicted log2FC has
  the true sign (``sign(0) = 0``) (DirAgr).
- ``de_spearman_lfc_sig`` (sig): Spearman of true and predicted log2FC over ``S_true`` (LFCSpear).
- ``de_sig_genes_recall`` (sig): ``|S_true & S_pred| / |S_true|``.
- ``de_nsig_counts_real``, ``de_nsig_counts_pred`` (sig): ``|S_true|``, ``|S_pred|``.
- ``roc_auc``, ``pr_auc`` (all): labels ``g in S_true``, scores ``-log10(clip(FDR_pred, 1e-10, 1))``
  in float32 (AUROC, AUPRC).

Across the test conditions of a cell line (in sorted order, as cell-eval's perturbation list):
- ``discrimination_score_{l1,l2,cosine}`` (all; one row per condition): distances from the
  predicted delta of ``p`` to every true delta, ``1 - rank / N`` with ``rank`` the 0-based position
  of ``p`` in the ascending order (ties in condition order; cell-eval 0.8.2 uses signed deltas, the
  fixed version of its abs() bug) (PDS_L1, PDS_L2, PDS_cos).
- ``de_spearman_sig`` (sig; condition ``"<cell_line>|*"``): Spearman across the conditions with
  ``|S_true| > 0`` of ``(|S_true|, |S_pred|)``; 1.0 when no condition has a significant gene
  (cell-eval's rule) (PerturbDiff ES).
- ``pearson_edistance`` (all; ``"<cell_line>|*"``): Pearson r across conditions of
  E(truth, control) and E(prediction, control), Euclidean E-distance (V-statistic) on all genes
  and cells.
- ``clustering_agreement`` (all; ``"<cell_line>|*"``): Leiden clusters (``scanpy`` neighbors with
  ``min(15, N - 1)`` neighbours, ``leiden(flavor="igraph", n_iterations=2)``) of the true condition
  centroids at resolution 1 against those of the predicted centroids at resolutions 0.2-2; the best
  adjusted mutual information, floored at 0. Needs at least 3 conditions. Computed by
  :mod:`scpert.metrics.clustering`, scanpy's and umap's computation without their numba
  compilation (same connectivities and clusters).

Choices where the reference is ambiguous or has known issues:
- A metric cell-eval reports as NaN or leaves out for a condition (no significant true genes,
  fewer than two values, a constant vector, one class only) gets no row; the summary's ``n`` counts
  the conditions where it is defined.
- Predicted vs true control: cell-eval takes each side's own control; here both are the true
  controls, so the reported inconsistency cannot arise.
- Discrimination excludes genes named like the perturbation (CRISPR targets); drug conditions
  (``cell_line|drug|dose``) never name a gene, so nothing is excluded.
- Rounding: cell-eval's float32 arithmetic is reproduced where it decides discrete outcomes (FDR
  threshold, |log2FC| ranking, AUC score ties); the remaining differences are 1-ulp float32
  effects: pdex's numba ``expm1``/polars' ``logf`` versus correctly rounded ones, sklearn's float32
  L2/cosine distances, and sklearn's float32 accumulation in the E-distance (documented and bounded
  in the cross-check tests). pdex on sparse X averages with scipy (other float32 rounding); we
  always average dense rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist

from scpert.metrics import clustering, de
from scpert.metrics.correlation import auroc, average_precision, pearson, spearman
from scpert.metrics.evaluate import (
    ConditionContext,
    ConditionRow,
    ControlCells,
    MetricRow,
    across_label,
    register_protocol,
)

PROTOCOL = "celleval"
FDR_THRESHOLD = 0.05
#: (metric suffix, k) of cell-eval's overlap_at_* / precision_at_*; None means k = |S|
TOP_K = (("N", None), ("50", 50), ("100", 100), ("200", 200), ("500", 500))
AUC_FDR_FLOOR = 1e-10
PDS_METRICS = ("l1", "l2", "cosine")
MIN_CLUSTER_CONDITIONS = 3


@dataclass(frozen=True)
class DEResult:
    """pdex-style DE of one group against the control, as cell-eval stores it (float32)."""

    lfc: np.ndarray
    fdr: np.ndarray
    sig: np.ndarray
    #: indices of significant genes by |lfc| descending, ties in gene order
    ranked: np.ndarray


@dataclass(frozen=True)
class Summary:
    """What the cross-condition metrics need from one condition."""

    cell_line: str
    delta_truth: np.ndarray
    delta_pred: np.ndarray
    n_sig_truth: int
    n_sig_pred: int
    edistance_truth: float
    edistance_pred: float
    centroid_truth: np.ndarray
    centroid_pred: np.ndarray


def de_result(x: np.ndarray, control_dtype_mean: np.ndarray, pvalues: np.ndarray) -> DEResult:
    """DE of the cells ``x`` against a control with the given per-gene mean (in ``x``'s dtype) and
    Mann-Whitney p-values, as pdex computes it and cell-eval stores it."""
    lfc = de.log2fc_expm1_means(x.mean(axis=0), control_dtype_mean, bulk_dtype=x.dtype)
    lfc = lfc.astype(np.float32)
    fdr = de.bh_fdr(pvalues).astype(np.float32)
    sig = fdr < FDR_THRESHOLD
    genes = np.flatnonzero(sig)
    ranked = genes[np.argsort(-np.abs(lfc[genes]), kind="stable")]
    return DEResult(lfc, fdr, sig, ranked)


def top_k_overlap(ranked_a: np.ndarray, ranked_b: np.ndarray, k: int) -> float:
    """``|a[:k] & b[:k]| / k`` (0 when k = 0), cell-eval ``compute_overlap``."""
    if k <= 0:
        return 0.0
    return np.intersect1d(ranked_a[:k], ranked_b[:k], assume_unique=True).size / k  # gene indices


def auc_scores(fdr32: np.ndarray) -> np.ndarray:
    """``-log10(clip(fdr, 1e-10, 1))`` in float32: polars' ``ln(q) / ln(10)`` in f32."""
    q = np.clip(fdr32, np.float32(AUC_FDR_FLOOR), np.float32(1.0))
    ln_q = np.log(q.astype(np.float64)).astype(np.float32)
    return -(ln_q / np.float32(np.log(10.0)))


def _side(x: np.ndarray, mean64: np.ndarray, control: ControlCells, pvalues: np.ndarray) -> dict:
    """Pseudobulk, delta and DE of one side (truth or prediction), in that side's dtype."""
    dtype = x.dtype
    ctrl_dtype_mean = (
        control.dtype_mean if control.x.dtype == dtype else control.x.astype(dtype).mean(axis=0)
    )
    bulk = mean64.astype(dtype)
    return {
        "bulk": bulk,
        "delta": bulk - control.mean.astype(dtype),
        "de": de_result(x, ctrl_dtype_mean, pvalues),
    }


def _state(ctx: ConditionContext) -> dict:
    """Both sides of one condition, computed once for the metrics and the summary (the truth's
    once for all predictions)."""
    if PROTOCOL not in ctx.scratch:
        ctx.scratch[PROTOCOL] = {
            "truth": ctx.truth_side(
                PROTOCOL, lambda: _side(ctx.truth, ctx.truth_mean, ctx.control, ctx.truth_mwu_p)
            ),
            "pred": _side(ctx.pred, ctx.pred_mean, ctx.control, ctx.pred_mwu_p),
        }
    return ctx.scratch[PROTOCOL]


def r2_score(truth: np.ndarray, pred: np.ndarray) -> float:
    """``1 - sum (y - y_hat)^2 / sum (y - mean y)^2``; NaN for a constant ``y``."""
    total = float(((truth - truth.mean()) ** 2).sum())
    return 1.0 - float(((truth - pred) ** 2).sum()) / total if total > 0 else float("nan")


def _summarize(ctx: ConditionContext) -> Summary:
    truth, pred = _state(ctx)["truth"], _state(ctx)["pred"]
    reference = ctx.control.energy_reference
    return Summary(
        cell_line=ctx.cell_line,
        delta_truth=truth["delta"],
        delta_pred=pred["delta"],
        n_sig_truth=int(truth["de"].sig.sum()),
        n_sig_pred=int(pred["de"].sig.sum()),
        edistance_truth=ctx.truth_side(
            f"{PROTOCOL}_edistance", lambda: reference.distance(ctx.truth)
        ),
        edistance_pred=reference.distance(ctx.pred),
        centroid_truth=ctx.truth_mean,
        centroid_pred=ctx.pred_mean,
    )


def discrimination_scores(
    pred_effects: np.ndarray, true_effects: np.ndarray, metric: str
) -> np.ndarray:
    """cell-eval ``discrimination_score``: ``1 - rank(p) / N`` per row ``p`` of ``pred_effects``."""
    pred64, true64 = pred_effects.astype(np.float64), true_effects.astype(np.float64)
    if metric == "l1":
        dist = cdist(pred64, true64, "cityblock")
    elif metric == "l2":
        dist = cdist(pred64, true64, "euclidean")
    elif metric == "cosine":

        def unit(m):
            norm = np.linalg.norm(m, axis=1, keepdims=True)
            return m / np.where(norm == 0, 1.0, norm)  # sklearn normalize(): zero rows stay zero

        dist = 1.0 - unit(pred64) @ unit(true64).T
    else:
        raise ValueError(f"unknown discrimination metric '{metric}'")
    n = dist.shape[0]
    order = np.argsort(dist, axis=1, kind="stable")
    rank = np.argmax(order == np.arange(n)[:, None], axis=1)
    return 1.0 - rank / n


def _across(summaries: dict[str, Summary], shared: dict) -> list[ConditionRow]:
    """Cross-condition metrics per cell line; ``shared`` keeps the true centroids' clusters for
    the next prediction scored against the same truth."""
    by_line: dict[str, list[str]] = defaultdict(list)
    for condition, summary in summaries.items():
        by_line[summary.cell_line].append(condition)
    rows: list[ConditionRow] = []
    for line, conditions in sorted(by_line.items()):
        conditions = sorted(conditions)
        group = [summaries[c] for c in conditions]
        pred_effects = np.vstack([s.delta_pred for s in group])
        true_effects = np.vstack([s.delta_truth for s in group])
        for metric in PDS_METRICS:
            scores = discrimination_scores(pred_effects, true_effects, metric)
            rows += [
                (c, f"discrimination_score_{metric}", "all", float(v))
                for c, v in zip(conditions, scores)
            ]
        label = across_label(line)
        with_sig = [s for s in group if s.n_sig_truth > 0]
        nsig_rho = (
            spearman([s.n_sig_truth for s in with_sig], [s.n_sig_pred for s in with_sig])
            if with_sig
            else 1.0
        )
        edist_r = pearson([s.edistance_truth for s in group], [s.edistance_pred for s in group])
        rows += [
            (label, "de_spearman_sig", "sig", nsig_rho),
            (label, "pearson_edistance", "all", edist_r),
        ]
        if len(group) >= MIN_CLUSTER_CONDITIONS:
            key = ("true_clusters", line, tuple(conditions))
            if key not in shared:
                (shared[key],) = clustering.cluster_centroids(
                    np.vstack([s.centroid_truth for s in group]), (clustering.TRUE_RESOLUTION,)
                )
            ami = clustering.clustering_agreement(
                None, np.vstack([s.centroid_pred for s in group]), truth_labels=shared[key]
            )
            rows.append((label, "clustering_agreement", "all", ami))
    return [row for row in rows if not np.isnan(row[3])]


@register_protocol(PROTOCOL, summarize=_summarize, across=_across)
def celleval_metrics(ctx: ConditionContext) -> list[MetricRow]:
    truth, pred = _state(ctx)["truth"], _state(ctx)["pred"]
    truth_de, pred_de = truth["de"], pred["de"]
    delta_truth, delta_pred = truth["delta"], pred["delta"]
    diff = pred["bulk"].astype(np.float64) - truth["bulk"]
    diff_delta = delta_pred.astype(np.float64) - delta_truth
    rows: list[MetricRow] = [
        ("pearson_delta", "all", pearson(delta_pred, delta_truth)),
        ("mse", "all", float(np.mean(diff**2))),
        ("mae", "all", float(np.mean(np.abs(diff)))),
        ("mse_delta", "all", float(np.mean(diff_delta**2))),
        ("mae_delta", "all", float(np.mean(np.abs(diff_delta)))),
        ("r2", "all", r2_score(ctx.truth_mean, ctx.pred_mean)),
    ]
    n_true, n_pred = truth_de.ranked.size, pred_de.ranked.size
    for suffix, k in TOP_K:
        k_overlap = min(k or n_true, n_true)
        k_precision = min(k or n_pred, n_pred)
        rows += [
            (
                f"overlap_at_{suffix}",
                "sig",
                top_k_overlap(truth_de.ranked, pred_de.ranked, k_overlap),
            ),
            (
                f"precision_at_{suffix}",
                "sig",
                top_k_overlap(truth_de.ranked, pred_de.ranked, k_precision),
            ),
        ]
    rows += [
        ("de_nsig_counts_real", "sig", float(n_true)),
        ("de_nsig_counts_pred", "sig", float(n_pred)),
    ]
    if n_true:
        sig = truth_de.sig
        rows += [
            (
                "de_direction_match",
                "sig",
                float(np.mean(np.sign(truth_de.lfc[sig]) == np.sign(pred_de.lfc[sig]))),
            ),
            ("de_spearman_lfc_sig", "sig", spearman(truth_de.lfc[sig], pred_de.lfc[sig])),
            ("de_sig_genes_recall", "sig", float((sig & pred_de.sig).sum() / n_true)),
        ]
    scores = auc_scores(pred_de.fdr)
    rows += [
        ("roc_auc", "all", auroc(truth_de.sig, scores)),
        ("pr_auc", "all", average_precision(truth_de.sig, scores)),
    ]
    return [row for row in rows if not np.isnan(row[2])]
