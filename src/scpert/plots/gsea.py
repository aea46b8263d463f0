"""GSEA running enrichment scores and hit plots on predicted vs true gene rankings (scPPDM App. H.1,
Fig. 5), with gseapy's pre-ranked GSEA (``gseapy.prerank``, offline: gene sets from a GMT file).

For a ``drug_ood`` split, the held-out drug with the largest mean ``|logFC|`` in the truth is
chosen; every source (the truth and each generative method's prediction) ranks the split's genes
by its logFC (scPPDM App. C.2, :mod:`scpert.plots.lfc`) averaged over that drug's test conditions
(every cell line and dose). The gene sets are the GMT's sets with :data:`MIN_SIZE` or more genes
among the split's genes (the synthetic world's ``gene_sets.gmt`` by default; a real GMT such as
MSigDB Hallmark with ``figures.gsea_gmt``); the figure shows the :data:`N_TERMS` sets with the
largest ``|ES|`` in the truth, like the paper's two Hallmark pathways: running ES along the ranked
list per source (top) and where the set's genes fall in each source's ranking (bottom).

Table rows: ``kind = score`` (ES, NES, nominal p and FDR from :data:`PERMUTATIONS` gene-set
permutations, one row per source and set), ``curve`` (running ES at every rank) and ``hit``
(the ranks of the set's genes).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scpert.plots.common import colours, empty, legend, panel_grid
from scpert.plots.lfc import TRUTH, condition_lfc
from scpert.tables import method_order

MIN_SIZE = 5
N_TERMS = 2
PERMUTATIONS = 100
COLUMNS = [
    "dataset",
    "split",
    "drug",
    "term",
    "method",
    "kind",
    "rank",
    "value",
    "nes",
    "pval",
    "fdr",
]


def read_gmt(path) -> dict[str, list[str]]:
    """Gene sets of a GMT file (name, description, genes...; tab-separated)."""
    from scpert import runtime

    sets = {}
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\n").split("\t")
            if not line.strip():
                continue
            if len(fields) < 3:
                raise runtime.InputError(
                    f"{path}: line {number}: a GMT line needs a name, a description and genes"
                )
            sets[fields[0]] = [g for g in fields[2:] if g]
    if not sets:
        raise runtime.InputError(f"{path}: no gene sets")
    return sets


def prerank(ranking: pd.Series, gene_sets: dict, seed: int = 0) -> dict:
    """gseapy's pre-ranked GSEA of ``ranking`` (gene -> score): term -> gseapy's result dict."""
    import gseapy

    result = gseapy.prerank(
        rnk=ranking,
        gene_sets=gene_sets,
        permutation_num=PERMUTATIONS,
        min_size=MIN_SIZE,
        max_size=10_000,
        seed=seed,
        threads=1,
        outdir=None,
        no_plot=True,
        verbose=False,
    )
    return result.results


def enrichment(truth, predictions: dict, control: str, test_conditions, gene_sets: dict):
    """Table rows for one split (module docstring)."""
    described, lfc = condition_lfc(truth, predictions, control, test_conditions)
    genes = list(truth.var_names)
    sets = {t: [g for g in s if g in set(genes)] for t, s in gene_sets.items()}
    sets = {t: s for t, s in sets.items() if len(s) >= MIN_SIZE}
    if not sets or described.empty:
        return pd.DataFrame(columns=COLUMNS[2:])
    size = lfc[TRUTH].abs().mean(axis=1).groupby(described["drug"].astype(str)).mean()
    drug = str(size.idxmax())
    conditions = described.index[described["drug"].astype(str) == drug]
    results = {
        method: prerank(table.loc[conditions].mean(axis=0), sets) for method, table in lfc.items()
    }
    truth_es = pd.Series({t: r["es"] for t, r in results[TRUTH].items()})
    terms = truth_es.abs().sort_values(ascending=False, kind="stable").index[:N_TERMS]
    rows = []
    for method, result in results.items():
        for term in terms:
            r = result[term]
            rows.append(
                (drug, term, method, "score", np.nan, r["es"], r["nes"], r["pval"], r["fdr"])
            )
            rows += [
                (drug, term, method, "curve", i, v, np.nan, np.nan, np.nan)
                for i, v in enumerate(r["RES"])
            ]
            rows += [(drug, term, method, "hit", i, 1.0, np.nan, np.nan, np.nan) for i in r["hits"]]
    return pd.DataFrame(rows, columns=COLUMNS[2:])


def draw(table: pd.DataFrame, title: str = ""):
    if table.empty:
        return empty("gsea: no drug_ood split or no gene set with enough genes in this run")
    split = sorted(table["split"].unique())[0]
    table = table[table["split"] == split]
    methods = [TRUTH] + [m for m in method_order(table["method"].unique()) if m != TRUTH]
    colour = {**colours([m for m in methods if m != TRUTH]), TRUTH: "black"}
    terms = list(dict.fromkeys(table["term"]))
    drug = table["drug"].iloc[0]
    fig, axes = panel_grid(2 * len(terms), ncol=len(terms), size=(4.6, 2.8))
    for k, term in enumerate(terms):
        rows = table[table["term"] == term]
        ax_es, ax_hit = axes[k], axes[len(terms) + k]
        for j, method in enumerate(methods):
            r = rows[rows["method"] == method]
            curve = r[r["kind"] == "curve"]
            score = r[r["kind"] == "score"].iloc[0]
            ax_es.plot(
                curve["rank"],
                curve["value"],
                color=colour[method],
                lw=2.0 if method == TRUTH else 1.0,
                label=method,
            )
            hits = r[r["kind"] == "hit"]["rank"]
            ax_hit.vlines(hits, j + 0.1, j + 0.9, color=colour[method], lw=0.8)
            ax_hit.text(
                curve["rank"].max() * 1.02,
                j + 0.5,
                f"ES {score['value']:.2f}",
                fontsize=6,
                va="center",
            )
        ax_hit.set_xlim(-0.02 * curve["rank"].max(), 1.16 * curve["rank"].max())
        ax_es.axhline(0, color="0.6", lw=0.5)
        ax_es.set_title(f"{term}", fontsize=9)
        ax_es.set_ylabel("running enrichment score", fontsize=7)
        ax_es.set_xlabel("rank in the source's logFC ranking", fontsize=7)
        ax_es.tick_params(labelsize=7)
        ax_hit.set_yticks(np.arange(len(methods)) + 0.5, methods, fontsize=6)
        ax_hit.set_ylim(len(methods), 0)
        ax_hit.set_xlabel("rank of the set's genes (hits)", fontsize=7)
        ax_hit.set_title(f"{term}: hits", fontsize=9)
        ax_hit.tick_params(axis="x", labelsize=7)
    legend(fig, axes[: len(terms)])
    fig.suptitle(
        title or f"GSEA of held-out drug {drug} ({split}): predicted vs true logFC rankings",
        fontsize=10,
    )
    return fig
