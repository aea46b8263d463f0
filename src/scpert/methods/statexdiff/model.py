"""StateXDiff's perturbation-aware denoiser (arXiv:2605.16104 §3.4, App. A.4, Eqs. 11, 29-30),
blocks named after the paper's equations, in the style of DiT's ``models.py``.

Conditions
    Cell tokens ``T_c = [T_s; T_p]`` (K_s shared-cell + K_p protein-associated tokens): the VMCS
    tokens (:mod:`scpert.priors.vmcs`, width D_tok) through one linear map per type
    (:class:`VMCSCellTokens`), or, for "w/o VMCS", the raw latent ``z_c`` projected to K_s tokens
    (:class:`RawCellTokens`) with the protein tokens left to the learned null. Drug tokens
    ``T_d`` (K_d): the MDT prior's templates (:mod:`scpert.priors.mdt`, mean-pooled to K_d groups
    when K_d is smaller than the prior's 35) through the drug condition assembly layer
    (:class:`MDTDrugTokens`; fine-tuned, A.5), or for "w/o MDT" a structure-only encoder of Morgan
    bits (:class:`StructureDrugTokens`). Dose (Eq. 10): ``c_drug = log(1 + dose) c_drug``, applied
    to the assembled tokens; a combination ``A+B`` sums its components' dose-scaled tokens.
Structured dropout (A.4)
    A dropped branch's tokens are replaced by learned null embeddings (one per token slot) and its
    contribution to ``c_global`` is zeroed; protein tokens are independently replaced by the learned
    null ``e_null^p`` (where ``keep_protein`` is False, probability ``1 - q_i`` in training) and
    left out of the cell mean ``e_cell``.
Bidirectional interaction (Eq. 11, :class:`ConditionInteraction`)
    ``T_d' = T_d + XAttn(T_d, T_c)``, ``T_c' = T_c + XAttn(T_c, T_d)`` (pre-LayerNorm multi-head
    cross-attention; both read the tokens before the update).
Denoiser (A.4, :class:`StateXDiffDiT`)
    Noise token ``h_0 = W_in delta_z_t``; ``S = [h_0; T_s'; T_p'; T_d']`` plus token-type embeddings
    ``e_n, e_s, e_p, e_d``; ``c_global = t_emb + e_drug + e_cell`` (t_emb: sinusoidal 256 + 2-layer
    SiLU MLP; the means over ``T_d'`` and the kept ``T_c'`` tokens); L blocks
    (:class:`StateXDiffBlock`): AdaLN-Zero (Eq. 29) before typed joint self-attention (Eq. 30) and
    before the SwiGLU FFN, each a gated residual; readout of the noise token only:
    ``v^ = W_out AdaLN(h_0, c_global)`` (W_out zero-initialised as DiT's final layer).

The conditioning (everything but the noise token and time) does not depend on ``(delta_z_t, t)``:
:meth:`StateXDiffNet.condition` computes it once per batch of conditions and modes, and
:meth:`StateXDiffNet.denoise` reuses it at every sampler step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from scpert.nn import AdaLNZeroNorm, SwiGLU, TimestepEmbedder, TypedJointAttention

#: token types of the denoiser sequence, in order
TOKEN_TYPES = ("noise", "shared", "protein", "drug")


# ------------------------------------------------------------------------------ conditions
class RawCellTokens(nn.Module):
    """ "w/o VMCS": the (standardised) control latent ``z_c`` -> K_s shared tokens."""

    def __init__(self, latent_dim: int, n_shared: int, hidden: int):
        super().__init__()
        self.n_shared, self.hidden = n_shared, hidden
        self.proj = nn.Linear(latent_dim, n_shared * hidden)

    def forward(self, z_c: torch.Tensor) -> torch.Tensor:
        return self.proj(z_c).view(len(z_c), self.n_shared, self.hidden)


class VMCSCellTokens(nn.Module):
    """VMCS shared and protein tokens (width D_tok) -> width H, one linear map per token type."""

    def __init__(self, token_dim: int, hidden: int):
        super().__init__()
        self.shared = nn.Linear(token_dim, hidden)
        self.protein = nn.Linear(token_dim, hidden)

    def forward(
        self, shared: torch.Tensor, protein: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.shared(shared), self.protein(protein)


class MDTDrugTokens(nn.Module):
    """Drug condition assembly: frozen MDT templates (n_drugs, K, D), mean-pooled to K_d tokens,
    -> width H by a fine-tuned linear layer."""

    def __init__(self, templates: torch.Tensor, n_tokens: int, hidden: int):
        super().__init__()
        n_drugs, k, dim = templates.shape
        if k % n_tokens:
            raise ValueError(
                f"methods.statexdiff.params.drug_tokens: {n_tokens} does not divide the MDT "
                f"prior's {k} tokens"
            )
        pooled = templates.view(n_drugs, n_tokens, k // n_tokens, dim).mean(dim=2)
        self.register_buffer("templates", pooled.float())
        self.assembly = nn.Linear(dim, hidden)

    def forward(self, drug: torch.Tensor) -> torch.Tensor:
        """drug: (B,) index into the drug table -> (B, K_d, H)."""
        return self.assembly(self.templates[drug])


class StructureDrugTokens(nn.Module):
    """ "w/o MDT": Morgan bits -> MLP -> K_d tokens, no mechanism priors (trained from scratch)."""

    def __init__(self, fingerprints: torch.Tensor, n_tokens: int, hidden: int, width: int):
        super().__init__()
        self.n_tokens, self.hidden = n_tokens, hidden
        self.register_buffer("fingerprints", fingerprints.float())
        self.encoder = nn.Sequential(
            nn.Linear(fingerprints.shape[1], width),
            nn.LayerNorm(width),
            nn.GELU(),
            nn.Linear(width, n_tokens * hidden),
        )

    def forward(self, drug: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.fingerprints[drug]).view(len(drug), self.n_tokens, self.hidden)


def dosed_drug_tokens(
    encoder: nn.Module, drug: torch.Tensor, log_dose: torch.Tensor
) -> torch.Tensor:
    """Eq. 10 per component, summed over a combination's components.

    drug: (B, C) drug-table indices (padding: any index with ``log_dose`` 0); log_dose: (B, C)
    ``log(1 + dose)``. Returns (B, K_d, H)."""
    B, C = drug.shape
    tokens = encoder(drug.reshape(-1))
    tokens = tokens.view(B, C, *tokens.shape[1:])
    return (log_dose.to(tokens)[:, :, None, None] * tokens).sum(dim=1)


class CrossAttention(nn.Module):
    """``XAttn(a, b)``: pre-LayerNorm multi-head attention from tokens ``a`` to tokens ``b``."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(hidden)
        self.norm_kv = nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(b)
        return self.attn(self.norm_q(a), kv, kv, need_weights=False)[0]


