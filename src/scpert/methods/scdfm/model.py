"""scDFM's PAD-Transformer (arXiv:2602.07103 §3.3-3.4, App. A.3), in the style of DiT's
``models.py``: blocks named after the paper's equations.

Genes are tokens. For a gene subset ``I`` (``s`` genes) and a batch of B cells:

- :class:`ValueEncoder` ``E_v``: each expression scalar -> R^d (Linear(1, d), ReLU, Linear,
  LayerNorm, dropout; the released code's value encoder). One ``E_v`` for the noisy target and
  the control (eq. 6 writes the same ``E_v`` for both; the code keeps two copies);
- :class:`GeneEncoder` ``E_g``: a gene-identity embedding followed by one attention layer among
  the subset's genes masked by the co-expression graph ``M_I = W[I, I]``
  (:mod:`scpert.methods.scdfm.graph`), ``Z_I = LN(e_I + MaskedAttn(e_I; M_I))``;
- tokens (eq. 6, App. A.3): ``h_c = E_v(c_x^I) + Z_I``, ``h_v^0 = E_v(x_t^I) + Z_I``;
- :class:`PerturbationEncoder` ``e_p = Emb(c_p)``: per drug a learned row ``E_p`` (App. A.4.3,
  ComboSciPlex: "a dedicated perturbation embedding table"; drugs unseen in training share a
  zero row) and/or an MLP of its Morgan fingerprint (``perturbation_encoder``: ``id``,
  ``structure``, ``id_structure``; the structure features let held-out drugs be predicted), plus
  a linear embedding of ``log(1 + dose)`` (the paper is silent on dose: ComboSciPlex has one dose
  per drug); a combination is the MEAN of its components (App. A.4.3, code: mean over the two
  slots);
- :class:`PADBlock` (eqs. 10-12) x L: perturbation injection ``h_bar = MLP([h ; 1 e_p])``
  (eq. 10), self-differential attention ``h~ = h_bar + DiffAttn(h_bar, h_bar)`` (eq. 11),
  cross-differential attention to the control tokens ``h' = h~ + DiffAttn(h~, h_c)`` (eq. 12),
  then an MLP (width x4, the code's); every sub-block pre-normed and modulated by adaLN-Zero
  from ``t_emb = MLP(SinCos(t))`` (Peebles & Xie 2023: shift, scale and a zero-initialised gate
  per sub-block; :class:`scpert.nn.adaln.AdaLNZero`);
- :class:`VelocityDecoder` ``D([h^L ; 1 e_p])`` -> one velocity per gene (eq. 13).

``fusion: true`` adds the released code's token fusion ``h_v^0 = LN(MLP([h_v^0 ; h_c]))``: each
target token sees its own gene's control token directly, not only through cross-attention (not
in the paper; REFERENCE_CODE "scDFM as coded").

``attention: standard`` replaces differential by standard attention (ablation "w/o Differential
Transformer", §4.5); ``gene_mask: false`` lets the gene encoder attend to every gene of the subset
(ablation "w/o gene-gene mask").

The control tokens' keys and values of every cross-attention do not depend on ``x_t`` or ``t``:
:meth:`PADTransformer.context` computes them (and ``Z_I``, ``h_c``, ``e_p``) once per cell batch
and gene subset, and :meth:`PADTransformer.velocity` reuses them at every ODE step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from scpert.methods.scppdm.model import ConditionBatch
from scpert.nn import TimestepEmbedder
from scpert.nn.adaln import AdaLNZero, modulate
from scpert.nn.diff_attn import DifferentialAttention

PERTURBATION_ENCODERS = ("id", "structure", "id_structure")
ATTENTIONS = ("differential", "standard")


class ValueEncoder(nn.Module):
    """``E_v``: expression scalar -> R^d per gene (module docstring)."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(1, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.LayerNorm(width),
            nn.Dropout(dropout),
        )

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """(B, s) -> (B, s, d)."""
        return self.net(values[..., None])


