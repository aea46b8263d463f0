"""Per-condition scatter against a reference method (PerturbDiff arXiv:2602.19685 Fig. 4): for
each test condition of a split, a method's value of one metric (y) against the reference
method's value (x); points above the diagonal are conditions where the method beats the
reference (for a higher-is-better metric). The reference is a configured method or, by default,
the dataset's best baseline on that metric (best mean over its splits). Every other method and
the oracle are drawn; the ceiling is not (its per-condition values are half-depth)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scpert.layout import CEILING
from scpert.plots.common import colours, empty, panel_grid
from scpert.tables import Column, method_order

METRIC = Column("celleval", "pearson_delta", "all", "PDCorr (Pearson of Δ, all genes)", True)
COLUMNS = ["dataset", "split", "condition", "method", "reference", "metric", "x", "y"]


def pick_reference(long: pd.DataFrame, baselines, column: Column = METRIC) -> str:
    """The baseline with the best mean of ``column`` over the rows of ``long``."""
    rows = long[(long["metric"] == column.metric) & (long["method"].isin(list(baselines)))]
    rows = rows[(rows["protocol"] == column.protocol) & (rows["deg_set"] == column.deg_set)]
    if rows.empty:
        from scpert.errors import InputError

        raise InputError(
            f"figures.scatter_reference: not set and no baseline has {column.protocol}/"
            f"{column.metric} values to choose the reference from; name a configured method"
        )
    means = rows.groupby("method")["value"].mean()
    return str(means.idxmax() if column.higher_better else means.idxmin())


def data(
    long: pd.DataFrame,
    dataset: str,
    baselines,
    reference: str | None = None,
    column: Column = METRIC,
) -> pd.DataFrame:
    long = long[(long["dataset"] == dataset) & (long["method"] != CEILING)]
    long = long[
        (long["protocol"] == column.protocol)
        & (long["metric"] == column.metric)
        & (long["deg_set"] == column.deg_set)
        & ~long["condition"].astype(str).str.endswith("|*")
    ]
    if long.empty:
        return pd.DataFrame(columns=COLUMNS)
    reference = reference or pick_reference(long, baselines, column)
    x = long[long["method"] == reference].set_index(["split", "condition"])["value"]
    others = long[long["method"] != reference]
    out = others.assign(
        reference=reference,
        x=x.reindex(pd.MultiIndex.from_frame(others[["split", "condition"]])).to_numpy(),
        y=others["value"].to_numpy(),
    ).dropna(subset=["x", "y"])
    return out[COLUMNS].sort_values(["split", "method", "condition"], kind="stable")


def draw(table: pd.DataFrame, title: str = "", label: str = METRIC.label):
    if table.empty:
        return empty("scatter: no per-condition values of the metric in this run")
    splits = sorted(table["split"].unique())
    methods = method_order(table["method"].unique())
    colour = colours(methods)
    reference = table["reference"].iloc[0]
    fig, axes = panel_grid(len(splits), ncol=3, size=(3.8, 3.6))
    lo = float(np.nanmin(table[["x", "y"]].to_numpy()))
    hi = float(np.nanmax(table[["x", "y"]].to_numpy()))
    pad = 0.03 * (hi - lo or 1.0)
    for ax, split in zip(axes, splits):
        block = table[table["split"] == split]
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=0.8, ls="--")
        for method in methods:
            rows = block[block["method"] == method]
            marker = "^" if method == "oracle" else "o"
            ax.scatter(
                rows["x"],
                rows["y"],
                s=10,
                alpha=0.7,
                color=colour[method],
                marker=marker,
                label=method,
                rasterized=True,
            )
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel(f"{reference}", fontsize=8)
        ax.set_ylabel("method", fontsize=8)
        ax.set_title(split, fontsize=9)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, names, loc="outside right center", fontsize=8, frameon=False, markerscale=1.5
    )
    fig.suptitle(title or f"{label}: per test condition, each method vs {reference}", fontsize=10)
    return fig
