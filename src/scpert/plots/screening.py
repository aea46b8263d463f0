"""In-silico screening figure (StateXDiff arXiv:2605.16104 Fig. 6): per source (the observed cells
of the single-cell drugs, the L1000 signatures of every drug, then each method's screen of every
drug) the drugs ranked by their pathway score, bars coloured by MoA, L1000-only drugs (no cells
in the single-cell data) hatched, the top-``n`` cut dashed, the Spearman correlations with the
observed and the L1000 scores in the title; last panel: -log10 BH FDR of each MoA's enrichment
among the top ``n`` per source, bars in greys by source, the 0.05 line dotted
(config/screening.yaml, docs/experiments.md)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from scpert.plots.common import empty, panel_grid


def data(ranking: pd.DataFrame, enrichment: pd.DataFrame) -> pd.DataFrame:
    """The ranking rows with the BH FDR of the drug's MoA in the same source (``moa_fdr``)."""
    fdr = enrichment.set_index(["source", "moa"])["fdr"]
    keys = list(zip(ranking["source"], ranking["moa"]))
    return ranking.assign(moa_fdr=[fdr.get(k, np.nan) for k in keys])


def draw(table: pd.DataFrame, top_n: int):
    if table.empty:
        return empty("screening: no drugs in this run")
    sources = list(dict.fromkeys(table["source"]))
    moas = sorted(m for m in table["moa"].unique() if m)
    palette = plt.get_cmap("tab10").colors
    colour = {m: palette[i % len(palette)] for i, m in enumerate(moas)} | {"": "0.7"}
    fig, axes = panel_grid(len(sources) + 1, ncol=3, size=(4.4, 3.2))
    for ax, source in zip(axes, sources):
        block = table[table["source"] == source].sort_values("rank")
        only = block["l1000_only"].to_numpy(bool) if "l1000_only" in block else None
        bars = ax.bar(
            block["rank"], block["score"], color=[colour[m] for m in block["moa"]], width=0.85
        )
        for bar, hatched in zip(bars, only if only is not None else []):
            if hatched:
                bar.set_hatch("////")
                bar.set_edgecolor("0.15")
                bar.set_linewidth(0)
        ax.axvline(top_n + 0.5, color="0.3", ls="--", lw=0.8)
        rhos = [
            f"ρ vs {ref} {block[f'spearman_vs_{ref}'].iloc[0]:.2f}"
            for ref in ("observed", "l1000")
            if ref != source
            and f"spearman_vs_{ref}" in block
            and np.isfinite(block[f"spearman_vs_{ref}"].iloc[0])
        ]
        title = f"{source} ({len(block)} drugs)"
        ax.set_title(title + ("\n" + ", ".join(rhos) if rhos else ""), fontsize=8)
        ax.set_xlabel("drug rank")
        unit = "mean consensus z" if source == "l1000" else "mean log-expression change"
        ax.set_ylabel(f"{block['pathway'].iloc[0]} score\n({unit})", fontsize=8)
        ax.grid(alpha=0.3, lw=0.5, axis="y")
    ax = axes[-1]
    width = 0.8 / max(len(sources), 1)
    enrich = table.drop_duplicates(["source", "moa"]).query("moa != ''")
    for j, source in enumerate(sources):
        rows = enrich[enrich["source"] == source].set_index("moa").reindex(moas)
        x = np.arange(len(moas)) - 0.4 + width * (j + 0.5)
        shade = plt.get_cmap("Greys")(0.35 + 0.6 * j / max(len(sources) - 1, 1))
        ax.bar(x, -np.log10(rows["moa_fdr"].clip(lower=1e-300)), width, color=shade, label=source)
    ax.axhline(-np.log10(0.05), color="0.3", ls=":", lw=0.8)
    ax.set_xticks(np.arange(len(moas)), moas, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(f"-log10 FDR (MoA in top {top_n})")
    ax.legend(fontsize=7, frameon=False)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[m]) for m in moas]
    labels = list(moas)
    if "l1000_only" in table and table["l1000_only"].astype(bool).any():
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="white", hatch="////", ec="0.15"))
        labels.append("L1000-only drug")
    fig.legend(handles, labels, loc="outside right center", fontsize=7, frameon=False, title="MoA")
    line = table["cell_line"].iloc[0] if "cell_line" in table.columns else ""
    fig.suptitle(f"In-silico screen of every drug on held-out line {line}", fontsize=10)
    return fig
