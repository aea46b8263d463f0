"""scDFM's sampler with an oracle velocity on the default world (docs/decisions.md "Issue 15: the
tiny preset starts from the control cell"): can Euler with K steps, in the tiny preset's z-space
(training controls' mean / sd) with the clamp at expression 0, reproduce a perturbed population?

Usage::

    .venv/bin/python benchmarks/scdfm_oracle.py RUN_DIR SPLIT [CONDITION_INDEX]

The target is one perturbed condition's cells (per gene independently); the velocity is the exact
marginal ``E[x1 - x0 | x_t]`` of the linear path from ``N(0, I)`` to that empirical distribution.
For K in {4, 20, 100}: the fraction of exact zeros (prediction / truth), the pseudobulk MSE over
all genes and the median per-gene sd ratio of 256 generated cells; then the control mean's MSE.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from scpert.data import io, schema
from scpert.generative import ODESampler, conditional, sample
from scpert.methods.scdfm.train import GeneScale

CONTROL = "control"


def main(run: str, split: str, which: int = 5) -> None:
    torch.manual_seed(0)
    root = f"{run}/results/synthetic"
    adata = io.read_processed(f"{root}/processed.h5ad", CONTROL)
    adata = adata[:, io.read_genes(f"{root}/{split}/genes.tsv", adata.var_names)]
    X = np.asarray(adata.X.todense()) if hasattr(adata.X, "todense") else np.asarray(adata.X)
    is_control = (adata.obs[schema.DRUG] == CONTROL).to_numpy()
    scale = GeneScale.fit(X[is_control], "control")
    condition = adata.obs[schema.CONDITION].astype(str).to_numpy()
    c = np.unique(condition[~is_control])[which]
    truth = X[condition == c]
    idx = np.arange(X.shape[1])
    z1 = scale.to_z(torch.from_numpy(truth).float(), idx)
    floor = scale.zero_in_z(idx, z1)

    def velocity(x, t):
        t = float(t[0])
        s = max(1.0 - t, 1e-4)
        w = torch.softmax(-((x[:, None, :] - t * z1[None]) ** 2) / (2 * s * s), dim=1)
        return ((w * z1[None]).sum(1) - x) / s

    for k in (4, 20, 100):
        z = sample(
            ODESampler(k, "euler"),
            lambda x, t, modes: velocity(x, t)[None],
            torch.randn(256, X.shape[1]),
            conditional(("c",)),
            x0_transform=lambda x: torch.maximum(x, floor),
        )
        P = scale.from_z(z, idx).clamp(min=0).numpy()
        print(
            f"K {k}: zeros {(P <= 1e-6).mean():.3f} (truth {(truth == 0).mean():.3f}), "
            f"MSE {((P.mean(0) - truth.mean(0)) ** 2).mean():.4f}, "
            f"sd ratio {np.median(P.std(0) / np.maximum(truth.std(0), 1e-3)):.3f}"
        )
    print(f"control mean: MSE {((X[is_control].mean(0) - truth.mean(0)) ** 2).mean():.4f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], int(args[2]) if len(args) > 2 else 5)
