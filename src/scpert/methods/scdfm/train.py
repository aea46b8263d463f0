"""scDFM training (arXiv:2602.07103 §3.1-3.2, App. A.2-A.3 Algorithm 2, App. A.4.3) on the shared
trainer.

Batches (Algorithm 2; the code: "one perturbation per step")
    Every step draws ``groups_per_step`` training groups (cell line, drug, dose, plate; the code
    and the paper preset: ONE) and ``batch_size / groups_per_step`` cells ``x1`` of each with as
    many random control cells ``c_x`` of the same (cell line, plate)
    (:class:`scpert.data.pairing.CellSets`; a group smaller than that is padded by resampling its
    cells); the MMD is computed per group, so that it compares two samples of one perturbed
    population, and averaged over the groups. One
    random gene subset ``I`` of ``subset_genes`` genes per step (``M_I = W[I, I]``), one time
    ``t ~ U(0, 1)`` per cell and source noise ``x0 ~ N(0, I)``.
Objective (eqs. 2-5, Algorithm 1)
    ``x_t = (1 - t) x0 + t x1``, ``L_CFM = mean ||v_theta(x_t | t, c_x, c_p) - (x1 - x0)||^2``
    (per gene), endpoint ``x1_hat = x_t + (1 - t) v_theta`` (:mod:`scpert.generative.flow`),
    ``L = L_CFM + lambda MMD^2(X1, X1_hat)`` with the unbiased multi-kernel RBF MMD^2 whose
    bandwidths are ``sqrt(s m)``, ``m`` the median off-diagonal squared distance of the REAL
    batch ``X1``, ``s in {0.5, 1, 2, 4}`` (:func:`scpert.generative.losses.mmd2_unbiased`).
Optimisation (App. A.4.3, REFERENCE_CODE: no warm-up, EMA or clipping)
    :class:`scpert.generative.trainer.Trainer`: Adam (no weight decay) at ``lr``, cosine to
    ``lr_min``, ``steps`` steps. ``p_drop_id``: the id rows of the perturbation embedding are
    dropped per cell with this probability (``id_structure`` only), so the fingerprint path alone
    predicts drugs unseen in training.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from scpert.data import pairing
from scpert.generative import flow
from scpert.generative.losses import mmd2_unbiased
from scpert.generative.trainer import Batch, TrainConfig, Trainer, TrainResult, fingerprint
from scpert.methods.scdfm.model import PADTransformer, gene_subset_mask
from scpert.methods.scppdm.model import ConditionBatch

#: smallest per-gene standard deviation of ``standardize: control`` (log1p units), so that genes
#: almost constant in the controls do not get huge z-scores
SD_FLOOR = 0.1
#: pairings of sources and targets in a batch (:func:`couple`)
COUPLINGS = ("independent", "ot")


class GeneScale:
    """Per-gene affine map ``z = (x - mean) / sd`` (module docstring, ``standardize``)."""

    MODES = ("none", "control")

    def __init__(self, mean: np.ndarray, sd: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.sd = np.asarray(sd, dtype=np.float32)

    @classmethod
    def identity(cls, n_genes: int) -> GeneScale:
        return cls(np.zeros(n_genes), np.ones(n_genes))

    @classmethod
    def fit(cls, X_controls, mode: str) -> GeneScale:
        """From the training control cells (dense or CSR); ``none`` = the identity."""
        if mode not in cls.MODES:
            raise ValueError(f"unknown standardize '{mode}' ({cls.MODES})")
        G = X_controls.shape[1]
        if mode == "none":
            return cls.identity(G)
        X = X_controls.toarray() if sp.issparse(X_controls) else np.asarray(X_controls)
        X = X.astype(np.float64)
        return cls(X.mean(axis=0), np.maximum(X.std(axis=0), SD_FLOOR))

    def to_z(self, x: torch.Tensor, genes: np.ndarray | torch.Tensor) -> torch.Tensor:
        mean, sd = self._at(genes, x)
        return (x - mean) / sd

    def from_z(self, z: torch.Tensor, genes: np.ndarray | torch.Tensor) -> torch.Tensor:
        mean, sd = self._at(genes, z)
        return z * sd + mean

    def zero_in_z(self, genes: np.ndarray | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """z-value of expression 0 per gene (the clamp of the sampler in z-space)."""
        mean, sd = self._at(genes, like)
        return -mean / sd

    def _at(self, genes, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        genes = genes.cpu().numpy() if isinstance(genes, torch.Tensor) else np.asarray(genes)
        mean = torch.from_numpy(self.mean[genes]).to(like)
        sd = torch.from_numpy(self.sd[genes]).to(like)
        return mean, sd


def dense_rows(X, rows: np.ndarray, genes: np.ndarray) -> torch.Tensor:
    """``X[rows][:, genes]`` as a float32 tensor (X dense or CSR)."""
    part = X[rows][:, genes]
    part = part.toarray() if sp.issparse(part) else np.asarray(part)
    return torch.from_numpy(part.astype(np.float32))


def source(c_x: torch.Tensor, noise: torch.Tensor, p: dict) -> torch.Tensor:
    """The flow's source ``x0``: ``noise`` ~ N(0, I) (``source: noise``, §3.1), or the control
    cell plus ``source_noise`` x noise (``source: control``, Algorithm 3's "standard source")."""
    if p["source"] == "control":
        return c_x + float(p["source_noise"]) * noise
    return noise


def couple(x0: torch.Tensor, x1: torch.Tensor, m: int, mode: str) -> torch.Tensor:
    """``x1`` re-paired with the sources ``x0`` within each consecutive group of ``m`` rows.

    ``independent`` (the paper, §3.1): unchanged, each target is paired with a random source.
    ``ot``: per group, the permutation of its targets that minimises the summed squared
    distance ``||x0_i - x1_pi(i)||^2`` (exact assignment; mini-batch OT coupling, Tong et al.
    2024, arXiv:2302.00482). The coupled path crosses less, so its velocity field is easier to
    learn in few steps; the group's set of targets, hence the MMD, is unchanged."""
    if mode not in COUPLINGS:
        raise ValueError(f"unknown coupling '{mode}' ({COUPLINGS})")
    if mode == "independent" or m < 2:
        return x1
    from scipy.optimize import linear_sum_assignment  # only here: its import costs every job

    cost = torch.cdist(
        x0.reshape(-1, m, x0.shape[1]).double(), x1.reshape(-1, m, x1.shape[1]).double()
    )
    order = [g * m + linear_sum_assignment((c**2).cpu().numpy())[1] for g, c in enumerate(cost)]
    return x1[torch.from_numpy(np.concatenate(order)).to(x1.device)]


def groups_and_cells(p: dict) -> tuple[int, int]:
    """``(groups_per_step, cells per group)``: ``batch_size`` cells split over the step's groups
    (at least 2 cells each, the unbiased MMD's minimum)."""
    n_groups = max(int(p["groups_per_step"]), 1)
    m = int(p["batch_size"]) // n_groups
    if m < 2:
        raise ValueError(
            f"scdfm: batch_size {p['batch_size']} / groups_per_step {n_groups} leaves fewer than "
            "2 cells per group (the unbiased MMD needs 2)"
        )
    return n_groups, m


def train_config(p: dict, seed: int) -> TrainConfig:
    return TrainConfig(
        steps=int(p["steps"]),
        lr=float(p["lr"]),
        weight_decay=0.0,
        lr_schedule="cosine",
        lr_floor=float(p["lr_min"]) / float(p["lr"]),
        checkpoint_every=int(p["checkpoint_every"]),
        seed=int(seed),
    )


def fit_network(
    net: PADTransformer,
    X,
    sets: pairing.CellSets,
    conditions: ConditionBatch,
    adjacency: torch.Tensor,
    p: dict,
    device: torch.device,
    seed: int,
    checkpoint_dir=None,
    scale: GeneScale | None = None,
) -> TrainResult:
    """Train ``net`` on the cells ``X`` (rows of ``sets``' obs); ``conditions`` has one row per
    group of ``sets``; ``scale`` the gene scale (None = identity; module docstring)."""
    scale = scale or GeneScale.identity(X.shape[1])
    n_genes = X.shape[1]
    s = min(int(p["subset_genes"]), n_genes)
    n_groups, m = groups_and_cells(p)
    B = n_groups * m
    lam = float(p["mmd_weight"])
    scales = [float(x) for x in p["mmd_scales"]]
    p_drop_id = float(p["p_drop_id"])
    coupling = p["coupling"]
    adjacency = adjacency.to(device)
    conditions = conditions.to(device)

    def batch(step: int, g: torch.Generator) -> Batch:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=g)))
        cellset = sets.sample(n_groups, rng)
        genes = np.sort(rng.choice(n_genes, size=s, replace=False))
        return Batch(
            {
                "x1": scale.to_z(dense_rows(X, cellset.perturbed.ravel(), genes), genes),
                "c_x": scale.to_z(dense_rows(X, cellset.controls.ravel(), genes), genes),
                "x0": torch.randn(B, s, generator=g),
                "t": flow.sample_time(B, g, p["time_distribution"]),
                "keep_id": torch.rand(B, generator=g) >= p_drop_id,
                "group": torch.from_numpy(np.repeat(cellset.group, m).astype(np.int64)),
            },
            {"genes": torch.from_numpy(genes)},
        )

    def loss(model, b: Batch, step: int):
        t = b.rows["t"]
        x0 = source(b.rows["c_x"], b.rows["x0"], p)
        x1 = couple(x0, b.rows["x1"], m, coupling)
        genes = b.shared["genes"]
        x_t = flow.path_sample(x0, x1, t)
        v = model(
            x_t,
            t,
            b.rows["c_x"],
            genes,
            gene_subset_mask(adjacency, genes),
            conditions[b.rows["group"]],
            b.rows["keep_id"],
        ).float()
        cfm = F.mse_loss(v, flow.target_velocity(x0, x1))
        total = cfm
        terms = {"cfm": cfm.detach()}
        if lam > 0:  # per group: two samples of one perturbed population
            x1_hat = flow.endpoint(x_t, t, v)
            mmd = torch.stack(
                [
                    mmd2_unbiased(real, fake, scales)
                    for real, fake in zip(x1.split(m), x1_hat.split(m))
                ]
            ).mean()
            total = total + lam * mmd
            terms["mmd"] = mmd.detach()
        return total, terms

    trainer = Trainer(
        net,
        train_config(p, seed),
        device=device,
        checkpoint_dir=checkpoint_dir,
        run_id=fingerprint(p, seed, X.shape, len(sets)),
        name="scdfm",
    )
    return trainer.fit(batch, loss)
