"""scPPDM: latent diffusion, dual-channel conditioning, dose-controlled factorised guidance
(scppdm.txt §3, App. D, E, G).

Data (§4.1.1, App. E)
    Training pairs are plate-matched pseudobulks: for every key (cell line, drug, dose, plate) of
    the training cells, ``x_post`` = mean log-normalised expression of its cells and ``x_pre`` =
    mean of the control cells of the same cell line on the same plate (the line's controls on all
    plates when that plate has none). Both are embedded by the frozen SCimilarity-layout encoder
    (prior ``latent``, rule ``finetune_latent``): ``z0 = E(x_post)``, ``z_pre = E(x_pre)`` (eval
    mode, the deterministic "posterior mean" of eq. 4).
Diffused variable (``target``)
    ``residual`` (default): the diffusion runs on ``z0 - z_pre``, conditioned on ``z_pre``, and
    ``z^_0 = z_pre + sample``; ``post`` (§3.1 literally): on ``z0`` itself. Both describe the same
    ``p(z0 | z_pre, d)``; the residual form is the paper's own vector-field view (App. A.1, eq. 17:
    ``x_post = x_pre + g(x_pre, d) + noise``) and spares the small denoiser from copying the state
    through the condition path (drug_ood top-100 PCC-delta on the default world 0.43 vs 0.34 with
    ``post``). The diffused variable and ``z_pre`` are standardised per dimension with their
    training statistics (the latent scaling of Rombach et al. 2022: L2-normalised 128-d codes
    spread ~0.09 per dimension, drug effects far less, against unit noise).
Conditions (§3.2)
    Drug: Morgan fingerprint (1024 bits, radius 2) -> DrugMapper MLP 1024-512-256-128 (ReLU,
    dropout 0.15 between layers) = ``z_drug``; dose via FiLM with hidden 128 on ``log(1 + dose)``,
    combined residually: ``z~_drug = z_drug + gamma(d) * z_drug + beta(d)`` (App. D). A
    combination ``A+B`` at ``dA+dB`` sums its components' dose-fused vectors (order-free; a single
    drug is the one-component case). Fusion ``c = F(z_pre, z~_drug)`` is an MLP on the
    concatenation (eq. 7; the paper leaves F open). A dropped channel is replaced by a learned null
    vector.
Denoiser (§3.1, App. G)
    ``z_t`` -> ``M`` tokens of width ``d`` (``M d = D_z``, eq. 26-27) + learned positions + the
    sinusoidal time embedding (through an MLP, added to every token) -> ``depth`` GD-Attn blocks
    (:class:`scpert.nn.GDAttnBlock`) conditioned on ``c`` -> flatten -> linear de-tokeniser (eq. 28)
    plus a linear skip from ``z_t`` -> predicted noise. The skip is this project's addition: each
    block ends in a LayerNorm (eq. 32), which discards every token's scale, and without it the
    network could not even pass ``z_t`` through at high noise (where ``eps ~ z_t``); sampling then
    diverged. VP-linear schedule (DDPM betas 1e-4..0.02, T = 1000), eps-prediction.
Training (§3.3.1, App. D)
    Four-state dropout: ``z_pre`` and ``z~_drug`` are dropped independently with p = 0.1 each.
    ``L = L_denoise + lambda_align L_align + lambda_info L_info`` with both lambdas ramped linearly
    from 0 over the first 20 % of steps. ``v^ = (x_post - x_pre) / ||.||`` in gene space (eq. 9),
    ``q = W z~_drug / ||.||``; ``L_align = ||v^ - q||^2`` (eq. 10); ``L_info`` = InfoNCE (eq. 11,
    tau 0.1) of ``q`` against its own ``v^`` and ``n_negatives`` directions drawn from a FIFO
    memory bank of past batches' ``v^``; the positive is in the denominator and the inner product
    is between unit vectors (the same normalised projection as eq. 10). AdamW, linear warm-up then
    linear decay to zero, gradient clipping 1.0, fp16 autocast on CUDA, EMA weights for sampling.
Sampling (§3.3.2, Fig. 2)
    DDIM (eta 0) with factorised guidance ``eps = (1 + s_p + s_d) eps(both) - s_p eps(no-pre) -
    s_d eps(no-drug)``, ``s_d(dose) = s0 sigmoid(alpha log(1 + dose) + gamma)`` per condition
    (a combination uses the mean of its components' ``s_d``); the three modes run as one batched
    forward pass per step. The predicted standardised sample is clipped to +-5 (``clip_x0``) at
    every step: with VP-linear's final ``abar`` of 4e-5, small eps errors at the first steps are
    amplified ~160-fold in ``x0`` and otherwise propagate (drug_ood top-100 PCC-delta 0.43 with
    the clip, 0.31 without).
Cells (this project's choice; the paper evaluates pseudobulks)
    One DDIM sample per (test condition, plate with controls of its line), started from its own
    plate's control pseudobulk ``z_pre``; its decoded effect is ``delta = D(z^_0) - D(z_pre)``
    (the decoder's reconstruction of the control pseudobulk is subtracted, so the autoencoder's
    reconstruction bias cancels). ``n_cells`` control cells of the line are drawn as in the
    baselines (generator seeded by ``(seed, crc32(condition))``) and each gets the delta of its
    own plate, clipped at 0: the predicted pseudobulk is the plate-matched control mean plus the
    predicted effect, and the spread is the observed control spread. ``z^_0`` is re-projected onto
    the unit sphere (the encoder's range) before decoding.
Ablations (App. F; set in ``params``)
    ``conditioning: none`` (No-Cond: both channels always null, no guidance), ``injection:
    concat_mlp`` (an MLP on ``[z_t; c; time]``), ``drug_encoder: drug_id`` (a learned embedding per
    training drug; unseen drugs share an "unknown" row), ``guidance: single`` (one-knob CFG
    ``(1 + s_d) eps(both) - s_d eps(none)``, keeping the dose mapping), ``dose_to_strength:
    constant`` (``s_d = s0``).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from scpert.chem.featurize import SMILES_FIELD, morgan_fingerprints
from scpert.data import schema
from scpert.data.schema import CELL_LINE, CONDITION, DOSE, DRUG, PLATE, SchemaError
from scpert.generative import (
    EMA,
    DDIMSampler,
    Guidance,
    cfg,
    conditional,
    dual_knob,
    make_schedule,
)
from scpert.latent import LatentModel, load_model, save_model
from scpert.methods.base import Method, PerturbData
from scpert.methods.registry import register
from scpert.nn import GDAttnBlock, TimestepEmbedder
from scpert.nn.film import FiLM

log = logging.getLogger(__name__)

PRE, DRUG_CHANNEL = "pre", "drug"
SAMPLER = "ddim"
STATE_FILE = "scppdm.pt"
LATENT_DIR = "latent"


def dose_to_strength(dose, s0: float, alpha: float, gamma: float):
    """``s_d(dose) = s0 * sigmoid(alpha * log(1 + dose) + gamma)`` (scppdm.txt eq. 16)."""
    return s0 / (1.0 + np.exp(-(alpha * np.log1p(dose) + gamma)))


# ------------------------------------------------------------------------------ pseudobulks
def _dense(X) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _group_means(X, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Row means of X per group code (float64), without densifying a sparse X."""
    n = X.shape[0]
    indicator = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_groups, n))
    sizes = np.bincount(codes, minlength=n_groups)[:, None]
    return _dense(indicator @ X).astype(np.float64) / sizes


