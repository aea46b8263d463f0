"""Radar of every method per split (PerturbDiff arXiv:2602.19685 Fig. 3): one axis per key
metric (:data:`scpert.plots.common.KEY_METRICS`), the method's mean over the split's test
conditions min-max scaled among the split's rows (methods and reference rows) so that 1 is the
best and 0 the worst of them (lower-is-better metrics flipped). Reference rows are drawn in
grey: the oracle as a dashed polygon, the ceiling as crosses on the axes where it is defined."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scpert.plots.common import KEY_METRICS, REFERENCE_STYLE, colours, empty, panel_grid, select
from scpert.tables import is_reference, method_order

COLUMNS = ["dataset", "split", "method", "protocol", "metric", "deg_set", "label", "mean", "score"]


def data(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One row per (split, method, key metric) of ``dataset``: the summary's mean and its score."""
    summary = summary[summary["dataset"] == dataset]
    frames = []
    for column in KEY_METRICS:
        rows = select(summary, column).dropna(subset=["mean"])
        if rows.empty:
            continue
        rows = rows.assign(label=column.label)
        by_split = rows.groupby("split")["mean"]
        low, high = by_split.transform("min"), by_split.transform("max")
        span = (high - low).where(high > low, np.nan)
        score = (rows["mean"] - low) / span
        rows["score"] = (score if column.higher_better else 1 - score).fillna(1.0)
        frames.append(rows)
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    return out[COLUMNS].sort_values(["split", "method", "protocol", "metric"], kind="stable")


def draw(table: pd.DataFrame, title: str = ""):
    if table.empty:
        return empty("radar: no key metric in this run")
    splits = sorted(table["split"].unique())
    present = set(table["label"])
    labels = [c.label for c in KEY_METRICS if c.label in present]
    angles = np.linspace(0, 2 * np.pi, len(labels), endpoint=False)
    methods = method_order(table["method"].unique())
    colour = colours(methods)
    fig, axes = panel_grid(len(splits), ncol=3, size=(4.2, 4.2), polar=True)
    for ax, split in zip(axes, splits):
        block = table[table["split"] == split]
        for method in methods:
            values = block[block["method"] == method].set_index("label")["score"].reindex(labels)
            if values.isna().all():
                continue
            closed_angles = np.append(angles, angles[0])
            closed = np.append(values.to_numpy(), values.iloc[0])
            if method == "ceiling":
                ax.plot(angles, values.to_numpy(), "x", color=colour[method], ms=7, label=method)
                continue
            style = REFERENCE_STYLE[method][1] if is_reference(method) else "-"
            ax.plot(closed_angles, closed, style, color=colour[method], lw=1.4, label=method)
        ax.set_xticks(angles, labels, fontsize=6.5)
        ax.tick_params(axis="x", pad=1)
        ax.set_ylim(0, 1.05)
        ax.set_yticks([0.25, 0.5, 0.75, 1.0], ["", "0.5", "", "1"], fontsize=6)
        ax.set_title(split, fontsize=10, pad=14)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle(title or "Key metrics per split (1 = best row of the split)", fontsize=11)
    return fig
