"""The Systema protocol (Viñas Torné et al. 2025, mlbio-epfl/systema) as scDFM reports it
(scDFM Tables 1-3, App. A.4.4).

Per condition, on pseudobulk means ``mu`` (truth) and ``mu_hat`` (prediction) of log-normalised
expression, with the reference ``ref`` = mean of the per-condition centroids of the *training*
perturbed cells (controls excluded; Systema ``average_of_perturbation_centroids``), computed by
:func:`scpert.steps.evaluate.evaluate` and passed as ``train_reference``:

- ``l2`` (``all``): ``|mu_hat - mu|_2`` (scDFM eq. 15; the table reports its mean over conditions).
- ``pearson_delta_hat`` (``all``): Pearson r of ``mu_hat - ref`` and ``mu - ref`` (Systema
  ``pearson_delta_reference_metrics``, ``corr_all_allpert``).
- ``pearson_delta_hat`` (``top20``): the same on the top-20 DE genes (``corr_20de_allpert``). Their
  released function reads an undefined ``top20_de_idxs``; we use GEARS' ``top_non_dropout_de_20``,
  the set Systema's data carry: genes by ``|t-test score|`` of truth vs control (scanpy
  ``rank_genes_groups(method="t-test")``, the shared ranking of
  :attr:`~scpert.metrics.evaluate.ConditionContext.truth_ranking`), dropping "dropout" genes
  (mean 0 in the condition but not in the control), first 20 kept.

Across the test conditions of a cell line (one row per condition):
- ``centroid_accuracy`` (``all``): ``#{j != p : d(mu_hat_p, mu_j) > d(mu_hat_p, mu_p)} / (N - 1)``,
  Euclidean ``d`` (Systema centroid accuracy; distances to ``ref``-centred profiles are the same).
- ``discrimination_score`` (``all``): scDFM eqs. 17-19, ``1 - (rank_p - 1) / (N - 1)`` with L1
  distances of ``mu_hat_p`` to every ``mu_t`` and ``rank_p - 1 = #{t != p : d_pt < d_pp}``
  (ties count in favour of the true condition; eq. 18's argsort leaves them open). scDFM's
  perturbed-gene exclusion does not apply to drugs.
Both need at least two conditions in the cell line.

Choices: conditions are compared only within their cell line (Systema's datasets have one); the
reference pools the training conditions of every cell line, since held-out cell lines
(``cell_ood``) have no training perturbations of their own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist

from scpert.metrics.correlation import pearson
from scpert.metrics.evaluate import ConditionContext, ConditionRow, MetricRow, register_protocol

N_TOP_DE = 20


@dataclass(frozen=True)
class Summary:
    cell_line: str
    truth_mean: np.ndarray
    pred_mean: np.ndarray


def top_non_dropout_degs(ctx: ConditionContext, n: int = N_TOP_DE) -> np.ndarray:
    """GEARS ``top_non_dropout_de_20``: top-``n`` genes by |t-score| that are not dropouts."""
    dropout = (ctx.truth_mean == 0) & (ctx.control_mean != 0)
    ranking = ctx.truth_ranking
    return ranking[~dropout[ranking]][:n]


def _summarize(ctx: ConditionContext) -> Summary:
    return Summary(ctx.cell_line, ctx.truth_mean, ctx.pred_mean)


def centroid_accuracy(pred_means: np.ndarray, truth_means: np.ndarray) -> np.ndarray:
    """Per row ``p``: fraction of other conditions whose truth is farther (Euclidean) than its own."""
    dist = cdist(pred_means, truth_means, "euclidean")
    own = np.diag(dist)[:, None]
    return ((dist > own).sum(axis=1)) / (dist.shape[0] - 1)


def discrimination_score(pred_means: np.ndarray, truth_means: np.ndarray) -> np.ndarray:
    """scDFM eq. 19 with L1 distances; ``rank_p - 1`` counts other conditions strictly closer."""
    dist = cdist(pred_means, truth_means, "cityblock")
    own = np.diag(dist)[:, None]
    n = dist.shape[0]
    return 1.0 - (dist < own).sum(axis=1) / (n - 1)


def _across(summaries: dict[str, Summary], shared: dict) -> list[ConditionRow]:
    by_line: dict[str, list[str]] = defaultdict(list)
    for condition, summary in summaries.items():
        by_line[summary.cell_line].append(condition)
    rows: list[ConditionRow] = []
    for _, conditions in sorted(by_line.items()):
        if len(conditions) < 2:
            continue
        conditions = sorted(conditions)
        pred = np.vstack([summaries[c].pred_mean for c in conditions])
        truth = np.vstack([summaries[c].truth_mean for c in conditions])
        for metric, values in (
            ("centroid_accuracy", centroid_accuracy(pred, truth)),
            ("discrimination_score", discrimination_score(pred, truth)),
        ):
            rows += [(c, metric, "all", float(v)) for c, v in zip(conditions, values)]
    return rows


@register_protocol("systema", summarize=_summarize, across=_across)
def systema_metrics(ctx: ConditionContext) -> list[MetricRow]:
    if ctx.train_reference is None:
        raise ValueError(
            "the systema protocol needs train_reference (mean of the training "
            "perturbation centroids); pass it to evaluate_predictions"
        )
    ref = ctx.train_reference
    truth, pred = ctx.truth_mean, ctx.pred_mean
    top = top_non_dropout_degs(ctx)
    rows: list[MetricRow] = [
        ("l2", "all", float(np.linalg.norm(pred - truth))),
        ("pearson_delta_hat", "all", pearson(pred - ref, truth - ref)),
        (
            "pearson_delta_hat",
            f"top{N_TOP_DE}",
            pearson(pred[top] - ref[top], truth[top] - ref[top]),
        ),
    ]
    return [row for row in rows if not np.isnan(row[2])]