@dataclass
class ControlPseudobulks:
    """Mean control expression per (cell_line, plate): ``keys`` table and (n, G) ``means``."""

    keys: pd.DataFrame
    means: np.ndarray

    @classmethod
    def of(cls, X, obs: pd.DataFrame) -> ControlPseudobulks:
        keys = obs[[CELL_LINE, PLATE]].astype(str).reset_index(drop=True)
        codes = keys.groupby([CELL_LINE, PLATE], sort=True).ngroup().to_numpy()
        table = keys.drop_duplicates().sort_values([CELL_LINE, PLATE]).reset_index(drop=True)
        return cls(table, _group_means(X, codes, len(table)))

    def __post_init__(self):
        self._row = {key: i for i, key in enumerate(zip(self.keys[CELL_LINE], self.keys[PLATE]))}
        self._line: dict[str, list[int]] = {}
        for i, line in enumerate(self.keys[CELL_LINE]):
            self._line.setdefault(line, []).append(i)

    def row(self, line: str, plate: str) -> int | None:
        return self._row.get((line, plate))

    def rows_of_line(self, line: str, needed_by: str) -> list[int]:
        if line not in self._line:
            raise SchemaError(
                f"{needed_by}: no control cells of cell line '{line}' "
                f"(obs['{CELL_LINE}'] of the controls)"
            )
        return self._line[line]


@dataclass
class PseudobulkPairs:
    """Plate-matched training pairs: ``keys`` (cell_line, drug, dose, plate), ``post`` and ``pre``
    mean log-normalised expression (n, G)."""

    keys: pd.DataFrame
    post: np.ndarray
    pre: np.ndarray


