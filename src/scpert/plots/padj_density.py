"""-log10 adjusted p-value densities for DE and non-DE genes (PerturbDiff arXiv:2602.19685
Fig. 5): does a method's prediction reproduce which genes change?

For every test condition of a ``drug_ood`` split, each gene gets the cell-eval DE statistic
(two-sided Mann-Whitney U against the line's true controls, BH within the condition;
:mod:`scpert.metrics.de`, as the cell-eval protocol computes it) on the true cells and on each
prediction. Genes with true FDR < 0.05 are "DE", the others "non-DE". The figure shows, per
method, the density of ``-log10`` of the predicted FDR (clipped at 1e-10, as cell-eval's AUC
scores) for the DE and the non-DE genes: a good prediction separates the two as the truth does
(``truth``: the true cells' own FDR). The data table holds histogram counts on fixed bins.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scpert.plots.common import colours, empty, panel_grid
from scpert.tables import method_order

TRUTH = "truth"
FDR = 0.05
BINS = np.linspace(0.0, 10.0, 41)
COLUMNS = ["dataset", "split", "method", "gene_set", "bin_low", "bin_high", "count", "density"]


def histograms(truth, predictions: dict, control: str, test_conditions) -> pd.DataFrame:
    """Histogram rows (``method, gene_set, bin_low, bin_high, count, density``) over every
    (test condition, gene) of ``truth`` (the split's genes, test conditions and controls)."""
    from scpert.metrics.de import MannWhitneyReference, bh_fdr

    obs = truth.obs
    is_ctrl = (obs["drug"].astype(str) == control).to_numpy()
    lines = obs["cell_line"].astype(str).to_numpy()
    refs = {}
    scores = {m: {"DE": [], "non-DE": []} for m in [TRUTH, *predictions]}
    for condition in dict.fromkeys(map(str, test_conditions)):
        rows = np.flatnonzero((obs["condition"].astype(str) == condition).to_numpy())
        if rows.size == 0:
            continue
        line = lines[rows[0]]
        if line not in refs:
            refs[line] = MannWhitneyReference(truth.X[is_ctrl & (lines == line)])
        true_fdr = bh_fdr(refs[line].test(truth.X[rows])[1])
        de = true_fdr < FDR
        for method, adata in [(TRUTH, truth), *predictions.items()]:
            if method == TRUTH:
                fdr = true_fdr
            else:
                mask = (adata.obs["condition"].astype(str) == condition).to_numpy()
                fdr = bh_fdr(refs[line].test(adata.X[mask])[1])
            value = -np.log10(np.clip(np.nan_to_num(fdr, nan=1.0), 1e-10, 1.0))
            scores[method]["DE"].append(value[de])
            scores[method]["non-DE"].append(value[~de])
    out = []
    for method, sets in scores.items():
        for gene_set, parts in sets.items():
            values = np.concatenate(parts) if parts else np.empty(0)
            count, _ = np.histogram(values, BINS)
            total = max(count.sum(), 1)
            density = count / (total * np.diff(BINS))
            for lo, hi, c, d in zip(BINS[:-1], BINS[1:], count, density):
                out.append((method, gene_set, lo, hi, int(c), float(d)))
    return pd.DataFrame(out, columns=COLUMNS[2:])


def draw(table: pd.DataFrame, title: str = ""):
    if table.empty:
        return empty("padj_density: no drug_ood split in this run")
    methods = [TRUTH] + [m for m in method_order(table["method"].unique()) if m != TRUTH]
    colour = {**colours([m for m in methods if m != TRUTH]), TRUTH: "black"}
    fig, axes = panel_grid(len(methods), ncol=4, size=(3.0, 2.4))
    for ax, method in zip(axes, methods):
        rows = table[table["method"] == method]
        for gene_set, style in (("DE", "-"), ("non-DE", "--")):
            r = rows[rows["gene_set"] == gene_set].groupby("bin_low")["count"].sum()
            width = BINS[1] - BINS[0]
            density = r / max(r.sum(), 1) / width
            ax.step(
                r.index + width, density, style, where="pre", color=colour[method], label=gene_set
            )
        ax.set_yscale("log")
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("-log10 FDR of the prediction", fontsize=7)
        ax.set_ylabel("density", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, frameon=False)
    fig.suptitle(
        title
        or f"Predicted DE significance of truly DE (FDR < {FDR}) and non-DE genes, held-out drugs",
        fontsize=10,
    )
    return fig