class GeneEncoder(nn.Module):
    """``E_g(G_I; M_I)``: contextual gene-identity tokens of a gene subset (module docstring)."""

    def __init__(self, n_genes: int, width: int, heads: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(n_genes, width)
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(width)

    @torch.no_grad()
    def initialise(self, loadings: np.ndarray) -> None:
        """Gene-identity rows from (G, d) ``loadings`` (``gene_init: pca``:
        :func:`scpert.methods.scdfm.graph.principal_loadings`); trained as usual afterwards."""
        self.embedding.weight.copy_(torch.as_tensor(loadings, dtype=self.embedding.weight.dtype))

    def forward(self, genes: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """genes: (s,) indices; mask: (s, s) True = may attend (None: all) -> (s, d)."""
        e = self.embedding(genes)[None]
        blocked = None if mask is None else ~mask
        attended, _ = self.attention(e, e, e, attn_mask=blocked, need_weights=False)
        return self.norm(e + attended)[0]


class PerturbationEncoder(nn.Module):
    """``e_p = Emb(c_p)``: mean over a condition's drugs of (id row and/or fingerprint MLP) +
    dose embedding (module docstring)."""

    def __init__(self, fingerprints: torch.Tensor, n_train_drugs: int, width: int, mode: str):
        super().__init__()
        if mode not in PERTURBATION_ENCODERS:
            raise ValueError(f"unknown perturbation_encoder '{mode}' ({PERTURBATION_ENCODERS})")
        self.mode = mode
        self.register_buffer("fingerprints", fingerprints.float(), persistent=False)
        if mode in ("id", "id_structure"):
            self.table = nn.Embedding(n_train_drugs + 1, width, padding_idx=0)  # E_p; 0 = unseen
        if mode in ("structure", "id_structure"):
            self.structure = nn.Sequential(
                nn.Linear(fingerprints.shape[1], width), nn.SiLU(), nn.Linear(width, width)
            )
        self.dose = nn.Linear(1, width)

    def forward(self, cond: ConditionBatch, keep_id: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d); ``keep_id`` (B,) bool drops the id rows of False conditions (training)."""
        present = cond.index >= 0  # (B, C)
        component = self.dose(cond.log_dose[..., None])
        if self.mode != "id":
            fps = self.fingerprints[cond.index.clamp(min=0)]
            component = component + self.structure(fps)
        if self.mode != "structure":
            ids = cond.drug_id if keep_id is None else cond.drug_id * keep_id[:, None]
            component = component + self.table(ids)
        weights = present.to(component.dtype)
        return (component * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)


class PADBlock(nn.Module):
    """One PAD-Transformer layer (eqs. 10-12 + MLP), adaLN-Zero from ``t_emb``."""

    def __init__(self, width: int, heads: int, depth: int, dropout: float, differential: bool):
        super().__init__()
        self.adapter = nn.Sequential(  # eq. 10: MLP_l([h ; 1 e_p])
            nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, width)
        )
        self.norm_self = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.self_attn = DifferentialAttention(width, heads, depth, dropout, differential)
        self.norm_cross = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.norm_context = nn.LayerNorm(width)
        self.cross_attn = DifferentialAttention(width, heads, depth, dropout, differential)
        self.norm_mlp = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width),
            nn.GELU(approximate="tanh"),
            nn.Dropout(dropout),
            nn.Linear(4 * width, width),
        )
        self.dropout = nn.Dropout(dropout)
        self.ada = AdaLNZero(width, width, 9)  # (shift, scale, gate) x 3 sub-blocks

    def control_kv(self, h_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the control tokens for the cross-attention (eq. 12)."""
        return self.cross_attn.keys_values(self.norm_context(h_c))

    def forward(self, h, e_p, t_emb, control_kv) -> torch.Tensor:
        s1, c1, g1, s2, c2, g2, s3, c3, g3 = self.ada(t_emb)
        h = self.adapter(torch.cat([h, e_p[:, None].expand(-1, h.shape[1], -1)], dim=-1))
        h = h + g1[:, None] * self.self_attn(modulate(self.norm_self(h), s1, c1))  # eq. 11
        h = h + g2[:, None] * self.cross_attn(  # eq. 12
            modulate(self.norm_cross(h), s2, c2), kv=control_kv
        )
        return h + g3[:, None] * self.dropout(self.mlp(modulate(self.norm_mlp(h), s3, c3)))


class VelocityDecoder(nn.Module):
    """``D([h^L ; 1 e_p])`` -> one velocity per gene (eq. 13)."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.net = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, 1))

    def forward(self, h: torch.Tensor, e_p: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([self.norm(h), e_p[:, None].expand(-1, h.shape[1], -1)], dim=-1)
        return self.net(joint)[..., 0]


@dataclass
class Context:
    """What does not change over the ODE steps of a cell batch on a gene subset."""

    h_c: torch.Tensor  # (B, s, d) control tokens
    z: torch.Tensor  # (s, d) contextual gene identities Z_I
    e_p: torch.Tensor  # (B, d)
    control_kv: list[tuple[torch.Tensor, torch.Tensor]]


class PADTransformer(nn.Module):
    """The velocity field ``v_theta(x_t | t, c_x, c_p)`` on a gene subset (module docstring)."""

    def __init__(self, params: dict, n_genes: int, fingerprints: torch.Tensor, n_train_drugs: int):
        super().__init__()
        p = params
        width, heads, dropout = int(p["width"]), int(p["heads"]), float(p["dropout"])
        if p["attention"] not in ATTENTIONS:
            raise ValueError(f"unknown attention '{p['attention']}' ({ATTENTIONS})")
        self.use_mask = bool(p["gene_mask"])
        if p["fusion"]:  # the released code's LN(MLP([h_t ; h_c])) (module docstring)
            self.fusion = nn.Sequential(
                nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, width), nn.LayerNorm(width)
            )
        else:
            self.fusion = None
        self.value_encoder = ValueEncoder(width, dropout)
        self.gene_encoder = GeneEncoder(n_genes, width, heads, dropout)
        self.perturbation = PerturbationEncoder(
            fingerprints, n_train_drugs, width, p["perturbation_encoder"]
        )
        self.time = TimestepEmbedder(width, int(p["time_frequencies"]), time_scale=1000.0)
        self.blocks = nn.ModuleList(
            PADBlock(width, heads, depth, dropout, p["attention"] == "differential")
            for depth in range(int(p["depth"]))
        )
        self.decoder = VelocityDecoder(width)

    def context(
        self,
        c_x: torch.Tensor,
        genes: torch.Tensor,
        mask: torch.Tensor | None,
        cond: ConditionBatch,
        keep_id: torch.Tensor | None = None,
    ) -> Context:
        """Control tokens, gene identities, perturbation embedding and cached control keys."""
        z = self.gene_encoder(genes, mask if self.use_mask else None)
        h_c = self.value_encoder(c_x) + z  # eq. 6
        e_p = self.perturbation(cond, keep_id)
        return Context(h_c, z, e_p, [block.control_kv(h_c) for block in self.blocks])

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, ctx: Context) -> torch.Tensor:
        """(B, s) noisy values at times ``t`` (B,) -> (B, s) velocities."""
        h = self.value_encoder(x_t) + ctx.z  # eq. 6
        if self.fusion is not None:
            h = self.fusion(torch.cat([h, ctx.h_c], dim=-1))
        t_emb = self.time(t)
        for block, kv in zip(self.blocks, ctx.control_kv):
            h = block(h, ctx.e_p, t_emb, kv)
        return self.decoder(h, ctx.e_p)

    def forward(self, x_t, t, c_x, genes, mask, cond, keep_id=None) -> torch.Tensor:
        return self.velocity(x_t, t, self.context(c_x, genes, mask, cond, keep_id))

    def module_groups(self) -> dict[str, nn.Module]:
        """Trainable parameters per module (``scpert describe``)."""
        return {
            "gene encoder E_g": self.gene_encoder,
            "value encoder E_v": self.value_encoder,
            "perturbation embedding": self.perturbation,
            "time embedding": self.time,
            "PAD blocks": self.blocks,
            "velocity decoder": self.decoder,
            **({"fusion": self.fusion} if self.fusion is not None else {}),
        }


def gene_subset_mask(adjacency: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
    """``M_I = W[I, I]`` (App. A.3)."""
    return adjacency[genes][:, genes]


def partition_genes(n_genes: int, size: int, seed: int) -> list[np.ndarray]:
    """A seeded random partition of the genes into subsets of at most ``size`` (inference over
    every gene with the training policy: subsets of ``s`` genes, App. A.3 "Inference")."""
    order = np.random.default_rng(seed).permutation(n_genes)
    n_parts = max(1, -(-n_genes // max(int(size), 1)))
    return [np.sort(part) for part in np.array_split(order, n_parts)]