class ConditionInteraction(nn.Module):
    """Eq. 11: bidirectional cross-attention between cell tokens and drug tokens."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.drug_from_cell = CrossAttention(hidden, heads)
        self.cell_from_drug = CrossAttention(hidden, heads)

    def forward(self, cell: torch.Tensor, drug: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return cell + self.cell_from_drug(cell, drug), drug + self.drug_from_cell(drug, cell)


# ------------------------------------------------------------------------------ the denoiser
class StateXDiffBlock(nn.Module):
    """AdaLN-Zero -> typed joint self-attention -> gated residual; AdaLN-Zero -> SwiGLU -> gated
    residual (Eqs. 29-30)."""

    def __init__(self, hidden: int, heads: int, ffn_ratio: int, gate: str):
        super().__init__()
        self.adaln_attn = AdaLNZeroNorm(hidden, hidden, gate)
        self.attn = TypedJointAttention(hidden, heads, len(TOKEN_TYPES))
        self.adaln_ffn = AdaLNZeroNorm(hidden, hidden, gate)
        self.ffn = SwiGLU(hidden, ffn_ratio * hidden)

    def forward(self, x: torch.Tensor, c: torch.Tensor, segments: list[int]) -> torch.Tensor:
        h, gate = self.adaln_attn(x, c)
        x = x + gate * self.attn(h, segments)
        h, gate = self.adaln_ffn(x, c)
        return x + gate * self.ffn(h)


class OutputHead(nn.Module):
    """``v^ = W_out AdaLN(h_0, c_global)`` (A.4 "Output head")."""

    def __init__(self, hidden: int, latent_dim: int):
        super().__init__()
        self.adaln = AdaLNZeroNorm(hidden, hidden, gate=None)
        self.out = nn.Linear(hidden, latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h0: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.out(self.adaln(h0[:, None], c)[0][:, 0])


class StateXDiffDiT(nn.Module):
    """The diffusion Transformer over ``S = [h_0; T_s'; T_p'; T_d']`` (A.4)."""

    def __init__(self, p: dict, latent_dim: int):
        super().__init__()
        H = int(p["hidden"])
        self.noise_in = nn.Linear(latent_dim, H)  # W_in
        self.type_embedding = nn.Parameter(torch.zeros(len(TOKEN_TYPES), H))
        nn.init.normal_(self.type_embedding, std=0.02)
        self.time = TimestepEmbedder(H, frequency_dim=int(p["time_frequency_dim"]))
        self.blocks = nn.ModuleList(
            StateXDiffBlock(H, int(p["heads"]), int(p["ffn_ratio"]), p["gate"])
            for _ in range(int(p["depth"]))
        )
        self.head = OutputHead(H, latent_dim)

    def forward(
        self,
        dz_t: torch.Tensor,
        t: torch.Tensor,
        tokens: torch.Tensor,
        c_cond: torch.Tensor,
        segments: list[int],
    ) -> torch.Tensor:
        """dz_t (B, d), t (B,), condition tokens (B, N_c, H) with their type embeddings already
        added, c_cond = e_drug + e_cell (B, H) -> v^ (B, d)."""
        h0 = self.noise_in(dz_t) + self.type_embedding[0]
        x = torch.cat([h0[:, None].to(tokens.dtype), tokens], dim=1)
        c = self.time(t).to(tokens.dtype) + c_cond
        for block in self.blocks:
            x = block(x, c, segments)
        return self.head(x[:, 0], c)


@dataclass
class Conditioning:
    """The time-independent part of the denoiser input: condition tokens with type embeddings
    (B, K_s + K_p + K_d, H) and ``e_drug + e_cell`` (B, H)."""

    tokens: torch.Tensor
    c_cond: torch.Tensor

    def repeat(self, n: int) -> Conditioning:
        return Conditioning(self.tokens.repeat(n, 1, 1), self.c_cond.repeat(n, 1))


@dataclass
class CellInput:
    """What the cell branch reads per row: raw ``z_c`` (B, d) for "w/o VMCS", else VMCS tokens
    (B, K_s, D_tok) and (B, K_p, D_tok)."""

    z_c: torch.Tensor | None = None
    shared: torch.Tensor | None = None
    protein: torch.Tensor | None = None


class StateXDiffNet(nn.Module):
    """Conditions, interaction and the DiT (module docstring).

    drug_source: ``("mdt", templates (n_drugs, K, D))`` or ``("structure", fingerprints
    (n_drugs, bits))``; cell_source: ``("raw", latent_dim)`` or ``("vmcs", D_tok[, K_s, K_p])``
    (the VMCS prior's token counts replace ``shared_tokens`` / ``protein_tokens``, Eq. 11: "the
    original VMCS token allocation").
    """

    def __init__(self, p: dict, latent_dim: int, cell_source: tuple, drug_source: tuple):
        super().__init__()
        H = int(p["hidden"])
        self.K_s, self.K_p, self.K_d = (
            int(p["shared_tokens"]),
            int(p["protein_tokens"]),
            int(p["drug_tokens"]),
        )
        kind, dim = cell_source[:2]
        if kind == "vmcs" and len(cell_source) == 4:  # the VMCS prior's own token allocation
            self.K_s, self.K_p = int(cell_source[2]), int(cell_source[3])
        self.cell_kind = kind
        self.cell_tokens = (
            RawCellTokens(dim, self.K_s, H) if kind == "raw" else VMCSCellTokens(dim, H)
        )
        kind, table = drug_source
        self.drug_tokens = (
            MDTDrugTokens(table, self.K_d, H)
            if kind == "mdt"
            else StructureDrugTokens(table, self.K_d, H, int(p["structure_hidden"]))
        )
        self.null_cell = nn.Parameter(torch.zeros(self.K_s + self.K_p, H))
        self.null_drug = nn.Parameter(torch.zeros(self.K_d, H))
        self.null_protein = nn.Parameter(torch.zeros(H))  # e_null^p
        for null in (self.null_cell, self.null_drug, self.null_protein):
            nn.init.normal_(null, std=0.02)
        self.interaction = ConditionInteraction(H, int(p["cross_attention_heads"]))
        self.dit = StateXDiffDiT(p, latent_dim)

    @property
    def segments(self) -> list[int]:
        return [1, self.K_s, self.K_p, self.K_d]

    def module_groups(self) -> dict[str, list[nn.Module]]:
        """Trainable parts by the rows of Table 8 (the VMCS and MDT priors are frozen modules of
        their own rules and counted there)."""
        return {
            "Cell condition projection": [self.cell_tokens, self.null_cell, self.null_protein],
            "Drug condition assembly (tokenizer + projection)": [self.drug_tokens, self.null_drug],
            "Condition interaction (Eq. 11)": [self.interaction],
            "Diffusion Transformer": [self.dit],
        }

    def condition(
        self,
        cell: CellInput,
        drug: torch.Tensor,
        log_dose: torch.Tensor,
        keep_cell: torch.Tensor,
        keep_drug: torch.Tensor,
        keep_protein: torch.Tensor,
    ) -> Conditioning:
        """Condition tokens and ``e_drug + e_cell`` for B rows (keep_*: (B,) bool)."""
        if self.cell_kind == "raw":
            shared = self.cell_tokens(cell.z_c)
            protein = self.null_protein.expand(len(shared), self.K_p, -1)
            keep_protein = torch.zeros_like(keep_protein)
        else:
            shared, protein = self.cell_tokens(cell.shared, cell.protein)
        kp = keep_protein[:, None, None]
        protein = torch.where(kp, protein, self.null_protein.to(protein.dtype))
        t_cell = torch.cat([shared, protein], dim=1)
        t_drug = dosed_drug_tokens(self.drug_tokens, drug, log_dose)
        kc, kd = keep_cell[:, None, None], keep_drug[:, None, None]
        t_cell = torch.where(kc, t_cell, self.null_cell.to(t_cell.dtype))
        t_drug = torch.where(kd, t_drug, self.null_drug.to(t_drug.dtype))
        t_cell, t_drug = self.interaction(t_cell, t_drug)
        # e_cell: mean over the shared and the kept protein tokens; zero for a dropped branch
        weight = torch.cat(
            [
                torch.ones_like(t_cell[:, : self.K_s, :1]),
                kp.to(t_cell.dtype).expand(-1, self.K_p, 1),
            ],
            dim=1,
        )
        e_cell = (weight * t_cell).sum(dim=1) / weight.sum(dim=1)
        e_cell = e_cell * keep_cell[:, None].to(e_cell.dtype)
        e_drug = t_drug.mean(dim=1) * keep_drug[:, None].to(t_drug.dtype)
        types = self.dit.type_embedding
        tokens = torch.cat(
            [t_cell[:, : self.K_s] + types[1], t_cell[:, self.K_s :] + types[2], t_drug + types[3]],
            dim=1,
        )
        return Conditioning(tokens, e_drug + e_cell)

    def denoise(self, dz_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.dit(dz_t, t, cond.tokens, cond.c_cond, self.segments)

    def forward(self, dz_t, t, cell, drug, log_dose, keep_cell, keep_drug, keep_protein):
        cond = self.condition(cell, drug, log_dose, keep_cell, keep_drug, keep_protein)
        return self.denoise(dz_t, t, cond)
