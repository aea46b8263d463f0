"""scPPDM networks (scppdm.txt §3.1-3.2, App. D, G), blocks named after the paper's equations.

Conditions (§3.2)
    :class:`DrugEncoder`: Morgan fingerprint (1024 bits, radius 2) -> DrugMapper MLP
    1024-512-256-128 (ReLU, dropout 0.15 between layers) = ``z_drug`` (eq. 5); dose through FiLM
    with hidden 128 on ``e_dose = log(1 + dose)``, combined residually (App. D): ``z~_drug =
    z_drug + gamma(d) z_drug + beta(d)`` (eq. 6). A combination ``A+B`` at ``dA+dB`` sums its
    components' dose-fused vectors (order-free; a single drug is the one-component case).
    Ablation (C) Drug-ID: a learned embedding per training drug; every drug unseen in training
    maps to one shared "unknown" row (zero, so only the dose FiLM's shift remains).
    :class:`ConditionFusion`: ``c = F(z_pre, z~_drug)`` (eq. 7, the paper leaves F open: an MLP on
    the concatenation); a dropped channel (four-state training, eq. 8) is replaced by a learned
    null vector.
Denoiser (§3.1, App. G)
    :class:`GDAttnDenoiser`: ``z_t`` -> ``M`` tokens of width ``d = D_z / M`` (:class:`Tokenizer`,
    eqs. 26-27) + learned positions + the sinusoidal time embedding ``gamma(t)`` (through an MLP,
    added to every token) -> ``depth`` GD-Attn blocks (:class:`scpert.nn.GDAttnBlock`, eqs.
    30-32) conditioned on ``c`` -> flatten -> :class:`Detokenizer` (eq. 28), plus a linear skip
    from ``z_t`` (this project's addition: each block ends in a LayerNorm (eq. 32) that discards
    every token's scale, so without the skip the network cannot pass ``z_t`` through at high
    noise, where ``eps ~ z_t``; sampling then diverged) -> predicted noise (eq. 13).
    Ablations: (B) :class:`ConcatMLPDenoiser`, an MLP on ``[z_t; c; gamma(t)]`` (App. F.2);
    (F) :class:`ConcatAttnDenoiser`, the fused condition projected to ``cond_tokens`` tokens and
    concatenated with the latent tokens before post-LN self-attention blocks (attention + FFN),
    whose latent-token outputs are detokenised (§4.3 "Concat+Attn").
Alignment head
    ``W`` of eqs. 10-11: ``q = W z~_drug / ||W z~_drug||`` in gene space (:class:`ScppdmNet`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from scpert.data import schema
from scpert.data.schema import SchemaError
from scpert.nn import GDAttnBlock, TimestepEmbedder
from scpert.nn.film import FiLM
from scpert.perturbations import DrugTable


def dose_to_strength(dose, s0: float, alpha: float, gamma: float):
    """``s_d(dose) = s0 * sigmoid(alpha * log(1 + dose) + gamma)`` (scppdm.txt eq. 16)."""
    return s0 / (1.0 + np.exp(-(alpha * np.log1p(dose) + gamma)))


# ------------------------------------------------------------------------------ conditions
@dataclass
class ConditionBatch:
    """Padded drug components of B conditions (``index`` -1 where a slot is empty)."""

    index: torch.Tensor  # (B, C) long: rows of DrugTable (feature lookup)
    drug_id: torch.Tensor  # (B, C) long: drug_id vocabulary (0 = unknown)
    log_dose: torch.Tensor  # (B, C) float: log(1 + dose)

    @classmethod
    def encode(cls, drugs: Sequence[str], doses: Sequence[str], table: DrugTable) -> ConditionBatch:
        parts = []
        for drug, dose in zip(drugs, doses):
            names, amounts = schema.components(str(drug)), schema.component_doses(dose)
            if len(names) != len(amounts):
                raise SchemaError(
                    f"drug '{drug}' has {len(names)} components but dose '{dose}' "
                    f"has {len(amounts)}"
                )
            parts.append(list(zip(names, amounts)))
        width = max((len(p) for p in parts), default=1)
        index = np.full((len(parts), width), -1, dtype=np.int64)
        drug_id = np.zeros((len(parts), width), dtype=np.int64)
        log_dose = np.zeros((len(parts), width), dtype=np.float32)
        for i, comps in enumerate(parts):
            for j, (name, amount) in enumerate(comps):
                index[i, j] = table.row(name)
                drug_id[i, j] = table.train_id(name)
                log_dose[i, j] = np.log1p(amount)
        return cls(torch.from_numpy(index), torch.from_numpy(drug_id), torch.from_numpy(log_dose))

    def __len__(self) -> int:
        return len(self.index)

    def to(self, device) -> ConditionBatch:
        return ConditionBatch(
            self.index.to(device), self.drug_id.to(device), self.log_dose.to(device)
        )

    def __getitem__(self, rows) -> ConditionBatch:
        return ConditionBatch(self.index[rows], self.drug_id[rows], self.log_dose[rows])


def strengths(conditions: ConditionBatch, params: dict) -> torch.Tensor:
    """Per-condition drug-guidance strength ``s_d``: mean of the components' ``s_d(dose)``
    (eq. 16), or ``s0`` for ablation (E)."""
    if params["dose_to_strength"] == "constant":
        return torch.full((len(conditions.index),), float(params["s0"]))
    doses = torch.expm1(conditions.log_dose.cpu()).double().numpy()
    s = dose_to_strength(doses, params["s0"], params["alpha"], params["gamma"])
    valid = conditions.index.cpu().numpy() >= 0
    return torch.from_numpy((s * valid).sum(axis=1) / valid.sum(axis=1)).float()


# -------------------------------------------------------------------------------- networks
class DrugEncoder(nn.Module):
    """``z~_drug`` = sum over components of the dose-FiLMed drug vector (eqs. 5-6)."""

    def __init__(self, params: dict, fingerprints: torch.Tensor, n_train_drugs: int):
        super().__init__()
        sizes = [int(s) for s in params["drug_mapper"]]
        self.width = sizes[-1]
        self.kind = params["drug_encoder"]
        self.register_buffer("fingerprints", fingerprints.float(), persistent=False)
        if self.kind == "morgan":
            if fingerprints.shape[1] != sizes[0]:
                raise ValueError(
                    f"drug_mapper input {sizes[0]} != fingerprint bits {fingerprints.shape[1]}"
                )
            layers: list[nn.Module] = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                if i:
                    layers += [nn.ReLU(), nn.Dropout(params["drug_dropout"])]
                layers.append(nn.Linear(a, b))
            self.mapper = nn.Sequential(*layers)
        else:
            # row 0 (drugs not seen in training) stays zero: no identity, only the dose FiLM
            self.mapper = nn.Embedding(n_train_drugs + 1, self.width, padding_idx=0)
        self.dose_film = FiLM(1, self.width, hidden=int(params["dose_film_hidden"]))

    def forward(self, cond: ConditionBatch) -> torch.Tensor:
        """(B, width): the sum over a condition's components of ``z + FiLM(z, log(1 + dose))``."""
        # map each distinct drug once (a batch holds many conditions of few drugs)
        if self.kind == "morgan":
            rows, inverse = cond.index.clamp(min=0).unique(return_inverse=True)
            z = self.mapper(self.fingerprints[rows])[inverse]
        else:
            ids, inverse = cond.drug_id.unique(return_inverse=True)
            z = self.mapper(ids)[inverse]
        B, C, W = z.shape
        film = self.dose_film(z.reshape(B * C, W), cond.log_dose.reshape(B * C, 1))
        z = z + film.reshape(B, C, W)
        return (z * (cond.index >= 0)[..., None]).sum(dim=1)


