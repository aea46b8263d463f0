"""MDT: mechanism-aware drug templates from structure, L1000 views and the graph prior.

StateXDiff (arXiv:2605.16104) §3.3, App. A.3.2–A.3.4 and Table 5.

Model (:class:`MDT`)
    Structure encoder f_s (paper 512-1024-512-512) on the drug's structure features (Morgan bits;
    the paper's UniMol embedding is 512-d, the paper preset uses 512 bits) and expression encoder
    f_e (978-1024-512-512) on an L1000 view, both MLPs with LayerNorm, GELU and dropout after each
    hidden layer, into a shared ``embed_dim`` space where outputs are L2-normalised. Projection
    head g (512-256-256) maps z_s to the graph prior's space; gene decoder (512-1024-978) maps
    the shared space back to landmark z-scores. Token head f_tok (a linear map of the shared space
    -> K_d tokens of ``embed_dim``) gives T_d. Two learnable logit scales (tau_struct, tau_expr; init 1/0.07),
    stored as logs and capped at 100.
Loss
    ``L_contrast + distill_weight * L_distill + recon_weight * L_recon``.
    L_contrast (Eq. 8): over the N = B + sum_d K_d views of a batch of B drugs (one structure
    view and up to K expression views each), logits ``tau_a <z_i, z_j>`` with tau of the anchor's
    modality, log-softmax over k != i, weighted by the soft labels M (:func:`soft_labels`) and
    averaged over anchors with a positive row. L_distill (Eq. 9): ``1 - mean_d cos(g(z_s), z_b)``
    over batch drugs that have a graph embedding (Table 5: weight 0.014). L_recon (our term for
    the Table 5 gene decoder, whose loss the paper does not state): MSE of the decoded
    expression view ``dec(z_e)`` against the view, plus MSE of ``dec(mean_k T_d,k)`` against the
    drug's TAS-weighted mean view, both on z-scores divided by their training RMS; it is the
    only signal f_tok gets before StateXDiff fine-tunes it (A.5: "drug condition assembly layers
    are fine-tuned").
Soft labels (App. A.3.3, :func:`soft_labels`)
    Same drug, two expression views: ``max(r_ij, eps) sqrt(TAS_i TAS_j)`` with r the Pearson
    correlation of the two views; a pair with the drug's structure view uses r = 1 and TAS = 1
    for the structure view (the paper does not define this pair; the structure view is treated as
    a clean, fully active view). Different drugs: ``max(0, cos(z_b_i, z_b_j) - delta)``. Rows are
    L1-normalised.
Training (App. A.3.4)
    AdamW, linear warmup for ``warmup_epochs`` then cosine decay to 0 at ``epochs`` (per step),
    gradient-norm clipping, bfloat16 autocast on CUDA when ``precision`` is ``bf16``. Every
    ``eval_every`` epochs the validation drugs (``val_fraction`` of the training drugs with
    views, never trained on) give ``score = (Top1%_e2s + 2 Top1%_s2e) / 3`` (Eq. 27,
    :func:`retrieval_score`; without validation drugs the training loss decides); training stops
    after ``patience`` epochs without improvement and the best state (ties: the later) is kept.
    Drugs of the split's test conditions never enter training (§3.3: "drugs in the test set are
    excluded from MDT pretraining"): their L1000 views are set aside before training
    (:func:`prepare_data`), and no statistic is taken from them (the expression scale ``z_scale``
    is the training views' RMS; TAS is rescaled by the maximum over the other drugs' views).
Drug templates (:func:`drug_templates`, :func:`fuse_views`)
    §3.3 infers T_d = f_tok(z_s) and e_drug = psi_d(z_s) from structure alone. Here a drug's
    template is read from ``z_drug``, the L2-normalised TAS-weighted centroid of all its views in
    the shared space, ``normalize(z_s + sum_v TAS_v z_e,v)``: the multi-view representation of
    A.3.2 with the same-drug weights of A.3.3 (the structure view counts as TAS 1); f_tok and
    psi_d = g are applied to it (both act on the shared space, where z_s and z_e are aligned).
    By role: a trained drug (``train``, and ``val``) fuses z_s with its training views (training
    aligned them, so z_drug stays close to z_s); a held-out drug with L1000 views (a test drug of
    the split: L1000 is an external resource, not the single-cell test data) fuses z_s with its
    views encoded by the frozen f_e (never trained on, no statistic taken); a drug without views
    (structure-only) has z_drug = z_s, the paper's zero-shot path. Where structure misleads
    (activity cliffs: a structural neighbour of one MoA acting through another) the views carry
    the mechanism that z_s alone cannot.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from scpert.errors import InputError
from scpert.presets import resolve_preset
from scpert.priors.determinism import deterministic
from scpert.priors.l1000 import L1000Views

log = logging.getLogger(__name__)

MAX_LOGIT_SCALE = 100.0

#: Table 5 (A.5.1) and A.3.4; keys marked "not in the paper" are our choices.
PRESETS: dict[str, dict] = {
    "paper": {
        "fingerprint_bits": 512,  # structure features 512 (UniMol 3D embedding width)
        "struct_layers": [1024, 512, 512],  # struct encoder 3-layer MLP 512->1024->512->512
        "expr_layers": [1024, 512, 512],  # expr encoder 3-layer MLP 978->1024->512->512
        "projection_layers": [256, 256],  # projection head 2-layer MLP 512->256->256
        "decoder_layers": [1024],  # gene decoder 2-layer MLP 512->1024->978
        "dropout": 0.223,  # all encoders
        "eps": 0.05,  # same-drug floor
        "delta": 0.86,  # cross-drug bio-similarity cutoff
        "views_per_drug": 3,  # k = 3, multi-cell-line sampling
        "temperature_init": 1 / 0.07,  # tau_struct, tau_expr, learnable
        "distill_weight": 0.014,  # alpha (L_distill)
        "lr": 5.48e-4,  # peak LR, AdamW betas (0.9, 0.999)
        "betas": [0.9, 0.999],
        "weight_decay": 1e-4,
        "warmup_epochs": 8,  # cosine with 8-epoch linear warmup
        "grad_clip": 5.0,
        "batch_drugs": 512,
        "epochs": 240,  # early stop patience 50
        "patience": 50,
        "eval_every": 5,  # A.3.4: validation score every 5 epochs
        "precision": "bf16",
        "n_tokens": 35,  # K_d (Table 6)
        "tas": "mean_abs_z",  # not in the paper's tables: A.3.2 text definition
        "clip_z": 10.0,  # not in the paper
        "recon_weight": 1.0,  # not in the paper
        "val_fraction": 0.1,  # not in the paper
        "seed": 0,
    },
    "tiny": {
        "fingerprint_bits": 1024,
        "struct_layers": [128, 64, 64],
        "expr_layers": [128, 64, 64],
        "projection_layers": [64, 64],
        "decoder_layers": [128],
        "dropout": 0.1,
        "eps": 0.05,
        "delta": 0.86,
        "views_per_drug": 3,
        "temperature_init": 1 / 0.07,
        "distill_weight": 0.014,
        "lr": 3e-3,
        "betas": [0.9, 0.999],
        "weight_decay": 1e-4,
        "warmup_epochs": 5,
        "grad_clip": 5.0,
        "batch_drugs": 512,
        "epochs": 150,
        "patience": 50,
        "eval_every": 5,
        "precision": "fp32",
        "n_tokens": 35,
        "tas": "mean_abs_z",
        "clip_z": 10.0,
        "recon_weight": 1.0,
        "val_fraction": 0.15,
        "seed": 0,
    },
}


def resolve_params(preset: str, overrides: dict | None = None, key: str = "priors.mdt") -> dict:
    """Preset values overlaid with ``overrides``; unknown names raise naming the config key."""
    return resolve_preset(PRESETS, preset, overrides, key)


# ------------------------------------------------------------------------------------ the model
def mlp(in_dim: int, widths: list[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of ``widths``; LayerNorm, GELU and dropout after every layer but the last."""
    layers: list[nn.Module] = []
    dims = [in_dim, *widths]
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 1:
            layers += [nn.LayerNorm(b), nn.GELU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MDT(nn.Module):
    """f_s, f_e, g, gene decoder, f_tok and the two logit scales (see the module docstring)."""

    def __init__(self, struct_dim: int, n_genes: int, bio_dim: int, params: dict):
        super().__init__()
        if params["projection_layers"][-1] != bio_dim:
            raise InputError(
                f"priors.mdt.params.projection_layers: last width {params['projection_layers'][-1]}"
                f" must equal the graph embedding width {bio_dim} (distillation target)"
            )
        embed = params["struct_layers"][-1]
        if params["expr_layers"][-1] != embed:
            raise InputError(
                "priors.mdt.params: struct_layers and expr_layers must end at the "
                "same width (the shared embedding)"
            )
        self.embed_dim, self.n_tokens = embed, params["n_tokens"]
        self.struct_encoder = mlp(struct_dim, params["struct_layers"], params["dropout"])
        self.expr_encoder = mlp(n_genes, params["expr_layers"], params["dropout"])
        self.projection = mlp(embed, params["projection_layers"])
        self.decoder = mlp(embed, [*params["decoder_layers"], n_genes])
        self.tokenizer = nn.Linear(embed, params["n_tokens"] * embed)
        start = math.log(params["temperature_init"])
        self.log_scale = nn.ParameterDict(
            {
                "struct": nn.Parameter(torch.tensor(start)),
                "expr": nn.Parameter(torch.tensor(start)),
            }
        )
        self.register_buffer("z_scale", torch.tensor(1.0))

    def encode_structure(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.struct_encoder(x), dim=-1)

    def encode_expression(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.expr_encoder(x / self.z_scale), dim=-1)

    def tokens(self, z_s: torch.Tensor) -> torch.Tensor:
        return self.tokenizer(z_s).view(len(z_s), self.n_tokens, self.embed_dim)

    def scales(self) -> dict[str, torch.Tensor]:
        return {k: v.exp().clamp(max=MAX_LOGIT_SCALE) for k, v in self.log_scale.items()}


# ------------------------------------------------------------------------------ soft labels, loss
def soft_labels(
    drug: np.ndarray,
    is_struct: np.ndarray,
    tas: np.ndarray,
    pearson: np.ndarray,
    bio_cos: np.ndarray,
    eps: float,
    delta: float,
) -> np.ndarray:
    """M of App. A.3.3 for N views (rows L1-normalised; zero diagonal; all-zero rows stay zero).

    drug: (N,) drug index of each view; is_struct: (N,) structure view?; tas: (N,) TAS in [0, 1]
    (ignored for structure views, which count as TAS 1); pearson: (N, N) correlation of the views
    (ignored where a structure view is involved, r = 1); bio_cos: (N, N) cosine of the views'
    drugs' graph embeddings (0 where a drug has none).
    """
    quality = np.where(is_struct, 1.0, tas)
    r = np.where(is_struct[:, None] | is_struct[None, :], 1.0, pearson)
    same = drug[:, None] == drug[None, :]
    m = np.where(
        same,
        np.maximum(r, eps) * np.sqrt(np.outer(quality, quality)),
        np.maximum(0.0, bio_cos - delta),
    )
    np.fill_diagonal(m, 0.0)
    total = m.sum(axis=1, keepdims=True)
    return np.divide(m, total, out=np.zeros_like(m), where=total > 0)


def soft_contrastive_loss(z: torch.Tensor, scale: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Eq. 8: ``-1/|P| sum_i sum_{j!=i} M_ij log softmax_{k!=i}(scale_i <z_i, z_k>)_j``.

    z: (N, D) L2-normalised views; scale: (N,) logit scale of each anchor; m: (N, N) soft labels
    with zero diagonal. P = anchors whose row of M has positive mass.
    """
    logits = scale[:, None] * (z @ z.T)
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    log_p = torch.log_softmax(logits.masked_fill(eye, float("-inf")), dim=1).masked_fill(eye, 0.0)
    anchors = m.sum(dim=1) > 0
    if not anchors.any():
        return torch.zeros((), device=z.device)
    return -(m[anchors] * log_p[anchors]).sum() / anchors.sum()


def distillation_loss(projected: torch.Tensor, z_bio: torch.Tensor) -> torch.Tensor:
    """Eq. 9: ``1 - mean_d cos(g(z_s_d), z_b_d)``."""
    return 1.0 - F.cosine_similarity(projected, z_bio, dim=-1).mean()


def top_percent_k(n_candidates: int, percent: float = 1.0) -> int:
    """How many ranked candidates count as a Top-``percent``% hit: ``max(1, ceil(p/100 n))``."""
    return max(1, math.ceil(percent / 100.0 * n_candidates))


def retrieval_score(z_struct: np.ndarray, z_expr: np.ndarray, view_drug: np.ndarray) -> dict:
    """Eq. 27 on one set of drugs: ``(Top1%_e2s + 2 Top1%_s2e) / 3``.

    z_struct: (n, D) structure embeddings of drugs 0..n-1; z_expr: (V, D) expression views;
    view_drug: (V,) drug index of each view. e2s: a view's own drug ranks within the top 1 % of the
    n structures; s2e: one of the drug's own views ranks within the top 1 % of the V views.
    """
    sim = z_expr @ z_struct.T  # (V, n)
    k_s = top_percent_k(sim.shape[1])
    own = sim[np.arange(len(view_drug)), view_drug]
    e2s = float(np.mean((sim > own[:, None]).sum(axis=1) < k_s))
    k_e = top_percent_k(sim.shape[0])
    top = np.argsort(-sim.T, axis=1, kind="stable")[:, :k_e]  # (n, k_e) view indices
    s2e = float(np.mean([(view_drug[row] == d).any() for d, row in enumerate(top)]))
    return {"e2s": e2s, "s2e": s2e, "score": (e2s + 2.0 * s2e) / 3.0}


# ---------------------------------------------------------------------------------- the data
@dataclass
class MdtData:
    """Everything MDT training reads, indexed by drug position in ``drugs``."""

    drugs: list[str]  # every drug with a structure (outputs are written for all)
    structure: np.ndarray  # (n_drugs, S) structure features
    bio: np.ndarray  # (n_drugs, P) graph embedding z_b (zeros where missing)
    has_bio: np.ndarray  # (n_drugs,) bool
    views: L1000Views  # expression views of non-excluded drugs only (training and validation)
    view_drug: np.ndarray  # (V,) position of each view's drug in ``drugs``
    train: np.ndarray  # (n_drugs,) bool: drugs trained on
    val: np.ndarray  # (n_drugs,) bool: validation drugs (early stopping)
    excluded: np.ndarray  # (n_drugs,) bool: test drugs of the split
    held_out_views: L1000Views  # views of the excluded drugs: never trained on, only encoded
    held_out_view_drug: np.ndarray  # (V_h,) position of each held-out view's drug in ``drugs``


def prepare_data(
    structure: pd.DataFrame, bio: pd.DataFrame, views: L1000Views, excluded: set[str], params: dict
) -> MdtData:
    """Set the excluded drugs' views aside, draw the validation drugs, align every table by drug.

    The views' TAS is recomputed from their raw TAS (``views.meta["tas"]``) divided by its
    maximum over the non-excluded views (held-out views relative to it, capped at 1), so that
    no scale comes from a test drug (:func:`scpert.priors.l1000.select_views` scales by all).
    """
    drugs = [str(d) for d in structure.index]
    pos = {d: i for i, d in enumerate(drugs)}
    is_excluded = np.array([d in excluded for d in drugs])
    known = np.array([d in pos for d in views.drug], dtype=bool)
    keep = known & np.array([d not in excluded for d in views.drug], dtype=bool)
    raw = views.meta["tas"].to_numpy(np.float64)
    scale = float(raw[keep].max()) if keep.any() else 1.0
    tas = np.minimum(raw / (scale if scale > 0 else 1.0), 1.0).astype(np.float32)
    views = L1000Views(views.x, views.drug, tas, views.meta, views.landmarks)
    held_out_views = views.subset(known & ~keep)
    views = views.subset(keep)
    view_drug = np.array([pos[d] for d in views.drug], dtype=np.int64)
    held_out_view_drug = np.array([pos[d] for d in held_out_views.drug], dtype=np.int64)
    has_bio = np.array([d in bio.index for d in drugs])
    z_bio = np.zeros((len(drugs), bio.shape[1]), dtype=np.float32)
    z_bio[has_bio] = bio.loc[[d for d in drugs if d in bio.index]].to_numpy(np.float32)

    with_views = np.zeros(len(drugs), dtype=bool)
    with_views[view_drug] = True
    candidates = np.flatnonzero(with_views & ~is_excluded)
    rng = np.random.default_rng(params["seed"])
    n_val = int(round(params["val_fraction"] * len(candidates)))
    n_val = min(n_val, len(candidates) - 1) if len(candidates) > 1 else 0
    val = np.zeros(len(drugs), dtype=bool)
    val[rng.choice(candidates, n_val, replace=False)] = True
    train = ~is_excluded & ~val & (with_views | has_bio)
    return MdtData(
        drugs,
        structure.to_numpy(np.float32),
        z_bio,
        has_bio,
        views,
        view_drug,
        train,
        val,
        is_excluded,
        held_out_views,
        held_out_view_drug,
    )


def template_views(data: MdtData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every view a drug template fuses: (x (V, L), TAS (V,), drug position (V,)), the training
    and validation views followed by the held-out drugs' views."""
    return (
        np.concatenate([data.views.x, data.held_out_views.x]),
        np.concatenate([data.views.tas, data.held_out_views.tas]),
        np.concatenate([data.view_drug, data.held_out_view_drug]),
    )


def _pearson(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    unit = np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 0)
    return unit @ unit.T


# ------------------------------------------------------------------------------------- training
class _Batch:
    """Views of a batch of drugs as tensors plus their soft labels."""

    def __init__(
        self,
        data: MdtData,
        drugs: np.ndarray,
        pearson: np.ndarray,
        bio_cos: np.ndarray,
        params: dict,
        device: str,
    ):
        in_batch = np.isin(data.view_drug, drugs)
        vidx = np.flatnonzero(in_batch)
        self.struct_x = torch.as_tensor(data.structure[drugs], device=device)
        self.expr_x = torch.as_tensor(data.views.x[vidx], device=device)
        self.bio = torch.as_tensor(data.bio[drugs], device=device)
        self.has_bio = torch.as_tensor(data.has_bio[drugs], device=device)
        # drug of each view: structure views first, then expression views
        view_drug = np.concatenate([drugs, data.view_drug[vidx]])
        is_struct = np.arange(len(view_drug)) < len(drugs)
        tas = np.concatenate([np.ones(len(drugs)), data.views.tas[vidx]])
        r = np.zeros((len(view_drug), len(view_drug)))
        r[len(drugs) :, len(drugs) :] = pearson[np.ix_(vidx, vidx)]
        m = soft_labels(
            view_drug,
            is_struct,
            tas,
            r,
            bio_cos[np.ix_(view_drug, view_drug)],
            params["eps"],
            params["delta"],
        )
        self.m = torch.as_tensor(m, dtype=torch.float32, device=device)
        # reconstruction targets: each view, and each drug's TAS-weighted mean view
        local = {d: i for i, d in enumerate(drugs)}
        owner = np.array([local[d] for d in data.view_drug[vidx]], dtype=np.int64)
        weights = np.zeros((len(drugs), len(vidx)), dtype=np.float32)
        weights[owner, np.arange(len(vidx))] = data.views.tas[vidx]
        has_views = weights.sum(axis=1) > 0
        weights[has_views] /= weights[has_views].sum(axis=1, keepdims=True)
        self.mean_view = torch.as_tensor(weights @ data.views.x[vidx], device=device)
        self.has_views = torch.as_tensor(has_views, device=device)


def mdt_loss(model: MDT, batch: _Batch, params: dict) -> dict[str, torch.Tensor]:
    z_s = model.encode_structure(batch.struct_x)
    z_e = model.encode_expression(batch.expr_x)
    z = torch.cat([z_s, z_e])
    scales = model.scales()
    scale = torch.cat([scales["struct"].expand(len(z_s)), scales["expr"].expand(len(z_e))])
    l_contrast = soft_contrastive_loss(z, scale, batch.m)
    zero = torch.zeros((), device=z.device)
    l_distill = (
        distillation_loss(model.projection(z_s[batch.has_bio]), batch.bio[batch.has_bio])
        if batch.has_bio.any()
        else zero
    )
    terms = []
    if len(z_e):
        terms.append(F.mse_loss(model.decoder(z_e), batch.expr_x / model.z_scale))
    if batch.has_views.any():
        pooled = model.tokens(z_s[batch.has_views]).mean(dim=1)
        terms.append(
            F.mse_loss(model.decoder(pooled), batch.mean_view[batch.has_views] / model.z_scale)
        )
    l_recon = torch.stack(terms).mean() if terms else zero
    total = l_contrast + params["distill_weight"] * l_distill + params["recon_weight"] * l_recon
    return {"loss": total, "contrast": l_contrast, "distill": l_distill, "recon": l_recon}


def _lr_lambda(steps_per_epoch: int, params: dict):
    warmup = params["warmup_epochs"] * steps_per_epoch
    total = max(params["epochs"] * steps_per_epoch, warmup + 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@torch.no_grad()
def validation_score(model: MDT, data: MdtData, device: str) -> dict:
    """Eq. 27 over the validation drugs (NaN scores when there are none)."""
    drugs = np.flatnonzero(data.val)
    views = np.flatnonzero(np.isin(data.view_drug, drugs))
    if len(drugs) == 0 or len(views) == 0:
        return {"e2s": float("nan"), "s2e": float("nan"), "score": float("nan")}
    model.eval()
    z_s = model.encode_structure(torch.as_tensor(data.structure[drugs], device=device))
    z_e = model.encode_expression(torch.as_tensor(data.views.x[views], device=device))
    local = {d: i for i, d in enumerate(drugs)}
    owner = np.array([local[d] for d in data.view_drug[views]])
    return retrieval_score(z_s.float().cpu().numpy(), z_e.float().cpu().numpy(), owner)


def train_mdt(data: MdtData, params: dict, device: str = "cpu") -> tuple[MDT, pd.DataFrame]:
    """Train MDT (module docstring); returns the best model (eval mode) and the history."""
    torch.manual_seed(params["seed"])
    rng = np.random.default_rng(params["seed"])
    model = MDT(data.structure.shape[1], data.views.x.shape[1], data.bio.shape[1], params)
    train_views = np.isin(data.view_drug, np.flatnonzero(data.train))
    rms = float(np.sqrt(np.mean(data.views.x[train_views] ** 2))) if train_views.any() else 1.0
    model.z_scale.fill_(rms if rms > 0 else 1.0)
    model.to(device)
    pearson = _pearson(data.views.x)
    bio_cos = np.where(np.outer(data.has_bio, data.has_bio), data.bio @ data.bio.T, 0.0)
    train_drugs = np.flatnonzero(data.train)
    batch_size = params["batch_drugs"]
    steps_per_epoch = max(1, math.ceil(len(train_drugs) / batch_size))
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=params["lr"],
        betas=tuple(params["betas"]),
        weight_decay=params["weight_decay"],
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(steps_per_epoch, params))
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.startswith("cuda") and params["precision"] == "bf16"
        else nullcontext()
    )
    fixed = (
        None if steps_per_epoch > 1 else _Batch(data, train_drugs, pearson, bio_cos, params, device)
    )
    best, best_state, since_best, history = -np.inf, None, 0, []
    start = time.perf_counter()
    with deterministic(device):
        for epoch in range(1, params["epochs"] + 1):
            model.train()
            order = rng.permutation(train_drugs)
            sums: dict[str, float] = {}
            for step in range(steps_per_epoch):
                batch = (
                    fixed
                    if fixed is not None
                    else _Batch(
                        data,
                        np.sort(order[step * batch_size : (step + 1) * batch_size]),
                        pearson,
                        bio_cos,
                        params,
                        device,
                    )
                )
                with autocast:
                    losses = mdt_loss(model, batch, params)
                optimizer.zero_grad()
                losses["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), params["grad_clip"])
                optimizer.step()
                schedule.step()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) / steps_per_epoch
            row = {"epoch": epoch, **sums}
            if epoch % params["eval_every"] == 0 or epoch == params["epochs"]:
                val = validation_score(model, data, device)
                row.update({f"val_{k}": v for k, v in val.items()})
                score = val["score"] if np.isfinite(val["score"]) else -sums["loss"]
                if score >= best:
                    best, since_best = score, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    since_best += params["eval_every"]
            history.append(row)
            if since_best >= params["patience"]:
                log.info("MDT: early stop at epoch %d (best score %.4f)", epoch, best)
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    log.info(
        "MDT: %d epochs in %.1f s, best validation score %.4f",
        len(history),
        time.perf_counter() - start,
        best,
    )
    model.eval()
    return model, pd.DataFrame(history)


@dataclass
class DrugTemplates:
    """MDT outputs for every drug (written as ``drug_tokens.npz``, :mod:`scpert.priors.outputs`)."""

    z_struct: np.ndarray  # (n, D) L2-normalised structure embedding z_s
    z_drug: np.ndarray  # (n, D) the template's embedding: z_s fused with the drug's views
    tokens: np.ndarray  # (n, K_d, D) T_d = f_tok(z_drug)
    e_drug: np.ndarray  # (n, P) psi_d(z_drug) = g(z_drug), the projection head
    response: np.ndarray  # (n, n_landmarks) decoded L1000 z-scores dec(mean_k T_d,k)


def fuse_views(
    z_struct: torch.Tensor, z_expr: torch.Tensor, tas: torch.Tensor, view_drug: torch.Tensor
) -> torch.Tensor:
    """``normalize(z_s,d + sum_{v of d} TAS_v z_e,v)`` per drug (module docstring); a drug
    without views keeps z_s. z_struct (n, D), z_expr (V, D), tas (V,), view_drug (V,) long."""
    total = z_struct.clone()
    total.index_add_(0, view_drug, tas[:, None].to(z_expr.dtype) * z_expr)
    return F.normalize(total, dim=-1)


@torch.no_grad()
def drug_templates(
    model: MDT,
    structure: np.ndarray,
    view_x: np.ndarray | None = None,
    view_tas: np.ndarray | None = None,
    view_drug: np.ndarray | None = None,
    device: str = "cpu",
) -> DrugTemplates:
    """Templates of the drugs of ``structure`` (n, S), each fused with its L1000 views (rows of
    ``view_x`` (V, L) with TAS ``view_tas`` and drug position ``view_drug``; none: structure
    only), e.g. the views of :func:`template_views`."""
    model.eval()
    z_s = model.encode_structure(torch.as_tensor(structure, device=device))
    z_drug = z_s
    if view_x is not None and len(view_x):
        z_e = model.encode_expression(torch.as_tensor(view_x, device=device))
        z_drug = fuse_views(
            z_s,
            z_e,
            torch.as_tensor(view_tas, device=device),
            torch.as_tensor(view_drug, dtype=torch.long, device=device),
        )
    tokens = model.tokens(z_drug)
    response = model.decoder(tokens.mean(dim=1)) * model.z_scale

    def out(t):
        return t.float().cpu().numpy().astype(np.float32)

    return DrugTemplates(
        out(z_s), out(z_drug), out(tokens), out(model.projection(z_drug)), out(response)
    )


def load_mdt(path, device: str = "cpu") -> MDT:
    """The trained MDT model of ``mdt_model.pt`` (eval mode)."""
    state = torch.load(path, map_location=device, weights_only=False)
    model = MDT(state["struct_dim"], state["n_genes"], state["bio_dim"], state["params"])
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval()
