"""What every figure family shares: saving PDF + PNG, method colours and order, the metrics a
figure shows by default."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scpert import runtime  # noqa: E402
from scpert.tables import Column, is_reference, method_order  # noqa: E402

#: the metrics of the radar and bar figures: one agreement metric per protocol family, the
#: cell-level distance and the DE recovery (all with a ceiling except E-distance and MSE)
KEY_METRICS = [
    Column("celleval", "pearson_delta", "all", "PDCorr", True),
    Column("scperturbench", "pcc_delta", "top100", "PCCΔ top-100", True),
    Column("scperturbench", "common_degs", "top100", "Common-DEGs", True),
    Column("celleval", "overlap_at_N", "sig", "DEOver", True),
    Column("celleval", "de_direction_match", "sig", "DirAgr", True),
    Column("scppdm", "logfc_pearson", "top200", "logFC-Pearson(DEG)", True),
    Column("systema", "pearson_delta_hat", "all", "Pearson Δ̂", True),
    Column("celleval", "discrimination_score_l1", "all", "PDS L1", True),
    Column("scperturbench", "e_distance", "top100", "E-dist", False),
    Column("scperturbench", "mse", "top100", "MSE", False),
]

REFERENCE_STYLE = {"oracle": ("0.15", "--"), "ceiling": ("0.55", ":")}


def colours(methods) -> dict[str, str]:
    """A stable colour per method (tab10, then tab10's light twins, in method order); reference
    rows in grey."""
    palette = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("tab20").colors[1::2])
    ordered = [m for m in method_order(methods) if not is_reference(m)]
    out = {m: palette[i % len(palette)] for i, m in enumerate(ordered)}
    out.update({m: REFERENCE_STYLE[m][0] for m in methods if is_reference(m)})
    return out


def select(stats, column: Column):
    return stats[
        (stats["protocol"] == column.protocol)
        & (stats["metric"] == column.metric)
        & (stats["deg_set"] == column.deg_set)
    ]


def save(fig, pdf_path, png_path, data=None, tsv_path=None) -> None:
    """Write the figure as PDF and PNG (atomically; no creation date, so reruns are identical),
    and its data table as TSV."""
    runtime.write_atomic(
        pdf_path, lambda p: fig.savefig(p, format="pdf", metadata={"CreationDate": None})
    )
    runtime.write_atomic(png_path, lambda p: fig.savefig(p, format="png", dpi=150))
    plt.close(fig)
    if tsv_path is not None:
        runtime.write_tsv(data, tsv_path, float_format="%.10g")


def empty(message: str):
    """A figure that says why it has nothing to show (a family without data in this run)."""
    fig, ax = plt.subplots(figsize=(5, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=9, wrap=True)
    return fig


def panel_grid(n: int, ncol: int = 3, size=(4.0, 3.6), polar: bool = False):
    ncol = max(1, min(ncol, n))
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(size[0] * ncol, size[1] * nrow),
        squeeze=False,
        subplot_kw={"projection": "polar"} if polar else None,
        constrained_layout=True,
    )
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def legend(fig, axes, **kwargs) -> None:
    """One legend for the figure, every label of every panel once, outside on the right."""
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen),
            loc="outside right center",
            fontsize=8,
            frameon=False,
            **kwargs,
        )


def grouped_bars(table, columns, group: str, title: str, group_order=None):
    """One panel per metric of ``columns``: bars of ``mean`` ± ``sem`` per method within each
    ``group`` value (e.g. split); reference rows as grey horizontal ticks across their group."""
    present = [c for c in columns if (table["label"] == c.label).any()]
    if not present:
        return empty(f"{title}: no values in this run")
    groups = group_order or sorted(table[group].unique())
    methods = [m for m in method_order(table["method"].unique()) if not is_reference(m)]
    refs = [m for m in method_order(table["method"].unique()) if is_reference(m)]
    colour = colours(methods + refs)
    width_in = min(9.0, max(3.6, 0.16 * len(methods) * len(groups)))
    fig, axes = panel_grid(len(present), ncol=3, size=(width_in, 3.0))
    width = 0.8 / max(len(methods), 1)
    for ax, column in zip(axes, present):
        block = table[table["label"] == column.label]
        for j, method in enumerate(methods):
            rows = block[block["method"] == method].set_index(group).reindex(groups)
            x = np.arange(len(groups)) - 0.4 + width * (j + 0.5)
            ax.bar(
                x,
                rows["mean"],
                width,
                yerr=rows["sem"],
                color=colour[method],
                label=method,
                error_kw={"lw": 0.7},
            )
        for method in refs:
            rows = block[block["method"] == method].set_index(group).reindex(groups)
            style = REFERENCE_STYLE[method][1]
            for i, value in enumerate(rows["mean"]):
                if np.isfinite(value):
                    ax.hlines(
                        value,
                        i - 0.45,
                        i + 0.45,
                        colors=colour[method],
                        linestyles=style,
                        lw=1.5,
                        label=f"[{method}]",
                    )
        ax.set_xticks(np.arange(len(groups)), groups, fontsize=7, rotation=20)
        ax.set_title(f"{column.label} {'↑' if column.higher_better else '↓'}", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    legend(fig, axes)
    fig.suptitle(title, fontsize=10)
    return fig


def bar_data(summary, columns, dataset: str):
    """Rows of ``summary`` for ``columns`` in ``dataset`` with the column label and the standard
    error of the mean (sd / sqrt(n); none for the ceiling)."""
    import pandas as pd

    frames = []
    for column in columns:
        rows = select(summary[summary["dataset"] == dataset], column)
        if not rows.empty:
            frames.append(rows.assign(label=column.label))
    cols = [
        "dataset",
        "split",
        "method",
        "protocol",
        "metric",
        "deg_set",
        "label",
        "mean",
        "sd",
        "n",
        "sem",
    ]
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)
    out["sem"] = out["sd"] / np.sqrt(out["n"])
    return out[cols]
