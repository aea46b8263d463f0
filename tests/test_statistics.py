"""Paired comparisons against the best baseline (scpert.stats), on hand-made tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scpert import stats, tables
from scpert.tables import LONG_COLUMNS

DIRECTIONS = {("p", "corr"): True, ("p", "err"): False}


def long_table(values: dict[tuple[str, str], list[float]], split="s") -> pd.DataFrame:
    """(method, metric) -> per-condition values (conditions c0, c1, ...)."""
    rows = []
    for (method, metric), vals in values.items():
        for k, v in enumerate(vals):
            rows.append(("d", split, method, f"L|c{k}|1", "p", metric, "all", v))
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def test_mean_difference_wilcoxon_and_interval_by_hand():
    long = long_table(
        {
            ("base_a", "corr"): [0.1, 0.2, 0.3, 0.4, 0.5],
            ("base_b", "corr"): [0.0, 0.0, 0.0, 0.0, 0.1],
            ("m", "corr"): [0.2, 0.4, 0.6, 0.8, 1.0],
        }
    )
    table = stats.compare_to_best_baseline(long, ["base_a", "base_b"], DIRECTIONS, n_boot=4000)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["baseline"] == "base_a"  # the higher mean of a higher-is-better metric
    assert row["n"] == 5
    assert row["mean_diff"] == pytest.approx(0.3)  # mean of 0.1, 0.2, ..., 0.5
    assert row["mean_method"] == pytest.approx(0.6) and row["mean_baseline"] == pytest.approx(0.3)
    # five positive differences: exact two-sided signed-rank p = 2 / 2^5
    assert row["wilcoxon_p"] == pytest.approx(2 / 32)
    assert row["p_bh"] == pytest.approx(2 / 32)  # one metric: BH is the identity
    assert 0.1 <= row["ci_low"] < 0.3 < row["ci_high"] <= 0.5
    assert row["verdict"] == "n.s."


def test_best_baseline_by_direction_and_bh_over_metrics():
    n = 12
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, n)
    long = long_table(
        {
            ("base_a", "err"): list(1.0 + noise),
            ("base_b", "err"): list(0.5 + noise),  # the lower error: best for "err"
            ("m", "err"): list(0.2 + noise + np.linspace(0, 0.01, n)),
            ("base_a", "corr"): [0.5] * n,
            ("base_b", "corr"): [0.4] * n,
            ("m", "corr"): list(0.5 + np.linspace(-0.05, 0.06, n)),
        }
    )
    table = stats.compare_to_best_baseline(long, ["base_a", "base_b"], DIRECTIONS).set_index(
        "metric"
    )
    assert table.at["err", "baseline"] == "base_b" and table.at["corr", "baseline"] == "base_a"
    assert table.at["err", "mean_diff"] < 0
    assert table.at["err", "verdict"] == "better"  # lower error, every condition
    p = table["wilcoxon_p"].sort_values()
    bh = np.minimum(p * 2 / np.array([1, 2]), 1.0)
    bh = np.minimum.accumulate(bh[::-1])[::-1]
    assert table.loc[p.index, "p_bh"].to_numpy() == pytest.approx(bh)
    assert table.at["corr", "verdict"] == "n.s."


def test_reference_rows_cell_line_values_and_unknown_metrics_are_left_out():
    long = long_table(
        {
            ("base", "corr"): [0.1, 0.2, 0.3],
            ("oracle", "corr"): [0.9, 0.9, 0.9],
            ("ceiling", "corr"): [0.8, 0.8, 0.8],
            ("m", "corr"): [0.2, 0.2, 0.2],
            ("m", "count"): [3, 4, 5],
            ("base", "count"): [1, 1, 1],
        }
    )
    across = pd.DataFrame(
        [("d", "s", m, "L|*", "p", "corr", "all", v) for m, v in (("base", 0.0), ("m", 9.0))],
        columns=LONG_COLUMNS,
    )
    table = stats.compare_to_best_baseline(pd.concat([long, across]), ["base"], DIRECTIONS)
    assert table["method"].tolist() == ["m"] and table["metric"].tolist() == ["corr"]
    assert table.iloc[0]["n"] == 3 and table.iloc[0]["mean_diff"] == pytest.approx(0.0)


def test_all_zero_differences_have_p_one_and_a_point_interval():
    long = long_table({("base", "corr"): [0.1, 0.2, 0.3], ("m", "corr"): [0.1, 0.2, 0.3]})
    row = stats.compare_to_best_baseline(long, ["base"], DIRECTIONS).iloc[0]
    assert row["wilcoxon_p"] == 1.0 and row["ci_low"] == row["ci_high"] == 0.0


def test_every_table_metric_has_a_direction():
    directions = tables.metric_directions()
    for spec in (tables.PERTURBDIFF_TABLE4, tables.SCDFM_COLUMNS, tables.SCPPDM_COMPLETE):
        for column in spec:
            assert directions[column.protocol, column.metric] == column.higher_better
    assert ("celleval", "de_nsig_counts_real") not in directions  # a count has no direction


def test_wilcoxon_with_ties_uses_the_normal_approximation():
    """Differences 1, 1, 2, -1 (ties): W+ = 8, W- = 2 of ranks 2, 2, 4, 2; the tie-corrected
    normal approximation: z = (W+ - n(n+1)/4) / sqrt(n(n+1)(2n+1)/24 - sum(t^3 - t)/48)."""
    diffs = np.array([1.0, 1.0, 2.0, -1.0, 0.0])
    n, w_plus = 4, 2 + 2 + 4
    var = n * (n + 1) * (2 * n + 1) / 24 - (3**3 - 3) / 48
    z = (w_plus - n * (n + 1) / 4) / np.sqrt(var)
    from scipy.stats import norm

    assert stats.wilcoxon_p(diffs) == pytest.approx(2 * norm.sf(abs(z)))
