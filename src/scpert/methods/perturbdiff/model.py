"""PerturbDiff's denoiser (arXiv:2602.19685 §4.5, App. B.3), in the style of DiT's ``models.py``.

Each cell is a token and a cell set a sequence (App. B.3 "Tokenization"): the noised perturbed set
``B_t`` (m, G) with its self-conditioning estimate ``B^`` is projected ``Linear(2G -> d)``
(eq. 33 concatenates them), the control set ``B_ctrl`` by its own ``Linear(G -> d)``; no
positional embedding (a set has no order). The condition ``s = MLP([e_t ; e_y])`` (eq. 37) joins
the sinusoidal timestep embedding and the covariate embedding (:class:`CovariateEncoder`;
``e_y`` is replaced by a learned null vector where the metadata are dropped for CFG).

:class:`MMDiTBlock` (eqs. 38-43): per stream an AdaLN-Zero modulation ``(beta, gamma, g)`` for the
attention and for the MLP sublayer (:class:`scpert.nn.AdaLNZero`); the two modulated streams are
concatenated along features, ``u = [h~_pert ; h~_ctrl]`` (m, 2d), one multi-head self-attention
over the m tokens (qkv bias, per-head RMSNorm of q and k as in the code), split back and added
with each stream's gate; then each stream's own MLP (ratio 4, GELU-tanh) on its modulated
post-attention state (eq. 43). ``block: parallel`` is the public code's variant, whose MLP reads
the modulated block INPUT, not the post-attention state.

:class:`FinalLayer`: AdaLN (shift, scale) of the perturbed stream, ``Linear(d -> G)`` and the
non-negative head (ReLU, App. B.3 eq. 36; softplus as option). Only the perturbed stream reaches
the head. The output linear keeps PyTorch's default initialisation: DiT zero-initialises it, but a
zero pre-activation gives a ReLU head neither output nor gradient.

``output: control_residual`` (not in the paper; the ``tiny`` preset, measured in docs/decisions.md
"PerturbDiff on cell_ood") adds each token's control cell to the pre-activation,
``x^_j = relu(B_ctrl,j + Linear(...))``: the network predicts a per-cell change of the control
cell its token carries, so a sampled cell keeps that control cell's own state (depth, zeros)
where the change leaves it. ``absolute`` (the paper's) predicts the cell itself. With the control
stream zeroed (marginal pretraining) the two are the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scpert.nn import AdaLNZero, TimestepEmbedder, modulate


class JointAttention(nn.Module):
    """Multi-head self-attention over the tokens of ``u`` (B, m, width) (eq. 41)."""

    def __init__(self, width: int, heads: int, qk_norm: bool = True):
        super().__init__()
        if width % heads:
            raise ValueError(f"MM-DiT: joint width {width} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width, bias=True)
        self.q_norm = nn.RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(width, width)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        B, m, width = u.shape
        q, k, v = self.qkv(u).reshape(B, m, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(out.transpose(1, 2).reshape(B, m, width))


class Mlp(nn.Module):
    def __init__(self, width: int, ratio: float):
        super().__init__()
        hidden = int(width * ratio)
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class MMDiTBlock(nn.Module):
    """One symmetric fusion block over the perturbed and control streams (module docstring)."""

    def __init__(
        self, width: int, heads: int, mlp_ratio: float, parallel: bool = False, qk_norm=True
    ):
        super().__init__()
        self.width, self.parallel = width, parallel
        self.ada_pert = AdaLNZero(width, width, 6)  # eq. 38, star = pert
        self.ada_ctrl = AdaLNZero(width, width, 6)  # eq. 38, star = ctrl
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = JointAttention(2 * width, heads, qk_norm)
        self.mlp_pert = Mlp(width, mlp_ratio)
        self.mlp_ctrl = Mlp(width, mlp_ratio)

    def forward(self, h_pert: torch.Tensor, h_ctrl: torch.Tensor, s: torch.Tensor):
        bp_a, gp_a, gate_p_a, bp_m, gp_m, gate_p_m = self.ada_pert(s)
        bc_a, gc_a, gate_c_a, bc_m, gc_m, gate_c_m = self.ada_ctrl(s)
        u = torch.cat(  # eqs. 39-40
            [modulate(self.norm(h_pert), bp_a, gp_a), modulate(self.norm(h_ctrl), bc_a, gc_a)],
            dim=-1,
        )
        d_pert, d_ctrl = self.attn(u).split(self.width, dim=-1)  # eq. 41
        mlp_in_pert, mlp_in_ctrl = h_pert, h_ctrl  # parallel block: the block input
        h_pert = h_pert + gate_p_a[:, None] * d_pert  # eq. 42
        h_ctrl = h_ctrl + gate_c_a[:, None] * d_ctrl
        if not self.parallel:  # eq. 43 reads the post-attention state
            mlp_in_pert, mlp_in_ctrl = h_pert, h_ctrl
        h_pert = h_pert + gate_p_m[:, None] * self.mlp_pert(
            modulate(self.norm(mlp_in_pert), bp_m, gp_m)
        )
        h_ctrl = h_ctrl + gate_c_m[:, None] * self.mlp_ctrl(
            modulate(self.norm(mlp_in_ctrl), bc_m, gc_m)
        )
        return h_pert, h_ctrl


class FinalLayer(nn.Module):
    """AdaLN (shift, scale) -> Linear(d -> G) -> non-negative head (module docstring)."""

    def __init__(self, width: int, n_genes: int, head: str = "relu"):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = AdaLNZero(width, width, 2)
        self.linear = nn.Linear(width, n_genes)
        self.head = head

    def forward(self, h: torch.Tensor, s: torch.Tensor, base: torch.Tensor | None = None):
        """``base``: added to the pre-activation (``output: control_residual``)."""
        shift, scale = self.ada(s)
        out = self.linear(modulate(self.norm(h), shift, scale))
        if base is not None:
            out = out + base
        return F.relu(out) if self.head == "relu" else F.softplus(out)


class CovariateEncoder(nn.Module):
    """``e_y = Linear([e_cell ; e_batch ; e_pert])`` (App. B.3 "Covariate Encoder"): each covariate
    embedded independently, concatenated and projected to d.

    ``e_pert`` sums, over the components of a (combination) perturbation, a learned drug-identity
    embedding (row 0 = a drug unseen in training), linear projections of the drug's structure
    features (Morgan bits; MDT templates) and a learned embedding of its dose in the vocabulary of
    training doses ("discretize observed dose values into a vocabulary"). The control
    perturbation's structure features are the mean over all drugs (App. B.3). Feature tables are
    buffers (rows: :attr:`scpert.methods.perturbdiff.covariates.Vocabularies.features`).
    """

    def __init__(
        self,
        width: int,
        n_cell_lines: int,
        n_plates: int,
        n_drugs: int,
        n_doses: int,
        fingerprints: torch.Tensor,
        mdt: torch.Tensor | None,
    ):
        super().__init__()
        self.cell_line = nn.Embedding(n_cell_lines + 1, width)
        self.plate = nn.Embedding(n_plates + 1, width)
        self.drug = nn.Embedding(n_drugs + 1, width)
        self.dose = nn.Embedding(n_doses + 1, width)
        self.register_buffer("fingerprints", fingerprints.float())
        self.fingerprint_proj = (
            nn.Linear(fingerprints.shape[1], width) if fingerprints.shape[1] else None
        )
        if mdt is not None:
            self.register_buffer("mdt", mdt.float())
            self.mdt_proj = nn.Linear(mdt.shape[1], width)
        else:
            self.mdt, self.mdt_proj = None, None
        self.proj = nn.Linear(3 * width, width)

    def forward(self, cov: dict[str, torch.Tensor]) -> torch.Tensor:
        present = cov["slot"].unsqueeze(-1).float()  # (B, C, 1)
        rows = cov["feature"].clamp(min=0)
        pert = self.drug(cov["drug"]) + self.dose(cov["dose"])
        if self.fingerprint_proj is not None:
            pert = pert + self.fingerprint_proj(self.fingerprints[rows])
        if self.mdt_proj is not None:
            pert = pert + self.mdt_proj(self.mdt[rows])
        pert = (pert * present).sum(1)
        return self.proj(
            torch.cat([self.cell_line(cov["cell_line"]), self.plate(cov["plate"]), pert], -1)
        )


class PerturbDiffNet(nn.Module):
    """``f_theta(B_t, t; B_ctrl, c, tau)`` -> the clean perturbed set (x0-prediction, eq. 28)."""

    def __init__(self, p: dict, n_genes: int, covariates: CovariateEncoder):
        super().__init__()
        d = int(p["width"])
        self.n_genes = n_genes
        self.input_pert = nn.Linear(2 * n_genes, d)  # [B_t ; B^] (eq. 33)
        self.input_ctrl = nn.Linear(n_genes, d)
        self.time = TimestepEmbedder(d)
        self.covariates = covariates
        self.null_y = nn.Parameter(torch.zeros(d))  # e_y of the CFG-dropped metadata
        self.cond = nn.Sequential(nn.Linear(2 * d, d), nn.SiLU(), nn.Linear(d, d))  # eq. 37
        self.blocks = nn.ModuleList(
            MMDiTBlock(
                d, int(p["heads"]), float(p["mlp_ratio"]), p["block"] == "parallel", p["qk_norm"]
            )
            for _ in range(int(p["depth"]))
        )
        self.final = FinalLayer(d, n_genes, p["head"])
        self.control_residual = p["output"] == "control_residual"

    def condition(self, t: torch.Tensor, cov: dict, keep_meta: torch.Tensor) -> torch.Tensor:
        """``s = MLP([e_t ; e_y])`` with ``e_y`` the null vector where ``keep_meta`` is False."""
        e_y = self.covariates(cov)
        e_y = torch.where(keep_meta[:, None], e_y, self.null_y.expand_as(e_y))
        return self.cond(torch.cat([self.time(t), e_y], dim=-1))

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        ctrl: torch.Tensor,
        cov: dict,
        keep_meta: torch.Tensor,
        self_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x_t, ctrl, self_cond: (B, m, G) in the network's scale; t (B,); keep_meta (B,) bool."""
        if self_cond is None:
            self_cond = torch.zeros_like(x_t)
        s = self.condition(t, cov, keep_meta)
        h_pert = self.input_pert(torch.cat([x_t, self_cond], dim=-1))
        h_ctrl = self.input_ctrl(ctrl)
        for block in self.blocks:
            h_pert, h_ctrl = block(h_pert, h_ctrl, s)
        return self.final(h_pert, s, ctrl if self.control_residual else None)

    def module_groups(self) -> dict[str, list[nn.Module]]:
        """Modules by role, for ``scpert describe``."""
        return {
            "input projections": [self.input_pert, self.input_ctrl],
            "timestep embedding": [self.time],
            "covariate encoder": [self.covariates, self.cond, self.null_y],
            "MM-DiT blocks": list(self.blocks),
            "final layer": [self.final],
        }
