"""scPPDM acceptance numbers from a finished workflow directory.

Usage::

    .venv/bin/python benchmarks/scppdm_acceptance.py RUN_DIR [--dataset synthetic]
        [--splits cell_ood drug_ood ...] [--methods scppdm scppdm_residual base_control ...]

Prints, per split and method: the mean over test conditions of scPerturBench's MSE (top-100 and
top-5000 DEGs), PCC-delta (top-100) and E-distance (top-100) from ``metrics.tsv``; the fraction
of test drugs whose predicted effect magnitude grows with dose
(:func:`scpert.methods.scppdm.analysis.dose_monotonicity`, the ground truth's fraction as
reference); and the CPU seconds of the method's train and sample jobs (Snakemake benchmark
files, ``cpu_time``). Then the checks: scPPDM's top-100 MSE at or below ``base_control``'s and
its top-100 PCC-delta at or above ``train_mean``'s, per split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import pandas as pd

from scpert.data import schema
from scpert.methods.scppdm.analysis import dose_monotonicity

DEFAULT_METHODS = ("scppdm", "scppdm_residual", "base_control", "train_mean", "base_reg")
COLUMNS = {
    ("mse", "top100"): "mse_top100",
    ("mse", "top5000"): "mse_top5000",
    ("pcc_delta", "top100"): "pcc_delta_top100",
    ("e_distance", "top100"): "e_distance_top100",
}


def _cpu(run: Path, rule: str, dataset: str, split: str, method: str) -> float | None:
    bench = run / "results" / "benchmarks" / rule / dataset / split / f"{method}.tsv"
    return float(pd.read_csv(bench, sep="\t").iloc[0]["cpu_time"]) if bench.is_file() else None


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
            "split": split,
            "method": "(ground truth)",
            "dose_monotone": dose_monotonicity(truth, controls)["monotone"].mean(),
        }
    ]
    for method in methods:
        path = res / split / method / "metrics.tsv"
        if not path.is_file():
            continue
        row: dict = {"split": split, "method": method}
        metrics = pd.read_csv(path, sep="\t", dtype={"deg_set": str})
        means = (
            metrics[metrics["protocol"] == "scperturbench"]
            .groupby(["metric", "deg_set"])["value"]
            .mean()
        )
        for key, column in COLUMNS.items():
            row[column] = means.get(key)
        pred = ad.read_h5ad(res / split / method / "pred.h5ad")
        row["dose_monotone"] = dose_monotonicity(pred, controls)["monotone"].mean()
        row["train_cpu_s"] = _cpu(run, "train", dataset, split, method)
        row["sample_cpu_s"] = _cpu(run, "sample", dataset, split, method)
        rows.append(row)
    return pd.DataFrame(rows)


def checks(table: pd.DataFrame, method: str = "scppdm") -> pd.DataFrame:
    """Per split: scPPDM's MSE <= base_control's and PCC-delta >= train_mean's (top-100)."""
    out = []
    for split, block in table.groupby("split", sort=False):
        by = block.set_index("method")
        if not {method, "base_control", "train_mean"} <= set(by.index):
            continue
        out.append(
            {
                "split": split,
                "method": method,
                "mse_le_base_control": by.loc[method, "mse_top100"]
                <= by.loc["base_control", "mse_top100"],
                "pcc_ge_train_mean": by.loc[method, "pcc_delta_top100"]
                >= by.loc["train_mean", "pcc_delta_top100"],
            }
        )
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the workflow's working directory")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument(
        "--splits",
        nargs="+",
        default=["cell_ood", "drug_ood", "pair_ood", "combo_seen0", "combo_seen1", "combo_seen2"],
    )
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    args = parser.parse_args()
    table = pd.concat(
        [acceptance(args.run, args.dataset, split, args.methods) for split in args.splits],
        ignore_index=True,
    )
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    for method in ("scppdm", "scppdm_residual"):
        print()
        print(checks(table, method).to_string(index=False))


if __name__ == "__main__":
    main()