class ConditionFusion(nn.Module):
    """``c = F(z_pre or null, z~_drug or null)`` (eqs. 7-8)."""

    def __init__(self, latent_dim: int, drug_dim: int, cond_dim: int):
        super().__init__()
        self.null_pre = nn.Parameter(torch.zeros(latent_dim))
        self.null_drug = nn.Parameter(torch.zeros(drug_dim))
        self.mlp = nn.Sequential(
            nn.Linear(latent_dim + drug_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim)
        )

    def forward(self, z_pre, drug, keep_pre, keep_drug) -> torch.Tensor:
        """keep_*: (B,) bool; False replaces the channel with its null vector."""
        pre = torch.where(keep_pre[:, None], z_pre, self.null_pre.to(z_pre.dtype).expand_as(z_pre))
        drg = torch.where(keep_drug[:, None], drug, self.null_drug.to(drug.dtype).expand_as(drug))
        return self.mlp(torch.cat([pre, drg], dim=-1))


class Tokenizer(nn.Module):
    """``H = reshape(W_tok z + b_tok)`` into M tokens of width d (eqs. 26-27)."""

    def __init__(self, latent_dim: int, tokens: int):
        super().__init__()
        if latent_dim % tokens:
            raise ValueError(f"scppdm: latent dim {latent_dim} is not divisible by tokens {tokens}")
        self.tokens, self.width = tokens, latent_dim // tokens
        self.proj = nn.Linear(latent_dim, latent_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(z).reshape(len(z), self.tokens, self.width)


class Detokenizer(nn.Module):
    """``z~ = W_det vec(H_out) + b_det`` (eq. 28)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.proj = nn.Linear(latent_dim, latent_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h.reshape(len(h), -1))


class GDAttnDenoiser(nn.Module):
    """The scPPDM backbone: tokens + time -> GD-Attn blocks on ``c`` -> detokenise + skip."""

    def __init__(self, p: dict, latent_dim: int):
        super().__init__()
        self.tokenizer = Tokenizer(latent_dim, int(p["tokens"]))
        width = self.tokenizer.width
        self.positions = nn.Parameter(torch.zeros(self.tokenizer.tokens, width))
        self.time_embedding = TimestepEmbedder(int(p["time_dim"]), frequency_dim=int(p["time_dim"]))
        self.time_to_tokens = nn.Linear(int(p["time_dim"]), width)
        self.blocks = nn.ModuleList(
            GDAttnBlock(
                width,
                int(p["heads"]),
                int(p["cond_dim"]),
                self.tokenizer.tokens,
                int(p["cond_tokens"]),
                float(p["dropout"]),
            )
            for _ in range(int(p["depth"]))
        )
        self.detokenizer = Detokenizer(latent_dim)
        self.skip = nn.Linear(latent_dim, latent_dim, bias=False)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.tokenizer(z_t) + self.positions
        h = h + self.time_to_tokens(self.time_embedding(t))[:, None]
        for block in self.blocks:
            h = block(h, c)
        return self.detokenizer(h) + self.skip(z_t)

    def parts(self) -> dict[str, list]:
        return {
            "denoiser.time_embedding": [self.time_embedding, self.time_to_tokens],
            "denoiser.tokenizer": [self.tokenizer, self.positions, self.detokenizer, self.skip],
            "denoiser.gd_attn_blocks": [self.blocks],
        }


class ConcatAttnDenoiser(nn.Module):
    """Ablation (F) Concat+Attn: condition tokens concatenated with the latent tokens before
    self-attention blocks (post-LN attention + FFN); the latent tokens are detokenised."""

    def __init__(self, p: dict, latent_dim: int):
        super().__init__()
        self.tokenizer = Tokenizer(latent_dim, int(p["tokens"]))
        width = self.tokenizer.width
        self.cond_tokens = int(p["cond_tokens"])
        self.positions = nn.Parameter(torch.zeros(self.tokenizer.tokens + self.cond_tokens, width))
        self.cond_to_tokens = nn.Linear(int(p["cond_dim"]), self.cond_tokens * width)
        self.time_embedding = TimestepEmbedder(int(p["time_dim"]), frequency_dim=int(p["time_dim"]))
        self.time_to_tokens = nn.Linear(int(p["time_dim"]), width)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width,
                int(p["heads"]),
                dim_feedforward=4 * width,
                dropout=float(p["dropout"]),
                batch_first=True,
            )
            for _ in range(int(p["depth"]))
        )
        self.detokenizer = Detokenizer(latent_dim)
        self.skip = nn.Linear(latent_dim, latent_dim, bias=False)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        latent = self.tokenizer(z_t)
        cond = self.cond_to_tokens(c).reshape(len(c), self.cond_tokens, latent.shape[-1])
        h = torch.cat([cond, latent], dim=1) + self.positions
        h = h + self.time_to_tokens(self.time_embedding(t))[:, None]
        for block in self.blocks:
            h = block(h)
        return self.detokenizer(h[:, self.cond_tokens :]) + self.skip(z_t)

    def parts(self) -> dict[str, list]:
        return {
            "denoiser.time_embedding": [self.time_embedding, self.time_to_tokens],
            "denoiser.tokenizer": [self.tokenizer, self.positions, self.detokenizer, self.skip],
            "denoiser.condition_tokens": [self.cond_to_tokens],
            "denoiser.attention_blocks": [self.blocks],
        }


class ConcatMLPDenoiser(nn.Module):
    """Ablation (B) Concat+MLP: an MLP on ``[z_t; c; gamma(t)]``."""

    def __init__(self, p: dict, latent_dim: int):
        super().__init__()
        d_t, hidden = int(p["time_dim"]), int(p["mlp_hidden"])
        self.time_embedding = TimestepEmbedder(d_t, frequency_dim=d_t)
        layers: list[nn.Module] = [nn.Linear(latent_dim + int(p["cond_dim"]) + d_t, hidden)]
        layers.append(nn.SiLU())
        for _ in range(int(p["depth"]) - 1):
            layers += [nn.Dropout(float(p["dropout"])), nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, latent_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([z_t, c, self.time_embedding(t)], dim=-1))

    def parts(self) -> dict[str, list]:
        return {"denoiser.time_embedding": [self.time_embedding], "denoiser.concat_mlp": [self.mlp]}


DENOISERS = {
    "gd_attn": GDAttnDenoiser,
    "concat_mlp": ConcatMLPDenoiser,
    "concat_attn": ConcatAttnDenoiser,
}


class ScppdmNet(nn.Module):
    """Condition encoders + denoiser + the L_align projection ``W``."""

    def __init__(
        self,
        params: dict,
        latent_dim: int,
        n_genes: int,
        fingerprints: torch.Tensor,
        n_train_drugs: int,
    ):
        super().__init__()
        self.drug_encoder = DrugEncoder(params, fingerprints, n_train_drugs)
        width = self.drug_encoder.width
        self.fusion = ConditionFusion(latent_dim, width, int(params["cond_dim"]))
        self.denoiser = DENOISERS[params["injection"]](params, latent_dim)
        self.align_projection = nn.Linear(width, n_genes, bias=False)  # W of eqs. 10-11

    def forward(self, z_t, t, z_pre, cond: ConditionBatch, keep_pre, keep_drug):
        """Predicted noise and the unnormalised alignment projection ``W z~_drug`` of a training
        batch (one forward, so that data-parallel training sees every parameter)."""
        drug = self.drug_encoder(cond)
        c = self.fusion(z_pre, drug, keep_pre, keep_drug)
        return self.denoiser(z_t, t, c), self.align_projection(drug)

    def module_groups(self) -> dict[str, list[nn.Module | nn.Parameter]]:
        """Named parts for :meth:`ScPPDM.parameter_counts`."""
        return {
            "drug_encoder.mapper": [self.drug_encoder.mapper],
            "drug_encoder.dose_film": [self.drug_encoder.dose_film],
            "condition_fusion": [self.fusion],
            **self.denoiser.parts(),
            "align_projection": [self.align_projection],
        }
