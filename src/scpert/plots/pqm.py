"""PQM validation figure (rule ``validate_pqm``, StateXDiff arXiv:2605.16104 App. A.2.3 Fig. 7):
(a) true-protein q vs predicted-protein q per cell, (b) q of matched, cross-type and shuffled
RNA-protein pairings."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from scpert.priors.pqm_validation import PAIRINGS  # noqa: E402


def pqm_validation(cells: pd.DataFrame, table: pd.DataFrame, title: str = ""):
    """Two panels from :class:`scpert.priors.pqm_validation.Validation`; returns the figure."""
    value = dict(zip(table["quantity"], table["value"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.4))
    for cell_type, group in cells.groupby("cell_type", observed=True):
        left.scatter(group["q_true"], group["q_pred"], s=5, alpha=0.5, label=str(cell_type))
    left.set_xlabel("q from true protein", fontsize=8)
    left.set_ylabel("q from predicted protein", fontsize=8)
    left.set_title(
        f"(a) Spearman {value['spearman_q_true_vs_pred']:.2f}, "
        f"Pearson {value['pearson_q_true_vs_pred']:.2f}",
        fontsize=9,
    )
    left.legend(fontsize=6, markerscale=2, frameon=False)
    data = [cells[f"q_{k}"].to_numpy() for k in PAIRINGS]
    right.boxplot(data, showfliers=False)
    right.set_xticks(range(1, len(PAIRINGS) + 1), [k.replace("_", "-") for k in PAIRINGS])
    right.set_ylabel("q (true protein)", fontsize=8)
    right.set_title(
        "(b) medians " + " / ".join(f"{value[f'median_q_{k}']:.2f}" for k in PAIRINGS), fontsize=9
    )
    for ax in (left, right):
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