def pseudobulk_pairs(adata: ad.AnnData, control: str) -> PseudobulkPairs:
    """Pairs keyed by (cell line, drug, dose, plate) with same-line same-plate control means."""
    obs = adata.obs
    for key in (CELL_LINE, DRUG, DOSE, PLATE):
        if key not in obs.columns:
            raise SchemaError(f"training data: obs['{key}'] is missing")
    is_control = (obs[DRUG].astype(str) == control).to_numpy()
    if not is_control.any():
        raise SchemaError(f"training data: obs['{DRUG}'] has no control cells labelled '{control}'")
    controls = ControlPseudobulks.of(adata.X[is_control], obs[is_control])
    perturbed = np.flatnonzero(~is_control)
    if perturbed.size == 0:
        raise SchemaError("training data: no perturbed cells (every cell is a control)")
    keys = pd.DataFrame(
        {
            CELL_LINE: obs[CELL_LINE].astype(str).to_numpy()[perturbed],
            DRUG: obs[DRUG].astype(str).to_numpy()[perturbed],
            DOSE: [schema.format_dose(str(d)) for d in obs[DOSE].astype(str).to_numpy()[perturbed]],
            PLATE: obs[PLATE].astype(str).to_numpy()[perturbed],
        }
    )
    cols = [CELL_LINE, DRUG, DOSE, PLATE]
    codes = keys.groupby(cols, sort=True).ngroup().to_numpy()
    table = keys.drop_duplicates().sort_values(cols).reset_index(drop=True)
    post = _group_means(adata.X[perturbed], codes, len(table))
    pre = np.empty_like(post)
    unmatched = 0
    for i, (line, plate, drug) in enumerate(zip(table[CELL_LINE], table[PLATE], table[DRUG])):
        row = controls.row(line, plate)
        if row is None:
            unmatched += 1
            pre[i] = controls.means[controls.rows_of_line(line, f"training data ({drug})")].mean(0)
        else:
            pre[i] = controls.means[row]
    if unmatched:
        log.info(
            "%d of %d pairs have no same-plate controls; used the line's controls",
            unmatched,
            len(table),
        )
    return PseudobulkPairs(table, post, pre)


@dataclass
class Standardizer:
    """Per-dimension ``(x - mean) / std`` (std floored at 1e-6) and its inverse."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        return cls(x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6))

    def __call__(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x - self.mean) / self.std).astype(np.float32))

    def invert(self, x: np.ndarray) -> np.ndarray:
        return x * self.std + self.mean

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean, self.std


# ------------------------------------------------------------------------------- conditions
@dataclass
class DrugTable:
    """Every drug the model can be asked about: fingerprints, and the training drugs' ids."""

    names: list[str]
    fingerprints: np.ndarray  # (n_drugs, bits) uint8
    train_drugs: list[str]  # drug_id vocabulary: id i + 1; 0 = not seen in training

    def __post_init__(self):
        self._row = {n: i for i, n in enumerate(self.names)}
        self._id = {n: i + 1 for i, n in enumerate(self.train_drugs)}

    def row(self, name: str) -> int:
        if name not in self._row:
            raise SchemaError(f"drug table: no '{SMILES_FIELD}' for drug '{name}' (field 'drug')")
        return self._row[name]

    def train_id(self, name: str) -> int:
        return self._id.get(name, 0)


@dataclass
class ConditionBatch:
    """Padded drug components of B conditions (``index`` -1 where a slot is empty)."""

    index: torch.Tensor  # (B, C) long: rows of DrugTable (fingerprint / id lookup)
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

    def to(self, device) -> ConditionBatch:
        return ConditionBatch(
            self.index.to(device), self.drug_id.to(device), self.log_dose.to(device)
        )

    def __getitem__(self, rows) -> ConditionBatch:
        return ConditionBatch(self.index[rows], self.drug_id[rows], self.log_dose[rows])


def strengths(conditions: ConditionBatch, params: dict) -> torch.Tensor:
    """Per-condition drug-guidance strength ``s_d``: mean of the components' ``s_d(dose)``."""
    if params["dose_to_strength"] == "constant":
        return torch.full((len(conditions.index),), float(params["s0"]))
    doses = torch.expm1(conditions.log_dose).double().numpy()
    s = dose_to_strength(doses, params["s0"], params["alpha"], params["gamma"])
    valid = conditions.index.numpy() >= 0
    return torch.from_numpy((s * valid).sum(axis=1) / valid.sum(axis=1)).float()


