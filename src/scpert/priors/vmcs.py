"""VMCS: the virtual multimodal cell state of StateXDiff (arXiv:2605.16104 §3.2 eqs. 2-6,
App. A.2.2, Table 4), trained on the untreated cells of a split's training data (rule
``train_vmcs``, split-level prior ``vmcs``).

Inputs per untreated cell: ``z_c`` (the SCimilarity-layout latent of the split, prior ``latent``),
``g_p`` (128-d pseudo-protein embedding) and ``q`` (PQM reliability), both from the prior
``protein`` (:mod:`scpert.priors.protein`).

Blocks, named after the paper
    - :class:`Projector` ``phi_z``, ``phi_p`` to the common D-dim space (two-layer MLPs; hidden
      width 1024 at ``paper`` matches Table 8's 1.6M for projectors + rotation: 1.58M measured);
    - :meth:`VMCS.rotation` ``R = (I - S)(I + S)^-1``, ``S = A - A^T``, ``A`` initialised to 0
      (eq. 2; R = I at initialisation); rotated features ``f_r = R phi_z(z_c)``,
      ``f_p = R phi_p(g_p)`` (eq. 3);
    - agreement ``rho_j``: dimension-wise batch Pearson of ``f_r, f_p``, EMA with momentum
      ``gamma`` = 0.1 (Table 4): in training ``rho = (1 - gamma) rho_ema + gamma rho_batch`` (the
      batch term carries gradient), which becomes the new ``rho_ema``; at inference ``rho_ema``;
      ``rho_hat = (rho + 1) / 2``;
    - sharedness ``w = sigmoid((rho_hat - tau_s) / beta)`` with learnable ``tau_s`` (0.5) and
      ``beta`` (0.1, kept positive as ``exp(log_beta)``);
    - eq. 4: ``h_s = R^T (w * (f_r + f_p) / 2)``, ``r_p = R^T ((1 - w) * f_p)``;
    - eq. 5: ``L_align = MMD^2_k(w * f_r, w * f_p)`` with the mixture-of-Gaussians kernel of
      App. A.2.2 eq. 18 (bandwidths sigma in {0.1, 0.5, 1, 2, 5}, gamma_l = 1/L), computed by the
      shared :func:`scpert.generative.losses.mmd2_unbiased` (scales sigma^2 at bandwidth 1);
    - complementary masking: per cell i and dimension j a position is masked with probability
      ``p_ij = clip(p_max q_i rho_hat_j, p_min, p_max)`` ("proportional to q_i rho_hat_j": the
      constant p_max puts q rho_hat = 1 at the top of the clip), and a fair coin picks which
      modality, so ``m_r m_p = 0`` everywhere and each modality is masked at rate p_ij / 2;
    - eq. 6: ``L_mcc = || R^T (w * mean of the visible views) - sg[R^T (w * (f_r + f_p) / 2)] ||^2``
      (summed over dimensions, averaged over cells). ``mask_fill: other`` (default) reads
      ``(f_r^m + f_p^m) / 2`` as the mean of the views left visible (a masked entry takes the
      other modality's value: cross-modal reconstruction); ``mask_fill: zero`` zeroes masked
      entries literally. The paper does not say which; ``other`` is marked a choice;
    - ``L_vmcs = L_mcc + lambda_align L_align`` (§3.2);
    - tokenisation (§3.2 "Context tokenization"): :class:`Tokenizer` maps ``h_s`` to ``K_s``
      shared tokens and ``q r_p`` to ``K_p`` protein tokens (one projection modulated per token:
      ``T_k = P_k + (W h) * (1 + G_k)``, a light choice where the paper gives none), a type
      embedding per token set, a 2-layer Transformer encoder (the condition mixer) over
      ``[T_s; T_p]``; ``c_cell`` = a linear head on the mean of the mixed tokens.

The decomposition (phi_z, phi_p, A, tau_s, beta, rho_ema) is what ``L_vmcs`` trains; the
tokenisers and the mixer get no gradient from it (they are initialised here, seeded, and trained
with the denoiser in Stage 2: :meth:`VMCS.set_trainable`; Table 8 lists the mixer as trainable).

Interface for the StateXDiff model
    ``load_vmcs(folder, device) -> VMCS`` in eval mode, gradients off; ``VMCS.tokens(z_c, g_p, q,
    drop_protein=None) -> CellTokens(shared [n, K_s, D_tok], protein [n, K_p, D_tok],
    c_cell [n, D_tok])``; attributes ``K_s, K_p, D_tok, d_z``. ``drop_protein`` (bool [n]) zeroes
    ``q r_p`` of those cells (App. A.2.2 protein dropout; the model swaps in its null tokens).
    No masking at inference.

Folder (``vmcs.json``, ``vmcs.pt``, ``history.tsv``, ``cells.tsv``): the config and dims, the
state dict, the loss history, and the obs names of the cells training saw.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from scpert.errors import InputError
from scpert.generative.losses import mmd2_unbiased

log = logging.getLogger(__name__)

VMCS_JSON, VMCS_STATE, HISTORY_TSV, CELLS_TSV = "vmcs.json", "vmcs.pt", "history.tsv", "cells.tsv"
MASK_FILLS = ("other", "zero")

#: presets; ``paper`` = StateXDiff Table 4 (every value), ``tiny`` for CPU runs
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "batch_size": 512,
        "epochs": 100,
        "D": 512,
        "K_s": 25,
        "K_p": 10,
        "mixer_layers": 2,
        "ema_momentum": 0.1,
        "tau_s": 0.5,
        "beta": 0.1,
        "mmd_bandwidths": [0.1, 0.5, 1.0, 2.0, 5.0],
        "p_min": 0.05,
        "p_max": 0.30,
        "lambda_align": 1.0,
        "betas": [0.9, 0.999],
        "lr": 1e-4,
        "weight_decay": 0.01,
        "lr_schedule": "cosine",
        "warmup_fraction": 0.05,
        "grad_clip": 1.0,
        "precision": "bf16",
        # not in Table 4 (choices): projector hidden width (Table 8's 1.6M), token width and
        # heads of the mixer (Table 8's 4.2M for the mixer), the masked-view reading of eq. 6
        "projector_hidden": 1024,
        "D_tok": 384,
        "mixer_heads": 6,
        "mask_fill": "other",
        "seed": 0,
    },
    "tiny": {
        "batch_size": 128,
        "epochs": 10,
        "D": 32,
        "K_s": 8,
        "K_p": 4,
        "mixer_layers": 2,
        "ema_momentum": 0.1,
        "tau_s": 0.5,
        "beta": 0.1,
        "mmd_bandwidths": [0.1, 0.5, 1.0, 2.0, 5.0],
        "p_min": 0.05,
        "p_max": 0.30,
        "lambda_align": 1.0,
        "betas": [0.9, 0.999],
        "lr": 1e-3,
        "weight_decay": 0.01,
        "lr_schedule": "cosine",
        "warmup_fraction": 0.05,
        "grad_clip": 1.0,
        "precision": "fp32",
        "projector_hidden": 64,
        "D_tok": 32,
        "mixer_heads": 2,
        "mask_fill": "other",
        "seed": 0,
    },
}


def resolve_params(preset: str, overrides: dict | None = None) -> dict[str, Any]:
    if preset not in PRESETS:
        raise InputError(f"config priors.vmcs.preset: unknown preset '{preset}'")
    unknown = sorted(set(overrides or {}) - set(PRESETS[preset]))
    if unknown:
        raise InputError(f"config priors.vmcs.params: unknown key(s) {unknown}")
    params = {**PRESETS[preset], **(overrides or {})}
    if params["mask_fill"] not in MASK_FILLS:
        raise InputError(f"config priors.vmcs.params.mask_fill: one of {MASK_FILLS}")
    if not 0.0 <= params["p_min"] <= params["p_max"] <= 1.0:
        raise InputError("config priors.vmcs.params: need 0 <= p_min <= p_max <= 1")
    if params["D_tok"] % params["mixer_heads"]:
        raise InputError("config priors.vmcs.params: D_tok must divide by mixer_heads")
    return params


# ------------------------------------------------------------------------------------- blocks
class Projector(nn.Module):
    """phi_z / phi_p: Linear -> GELU -> Linear into the common D-dim space."""

    def __init__(self, d_in: int, hidden: int, d_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Tokenizer(nn.Module):
    """K tokens of width D_tok from one D-dim state: ``T_k = P_k + (W h) * (1 + G_k)``."""

    def __init__(self, d_in: int, n_tokens: int, d_tok: int):
        super().__init__()
        self.proj = nn.Linear(d_in, d_tok)
        self.position = nn.Parameter(torch.randn(n_tokens, d_tok) * 0.02)
        self.gain = nn.Parameter(torch.zeros(n_tokens, d_tok))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.position + self.proj(h)[:, None, :] * (1.0 + self.gain)


def cayley(A: torch.Tensor) -> torch.Tensor:
    """Eq. 2: ``R = (I - S)(I + S)^-1`` with ``S = A - A^T`` (orthogonal for any A)."""
    with torch.autocast(A.device.type, enabled=False):  # the solve in full precision (bf16 runs)
        A = A.float() if A.dtype in (torch.float16, torch.bfloat16) else A
        S = A - A.T
        eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
        # X (I + S) = I - S  <=>  (I + S)^T X^T = (I - S)^T
        return torch.linalg.solve((eye + S).T, (eye - S).T).T


def batch_pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Dimension-wise Pearson correlation of the columns of ``a`` and ``b`` over the batch."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    return (a * b).sum(0) / ((a * a).sum(0).sqrt() * (b * b).sum(0).sqrt() + eps)


def mixture_mmd(x: torch.Tensor, y: torch.Tensor, bandwidths) -> torch.Tensor:
    """Eq. 5 / 18: MMD^2 with ``k = mean_l exp(-||a - b||^2 / (2 sigma_l^2))`` (unbiased)."""
    return mmd2_unbiased(x, y, scales=[float(s) ** 2 for s in bandwidths], bandwidth=1.0)


def complementary_masks(
    q: torch.Tensor, rho_hat: torch.Tensor, p_min: float, p_max: float, generator=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(m_r, m_p, p)``: bool masks (n, D) with ``m_r & m_p`` never true; a position is masked
    with probability ``p = clip(p_max q_i rho_hat_j, p_min, p_max)``, a fair coin picks the side."""
    p = (p_max * q[:, None] * rho_hat[None, :]).clamp(p_min, p_max)
    u = torch.rand(p.shape, generator=generator, device=p.device)
    side = torch.rand(p.shape, generator=generator, device=p.device) < 0.5
    masked = u < p
    return masked & side, masked & ~side, p


