"""Probe a tiny scDFM fit: how well does the trained velocity field know each training group's
perturbed mean at times t (docs/decisions.md "Why the tiny scDFM is worse than the baselines")?

Usage::

    .venv/bin/python benchmarks/scdfm_probe.py RUN_DIR SPLIT ['{"param": value}'] [--one]

``RUN_DIR`` as for ``benchmarks/scdfm_quick.py``; ``--one`` trains on the controls and the largest
training condition only. For 40 training groups (64 cells, a random 64-gene subset, z-space of
the fit's gene scale) and t in {0, 0.5, 0.9}: the one-step endpoint ``x_t + (1 - t) v`` averaged
over the cells, minus the control mean, against the group's true mean minus the control mean
(Pearson r), and the MSE of that endpoint mean and of the control mean to the true mean. Printed
as one line per t.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import torch
from scdfm_quick import split_training_data  # benchmarks/scdfm_quick.py

from scpert.data import pairing, schema
from scpert.methods import get_method
from scpert.methods.scdfm.model import gene_subset_mask
from scpert.methods.scdfm.train import source
from scpert.methods.scppdm.model import ConditionBatch

CONTROL = "control"
TIMES = (0.0, 0.5, 0.9)


def main(run: str, split: str, overrides: dict, one: bool) -> None:
    torch.set_num_threads(1)
    data = split_training_data(run, split)
    if one:
        a = data.adata
        condition = a.obs[schema.CONDITION].astype(str)
        is_control = a.obs[schema.DRUG] == CONTROL
        largest = condition[~is_control].value_counts().index[0]
        data = dataclasses.replace(data, adata=a[(is_control | (condition == largest)).to_numpy()])
    model = get_method("scdfm").from_preset("tiny", overrides, seed=0)
    model.fit(data)
    adata = data.adata
    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    sets = pairing.CellSets(adata.obs, CONTROL, 64)
    conditions = ConditionBatch.encode(sets.keys[schema.DRUG], sets.keys[schema.DOSE], model.drugs)
    rng = np.random.default_rng(1)
    genes = np.sort(rng.choice(X.shape[1], 64, replace=False))
    gene_index = torch.from_numpy(genes)
    mask = gene_subset_mask(torch.from_numpy(model.adjacency), gene_index)
    scores = {t: [] for t in TIMES}
    model.net.eval()
    for g in rng.choice(len(sets), min(40, len(sets)), replace=False):
        members, pool = sets.members[g], sets._pools[g]

        def z(rows):
            return model.scale.to_z(torch.from_numpy(X[rows][:, genes]), genes)

        truth, c_x = z(members).mean(0), z(rng.choice(pool, 64))
        control = c_x.mean(0)
        cond = conditions[torch.full((64,), int(g))]
        with torch.no_grad():
            for t in TIMES:
                x1 = z(rng.choice(members, 64))
                x0 = source(c_x, torch.randn(64, 64), model.params)  # the fit's source
                x_t = (1 - t) * x0 + t * x1
                v = model.net(x_t, torch.full((64,), t), c_x, gene_index, mask, cond)
                end = (x_t + (1 - t) * v).mean(0)
                r = np.corrcoef(end - control, truth - control)[0, 1]
                mse = float(((end - truth) ** 2).mean())
                scores[t].append((r, mse, float(((control - truth) ** 2).mean())))
    for t, rows in scores.items():
        r, mse, control_mse = np.mean(rows, axis=0)
        print(
            json.dumps(
                {
                    "t": t,
                    "r": round(r, 3),
                    "mse": round(mse, 4),
                    "control_mse": round(control_mse, 4),
                }
            )
        )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--one"]
    main(args[0], args[1], json.loads(args[2]) if len(args) > 2 else {}, "--one" in sys.argv)
