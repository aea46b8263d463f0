"""The data ceiling with all true controls (scpert.metrics.reference) beside cell-eval 0.8's
``compute_ceiling`` (controls halved too), per cell line of one split of a finished default run.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/ceiling_controls.py <workdir> <split>
(docs/decisions.md "Data ceiling: both halves against all true controls").
"""

import logging
import sys
import time
import warnings

import numpy as np
import pandas as pd

from scpert.data import io
from scpert.metrics import reference

METRICS = [
    "pearson_delta",
    "overlap_at_N",
    "precision_at_N",
    "de_direction_match",
    "de_spearman_lfc_sig",
    "pr_auc",
    "roc_auc",
    "discrimination_score_l1",
]


def main(root: str, split: str, dataset: str = "synthetic", control: str = "control") -> None:
    from cell_eval import MetricsEvaluator

    base = f"{root}/results/{dataset}"
    adata = io.read_processed(f"{base}/processed.h5ad", control)
    genes = io.read_genes(f"{base}/{split}/genes.tsv")
    table = io.read_split(f"{base}/splits/{split}.tsv")
    test = table.loc[table["split"] == "test", "condition"].tolist()
    keep = adata.obs["condition"].isin(test).to_numpy() | (adata.obs["drug"] == control).to_numpy()
    truth = adata[keep][:, genes].copy()
    start = time.process_time()
    ours = reference.ceiling_metrics(truth, test, control, ("celleval",), seed=0)
    print(f"ours: {time.process_time() - start:.1f} CPU s", file=sys.stderr)
    logging.getLogger("cell_eval").setLevel(logging.ERROR)
    rows = []
    for line in sorted(truth.obs["cell_line"].unique()):
        real = truth[(truth.obs["cell_line"] == line).to_numpy()].copy()
        real.obs["pert"] = np.where(
            real.obs["drug"] == control, control, real.obs["condition"].astype(str)
        )
        if (real.obs["pert"] != control).sum() == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = MetricsEvaluator(
                None,
                real,
                control_pert=control,
                pert_col="pert",
                num_threads=1,
                outdir=f"/tmp/ceiling_controls_{line}",
            )
            _, agg = evaluator.compute_ceiling(profile="full", write_csv=False, seed=0)
        agg = agg.to_pandas().iloc[0]
        mine = ours[ours["condition"].str.startswith(f"{line}|")]
        mine = mine[~mine["condition"].str.endswith("|*")].groupby("metric")["value"].mean()
        corrected = pd.Series(reference.spearman_brown(mine), index=mine.index)
        for metric in METRICS:
            rows.append((line, metric, corrected.get(metric, np.nan), agg.get(metric, np.nan)))
    out = pd.DataFrame(rows, columns=["cell_line", "metric", "all_controls", "halved_controls"])
    print(out.groupby("metric")[["all_controls", "halved_controls"]].mean().round(4).to_markdown())


if __name__ == "__main__":
    main(*sys.argv[1:])
