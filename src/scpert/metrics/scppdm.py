"""The scPPDM protocol (scPPDM App. C, Tables 1-4): condition-level logFC and delta agreement.

Per condition ``c``, on pseudobulk means of log-normalised expression: ``mu_post`` (truth),
``mu_hat_post`` (prediction), ``mu_pre`` (the true controls of the cell line; App. C.8: the control
in every ratio and difference is always the ground-truth control).

- ``LFC = log2((mu_post + eps) / (mu_pre + eps))`` and the same with ``mu_hat_post``
  (App. C.2-C.3), ``eps = PSEUDOCOUNT`` fixed across methods and splits.
- DEG set ``topK`` = the top-K genes by ``|LFC|`` of the ground truth (App. C.2), ties in gene
  order; ``K = 200`` for DEG-restricted correlations and EV. The prediction's top-K for
  ``deg_accuracy`` breaks ties in a seeded random order (:meth:`ConditionContext.tie_rng`), so a
  no-change prediction (every LFC 0) scores ``K / G``, chance.
- ``logfc_pearson``, ``logfc_spearman`` (``all``, ``top200``): correlation of true and predicted
  LFC (App. C.3).
- ``delta_pearson``, ``delta_spearman`` (``all``, ``top200``): correlation of
  ``mu_post - mu_pre`` and ``mu_hat_post - mu_pre`` (App. C.4).
- ``deg_accuracy`` (``top50``, ``top100``, ``top200``, ``top1000``): ``|S_K(true) & S_K(pred)| / K``
  with both sets the top-K by ``|LFC|`` (App. C.6); only for ``K`` below the number of genes (at or
  above it the sets are all genes and the accuracy is 1 by construction).
- ``ev`` (``all``, ``top200``): ``1 - Var(y - y_hat) / Var(y)`` with ``y = mu_post`` (App. C.5).
  The tables report its mean (``E[EV]``) and median (``EV_median``) across conditions; both are
  computed from these per-condition rows by :mod:`scpert.tables`.

Choices where App. C is not specific:
- ``eps = 0.1`` on means of log1p-normalised values (PerturBench's logFC pseudo-count); App. C
  only asks for one small fixed value.
- Condition key = ``cell_line|drug|dose``; the control is the cell line's control cells, not
  plate-matched controls (plates are pooled by preprocessing).
- Spearman with average ranks for ties; a correlation or EV that is undefined (constant vector)
  gets no row.
"""

from __future__ import annotations

import numpy as np

from scpert.metrics import de
from scpert.metrics.correlation import pearson, spearman
from scpert.metrics.evaluate import ConditionContext, MetricRow, register_protocol

PSEUDOCOUNT = 0.1
DEG_K = 200
ACCURACY_K = (50, 100, 200, 1000)


def explained_variance(truth: np.ndarray, pred: np.ndarray) -> float:
    """``1 - Var(y - y_hat) / Var(y)``; NaN when ``y`` is constant."""
    var = float(np.var(truth))
    return 1.0 - float(np.var(truth - pred)) / var if var > 0 else float("nan")


@register_protocol("scppdm")
def scppdm_metrics(ctx: ConditionContext) -> list[MetricRow]:
    truth, pred, ctrl = ctx.truth_mean, ctx.pred_mean, ctx.control_mean
    lfc_truth = de.log2fc_pseudocount(truth, ctrl, PSEUDOCOUNT)
    lfc_pred = de.log2fc_pseudocount(pred, ctrl, PSEUDOCOUNT)
    delta_truth, delta_pred = truth - ctrl, pred - ctrl
    ranking_truth = de.top_by_abs(lfc_truth)
    ranking_pred = de.top_by_abs(lfc_pred, rng=ctx.tie_rng(1))
    rows: list[MetricRow] = []
    for label, genes in (("all", slice(None)), (f"top{DEG_K}", ranking_truth[:DEG_K])):
        rows += [
            ("logfc_pearson", label, pearson(lfc_truth[genes], lfc_pred[genes])),
            ("logfc_spearman", label, spearman(lfc_truth[genes], lfc_pred[genes])),
            ("delta_pearson", label, pearson(delta_truth[genes], delta_pred[genes])),
            ("delta_spearman", label, spearman(delta_truth[genes], delta_pred[genes])),
            ("ev", label, explained_variance(truth[genes], pred[genes])),
        ]
    for k in ACCURACY_K:
        if k < truth.size:
            shared = np.intersect1d(ranking_truth[:k], ranking_pred[:k]).size
            rows.append(("deg_accuracy", f"top{k}", shared / k))
    return [row for row in rows if not np.isnan(row[2])]
