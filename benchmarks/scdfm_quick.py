"""scDFM on one split of a finished default-world run: CPU seconds of fit and predict, and quick
pseudobulk scores against train_mean and the control mean (docs/decisions.md "scDFM tiny preset").

Usage::

    .venv/bin/python benchmarks/scdfm_quick.py RUN_DIR SPLIT ['{"param": value, ...}']

``RUN_DIR`` is a Snakemake work directory of ``config/config.yaml`` that has
``results/synthetic/{processed.h5ad, splits/SPLIT.tsv, SPLIT/genes.tsv}`` (e.g. after
``snakemake -d RUN_DIR results/synthetic/SPLIT/genes.tsv``); the JSON overlays the ``tiny``
preset. Printed (one JSON line): ``fit_cpu`` and ``predict_cpu`` (``time.process_time``, one
torch thread), and over the split's test conditions the mean of the pseudobulk MSE (all genes)
and of PCC-delta (Pearson of the mean shifts against the context's control mean) of scDFM,
``train_mean`` (the mean of all training perturbed cells) and the control mean.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from scpert.data import io, schema
from scpert.methods import get_method
from scpert.methods.base import per_condition
from scpert.steps.methods import conditions_to_predict, training_data

CONTROL = "control"


def split_training_data(run: str, split: str):
    """The split's :class:`~scpert.methods.base.PerturbData` of a finished run, as ``train`` builds it."""
    root = f"{run}/results/synthetic"
    return training_data(
        f"{root}/processed.h5ad",
        f"{root}/splits/{split}.tsv",
        f"{root}/{split}/genes.tsv",
        f"{run}/resources/raw/synthetic/drugs.tsv",
        CONTROL,
    )


def fit_and_predict(run: str, split: str, overrides: dict, seed: int = 0):
    """Fit tiny scDFM (``overrides`` on the preset, model seed ``seed``) on the split and predict
    its test conditions (sampling seed 0), one torch thread. Returns the model, the processed
    AnnData in the model's genes, the prediction and the fit and predict CPU seconds."""
    torch.set_num_threads(1)
    root = f"{run}/results/synthetic"
    data = split_training_data(run, split)
    model = get_method("scdfm").from_preset("tiny", overrides, seed=seed)
    start = time.process_time()
    model.fit(data)
    fit_cpu = time.process_time() - start
    adata = io.read_processed(f"{root}/processed.h5ad", CONTROL)[:, model.genes]
    table = io.read_split(f"{root}/splits/{split}.tsv")
    is_control = (adata.obs[schema.DRUG] == CONTROL).to_numpy()
    conditions = conditions_to_predict(adata.obs, table, 2000)
    if not model.spec().predicts_plates:
        conditions = per_condition(conditions)
    start = time.process_time()
    pred = model.predict(adata[is_control], conditions, seed=0)
    return model, adata, pred, fit_cpu, time.process_time() - start


def main(run: str, split: str, overrides: dict) -> dict:
    _, adata, pred, fit_cpu, predict_cpu = fit_and_predict(run, split, overrides)
    table = io.read_split(f"{run}/results/synthetic/splits/{split}.tsv")
    is_control = (adata.obs[schema.DRUG] == CONTROL).to_numpy()
    X = np.asarray(adata.X.todense()) if hasattr(adata.X, "todense") else np.asarray(adata.X)
    condition = adata.obs[schema.CONDITION].astype(str).to_numpy()
    trained = np.isin(condition, table.loc[table.split == "train", "condition"]) & ~is_control
    train_mean = X[trained].mean(0)
    scores = {name: {"mse": [], "pcc": []} for name in ("scdfm", "train_mean", "control")}
    for c in pred.obs[schema.CONDITION].unique():
        truth = X[condition == c].mean(0)
        line = adata.obs.loc[condition == c, schema.CELL_LINE].iloc[0]
        ctrl = X[is_control & (adata.obs[schema.CELL_LINE] == line).to_numpy()].mean(0)
        guesses = {
            "scdfm": pred.X[(pred.obs[schema.CONDITION] == c).to_numpy()].mean(0),
            "train_mean": train_mean,
            "control": ctrl,
        }
        for name, guess in guesses.items():
            scores[name]["mse"].append(float(((guess - truth) ** 2).mean()))
            if name != "control":
                scores[name]["pcc"].append(float(np.corrcoef(guess - ctrl, truth - ctrl)[0, 1]))
    summary = {
        f"{name}_{k}": round(float(np.mean(v)), 4)
        for name, s in scores.items()
        for k, v in s.items()
        if v
    }
    return {
        "split": split,
        "overrides": overrides,
        "fit_cpu": round(fit_cpu, 1),
        "predict_cpu": round(predict_cpu, 1),
        "cells": int(pred.n_obs),
        **summary,
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(args[0], args[1], json.loads(args[2]) if len(args) > 2 else {})))
