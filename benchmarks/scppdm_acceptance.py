"""scPPDM acceptance numbers (issue 4) from a finished workflow directory.

Usage::

    .venv/bin/python benchmarks/scppdm_acceptance.py RUN_DIR [--dataset synthetic]
        [--split drug_ood] [--methods scppdm scppdm_const_sd base_control train_mean ...]

Prints, per method: the mean scPerturBench PCC-delta over test conditions (top-100 and top-5000
DEGs, from ``metrics.tsv``), the fraction of test drugs whose predicted effect magnitude grows
with dose (:func:`scpert.methods.scppdm.method.dose_monotonicity`; the ground truth's fraction is given
for reference), and the training rule's wall and CPU seconds (Snakemake benchmark file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import pandas as pd

from scpert.data import schema
from scpert.methods.scppdm.method import dose_monotonicity

DEFAULT_METHODS = ("scppdm", "scppdm_const_sd", "base_control", "train_mean", "base_reg")


def acceptance(run: Path, dataset: str, split: str, methods: list[str]) -> pd.DataFrame:
    res = run / "results" / dataset
    processed = ad.read_h5ad(res / "processed.h5ad")
    genes = pd.read_csv(res / split / "genes.tsv", sep="\t")["gene"].astype(str).tolist()
    table = pd.read_csv(res / "splits" / f"{split}.tsv", sep="\t", dtype=str)
    test = set(table.loc[table["split"] == "test", "condition"])
    controls = processed[(processed.obs[schema.DRUG].astype(str) == "control").to_numpy()]
    controls = controls[:, genes]
    truth = processed[processed.obs[schema.CONDITION].astype(str).isin(test).to_numpy()][:, genes]
    rows = [
        {
            "method": "(ground truth)",
            "dose_monotone": dose_monotonicity(truth, controls)["monotone"].mean(),
        }
    ]
    for method in methods:
        row: dict = {"method": method}
        metrics = pd.read_csv(res / split / method / "metrics.tsv", sep="\t")
        pcc = metrics[(metrics["protocol"] == "scperturbench") & (metrics["metric"] == "pcc_delta")]
        for deg_set, value in pcc.groupby("deg_set")["value"].mean().items():
            row[f"pcc_delta_{deg_set}"] = value
        pred = ad.read_h5ad(res / split / method / "pred.h5ad")
        row["dose_monotone"] = dose_monotonicity(pred, controls)["monotone"].mean()
        bench = run / "results" / "benchmarks" / "train" / dataset / split / f"{method}.tsv"
        if bench.is_file():
            timing = pd.read_csv(bench, sep="\t").iloc[0]
            row["train_s"], row["train_cpu_s"] = timing["s"], timing["cpu_time"]
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the workflow's working directory")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--split", default="drug_ood")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    args = parser.parse_args()
    table = acceptance(args.run, args.dataset, args.split, args.methods)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))


if __name__ == "__main__":
    main()
