"""Dose-response monotonicity (scPPDM's dose-dependent guidance s_d(dose), §3.4): how the size of
the predicted response follows the dose of a held-out drug.

For every test condition of a ``drug_ood`` split (each held-out drug at all of its doses in every
cell line) the response size is ``||mean(cells) - mean(true controls of the line)||_2`` over the
split's genes, for the truth (``method = "truth"``) and every prediction (reference rows
included). Per (method, cell line, drug) with >= 2 doses, ``monotone`` says whether the
response sizes never decrease with the dose. The left panel shows the fraction of monotone
(line, drug) series per method (the truth's own, noisy fraction beside them); the others the
response size against the dose for the first drugs, truth in black.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scpert.plots.common import colours, empty, legend, panel_grid
from scpert.tables import method_order

TRUTH = "truth"
N_EXAMPLES = 5
COLUMNS = ["dataset", "split", "method", "cell_line", "drug", "dose", "condition", "effect"]


def _means(x, labels: np.ndarray) -> pd.DataFrame:
    codes, names = pd.factorize(labels)
    membership = sp.csr_matrix(
        (np.ones(codes.size), (codes, np.arange(codes.size))), shape=(names.size, codes.size)
    )
    sums = membership @ x
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
    return pd.DataFrame(sums / np.bincount(codes)[:, None], index=names)


def effects(truth, predictions: dict, control: str, test_conditions) -> pd.DataFrame:
    """Response sizes per (method, condition): ``truth`` (AnnData of the split's genes, test
    conditions and controls) and ``predictions`` (method -> AnnData, same genes)."""
    obs = truth.obs
    is_ctrl = (obs["drug"].astype(str) == control).to_numpy()
    ctrl = _means(truth.X[is_ctrl], obs["cell_line"].astype(str).to_numpy()[is_ctrl])
    described = obs[~is_ctrl].drop_duplicates("condition").set_index("condition")
    test = [c for c in dict.fromkeys(map(str, test_conditions)) if c in described.index]
    rows = []
    for method, adata in [(TRUTH, truth), *predictions.items()]:
        keep = adata.obs["condition"].astype(str).isin(test).to_numpy()
        means = _means(adata.X[keep], adata.obs["condition"].astype(str).to_numpy()[keep])
        for condition in test:
            line = str(described.at[condition, "cell_line"])
            effect = float(np.linalg.norm(means.loc[condition].to_numpy() - ctrl.loc[line]))
            rows.append(
                (
                    method,
                    line,
                    str(described.at[condition, "drug"]),
                    float(described.at[condition, "dose"]),
                    condition,
                    effect,
                )
            )
    return pd.DataFrame(rows, columns=COLUMNS[2:])


def monotone(table: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, split, method, cell_line, drug) with >= 2 doses: whether the response size
    never decreases with the dose."""

    def never_decreases(rows):
        return bool(np.all(np.diff(rows.sort_values("dose")["effect"].to_numpy()) >= 0))

    keys = ["dataset", "split", "method", "cell_line", "drug"]
    groups = table.groupby(keys)
    series = groups.apply(never_decreases, include_groups=False)
    sizes = groups.size()
    return series[sizes >= 2].rename("monotone").reset_index()


def draw(table: pd.DataFrame, title: str = ""):
    if table.empty:
        return empty("dose_response: no drug_ood split in this run")
    mono = monotone(table)
    methods = [TRUTH] + [m for m in method_order(table["method"].unique()) if m != TRUTH]
    colour = {**colours([m for m in methods if m != TRUTH]), TRUTH: "black"}
    series = (
        table[["split", "cell_line", "drug"]]
        .drop_duplicates()
        .sort_values(["split", "drug", "cell_line"])
    )
    examples = list(series.head(N_EXAMPLES).itertuples(index=False))
    fig, axes = panel_grid(1 + len(examples), ncol=3, size=(4.0, 3.2))
    fraction = mono.groupby("method")["monotone"].mean().reindex(methods)
    ax = axes[0]
    ax.barh(range(len(methods)), fraction.to_numpy(), color=[colour[m] for m in methods])
    ax.set_yticks(range(len(methods)), methods, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of (line, drug) series\nwith non-decreasing response", fontsize=8)
    ax.set_title("monotonicity in dose", fontsize=9)
    for ax, (split, line, drug) in zip(axes[1:], examples):
        rows = table[
            (table["split"] == split) & (table["cell_line"] == line) & (table["drug"] == drug)
        ]
        for method in methods:
            r = rows[rows["method"] == method].sort_values("dose")
            ax.plot(
                r["dose"],
                r["effect"],
                "o--" if method == "oracle" else "o-",
                ms=3,
                lw=2.0 if method == TRUTH else 1.0,
                color=colour[method],
                label=method,
            )
        ax.set_xscale("log")
        ax.set_xlabel("dose (µM)", fontsize=8)
        ax.set_ylabel("||Δ mean||₂", fontsize=8)
        ax.set_title(f"{drug} in {line} ({split})", fontsize=8)
    legend(fig, axes[1:])
    fig.suptitle(title or "Response size along the doses of held-out drugs", fontsize=10)
    return fig
