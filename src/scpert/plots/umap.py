"""UMAP of predicted and true cells coloured by cell line, and logFC violins (scPPDM Fig. 3).

For a ``drug_ood`` split (held-out drugs in every cell line): up to :data:`MAX_CELLS` cells of the
test conditions are drawn per source, the truth and each generative method's prediction
(seeded, the same conditions for all), projected on the first :data:`N_PCS` principal components
of the true cells and embedded together with UMAP (:mod:`scpert.plots.umap_layout`), so that the
panels share one map: predictions that keep the cell line's identity fall on the truth's
cell-line clusters.

The violins are scPPDM's right panel: for the first :data:`N_LINES` cell lines, the
:data:`N_GENES` genes with the largest mean ``|logFC|`` in the truth over the line's test
conditions; per gene the distribution over those conditions of the logFC (scPPDM App. C.2,
:mod:`scpert.plots.lfc`) of the truth and of each prediction.

The data table has ``kind = umap`` rows (one per embedded cell: ``umap1``, ``umap2``) and
``kind = logfc`` rows (one per method, condition and gene: ``logfc``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scpert.plots.common import colours, empty, legend, panel_grid, plt
from scpert.plots.lfc import TRUTH, condition_lfc
from scpert.tables import method_order

MAX_CELLS = 120
N_PCS = 20
N_LINES = 3
N_GENES = 5
COLUMNS = [
    "dataset",
    "split",
    "kind",
    "method",
    "cell_line",
    "condition",
    "gene",
    "umap1",
    "umap2",
    "logfc",
]


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def embed(truth, predictions: dict, control: str, test_conditions, seed: int = 0) -> pd.DataFrame:
    """``kind = umap`` rows: a capped sample of each source's test cells in one UMAP."""
    from scpert.plots.umap_layout import umap_embedding

    rng = np.random.default_rng(seed)
    test = list(dict.fromkeys(map(str, test_conditions)))
    parts, labels = [], []
    for method, adata in [(TRUTH, truth), *predictions.items()]:
        rows = np.flatnonzero(adata.obs["condition"].astype(str).isin(test).to_numpy())
        rows = np.sort(rng.choice(rows, min(MAX_CELLS, rows.size), replace=False))
        parts.append(_dense(adata.X[rows]))
        obs = adata.obs.iloc[rows]
        labels.append(
            pd.DataFrame(
                {
                    "method": method,
                    "cell_line": obs["cell_line"].astype(str).to_numpy(),
                    "condition": obs["condition"].astype(str).to_numpy(),
                }
            )
        )
    x = np.concatenate(parts)
    true = parts[0]
    centre = true.mean(axis=0)
    # principal axes of the true cells from the small Gram matrix (cells x cells)
    centred = true - centre
    values, vectors = np.linalg.eigh(centred @ centred.T)
    top = np.argsort(values)[::-1][: min(N_PCS, values.size)]
    axes = centred.T @ vectors[:, top] / np.sqrt(np.maximum(values[top], 1e-12))
    pcs = (x - centre) @ axes
    coords = umap_embedding(pcs, seed=seed)
    out = pd.concat(labels, ignore_index=True)
    return out.assign(kind="umap", gene="", umap1=coords[:, 0], umap2=coords[:, 1], logfc=np.nan)


def violins(truth, predictions: dict, control: str, test_conditions) -> pd.DataFrame:
    """``kind = logfc`` rows: the logFC of the top genes of the first cell lines (module doc)."""
    described, lfc = condition_lfc(truth, predictions, control, test_conditions)
    rows = []
    for line in sorted(described["cell_line"].unique())[:N_LINES]:
        conditions = described.index[described["cell_line"] == line]
        top = (
            lfc[TRUTH]
            .loc[conditions]
            .abs()
            .mean(axis=0)
            .sort_values(ascending=False, kind="stable")
        )
        for method, table in lfc.items():
            block = table.loc[conditions, top.index[:N_GENES]]
            for condition, values in block.iterrows():
                for gene, value in values.items():
                    rows.append((method, line, condition, gene, float(value)))
    return pd.DataFrame(rows, columns=["method", "cell_line", "condition", "gene", "logfc"]).assign(
        kind="logfc", umap1=np.nan, umap2=np.nan
    )


def data(truth, predictions: dict, control: str, test_conditions) -> pd.DataFrame:
    """Both parts of the figure's table for one split (module docstring)."""
    return pd.concat(
        [
            embed(truth, predictions, control, test_conditions),
            violins(truth, predictions, control, test_conditions),
        ],
        ignore_index=True,
    )


def draw(table: pd.DataFrame, title: str = ""):
    if table.empty:
        return empty("umap: no drug_ood split in this run")
    split = sorted(table["split"].unique())[0]
    table = table[table["split"] == split]
    cells = table[table["kind"] == "umap"]
    lfc = table[table["kind"] == "logfc"]
    methods = [TRUTH] + [m for m in method_order(table["method"].unique()) if m != TRUTH]
    lines = sorted(cells["cell_line"].unique())
    dark2 = plt.get_cmap("Dark2").colors  # cell lines: not the method colours
    palette = {line: dark2[i % len(dark2)] for i, line in enumerate(lines)}
    lines_shown = sorted(lfc["cell_line"].unique())
    fig, axes = panel_grid(len(methods) + len(lines_shown), ncol=4, size=(3.2, 2.9))
    for ax, method in zip(axes, methods):
        rows = cells[cells["method"] == method]
        for line in lines:
            r = rows[rows["cell_line"] == line]
            ax.scatter(
                r["umap1"], r["umap2"], s=4, color=palette[line], label=line, rasterized=True
            )
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("UMAP 1", fontsize=7)
        ax.set_ylabel("UMAP 2", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(fontsize=6, frameon=False, markerscale=2, title="cell line", title_fontsize=6)
    method_colour = {**colours([m for m in methods if m != TRUTH]), TRUTH: "black"}
    for ax, line in zip(axes[len(methods) :], lines_shown):
        rows = lfc[lfc["cell_line"] == line]
        genes = list(dict.fromkeys(rows["gene"]))
        width = 0.8 / len(methods)
        for j, method in enumerate(methods):
            values = [
                rows[(rows["gene"] == g) & (rows["method"] == method)]["logfc"] for g in genes
            ]
            positions = np.arange(len(genes)) - 0.4 + width * (j + 0.5)
            parts = ax.violinplot(values, positions, widths=width, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(method_colour[method])
                body.set_alpha(0.7)
            ax.scatter([], [], color=method_colour[method], label=method, s=10)
        ax.axhline(0, color="0.6", lw=0.5)
        ax.set_xticks(np.arange(len(genes)), genes, fontsize=6, rotation=30)
        ax.set_ylabel("log2 FC vs line's controls", fontsize=7)
        ax.set_title(f"{line}: top genes", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    legend(fig, axes[len(methods) :])  # the methods' colours, outside the violin panels
    fig.suptitle(
        title or f"Predicted and true cells of held-out drugs ({split}): UMAP and logFC",
        fontsize=10,
    )
    return fig