@dataclass
class CellTokens:
    shared: torch.Tensor  # (n, K_s, D_tok)
    protein: torch.Tensor  # (n, K_p, D_tok)
    c_cell: torch.Tensor  # (n, D_tok)


@dataclass
class Decomposition:
    f_r: torch.Tensor
    f_p: torch.Tensor
    rho_hat: torch.Tensor
    w: torch.Tensor
    h_s: torch.Tensor
    r_p: torch.Tensor
    R: torch.Tensor


class VMCS(nn.Module):
    def __init__(self, d_z: int, params: dict, d_g: int = 128):
        super().__init__()
        p = params
        self.params = dict(p)
        self.d_z, self.d_g, self.D = int(d_z), int(d_g), int(p["D"])
        self.K_s, self.K_p, self.D_tok = int(p["K_s"]), int(p["K_p"]), int(p["D_tok"])
        self.phi_z = Projector(self.d_z, p["projector_hidden"], self.D)
        self.phi_p = Projector(self.d_g, p["projector_hidden"], self.D)
        self.A = nn.Parameter(torch.zeros(self.D, self.D))
        self.tau_s = nn.Parameter(torch.tensor(float(p["tau_s"])))
        self.log_beta = nn.Parameter(torch.tensor(math.log(float(p["beta"]))))
        self.register_buffer("rho_ema", torch.zeros(self.D))
        self.register_buffer("rho_seen", torch.tensor(False))
        self.shared_tokenizer = Tokenizer(self.D, self.K_s, self.D_tok)
        self.protein_tokenizer = Tokenizer(self.D, self.K_p, self.D_tok)
        self.token_type = nn.Parameter(torch.randn(2, self.D_tok) * 0.02)
        layer = nn.TransformerEncoderLayer(
            self.D_tok,
            p["mixer_heads"],
            4 * self.D_tok,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.mixer = nn.TransformerEncoder(layer, p["mixer_layers"], enable_nested_tensor=False)
        self.cell_head = nn.Sequential(nn.LayerNorm(self.D_tok), nn.Linear(self.D_tok, self.D_tok))

    # -- eqs. 2-4
    def rotation(self) -> torch.Tensor:
        return cayley(self.A)

    @property
    def beta(self) -> torch.Tensor:
        return self.log_beta.exp()

    def agreement(self, f_r: torch.Tensor, f_p: torch.Tensor, batch: bool) -> torch.Tensor:
        """rho (D,): with ``batch`` the EMA of the batch Pearson (updates ``rho_ema``), else
        ``rho_ema``."""
        if not batch:
            return self.rho_ema
        rho_batch = batch_pearson(f_r, f_p)
        gamma = float(self.params["ema_momentum"])
        if bool(self.rho_seen):
            rho = (1.0 - gamma) * self.rho_ema.clone() + gamma * rho_batch
        else:
            rho = rho_batch
        with torch.no_grad():
            self.rho_ema.copy_(rho.detach())
            self.rho_seen.fill_(True)
        return rho

    def decompose(
        self, z_c: torch.Tensor, g_p: torch.Tensor, batch_stats: bool | None = None
    ) -> Decomposition:
        """Eqs. 2-4; ``batch_stats`` (default: training mode) uses and updates the batch rho."""
        R = self.rotation()
        f_r = self.phi_z(z_c) @ R.T  # R phi_z(z_c), rows
        f_p = self.phi_p(g_p) @ R.T
        batch = self.training if batch_stats is None else batch_stats
        rho_hat = (self.agreement(f_r, f_p, batch) + 1.0) / 2.0
        w = torch.sigmoid((rho_hat - self.tau_s) / self.beta)
        h_s = (w * 0.5 * (f_r + f_p)) @ R  # R^T v, rows
        r_p = ((1.0 - w) * f_p) @ R
        return Decomposition(f_r, f_p, rho_hat, w, h_s, r_p, R)

    # -- eqs. 5-6
    def losses(
        self, z_c: torch.Tensor, g_p: torch.Tensor, q: torch.Tensor, generator=None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """``(L_vmcs, {"mcc", "align"}, (m_r, m_p))`` of one batch (training mode)."""
        p = self.params
        d = self.decompose(z_c, g_p, batch_stats=True)
        align = mixture_mmd(d.w * d.f_r, d.w * d.f_p, p["mmd_bandwidths"])
        m_r, m_p, _ = complementary_masks(q, d.rho_hat.detach(), p["p_min"], p["p_max"], generator)
        full = 0.5 * (d.f_r + d.f_p)
        if p["mask_fill"] == "other":
            view = torch.where(m_r, d.f_p, torch.where(m_p, d.f_r, full))
        else:
            view = 0.5 * (d.f_r * ~m_r + d.f_p * ~m_p)
        pred = (d.w * view) @ d.R
        target = ((d.w * full) @ d.R).detach()
        mcc = ((pred - target) ** 2).sum(-1).mean()
        loss = mcc + float(p["lambda_align"]) * align
        return loss, {"mcc": mcc.detach(), "align": align.detach()}, (m_r, m_p)

    # -- tokenisation
    def tokens(
        self,
        z_c: torch.Tensor,
        g_p: torch.Tensor,
        q: torch.Tensor,
        drop_protein: torch.Tensor | None = None,
    ) -> CellTokens:
        """The cell condition tokens (module docstring "Interface"); the agreement is always
        ``rho_ema`` (frozen after ``train_vmcs``, also when the model is in training mode)."""
        d = self.decompose(z_c, g_p, batch_stats=False)
        residual = q.to(d.r_p)[:, None] * d.r_p
        if drop_protein is not None:
            residual = residual * (~drop_protein.bool()).to(residual)[:, None]
        shared = self.shared_tokenizer(d.h_s) + self.token_type[0]
        protein = self.protein_tokenizer(residual) + self.token_type[1]
        mixed = self.mixer(torch.cat([shared, protein], dim=1))
        return CellTokens(
            mixed[:, : self.K_s], mixed[:, self.K_s :], self.cell_head(mixed.mean(dim=1))
        )

    # -- parameters
    def decomposition_parameters(self) -> list[nn.Parameter]:
        return [
            *self.phi_z.parameters(),
            *self.phi_p.parameters(),
            self.A,
            self.tau_s,
            self.log_beta,
        ]

    def condition_parameters(self) -> list[nn.Parameter]:
        """Tokenisers, token types, mixer and c_cell head (trained with the denoiser)."""
        ids = {id(p) for p in self.decomposition_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    def set_trainable(self, decomposition: bool = False, condition: bool = False) -> VMCS:
        for p in self.decomposition_parameters():
            p.requires_grad_(decomposition)
        for p in self.condition_parameters():
            p.requires_grad_(condition)
        return self

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per module of Table 8 (projectors + rotation; condition mixer with its
        tokenisers and head)."""
        return {
            "projectors_rotation": sum(p.numel() for p in self.decomposition_parameters()),
            "condition_mixer": sum(p.numel() for p in self.condition_parameters()),
        }


# ----------------------------------------------------------------------------------- training
def train_vmcs(
    z_c: np.ndarray, g_p: np.ndarray, q: np.ndarray, params: dict, device: str
) -> tuple[VMCS, pd.DataFrame]:
    """Fit the decomposition on untreated cells (``L_vmcs``) with the shared trainer."""
    from scpert.generative.trainer import Batch, TrainConfig, Trainer

    n = len(z_c)
    if n < 2:
        raise InputError(f"train_vmcs: {n} untreated cell(s); the MMD needs at least 2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params["seed"])
        model = VMCS(z_c.shape[1], params, g_p.shape[1]).to(device)
    model.set_trainable(decomposition=True, condition=False)
    tensors = {
        "z_c": torch.as_tensor(z_c, dtype=torch.float32),
        "g_p": torch.as_tensor(g_p, dtype=torch.float32),
        "q": torch.as_tensor(q, dtype=torch.float32),
    }
    size = max(2, min(int(params["batch_size"]), n))
    per_epoch = math.ceil(n / size)
    steps = per_epoch * int(params["epochs"])
    order: dict[str, torch.Tensor] = {}

    def batches(step, generator):
        epoch, k = divmod(step, per_epoch)
        if order.get("epoch") is None or int(order["epoch"]) != epoch:
            order["perm"] = torch.randperm(n, generator=generator)
            order["epoch"] = torch.tensor(epoch)
        idx = order["perm"][k * size : (k + 1) * size]
        if len(idx) < 2:
            idx = order["perm"][:size]
        return Batch({key: t[idx] for key, t in tensors.items()})

    mask_generator = torch.Generator().manual_seed(int(params["seed"]) + 1)

    def loss_fn(m, batch, step):
        loss, metrics, _ = m.losses(
            batch.rows["z_c"], batch.rows["g_p"], batch.rows["q"], mask_generator
        )
        return loss, metrics

    config = TrainConfig(
        steps=steps,
        lr=params["lr"],
        betas=tuple(params["betas"]),
        weight_decay=params["weight_decay"],
        lr_schedule=params["lr_schedule"],
        warmup_steps=max(1, round(params["warmup_fraction"] * steps)),
        grad_clip=params["grad_clip"],
        precision=params["precision"],
        seed=params["seed"],
    )
    result = Trainer(model, config, device=device, name="train_vmcs").fit(batches, loss_fn)
    model.set_trainable(False, False).eval()
    length = len(result.history["loss"])
    history = pd.DataFrame(
        {
            "step": np.minimum(np.arange(1, length + 1) * result.every, steps),
            **{k: v for k, v in result.history.items() if len(v) == length},
        }
    )
    return model, history


def save_vmcs(model: VMCS, folder, meta: dict) -> None:
    folder = Path(folder)
    torch.save(model.state_dict(), folder / VMCS_STATE)
    info = {
        "params": model.params,
        "d_z": model.d_z,
        "d_g": model.d_g,
        "K_s": model.K_s,
        "K_p": model.K_p,
        "D_tok": model.D_tok,
        "parameter_counts": model.parameter_counts(),
        **meta,
    }
    (folder / VMCS_JSON).write_text(json.dumps(info, indent=1) + "\n")


def load_vmcs(folder, device="cpu") -> VMCS:
    """The split's VMCS (prior ``vmcs``): eval mode, gradients off (module docstring)."""
    folder = Path(folder)
    path = folder / VMCS_JSON
    if not path.is_file():
        raise InputError(f"{path}: missing (rule train_vmcs writes it)")
    info = json.loads(path.read_text())
    model = VMCS(info["d_z"], info["params"], info["d_g"])
    try:
        model.load_state_dict(torch.load(folder / VMCS_STATE, map_location="cpu"))
    except (RuntimeError, FileNotFoundError) as err:
        raise InputError(f"{folder / VMCS_STATE}: does not match {VMCS_JSON}: {err}") from None
    return model.to(device).set_trainable(False, False).eval()
