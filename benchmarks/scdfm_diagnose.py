"""Diagnose a tiny scDFM fit on one split of a default-world run (docs/decisions.md "Issue 15: the
tiny preset starts from the control cell").

Usage::

    SEED=0 .venv/bin/python benchmarks/scdfm_diagnose.py RUN_DIR SPLIT ['{"param": value}']

``RUN_DIR`` as for ``benchmarks/scdfm_quick.py``; the JSON overlays the ``tiny`` preset; ``SEED``
the model seed (default 0). Fits, predicts the split's test conditions (one row per condition)
and prints one JSON line: ``fit`` / ``pred`` CPU s (``time.process_time``, one torch thread), then
means over the test conditions, in expression space: pseudobulk MSE over all genes
(``mse_all``; the context's control mean: ``mse_ctrl_all``) and over the condition's 100 genes of
largest ``|truth - control|`` (``mse_top`` / ``mse_ctrl_top``), PCC-delta over all genes
(``pcc``), the Pearson r of the predicted and true per-gene means (``r_level``), the fractions of
exact zeros in the prediction and the truth (``zero_pred`` / ``zero_true``) and the median over
genes of the predicted / true per-gene sd (``sd_ratio``).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from scdfm_quick import CONTROL, fit_and_predict  # benchmarks/scdfm_quick.py

from scpert.data import schema


def main(run: str, split: str, overrides: dict, seed: int) -> dict:
    _, adata, pred, fit, predict = fit_and_predict(run, split, overrides, seed)
    is_control = (adata.obs[schema.DRUG] == CONTROL).to_numpy()
    X = np.asarray(adata.X.todense()) if hasattr(adata.X, "todense") else np.asarray(adata.X)
    condition = adata.obs[schema.CONDITION].astype(str).to_numpy()
    keys = ("mse_all", "mse_ctrl_all", "mse_top", "mse_ctrl_top", "pcc", "r_level")
    acc = {k: [] for k in (*keys, "zero_pred", "zero_true", "sd_ratio")}
    for c in pred.obs[schema.CONDITION].unique():
        truth = X[condition == c]
        line = adata.obs.loc[condition == c, schema.CELL_LINE].iloc[0]
        ctrl = X[is_control & (adata.obs[schema.CELL_LINE] == line).to_numpy()].mean(0)
        P = pred.X[(pred.obs[schema.CONDITION] == c).to_numpy()]
        tm, pm = truth.mean(0), P.mean(0)
        top = np.argsort(-np.abs(tm - ctrl))[:100]
        acc["mse_all"].append(((pm - tm) ** 2).mean())
        acc["mse_ctrl_all"].append(((ctrl - tm) ** 2).mean())
        acc["mse_top"].append(((pm - tm)[top] ** 2).mean())
        acc["mse_ctrl_top"].append(((ctrl - tm)[top] ** 2).mean())
        acc["pcc"].append(np.corrcoef(pm - ctrl, tm - ctrl)[0, 1])
        acc["r_level"].append(np.corrcoef(pm, tm)[0, 1])
        acc["zero_pred"].append((P == 0).mean())
        acc["zero_true"].append((truth == 0).mean())
        acc["sd_ratio"].append(np.median(P.std(0) / np.maximum(truth.std(0), 1e-3)))
    out = {"split": split, "overrides": overrides, "seed": seed}
    out.update({"fit": round(fit, 1), "pred": round(predict, 1)})
    out.update({k: round(float(np.mean(v)), 4) for k, v in acc.items()})
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    overrides = json.loads(args[2]) if len(args) > 2 else {}
    print(json.dumps(main(args[0], args[1], overrides, int(os.environ.get("SEED", 0)))))
