"""The tidy table of one experiment: per variant (a corruption level, a diversity level), method
and metric, the mean over the split's test conditions (docs/experiments.md)."""

from __future__ import annotations

import pandas as pd

#: columns of an experiment table
COLUMNS = [
    "experiment",
    "axis",
    "level",
    "dataset",
    "split",
    "method",
    "protocol",
    "metric",
    "deg_set",
    "mean",
    "sem",
    "n",
]


def experiment_table(experiment: str, variants: list[dict], metrics: list[pd.DataFrame]):
    """One row per (variant, method, protocol, metric, deg_set): mean, standard error and number
    of test conditions. variants: per metrics table its ``axis`` and ``level``; metrics: the
    per-condition metric tables (columns dataset, split, method, condition, protocol, metric,
    deg_set, value) of those variants, in the same order."""
    if len(variants) != len(metrics):
        raise ValueError(f"{len(variants)} variants but {len(metrics)} metric tables")
    frames = []
    keys = ["dataset", "split", "method", "protocol", "metric", "deg_set"]
    for variant, table in zip(variants, metrics):
        grouped = table.groupby(keys, sort=True)["value"]
        stats = grouped.agg(mean="mean", sem="sem", n="count").reset_index()
        stats.insert(0, "level", float(variant["level"]))
        stats.insert(0, "axis", str(variant["axis"]))
        stats.insert(0, "experiment", experiment)
        frames.append(stats)
    out = pd.concat(frames, ignore_index=True)[COLUMNS]
    return out.sort_values(
        ["axis", "level", "method", "protocol", "metric", "deg_set"]
    ).reset_index(drop=True)
