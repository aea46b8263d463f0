"""Curves of an experiment table (:mod:`scpert.experiments.tables`): one panel per (metric, axis),
the metric's mean over test conditions ± standard error against the level, one line per method.
Shared by the robustness (StateXDiff arXiv:2605.16104 Fig. 8) and diversity (Fig. 9) figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scpert.plots.common import colours, empty, legend, panel_grid
from scpert.tables import Column, method_order


def curve_data(table: pd.DataFrame, metrics: list[Column], axes: list[str]) -> pd.DataFrame:
    """The rows of ``table`` that the curves show, with the metric's ``label``; ordered by axis,
    metric, method and level."""
    frames = []
    for column in metrics:
        rows = table[
            (table["protocol"] == column.protocol)
            & (table["metric"] == column.metric)
            & (table["deg_set"].astype(str) == column.deg_set)
            & table["axis"].isin(axes)
        ]
        frames.append(rows.assign(label=column.label))
    if not frames:
        return table.iloc[:0].assign(label=pd.Series(dtype=str))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["axis", "label", "method", "level"], kind="stable").reset_index(
        drop=True
    )


def draw_curves(
    data: pd.DataFrame,
    metrics: list[Column],
    axes: list[str],
    axis_labels: dict[str, str],
    title: str,
    log_x: bool = False,
):
    """Rows of panels: one row per metric, one column per axis."""
    if data.empty:
        return empty(f"{title}: no values in this run")
    present_axes = [a for a in axes if (data["axis"] == a).any()]
    present = [c for c in metrics if (data["label"] == c.label).any()]
    methods = method_order(data["method"].unique())
    colour = colours(methods)
    fig, panels = panel_grid(
        len(present) * len(present_axes), ncol=len(present_axes), size=(3.8, 2.9)
    )
    for i, column in enumerate(present):
        for j, axis in enumerate(present_axes):
            ax = panels[i * len(present_axes) + j]
            block = data[(data["label"] == column.label) & (data["axis"] == axis)]
            for method in methods:
                rows = block[block["method"] == method].sort_values("level")
                if rows.empty:
                    continue
                ax.errorbar(
                    rows["level"],
                    rows["mean"],
                    yerr=rows["sem"].fillna(0.0),
                    color=colour[method],
                    marker="o",
                    ms=3.5,
                    lw=1.2,
                    capsize=2,
                    label=method,
                )
            if log_x:
                ax.set_xscale("log", base=2)
                levels = np.sort(block["level"].unique())
                ax.set_xticks(levels, [f"{v:g}" for v in levels])
            ax.set_xlabel(axis_labels.get(axis, axis))
            arrow = "↑" if column.higher_better else "↓"
            ax.set_ylabel(f"{column.label} {arrow}")
            ax.grid(alpha=0.3, lw=0.5)
    legend(fig, panels)
    fig.suptitle(title, fontsize=10)
    return fig