# --------------------------------------------------------------------------------- networks
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
        p = params
        self.params = p
        d_c, d_t = int(p["cond_dim"]), int(p["time_dim"])
        self.drug_encoder = DrugEncoder(p, fingerprints, n_train_drugs)
        width = self.drug_encoder.width
        self.null_pre = nn.Parameter(torch.zeros(latent_dim))
        self.null_drug = nn.Parameter(torch.zeros(width))
        self.fusion = nn.Sequential(
            nn.Linear(latent_dim + width, d_c), nn.SiLU(), nn.Linear(d_c, d_c)
        )
        self.time_embedding = TimestepEmbedder(d_t, frequency_dim=d_t)
        if p["injection"] == "gd_attn":
            tokens = int(p["tokens"])
            if latent_dim % tokens:
                raise ValueError(
                    f"scppdm: latent dim {latent_dim} is not divisible by tokens {tokens}"
                )
            self.tokens, self.token_width = tokens, latent_dim // tokens
            self.tokenize = nn.Linear(latent_dim, latent_dim)  # W_tok, eq. 26
            self.positions = nn.Parameter(torch.zeros(tokens, self.token_width))
            self.time_to_tokens = nn.Linear(d_t, self.token_width)
            self.blocks = nn.ModuleList(
                GDAttnBlock(
                    self.token_width,
                    int(p["heads"]),
                    d_c,
                    tokens,
                    int(p["cond_tokens"]),
                    float(p["dropout"]),
                )
                for _ in range(int(p["depth"]))
            )
            self.detokenize = nn.Linear(latent_dim, latent_dim)  # W_det, eq. 28
            self.skip = nn.Linear(latent_dim, latent_dim, bias=False)
        else:
            hidden = int(p["mlp_hidden"])
            layers: list[nn.Module] = [nn.Linear(latent_dim + d_c + d_t, hidden), nn.SiLU()]
            for _ in range(int(p["depth"]) - 1):
                layers += [nn.Dropout(float(p["dropout"])), nn.Linear(hidden, hidden), nn.SiLU()]
            layers.append(nn.Linear(hidden, latent_dim))
            self.concat_mlp = nn.Sequential(*layers)
        self.align_projection = nn.Linear(width, n_genes, bias=False)  # W of eqs. 10-11

    def condition(
        self,
        z_pre: torch.Tensor,
        drug: torch.Tensor,
        keep_pre: torch.Tensor,
        keep_drug: torch.Tensor,
    ) -> torch.Tensor:
        """``c = F(z_pre or null, z~_drug or null)``; keep_*: (B,) bool."""
        pre = torch.where(keep_pre[:, None], z_pre, self.null_pre.expand_as(z_pre))
        drg = torch.where(keep_drug[:, None], drug, self.null_drug.expand_as(drug))
        return self.fusion(torch.cat([pre, drg], dim=-1))

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        temb = self.time_embedding(t)
        if self.params["injection"] == "gd_attn":
            h = self.tokenize(z_t).reshape(len(z_t), self.tokens, self.token_width)
            h = h + self.positions + self.time_to_tokens(temb)[:, None]
            for block in self.blocks:
                h = block(h, c)
            return self.detokenize(h.reshape(len(z_t), -1)) + self.skip(z_t)
        return self.concat_mlp(torch.cat([z_t, c, temb], dim=-1))

    def module_groups(self) -> dict[str, list[nn.Module | nn.Parameter]]:
        """Named parts for :meth:`ScPPDM.parameter_counts`."""
        if self.params["injection"] == "gd_attn":
            backbone = {
                "denoiser.time_embedding": [self.time_embedding, self.time_to_tokens],
                "denoiser.tokenizer": [self.tokenize, self.positions, self.detokenize, self.skip],
                "denoiser.gd_attn_blocks": [self.blocks],
            }
        else:
            backbone = {
                "denoiser.time_embedding": [self.time_embedding],
                "denoiser.concat_mlp": [self.concat_mlp],
            }
        return {
            "drug_encoder.mapper": [self.drug_encoder.mapper],
            "drug_encoder.dose_film": [self.drug_encoder.dose_film],
            "condition_fusion": [self.fusion, self.null_pre, self.null_drug],
            **backbone,
            "align_projection": [self.align_projection],
        }


