"""Fit scPPDM variants (or baselines) on one split of a finished workflow run and score them.

Usage::

    .venv/bin/python benchmarks/scppdm_variants.py RUN_DIR --split pair_ood \\
        NAME=METHOD:PARAMS ...

e.g. ``post=scppdm:{}`` ``long=scppdm:{"steps":1500,"lr":1e-3}`` ``bc=base_control:{}``
(``PARAMS``: a JSON object of overrides of the ``tiny`` preset). Uses the run's
``processed.h5ad``, split, genes, drug table and the split's latent prior, predicts the test
conditions per (condition, plate) as the ``sample`` step does, and prints one JSON line per
variant: fit and predict CPU seconds (``time.process_time``, one torch thread) and the
scPerturBench means over test conditions (MSE and PCC-delta on the top-100 and top-5000 DEGs,
E-distance on the top-100).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from scpert.data import io, schema
from scpert.methods import get_method
from scpert.methods.base import per_condition
from scpert.metrics import evaluate_predictions
from scpert.steps.methods import conditions_to_predict, training_data

METRICS = {
    ("mse", "top100"): "mse_top100",
    ("mse", "top5000"): "mse_top5000",
    ("pcc_delta", "top100"): "pcc_delta_top100",
    ("pcc_delta", "top5000"): "pcc_delta_top5000",
    ("e_distance", "top100"): "e_distance_top100",
}


def split_data(run: Path, dataset: str, split: str):
    res = run / "results" / dataset
    data = training_data(
        res / "processed.h5ad",
        res / "splits" / f"{split}.tsv",
        res / split / "genes.tsv",
        run / "resources" / "raw" / dataset / "drugs.tsv",
        "control",
    )
    data.priors = {"latent": res / split / "priors" / "latent"}
    adata = io.read_processed(res / "processed.h5ad", "control")
    genes = io.read_genes(res / split / "genes.tsv")
    table = io.read_split(res / "splits" / f"{split}.tsv")
    test = table.loc[table["split"] == "test", "condition"].tolist()
    is_ctrl = (adata.obs[schema.DRUG] == "control").to_numpy()
    keep = adata.obs[schema.CONDITION].isin(test).to_numpy() | is_ctrl
    truth = io.restrict_genes(adata[keep], genes, res / "processed.h5ad").copy()
    controls = io.restrict_genes(adata[is_ctrl], genes, res / "processed.h5ad").copy()
    conditions = conditions_to_predict(adata.obs, table, 2000)
    return data, truth, controls, conditions, test


def score(pred, truth, test) -> dict[str, float]:
    table = evaluate_predictions(truth, pred, test, control="control", protocols=("scperturbench",))
    means = table.groupby(["metric", "deg_set"])["value"].mean()
    return {name: round(float(means[key]), 4) for key, name in METRICS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("variants", nargs="+", help="NAME=METHOD:PARAMS (JSON overrides)")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--split", default="pair_ood")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, truth, controls, conditions, test = split_data(args.run, args.dataset, args.split)
    for variant in args.variants:
        name, rest = variant.split("=", 1)
        method, params = rest.split(":", 1)
        cls = get_method(method)
        model = cls.from_preset("tiny", json.loads(params), seed=args.seed)
        start = time.process_time()
        model.fit(data)
        fit = time.process_time() - start
        rows = conditions if cls.spec().predicts_plates else per_condition(conditions)
        start = time.process_time()
        pred = model.predict(controls, rows, seed=args.seed)
        predict = time.process_time() - start
        result = {"split": args.split, "variant": name, "method": method, "params": params}
        result.update(fit_cpu_s=round(fit, 1), predict_cpu_s=round(predict, 1))
        result.update(score(pred, truth, test))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
