"""Which gene set of a dataset's GMT recovers a MoA in the observed screen of a held-out line.

Usage::

    .venv/bin/python benchmarks/screening_pathways.py RUN_DIR [--moa apoptosis_10] [--line CL04]
        [--split cell_ood] [--top-n 6]

RUN_DIR: a finished default run (``snakemake -d``). For every gene set of the world's
``gene_sets.gmt`` and both directions, the observed cells of the line are screened as the
``screening`` rule screens them (:mod:`scpert.experiments.screening`); printed: the gene sets whose
top MoA is ``--moa``, with its hits in the top n and its BH FDR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scpert.data import io
from scpert.experiments import screening
from scpert.priors.sources import read_gmt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--split", default="cell_ood")
    parser.add_argument("--line", default="CL04")
    parser.add_argument("--moa", default="apoptosis_10")
    parser.add_argument("--top-n", type=int, default=6)
    args = parser.parse_args()
    root = args.run_dir / "results" / args.dataset
    raw = args.run_dir / "resources" / "raw" / args.dataset
    genes = pd.read_csv(root / args.split / "genes.tsv", sep="\t")["gene"].tolist()
    adata = ad.read_h5ad(root / "processed.h5ad")[:, genes]
    moa = io.read_drug_table(raw / "drugs.tsv")["moa"].astype(str)
    obs = adata.obs
    is_ctrl = (obs["drug"] == "control").to_numpy() & (obs["cell_line"] == args.line).to_numpy()
    control_mean = np.asarray(adata[is_ctrl].X.mean(axis=0)).ravel()
    rows = screening.highest_dose_rows(obs, args.line, "control")
    x = adata.X[rows].toarray()
    drugs = obs["drug"].astype(str).to_numpy()[rows]
    index = {g: i for i, g in enumerate(genes)}
    for name, members in read_gmt(raw / "gene_sets.gmt").items():
        idx = np.array([index[g] for g in members if g in index])
        if idx.size == 0:
            continue
        scores = screening.pathway_scores(x, drugs, control_mean, idx)
        for direction in screening.DIRECTIONS:
            table = screening.rank_drugs(scores, direction)
            top = screening.moa_enrichment(table, moa, args.top_n).iloc[0]
            if top["moa"] == args.moa:
                print(f"{name} {direction}: {top['k']}/{top['K']} in the top {args.top_n}, "
                      f"FDR {top['fdr']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
