"""scDFM inference (arXiv:2602.07103 App. A.3 Algorithm 3, App. A.4.3): the ODE from noise to the
perturbed cell on the shared sampler loop.

For a batch of control cells ``c_x`` and their conditions, on one gene subset ``I`` (``M_I =
W[I, I]``): ``Z_I``, ``h_c``, ``e_p`` and the control keys/values are computed once
(:meth:`PADTransformer.context`), then ``x^(I)`` is integrated from ``x_0 ~ N(0, I)`` at ``t = 0``
to ``t = 1`` with :class:`scpert.generative.samplers.ODESampler` (Euler with K = 100 uniform
steps in the paper; Heun, and RK4 as the released code does), and the final state is clamped at 0
(expression is non-negative; the code's ``clamp(min=0)``). With ``standardize: control`` the ODE
runs in z-space (:class:`scpert.methods.scdfm.train.GeneScale`): the control cells are z-scored,
the final state is clamped at the z-value of expression 0 and mapped back. No guidance: the velocity is the
conditional one (one mode).

Every gene is predicted: the genes are partitioned into subsets of ``subset_genes`` (the training
policy: subsets of size ``s``), seeded by the sampling seed, and each subset is integrated on its
own (App. A.3 "Inference": "we choose ``I`` using the same policy as in training").
"""

from __future__ import annotations

import numpy as np
import torch

from scpert.generative import ODESampler, conditional, sample
from scpert.methods.scdfm.model import PADTransformer, gene_subset_mask, partition_genes
from scpert.methods.scdfm.train import GeneScale, source
from scpert.methods.scppdm.model import ConditionBatch

#: the single mode of unguided sampling
MODE = ("c",)


@torch.no_grad()
def integrate(
    net: PADTransformer,
    c_x: torch.Tensor,
    cond: ConditionBatch,
    noise: torch.Tensor,
    adjacency: torch.Tensor,
    p: dict,
    seed: int,
    scale: GeneScale | None = None,
) -> torch.Tensor:
    """Predicted cells (B, G) from controls ``c_x`` (B, G), conditions (B) and the initial noise
    ``noise`` (B, G), all on the network's device; ``scale`` the gene scale of training (None =
    identity; module docstring)."""
    net.eval()
    device = c_x.device
    scale = scale or GeneScale.identity(c_x.shape[1])
    sampler = ODESampler(int(p["sampler_steps"]), p["sampler"])
    out = torch.empty_like(c_x)
    for part in partition_genes(c_x.shape[1], int(p["subset_genes"]), seed):
        genes = torch.from_numpy(part).to(device)
        z_c = scale.to_z(c_x[:, genes], part)
        ctx = net.context(z_c, genes, gene_subset_mask(adjacency, genes), cond)
        floor = scale.zero_in_z(part, z_c)

        def denoise(x, t, modes, ctx=ctx):
            return net.velocity(x, t, ctx)[None]

        def clamp(x, floor=floor):  # expression >= 0 (0 is z = -mean / sd)
            return torch.maximum(x, floor)

        z = sample(
            sampler,
            denoise,
            source(z_c, noise[:, genes], p),
            conditional(MODE),
            x0_transform=clamp,
        )
        out[:, genes] = scale.from_z(z, part).clamp(min=0.0)
    return out


def unit_noise(n: int, n_genes: int, seed: int) -> torch.Tensor:
    """``N(0, I)`` source noise of ``n`` cells from a seeded generator (per-unit seeds make a
    condition's cells independent of the others)."""
    return torch.randn(n, n_genes, generator=torch.Generator().manual_seed(int(seed)))


def round_robin(n_cells: int, n_samples: int) -> np.ndarray:
    """Which of ``n_samples`` model samples each of ``n_cells`` predicted cells is."""
    return np.arange(n_cells) % max(n_samples, 1)
