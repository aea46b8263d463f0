"""In-silico screening figure (StateXDiff arXiv:2605.16104 Fig. 6): per source (the observed cells,
then each method's predictions) the drugs of the held-out line ranked by their pathway score,
bars coloured by MoA, the top-``n`` cut dashed, the Spearman correlation with the observed scores
in the title; last panel: -log10 BH FDR of each MoA's enrichment among the top ``n`` per source,
bars in greys by source, the 0.05 line dotted (config/screening.yaml, docs/experiments.md)."""

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
        ax.bar(block["rank"], block["score"], color=[colour[m] for m in block["moa"]], width=0.85)
        ax.axvline(top_n + 0.5, color="0.3", ls="--", lw=0.8)
        rho = block["spearman_vs_observed"].iloc[0]
        title = source if source == "observed" else f"{source} (ρ vs observed {rho:.2f})"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("drug rank")
        ax.set_ylabel(f"{block['pathway'].iloc[0]} score")
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
    fig.legend(handles, moas, loc="outside right center", fontsize=7, frameon=False, title="MoA")
    line = table["cell_line"].iloc[0] if "cell_line" in table.columns else ""
    fig.suptitle(f"In-silico screen of the drugs on held-out line {line}", fontsize=10)
    return fig