# ---------------------------------------------------------------------------------- method
@register
class ScPPDM(Method):
    """scPPDM (see the module docstring)."""

    name = "scppdm"

    def __init__(self, params: dict[str, Any], seed: int = 0):
        super().__init__(params, seed)
        self.device = torch.device("cpu")

    # -- construction
    def _build(self, latent_dim: int, n_genes: int, drugs: DrugTable) -> None:
        self.drugs = drugs
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = ScppdmNet(
                self.params,
                latent_dim,
                n_genes,
                torch.from_numpy(drugs.fingerprints),
                len(drugs.train_drugs),
            )
        self.net.to(self.device)
        self.schedule = make_schedule(
            self.params["schedule"],
            int(self.params["num_timesteps"]),
            **(
                {"beta_start": self.params["beta_start"], "beta_end": self.params["beta_end"]}
                if self.params["schedule"] == "linear_vp"
                else {}
            ),
        )

    def parameter_counts(self) -> dict[str, int]:
        if hasattr(self, "net"):
            net = self.net
        else:
            p = self.params
            n_drugs = int(p["describe_n_drugs"])
            fps = torch.zeros(n_drugs, int(p["fingerprint_bits"]), dtype=torch.uint8)
            with torch.device("meta"):
                net = ScppdmNet(p, 128, int(p["describe_n_genes"]), fps, n_drugs)
        counts = {}
        for group, parts in net.module_groups().items():
            params = [
                q
                for part in parts
                for q in ([part] if isinstance(part, nn.Parameter) else part.parameters())
            ]
            counts[group] = sum(q.numel() for q in params if q.requires_grad)
        return counts

    # -- training
    def fit(self, train: PerturbData, device: str = "cpu") -> None:
        with _cpu_threads(int(self.params["cpu_threads"]), device):
            self._fit(train, device)

    def _fit(self, train: PerturbData, device: str) -> None:
        p = self.params
        self.device = torch.device(device)
        self.genes = [str(g) for g in train.adata.var_names]
        self.latent = self._latent_prior(train)
        pairs = pseudobulk_pairs(train.adata, train.control)
        drugs = _drug_table(train, pairs, p)
        self._build(self.latent.latent_dim, len(self.genes), drugs)
        z0 = self.latent.embed(pairs.post)
        z_pre = self.latent.embed(pairs.pre)
        target = z0 - z_pre if p["target"] == "residual" else z0
        self.target_scale = Standardizer.fit(target)
        self.pre_scale = Standardizer.fit(z_pre)
        direction = pairs.post - pairs.pre
        direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
        cond = ConditionBatch.encode(pairs.keys[DRUG], pairs.keys[DOSE], drugs)
        log.info(
            "scppdm: %d plate-matched pseudobulk pairs, %d drugs (%d in training), %d genes, "
            "latent %d",
            len(pairs.keys),
            len(drugs.names),
            len(drugs.train_drugs),
            len(self.genes),
            self.latent.latent_dim,
        )
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # dropout draws from the global generator
            torch.manual_seed(self.seed)
            self.history = _train(
                self.net,
                self.schedule,
                p,
                self.device,
                self.seed,
                self.target_scale(target),
                self.pre_scale(z_pre),
                torch.from_numpy(direction.astype(np.float32)),
                cond,
            )

    def _latent_prior(self, train: PerturbData) -> LatentModel:
        if "latent" not in train.priors:
            raise SchemaError("scppdm: prior 'latent' (rule finetune_latent) was not provided")
        latent = load_model(train.priors["latent"], self.device)
        if latent.genes != self.genes:
            raise SchemaError(
                f"{train.priors['latent']}/gene_order.tsv: genes differ from the "
                f"split's genes ({len(latent.genes)} vs {len(self.genes)})"
            )
        for q in latent.parameters():
            q.requires_grad_(False)
        return latent

    # -- sampling
    def guidance(self, conditions: ConditionBatch) -> Guidance:
        """The inference rule for a batch of conditions (ablations included)."""
        p = self.params
        if p["conditioning"] == "none":
            return conditional([])
        s_d = strengths(conditions, p).to(self.device)
        if p["guidance"] == "single":
            return cfg(s_d, [PRE, DRUG_CHANNEL])
        return dual_knob(float(p["s_p"]), s_d, state=PRE, drug=DRUG_CHANNEL)

    @torch.no_grad()
    def sample_latents(
        self, z_pre: np.ndarray, conditions: ConditionBatch, noise: torch.Tensor
    ) -> np.ndarray:
        """DDIM samples of ``z0`` (unit-norm latents) given control latents and conditions."""
        net = self.net.eval()
        pre = self.pre_scale(z_pre).to(self.device)
        cond = conditions.to(self.device)
        drug = net.drug_encoder(cond)
        rule = self.guidance(conditions)

        def denoise(z_t, t, modes):
            n = len(z_t)
            keep_pre = torch.cat([torch.full((n,), PRE in m, device=self.device) for m in modes])
            keep_drug = torch.cat(
                [torch.full((n,), DRUG_CHANNEL in m, device=self.device) for m in modes]
            )
            reps = len(modes)
            c = net.condition(pre.repeat(reps, 1), drug.repeat(reps, 1), keep_pre, keep_drug)
            return net.denoise(z_t.repeat(reps, 1), t.repeat(reps), c).reshape(reps, n, -1)

        clip = self.params["clip_x0"]
        sampler = DDIMSampler(
            self.schedule,
            int(self.params["sampler_steps"]),
            float(self.params["eta"]),
            self.params["prediction"],
            None if clip is None else float(clip),
        )
        z = sampler.sample(denoise, noise.to(self.device), rule).cpu().numpy()
        z = self.target_scale.invert(z) + (z_pre if self.params["target"] == "residual" else 0.0)
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    def predict(self, controls: ad.AnnData, conditions: pd.DataFrame, seed: int = 0) -> ad.AnnData:
        with _cpu_threads(int(self.params["cpu_threads"]), self.device):
            return self._predict(controls, conditions, seed)

    def _predict(self, controls: ad.AnnData, conditions: pd.DataFrame, seed: int) -> ad.AnnData:
        X_ctrl, obs = _control_cells(controls, self.genes)
        table = _conditions_table(conditions)
        deltas = self._plate_deltas(table, ControlPseudobulks.of(X_ctrl, obs), seed)
        lines = obs[CELL_LINE].astype(str).to_numpy()
        plates = obs[PLATE].astype(str).to_numpy()
        X = np.empty((int(table["n_cells"].sum()), len(self.genes)), dtype=np.float32)
        picked, start = [], 0
        for r in table.itertuples(index=False):
            pool = np.flatnonzero(lines == r.cell_line)
            rng = np.random.default_rng([int(seed), zlib.crc32(r.condition.encode())])
            pick = pool[rng.choice(pool.size, size=r.n_cells, replace=r.n_cells > pool.size)]
            shift = deltas.loc[[(r.condition, plate) for plate in plates[pick]]].to_numpy()
            X[start : start + r.n_cells] = np.maximum(_dense(X_ctrl[pick]) + shift, 0)
            picked.append(pick)
            start += r.n_cells
        cell_rows = np.repeat(np.arange(len(table)), table["n_cells"].to_numpy())
        out_obs = table.iloc[cell_rows][[CELL_LINE, DRUG, DOSE, CONDITION]].reset_index(drop=True)
        out_obs[PLATE] = plates[np.concatenate(picked)] if picked else np.array([], dtype=object)
        out_obs.index = [
            f"{c}#{j}" for c, j in zip(out_obs[CONDITION], out_obs.groupby(CONDITION).cumcount())
        ]
        return ad.AnnData(
            X=X,
            obs=out_obs[[CELL_LINE, DRUG, DOSE, PLATE, CONDITION]],
            var=pd.DataFrame(index=pd.Index(self.genes)),
            uns={"method": self.name, "seed": int(seed), "sampler": SAMPLER},
        )

    def predict_deltas(
        self, controls: ad.AnnData, conditions: pd.DataFrame, seed: int = 0
    ) -> pd.DataFrame:
        """Predicted effect per (condition, plate): ``D(z^_0) - D(z_pre)`` (rows; genes columns)."""
        with _cpu_threads(int(self.params["cpu_threads"]), self.device):
            X_ctrl, obs = _control_cells(controls, self.genes)
            return self._plate_deltas(
                _conditions_table(conditions), ControlPseudobulks.of(X_ctrl, obs), seed
            )

    def _plate_deltas(
        self, table: pd.DataFrame, ctrl: ControlPseudobulks, seed: int
    ) -> pd.DataFrame:
        """One DDIM sample per (condition, plate with controls of its line), decoded as a delta."""
        units = [
            (row, k)
            for row, (line, condition) in enumerate(zip(table[CELL_LINE], table[CONDITION]))
            for k in ctrl.rows_of_line(line, f"controls (condition '{condition}')")
        ]
        rows = np.array([row for row, _ in units], dtype=np.int64)
        ctrl_rows = np.array([k for _, k in units], dtype=np.int64)
        index = pd.MultiIndex.from_arrays(
            [table[CONDITION].to_numpy()[rows], ctrl.keys[PLATE].to_numpy()[ctrl_rows]],
            names=[CONDITION, PLATE],
        )
        if not units:
            return pd.DataFrame(np.zeros((0, len(self.genes))), index=index, columns=self.genes)
        z_ctrl = self.latent.embed(ctrl.means[ctrl_rows])
        cond = ConditionBatch.encode(
            table[DRUG].to_numpy()[rows], table[DOSE].to_numpy()[rows], self.drugs
        )
        noise = torch.stack(
            [
                torch.randn(
                    self.latent.latent_dim,
                    generator=torch.Generator().manual_seed(_unit_seed(seed, condition, plate)),
                )
                for condition, plate in index
            ]
        )
        z0 = self.sample_latents(z_ctrl, cond, noise)
        deltas = self.latent.reconstruct(z0) - self.latent.reconstruct(z_ctrl)
        return pd.DataFrame(deltas, index=index, columns=self.genes)

    # -- persistence
    def _save_state(self, path: Path) -> None:
        save_model(self.latent.cpu(), path / LATENT_DIR, {"copied_from": "training prior"})
        self.latent.to(self.device)
        torch.save(
            {
                "net": {k: v.cpu() for k, v in self.net.state_dict().items()},
                "target_scale": self.target_scale.arrays(),
                "pre_scale": self.pre_scale.arrays(),
                "drugs": self.drugs.names,
                "fingerprints": self.drugs.fingerprints,
                "train_drugs": self.drugs.train_drugs,
                "history": self.history,
            },
            path / STATE_FILE,
        )

    def _load_state(self, path: Path, device: str) -> None:
        self.device = torch.device(device)
        self.latent = load_model(path / LATENT_DIR, self.device)
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
        self.target_scale = Standardizer(*state["target_scale"])
        self.pre_scale = Standardizer(*state["pre_scale"])
        self.history = state["history"]
        drugs = DrugTable(list(state["drugs"]), state["fingerprints"], list(state["train_drugs"]))
        self._build(self.latent.latent_dim, len(self.genes), drugs)
        self.net.load_state_dict(state["net"])
        self.net.eval()


