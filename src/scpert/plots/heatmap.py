"""Methods x metrics heatmap of a protocol's summary, one panel per (dataset, split).

Colours are per-metric ranks scaled to [0, 1] within a panel (1 = best; direction from
:data:`scpert.tables.SCPERTURBENCH_COLUMNS`), so metrics on different scales share one colour
map; the cells are annotated with the raw means. Reference rows (oracle, ceiling) come last,
annotated but not ranked (grey).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from scpert.tables import SCPERTURBENCH_COLUMNS, is_reference, method_label, method_order  # noqa: E402


def heatmap(summary: pd.DataFrame, protocol: str = "scperturbench", deg_set: str = "top100"):
    sub = summary[(summary["protocol"] == protocol) & (summary["deg_set"] == deg_set)]
    columns = [c for c in SCPERTURBENCH_COLUMNS if (sub["metric"] == c[0]).any()]
    panels = sorted(sub.groupby(["dataset", "split"]).groups)
    methods = method_order(sub["method"].unique())
    ranked = [m for m in methods if not is_reference(m)]
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("0.88")
    ncol = min(3, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(4.2 * ncol, 0.45 * len(methods) * nrow + 1.2 * nrow),
        squeeze=False,
        constrained_layout=True,
    )
    for ax, (dataset, split) in zip(axes.flat, panels):
        block = sub[(sub["dataset"] == dataset) & (sub["split"] == split)]
        means = block.pivot(index="method", columns="metric", values="mean").reindex(methods)
        score = np.full((len(methods), len(columns)), np.nan)
        for j, (metric, _, higher) in enumerate(columns):
            col = means[metric] if metric in means else pd.Series(np.nan, index=methods)
            col = col.where([m in ranked for m in col.index])
            r = col.rank(ascending=not higher, method="average")
            n = col.notna().sum()
            score[:, j] = 1 - (r.to_numpy() - 1) / max(n - 1, 1)
        im = ax.imshow(np.ma.masked_invalid(score), cmap=cmap, vmin=0, vmax=1, aspect="auto")
        for i, m in enumerate(methods):
            for j, (metric, _, _) in enumerate(columns):
                v = means.at[m, metric] if metric in means else np.nan
                if np.isfinite(v):
                    ax.text(
                        j,
                        i,
                        f"{v:.3g}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if score[i, j] < 0.5 else "black",
                    )
        ax.set_xticks(range(len(columns)), [lab for _, lab, _ in columns], rotation=45, ha="right")
        ax.set_yticks(range(len(methods)), [method_label(m) for m in methods])
        ax.set_title(f"{dataset} / {split}", fontsize=9)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.6, label="rank score (1 = best)")
    fig.suptitle(f"{protocol}, {deg_set.replace('top', 'top-')} DEGs")
    return fig
