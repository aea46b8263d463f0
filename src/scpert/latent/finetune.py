"""Fine-tuning (or pretraining) the SCimilarity-layout latent model on a split's training cells.

Loss (SCimilarity ``MetricLearning.get_mixed_loss``): ``alpha * triplet + (1 - alpha) * MSE(x,
decoder(encoder(x)))`` with ``alpha = 0.003`` and margin 0.05. Triplets (SCimilarity
``TripletSelector``, semi-hard negatives): every anchor-positive pair of cells with the same label
(here the condition ``cell_line|drug|dose``; controls: ``cell_line|control``) from different
studies (here plates, when the batch has such pairs) gets one negative drawn uniformly among the
semi-hard ones, ``0 < d2(a,p) - d2(a,n) + margin < margin`` on squared distances; the loss is
``mean(max(d(a,p) - d(a,n) + margin, 0))`` with Euclidean ``d`` (``F.triplet_margin_loss``).
Pairs without a semi-hard negative are skipped; a batch without triplets contributes 0.

Batches sample ``labels_per_batch`` labels and ``cells_per_label`` cells of each (P-K sampling),
so that positives exist when conditions outnumber the batch; SCimilarity draws plain random
batches from atlases with far fewer labels. Optimiser: AdamW (SCimilarity: weight decay 0.01) at a
constant learning rate (scPPDM §4: fine-tuned at 1e-5 for 200k steps in the paper preset).
SCimilarity's L1 penalty on the first layer and its cosine annealing are not used. The ``paper``
preset is the fine-tuning of StateXDiff (arXiv:2605.16104) App. A.1.1: "fine-tune the pretrained
SCimilarity weights on the target dataset for 200,000 optimization steps with a learning rate of
1e-5" (SCimilarity v1.1 layer sizes); it presumes a published checkpoint (``latent.checkpoint``),
and without one the same schedule trains the model from scratch (the rule's log says so).

Training cells: the split's TRAIN conditions plus all control cells
(:func:`scpert.data.preprocess.train_cells_mask`), restricted to the split's genes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from scpert.latent.model import LatentModel

log = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_dim": [256],
        "latent_dim": 128,
        "dropout": 0.5,
        "input_dropout": 0.4,
        "steps": 600,
        "lr": 1e-3,
        "weight_decay": 0.01,
        "labels_per_batch": 32,
        "cells_per_label": 8,
        "triplet_weight": 0.003,
        "margin": 0.05,
    },
    "paper": {
        "hidden_dim": [1024, 1024],  # SCimilarity v1.1
        "latent_dim": 128,  # scPPDM App. D: D_z = 128
        "dropout": 0.5,
        "input_dropout": 0.4,
        "steps": 200_000,  # StateXDiff App. A.1.1 (from the published checkpoint)
        "lr": 1e-5,  # StateXDiff App. A.1.1
        "weight_decay": 0.01,
        "labels_per_batch": 100,
        "cells_per_label": 10,
        "triplet_weight": 0.003,
        "margin": 0.05,
    },
}


def resolve_params(preset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    if preset not in PRESETS:
        raise KeyError(f"latent: no preset '{preset}' (has: {', '.join(PRESETS)})")
    unknown = sorted(set(overrides or {}) - set(PRESETS[preset]))
    if unknown:
        raise KeyError(
            f"latent.params: unknown key(s) {unknown} (known: {', '.join(PRESETS[preset])})"
        )
    return {**PRESETS[preset], **(overrides or {})}


# ------------------------------------------------------------------------------- triplets
def semihard_triplet_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    studies: torch.Tensor,
    margin: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, int]:
    """Mean triplet margin loss over mined semi-hard triplets, and their number."""
    with torch.no_grad():
        d2 = torch.cdist(z, z).pow(2)
        same = labels[:, None] == labels[None, :]
        upper = torch.triu(torch.ones_like(same), diagonal=1)
        pairs = same & upper
        across = pairs & (studies[:, None] != studies[None, :])
        if across.any():
            pairs = across
        anchor, positive = pairs.nonzero(as_tuple=True)
        if len(anchor) == 0:
            return z.sum() * 0.0, 0
        slack = d2[anchor, positive][:, None] - d2[anchor] + margin  # (pairs, batch)
        semihard = (slack > 0) & (slack < margin) & ~same[anchor]
        noise = torch.rand(semihard.shape, generator=generator).to(z.device)
        choice = torch.where(semihard, noise, torch.full_like(noise, -1.0)).argmax(dim=1)
        keep = semihard.any(dim=1)
    if not bool(keep.any()):
        return z.sum() * 0.0, 0
    a, p, n = anchor[keep], positive[keep], choice[keep]
    return F.triplet_margin_loss(z[a], z[p], z[n], margin=margin, p=2), int(keep.sum())


class LabelBatches:
    """P-K batches: ``labels_per_batch`` random labels x ``cells_per_label`` random cells each."""

    def __init__(self, labels: np.ndarray, labels_per_batch: int, cells_per_label: int, seed: int):
        self.rng = np.random.default_rng(seed)
        order = np.argsort(labels, kind="stable")
        uniques, starts = np.unique(labels[order], return_index=True)
        self.members = np.split(order, starts[1:])
        self.p = min(int(labels_per_batch), len(uniques))
        self.k = int(cells_per_label)

    def __next__(self) -> np.ndarray:
        picked = self.rng.choice(len(self.members), size=self.p, replace=False)
        return np.concatenate(
            [
                self.rng.choice(self.members[i], size=self.k, replace=len(self.members[i]) < self.k)
                for i in picked
            ]
        )


def finetune(
    model: LatentModel,
    X,
    labels: np.ndarray,
    studies: np.ndarray,
    params: dict,
    device: str,
    seed: int,
) -> dict[str, float]:
    """Train ``model`` in place on cells ``X`` (log-normalised, model gene order)."""
    model.to(device).train()
    X = X.tocsr() if sp.issparse(X) else np.asarray(X, dtype=np.float32)
    label_codes = np.unique(labels, return_inverse=True)[1]
    study_codes = torch.as_tensor(np.unique(studies, return_inverse=True)[1], device=device)
    label_t = torch.as_tensor(label_codes, device=device)
    batches = LabelBatches(label_codes, params["labels_per_batch"], params["cells_per_label"], seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=float(params["lr"]), weight_decay=float(params["weight_decay"])
    )
    alpha, margin = float(params["triplet_weight"]), float(params["margin"])
    steps = int(params["steps"])
    recent: dict[str, list[float]] = {"mse": [], "triplet": [], "triplets": []}
    start = time.perf_counter()
    for step in range(1, steps + 1):
        rows = next(batches)
        block = X[rows]
        x = torch.as_tensor(
            block.toarray() if sp.issparse(block) else block, dtype=torch.float32, device=device
        )
        z, x_hat = model(x)
        mse = F.mse_loss(x_hat, x)
        triplet, n_triplets = semihard_triplet_loss(
            z, label_t[rows], study_codes[rows], margin, generator
        )
        loss = alpha * triplet + (1.0 - alpha) * mse
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for key, value in (
            ("mse", mse.item()),
            ("triplet", triplet.item()),
            ("triplets", n_triplets),
        ):
            recent[key] = (recent[key] + [value])[-100:]
        if step % max(steps // 10, 1) == 0 or step == steps:
            log.info(
                "step %d/%d: mse %.4f, triplet %.4f (%.0f triplets/batch)",
                step,
                steps,
                *(np.mean(recent[k]) for k in ("mse", "triplet", "triplets")),
            )
    model.eval()
    return {
        "steps": steps,
        "seconds": time.perf_counter() - start,
        **{f"final_{k}": float(np.mean(v)) for k, v in recent.items() if v},
    }