# ----------------------------------------------------------------------- dose monotonicity
def dose_monotonicity(
    cells: ad.AnnData, controls: ad.AnnData, control: str = schema.DEFAULT_CONTROL
) -> pd.DataFrame:
    """Does the effect magnitude grow with dose? (scPPDM §3.3.2 and App. F.5's claim.)

    Effect magnitude of a condition = L2 norm over genes of (mean of its cells - mean of its cell
    line's control cells), in the log-normalised space of ``cells`` (predictions or truth). Per
    single drug, magnitudes are averaged over cell lines per dose; the drug is monotone when that
    average strictly increases along its sorted doses. Combinations and drugs with one dose are
    left out. Returns one row per drug: ``drug, n_doses, magnitudes`` (by increasing dose) and
    ``monotone``; the claim's number is ``table["monotone"].mean()``.
    """
    genes = [str(g) for g in cells.var_names]
    ctrl = controls[(controls.obs[DRUG].astype(str) == control).to_numpy()]
    ctrl_X, ctrl_obs = _control_cells(ctrl, genes)
    lines = ctrl_obs[CELL_LINE].astype(str).to_numpy()
    line_mean = {
        line: np.asarray(ctrl_X[lines == line].mean(axis=0)).ravel() for line in np.unique(lines)
    }
    obs = cells.obs
    keep = ~obs[DRUG].astype(str).map(schema.is_combo).to_numpy(dtype=bool)
    keep &= (obs[DRUG].astype(str) != control).to_numpy()
    groups = obs[keep].groupby([DRUG, CELL_LINE, DOSE], observed=True).indices
    rows = []
    rows_of = np.flatnonzero(keep)
    for (drug, line, dose), idx in groups.items():
        mean = np.asarray(cells.X[rows_of[idx]].mean(axis=0)).ravel()
        magnitude = float(np.linalg.norm(mean - line_mean[str(line)]))
        rows.append((str(drug), str(line), float(dose), magnitude))
    table = pd.DataFrame(rows, columns=[DRUG, CELL_LINE, DOSE, "magnitude"])
    by_dose = table.groupby([DRUG, DOSE]).magnitude.mean().reset_index().sort_values([DRUG, DOSE])
    out = []
    for drug, part in by_dose.groupby(DRUG):
        mags = part["magnitude"].to_numpy()
        if len(mags) >= 2:
            out.append((drug, len(mags), mags.round(6).tolist(), bool(np.all(np.diff(mags) > 0))))
    return pd.DataFrame(out, columns=[DRUG, "n_doses", "magnitudes", "monotone"])


