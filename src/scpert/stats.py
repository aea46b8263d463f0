"""Paired statistics the papers' tables do not give (rule ``comparisons``; issue 17 item 4).

Per (dataset, split, protocol, metric, deg_set), each method is compared with the split's best
baseline on that metric over the split's test conditions, paired by condition:

- best baseline: the baseline (config methods whose spec lives in ``scpert.methods.baselines``)
  with the best mean over the conditions, "best" by the metric's direction
  (:func:`scpert.tables.metric_directions`; metrics without a direction, such as DE-gene counts,
  are not compared);
- ``mean_diff``: mean over the conditions both scored of ``method - baseline`` (raw units;
  ``higher_better`` says which sign is an improvement);
- ``ci_low, ci_high``: percentile bootstrap 95 % interval of ``mean_diff``, ``n_boot``
  resamples of the conditions with replacement (``numpy.random.default_rng(seed)``);
- ``wilcoxon_p``: two-sided Wilcoxon signed-rank test of the differences
  (``scipy.stats.wilcoxon``, zero differences dropped; 1.0 when every difference is 0): the
  exact null distribution when the nonzero differences have no ties and number <= 50, else the
  normal approximation with the tie correction (scipy's default would run a permutation test
  for small samples with ties, ~0.5 CPU s per comparison: minutes per run);
- ``p_bh``: Benjamini-Hochberg over the metrics of one (dataset, split, method)
  (:func:`scpert.metrics.de.bh_fdr`);
- ``verdict``: ``better`` / ``worse`` when ``p_bh < alpha`` (by the sign of ``mean_diff`` and
  the direction), else ``n.s.``.

Values that summarise all test conditions of a cell line (condition ``"<line>|*"``) are not
paired units and are left out, as are the reference rows (oracle, ceiling). A comparison needs
at least 2 shared conditions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scpert.layout import REFERENCE_ROWS

COLUMNS = [
    "dataset",
    "split",
    "method",
    "baseline",
    "protocol",
    "metric",
    "deg_set",
    "higher_better",
    "n",
    "mean_method",
    "mean_baseline",
    "mean_diff",
    "ci_low",
    "ci_high",
    "wilcoxon_p",
    "p_bh",
    "verdict",
]
GROUP = ["dataset", "split", "protocol", "metric", "deg_set"]


def bootstrap_ci(
    diffs: np.ndarray, rng: np.random.Generator, n_boot: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs``."""
    idx = rng.integers(0, diffs.size, (n_boot, diffs.size))
    means = diffs[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def wilcoxon_p(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (zeros dropped; 1 if all zero)."""
    from scipy.stats import wilcoxon

    nonzero = diffs[diffs != 0]
    if nonzero.size == 0:
        return 1.0
    ties = np.unique(np.abs(nonzero)).size < nonzero.size
    method = "exact" if nonzero.size <= 50 and not ties else "asymptotic"
    return float(
        wilcoxon(diffs, zero_method="wilcox", alternative="two-sided", method=method).pvalue
    )


def compare_to_best_baseline(
    long: pd.DataFrame,
    baselines: list[str],
    directions: dict[tuple[str, str], bool],
    *,
    seed: int = 0,
    n_boot: int = 2000,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The comparison table (:data:`COLUMNS`) of every non-baseline method of ``long``."""
    from scpert.metrics.de import bh_fdr

    long = long[~long["method"].isin(REFERENCE_ROWS)]
    long = long[~long["condition"].astype(str).str.endswith("|*")]
    rng = np.random.default_rng(seed)
    rows = []
    for key, block in long.groupby(GROUP, sort=True):
        protocol, metric = key[2], key[3]
        if (protocol, metric) not in directions:
            continue
        higher = directions[protocol, metric]
        wide = block.pivot_table(
            index="condition", columns="method", values="value", aggfunc="first"
        )
        present = [b for b in baselines if b in wide.columns and wide[b].notna().any()]
        if not present:
            continue
        means = wide[present].mean()
        best = means.idxmax() if higher else means.idxmin()
        for method in sorted(set(wide.columns) - set(baselines)):
            pair = wide[[method, best]].dropna()
            if len(pair) < 2:
                continue
            diffs = (pair[method] - pair[best]).to_numpy(dtype=np.float64)
            low, high = bootstrap_ci(diffs, rng, n_boot)
            rows.append(
                [
                    *key[:2],
                    method,
                    best,
                    *key[2:],
                    higher,
                    len(pair),
                    float(pair[method].mean()),
                    float(pair[best].mean()),
                    float(diffs.mean()),
                    low,
                    high,
                    wilcoxon_p(diffs),
                ]
            )
    table = pd.DataFrame(rows, columns=COLUMNS[:-2])
    table["p_bh"] = np.nan
    for _, index in table.groupby(["dataset", "split", "method"]).groups.items():
        table.loc[index, "p_bh"] = bh_fdr(table.loc[index, "wilcoxon_p"].to_numpy())
    gain = np.where(table["higher_better"], table["mean_diff"], -table["mean_diff"])
    table["verdict"] = np.where(
        table["p_bh"] < alpha, np.where(gain > 0, "better", "worse"), "n.s."
    )
    return table[COLUMNS].reset_index(drop=True)
