"""Correlation and ranking helpers shared by the metric protocols.

- :func:`rankdata`: average ranks (1-based, ties share their mean rank), the values of
  ``scipy.stats.rankdata(x)`` (NaN anywhere: all NaN), without importing scipy.stats.
- :func:`pearson`: Pearson r in float64, ``NaN`` when either vector is constant (scipy ``pearsonr``
  warns and returns ``NaN`` there).
- :func:`spearman`: Pearson r of average ranks (ties share their mean rank), as
  ``scipy.stats.spearmanr`` and polars ``corr(method="spearman")``; ``+-inf`` are ranked like any
  other value; ``NaN`` when fewer than two values or a constant vector.
- :func:`auroc`: area under the ROC curve with ties credited one half, equal to
  ``sklearn.metrics.auc(*roc_curve(labels, scores)[:2])``.
- :func:`average_precision`: ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds in
  descending order, as ``sklearn.metrics.average_precision_score``.
Both AUC functions return ``NaN`` unless both classes are present (cell-eval's rule).
"""

from __future__ import annotations

import numpy as np


def rankdata(x) -> np.ndarray:
    """Average ranks of the values of ``x`` (flattened), as ``scipy.stats.rankdata``."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if np.isnan(x).any():
        return np.full(x.shape, np.nan)
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    new_value = np.empty(x.size, dtype=bool)
    new_value[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new_value[1:])
    starts = np.flatnonzero(new_value)
    counts = np.diff(starts, append=x.size)
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(starts + 1 + (counts - 1) / 2.0, counts)
    return ranks


def pearson(a, b) -> float:
    """Pearson r; NaN when either vector is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def spearman(a, b) -> float:
    """Spearman rho with average ranks for ties; NaN for < 2 values or a constant vector."""
    a = np.asarray(a, dtype=np.float64)
    if a.size < 2:
        return float("nan")
    return pearson(rankdata(a), rankdata(np.asarray(b, dtype=np.float64)))


def _both_classes(labels: np.ndarray) -> bool:
    positives = int(labels.sum())
    return 0 < positives < labels.size


def auroc(labels, scores) -> float:
    """ROC AUC via the Mann-Whitney identity: (R_pos - P(P+1)/2) / (P N) with average ranks."""
    labels = np.asarray(labels, dtype=bool)
    if not _both_classes(labels):
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(labels, scores) -> float:
    """Average precision over distinct thresholds (sklearn ``average_precision_score``)."""
    labels = np.asarray(labels, dtype=bool)
    if not _both_classes(labels):
        return float("nan")
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, hits = scores[order], labels[order]
    last_of_threshold = np.flatnonzero(np.append(np.diff(sorted_scores) != 0, True))
    true_pos = np.cumsum(hits)[last_of_threshold]
    precision = true_pos / (last_of_threshold + 1.0)
    recall_gain = np.diff(np.append(0.0, true_pos / true_pos[-1]))
    return float((recall_gain * precision).sum())