# ------------------------------------------------------------------------------ helpers
@contextmanager
def _cpu_threads(n: int, device):
    """Run with ``n`` torch threads when on CPU (``n = 0``: leave torch's setting)."""
    if n <= 0 or torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _drug_table(train: PerturbData, pairs: PseudobulkPairs, p: dict) -> DrugTable:
    """Fingerprints of every drug of the drug table (held-out ones too: structure is known)."""
    source = train.drugs.attrs.get("source", "drug table")
    if SMILES_FIELD not in train.drugs.columns:
        raise SchemaError(f"{source}: column '{SMILES_FIELD}' is missing")
    smiles = {
        str(d): s
        for d, s in zip(train.drugs.index, train.drugs[SMILES_FIELD])
        if str(d) != train.control
    }
    fps = morgan_fingerprints(
        smiles,
        radius=int(p["fingerprint_radius"]),
        n_bits=int(p["fingerprint_bits"]),
        source=source,
    )
    seen = sorted({c for drug in pairs.keys[DRUG] for c in schema.components(drug)})
    missing = [d for d in seen if d not in smiles]
    if missing:
        raise SchemaError(f"{source}: no row for training drug '{missing[0]}' (field 'drug')")
    return DrugTable(list(fps.index), fps.to_numpy(), seen)


