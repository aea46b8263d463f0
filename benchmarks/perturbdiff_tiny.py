"""PerturbDiff's tiny preset and its variants on one split of a workflow run directory: CPU
seconds of training and sampling, and a quick score of the predicted cells.

Usage::

    PYTHONPATH=src python benchmarks/perturbdiff_tiny.py RUN_DIR SPLIT NAME ['{"key": value}']

``RUN_DIR`` is a ``snakemake -d`` work directory of the default config in which the split's
``genes.tsv``, ``hvg_ranking.tsv`` and the priors the variant needs exist (e.g. after
``snakemake -d RUN_DIR results/synthetic/cell_ood/perturbdiff/model``). The variant (the tiny
preset overlaid with the JSON overrides) is trained and sampled through ``scpert.steps.train``
and ``scpert.steps.sample`` into ``RUN_DIR/perturbdiff_tiny/SPLIT/NAME/``; printed: CPU seconds
(``time.process_time``) of each, and per test condition, averaged: the PCC of the pseudobulk
shift against the context's control mean on the truth's top-100 |shift| genes, the Euclidean
energy distance of the cells on those genes (:func:`scpert.metrics.distances.energy_distance`),
and the per-gene spread of the predicted and true cells (``docs/decisions.md`` "PerturbDiff tiny
preset").
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scpert import steps
from scpert.data import pairing
from scpert.methods import get_spec
from scpert.metrics.distances import energy_distance


def main(run: str, split: str, name: str, overrides: str = "{}") -> None:
    results = Path(run) / "results" / "synthetic"
    spec = get_spec("perturbdiff")
    params = spec.resolve("tiny", json.loads(overrides))
    inputs = {
        "h5ad": str(results / "processed.h5ad"),
        "split": str(results / "splits" / f"{split}.tsv"),
        "genes": str(results / split / "genes.tsv"),
        "ranking": str(results / split / "hvg_ranking.tsv"),
        "drugs": str(Path(run) / "resources/raw/synthetic/drugs.tsv"),
    }
    for prior in spec.required_priors(params):
        inputs[f"prior_{prior}"] = str(results / split / "priors" / prior)
    out = Path(run) / "perturbdiff_tiny" / split / name
    entry = {"name": name, "base": "perturbdiff", "preset": "tiny", "params": params}
    start = time.process_time()
    steps.train(inputs, out / "model", entry, "control", 0, "cpu", threads=1)
    trained = time.process_time()
    inputs["model"] = str(out / "model")
    steps.sample(inputs, out / "pred.h5ad", "control", 0, "cpu", 2000, name, threads=1)
    sampled = time.process_time()
    print(f"{name}: CPU s train {trained - start:.1f}, sample {sampled - trained:.1f}")
    score(inputs, out / "pred.h5ad")


def score(inputs: dict, pred_path) -> None:
    genes = pd.read_csv(inputs["genes"], sep="\t").iloc[:, 0].astype(str).tolist()
    truth = ad.read_h5ad(inputs["h5ad"])[:, genes]
    X, obs = pairing.dense(truth.X), truth.obs
    pred = ad.read_h5ad(pred_path)
    P = pairing.dense(pred.X)
    ctrl = obs["drug"].astype(str) == "control"
    means = {
        line: X[(ctrl & (obs["cell_line"].astype(str) == line)).to_numpy()].mean(0)
        for line in obs["cell_line"].astype(str).unique()
    }
    pcc, ed = [], []
    for condition in pred.obs["condition"].astype(str).unique():
        in_pred = (pred.obs["condition"].astype(str) == condition).to_numpy()
        in_true = (obs["condition"].astype(str) == condition).to_numpy()
        base = means[str(pred.obs["cell_line"].astype(str)[in_pred].iloc[0])]
        true_shift, pred_shift = X[in_true].mean(0) - base, P[in_pred].mean(0) - base
        top = np.argsort(-np.abs(true_shift))[:100]
        pcc.append(np.corrcoef(true_shift[top], pred_shift[top])[0, 1])
        ed.append(energy_distance(P[in_pred][:, top], X[in_true][:, top]))
    tested = obs["condition"].astype(str).isin(pred.obs["condition"].astype(str)).to_numpy()
    print(
        f"PCC-delta top-100 {np.nanmean(pcc):.3f}, E-distance top-100 {np.mean(ed):.3f}, "
        f"per-gene sd predicted {P.std(0).mean():.3f} / true {X[tested].std(0).mean():.3f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
