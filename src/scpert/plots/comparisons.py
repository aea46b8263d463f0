"""Paired comparison of each method with the best baseline (:mod:`scpert.stats`): per key
metric a forest plot, one row per (dataset, split, method), the mean improvement over the
split's best baseline (``mean_diff``, sign flipped for lower-is-better metrics so that right is
better) with its bootstrap 95 % interval; filled markers: BH-adjusted Wilcoxon p < 0.05."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from scpert.plots.common import KEY_METRICS, colours, empty, legend, panel_grid


def data(comparisons: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for column in KEY_METRICS:
        rows = comparisons[
            (comparisons["protocol"] == column.protocol)
            & (comparisons["metric"] == column.metric)
            & (comparisons["deg_set"] == column.deg_set)
        ]
        if rows.empty:
            continue
        sign = 1.0 if column.higher_better else -1.0
        lo, hi = sign * rows["ci_low"], sign * rows["ci_high"]
        frames.append(
            rows.assign(
                label=column.label,
                improvement=sign * rows["mean_diff"],
                improvement_low=np.minimum(lo, hi),
                improvement_high=np.maximum(lo, hi),
            )
        )
    if not frames:
        return comparisons.iloc[:0]
    return pd.concat(frames, ignore_index=True)


def draw(table: pd.DataFrame, title: str = ""):
    if table.empty:
        return empty("comparisons: no method besides the baselines in this run")
    labels = list(dict.fromkeys(table["label"]))
    keys = (
        table[["dataset", "split", "method"]]
        .drop_duplicates()
        .sort_values(["dataset", "split", "method"])
    )
    names = [f"{d}/{s}: {m}" for d, s, m in keys.itertuples(index=False)]
    colour = colours(table["method"].unique())
    ncol = 4
    fig, axes = panel_grid(len(labels), ncol=ncol, size=(3.4, 0.22 * len(names) + 1.2))
    for i, (ax, label) in enumerate(zip(axes, labels)):
        block = table[table["label"] == label].set_index(["dataset", "split", "method"])
        for y, key in enumerate(keys.itertuples(index=False)):
            if tuple(key) not in block.index:
                continue
            row = block.loc[tuple(key)]
            significant = row["p_bh"] < 0.05
            ax.errorbar(
                row["improvement"],
                y,
                xerr=[
                    [row["improvement"] - row["improvement_low"]],
                    [row["improvement_high"] - row["improvement"]],
                ],
                fmt="o",
                ms=4,
                color=colour[key.method],
                mfc=colour[key.method] if significant else "white",
                lw=0.9,
                label=key.method,
            )
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set_yticks(range(len(names)), names if i % ncol == 0 else [""] * len(names), fontsize=6)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.invert_yaxis()
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("improvement over best baseline", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    legend(fig, axes)
    fig.suptitle(
        title
        or "Each method vs the split's best baseline: mean paired difference, bootstrap "
        "95% CI (filled: BH-adjusted Wilcoxon p < 0.05)",
        fontsize=9,
    )
    return fig