def _train(
    net: ScppdmNet,
    schedule,
    p: dict,
    device: torch.device,
    seed: int,
    z0: torch.Tensor,
    z_pre: torch.Tensor,
    direction: torch.Tensor,
    cond: ConditionBatch,
) -> dict[str, Any]:
    """The training loop (module docstring, "Training"); returns a loss history."""
    g = torch.Generator().manual_seed(seed)
    n = len(z0)
    steps, batch = int(p["steps"]), min(int(p["batch_size"]), n)
    optimizer = torch.optim.AdamW(
        net.parameters(),
        lr=float(p["lr"]),
        weight_decay=float(p["weight_decay"]),
        betas=tuple(p["betas"]),
    )
    warmup = max(int(p["warmup_steps"]), 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(steps - warmup, 1)))
    )
    ema = EMA(net, decay=float(p["ema_decay"]))
    bank = MemoryBank(int(p["memory_bank"]), direction.shape[1])
    amp = bool(p["mixed_precision"]) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    unconditional = p["conditioning"] == "none"
    ramp = max(float(p["loss_warmup_fraction"]) * steps, 1.0)
    z0, z_pre, direction = z0.to(device), z_pre.to(device), direction.to(device)
    cond = cond.to(device)
    history: dict[str, list[float]] = {"denoise": [], "align": [], "info": []}
    start = time.perf_counter()
    net.train()
    for step in range(steps):
        rows = torch.randint(0, n, (batch,), generator=g).to(device)
        t = schedule.sample_timesteps(batch, g, device)
        eps = torch.randn(batch, z0.shape[1], generator=g).to(device)
        keep_pre = (torch.rand(batch, generator=g) >= p["p_drop_pre"]).to(device)
        keep_drug = (torch.rand(batch, generator=g) >= p["p_drop_drug"]).to(device)
        if unconditional:
            keep_pre, keep_drug = torch.zeros_like(keep_pre), torch.zeros_like(keep_drug)
        negatives = bank.sample(int(p["n_negatives"]), g)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            drug = net.drug_encoder(cond[rows])
            c = net.condition(z_pre[rows], drug, keep_pre, keep_drug)
            z_t = schedule.add_noise(z0[rows], eps, t)
            denoise = F.mse_loss(net.denoise(z_t, t, c).float(), eps)
            q = F.normalize(net.align_projection(drug).float(), dim=1)
            v = direction[rows]
            align = (q - v).pow(2).sum(dim=1).mean()
            info = _info_nce(q, v, negatives, float(p["tau"]))
        warm = min(1.0, (step + 1) / ramp)
        loss = denoise
        if not unconditional:
            loss = loss + warm * (p["lambda_align"] * align + p["lambda_info"] * info)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(net.parameters(), float(p["grad_clip"]))
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        ema.update(net)
        bank.push(v.detach())
        for key, value in (("denoise", denoise), ("align", align), ("info", info)):
            history[key].append(value.item())
        if (step + 1) % max(steps // 10, 1) == 0:
            log.info(
                "step %d/%d: denoise %.4f, align %.4f, info %.4f",
                step + 1,
                steps,
                *(np.mean(history[k][-100:]) for k in ("denoise", "align", "info")),
            )
    ema.copy_to(net)
    net.eval()
    seconds = time.perf_counter() - start
    log.info("scppdm: %d steps in %.1f s", steps, seconds)
    every = max(steps // 100, 1)
    return {
        "seconds": seconds,
        "every": every,
        **{
            k: [float(np.mean(v[i : i + every])) for i in range(0, len(v), every)]
            for k, v in history.items()
        },
    }


def _info_nce(
    q: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, tau: float
) -> torch.Tensor:
    """InfoNCE of unit vectors q against their positives and shared negatives (eq. 11)."""
    if len(negatives) == 0:
        return q.sum() * 0.0
    logits = torch.cat([(q * positive).sum(dim=1, keepdim=True), q @ negatives.T], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


class MemoryBank:
    """FIFO queue of past response directions, the InfoNCE negative set (App. D)."""

    def __init__(self, size: int, dim: int):
        self.size = size
        self.items = torch.zeros(0, dim)

    def push(self, rows: torch.Tensor) -> None:
        self.items = torch.cat([rows, self.items.to(rows.device)])[: self.size]

    def sample(self, k: int, generator: torch.Generator) -> torch.Tensor:
        if len(self.items) <= k:
            return self.items
        pick = torch.randperm(len(self.items), generator=generator)[:k]
        return self.items[pick.to(self.items.device)]


def _control_cells(controls: ad.AnnData, genes: list[str]):
    missing = [g for g in genes if g not in set(map(str, controls.var_names))]
    if missing:
        raise SchemaError(
            f"controls: var_names lack {len(missing)} training genes, e.g. {missing[:3]}"
        )
    for key in (CELL_LINE, PLATE):
        if key not in controls.obs.columns:
            raise SchemaError(f"controls: obs['{key}'] is missing")
    sub = controls if list(map(str, controls.var_names)) == genes else controls[:, genes]
    return sub.X, controls.obs


def _conditions_table(conditions: pd.DataFrame) -> pd.DataFrame:
    for key in (CELL_LINE, DRUG, DOSE, "n_cells"):
        if key not in conditions.columns:
            raise SchemaError(f"conditions: column '{key}' is missing")
    table = pd.DataFrame(
        {
            CELL_LINE: conditions[CELL_LINE].astype(str).to_numpy(),
            DRUG: conditions[DRUG].astype(str).to_numpy(),
            DOSE: [schema.format_dose(str(x)) for x in conditions[DOSE]],
            "n_cells": conditions["n_cells"].astype(int).to_numpy(),
        }
    )
    table[CONDITION] = schema.add_condition(table).to_numpy()
    return table


def _unit_seed(seed: int, condition: str, plate: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(f"{condition}@{plate}".encode())) % (2**63)
