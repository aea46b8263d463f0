"""Differential attention (Ye et al. 2025, "Differential Transformer", arXiv:2410.05258), as scDFM
uses it for self- and cross-attention (arXiv:2602.07103 §3.4, eqs. 8-9).

Per head, queries and keys come in two halves ``(Q1, Q2)``, ``(K1, K2)`` of width ``d_h`` and the
values have width ``2 d_h``:

- ``A_i = softmax(Q_i K_i^T / sqrt(d_h))`` (eq. 8), ``alpha_diff = A1 - lambda A2`` and
  ``DiffAttn(X, Y) = alpha_diff V`` (eq. 9), with ``Q_i = W_Qi X``, ``K_i = W_Ki Y``, ``V = W_V Y``;
- the learnable scalar per layer (DIFF Transformer eq. 2): ``lambda = exp(lq1 . lk1) -
  exp(lq2 . lk2) + lambda_init`` with vectors ``lq*, lk*`` of width ``d_h`` drawn from
  N(0, 0.1^2), and ``lambda_init = 0.8 - 0.6 exp(-0.3 depth)`` for a layer at ``depth`` (0-based;
  scDFM's code passes the block index);
- every head's output is normalised by RMSNorm over its ``2 d_h`` features and multiplied by
  ``1 - lambda_init`` (the paper's headwise normalisation), then the heads are concatenated and
  projected.

:func:`differential_attention` is the functional core (eq. 9 on given projections): with
``lambda = 0`` it is standard scaled dot-product attention of ``(Q1, K1, V)``
(``tests/test_scdfm.py`` checks it against ``torch.nn.functional.scaled_dot_product_attention``).
:class:`DifferentialAttention` is the layer; ``differential=False`` turns it into standard
multi-head attention of the same width (scDFM's "w/o Differential Transformer" ablation, §4.5):
one softmax per head over full-width queries and keys, no lambda, no head norm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def lambda_init(depth: int) -> float:
    """``0.8 - 0.6 exp(-0.3 depth)`` (DIFF Transformer §2.1)."""
    return 0.8 - 0.6 * math.exp(-0.3 * depth)


def differential_attention(
    q1: torch.Tensor,
    k1: torch.Tensor,
    q2: torch.Tensor,
    k2: torch.Tensor,
    v: torch.Tensor,
    lam: torch.Tensor | float,
    mask: torch.Tensor | None = None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """``(softmax(Q1 K1^T / sqrt(d)) - lam softmax(Q2 K2^T / sqrt(d))) V`` (eqs. 8-9), computed
    as ``A1 V - lam A2 V`` with two fused scaled dot-product attentions (no attention map is
    materialised).

    q*: (..., Tq, d), k*: (..., Tk, d), v: (..., Tk, dv); ``mask`` (Tq, Tk) or broadcastable,
    True where a query may attend a key (every query needs at least one); ``dropout`` acts on
    both attention maps (the caller passes 0 outside training)."""
    a1v = F.scaled_dot_product_attention(q1, k1, v, attn_mask=mask, dropout_p=dropout)
    a2v = F.scaled_dot_product_attention(q2, k2, v, attn_mask=mask, dropout_p=dropout)
    return a1v - lam * a2v


class DifferentialAttention(nn.Module):
    """Multi-head differential attention of queries ``x`` (B, Tq, width) over ``y`` (B, Tk,
    width) (module docstring); ``depth`` sets ``lambda_init``."""

    def __init__(
        self,
        width: int,
        heads: int,
        depth: int = 0,
        dropout: float = 0.0,
        differential: bool = True,
    ):
        super().__init__()
        if width % (2 * heads):
            raise ValueError(f"differential attention: width {width} is not divisible by 2 x heads")
        self.width, self.heads, self.differential = width, heads, differential
        self.head_dim = width // heads // 2  # d_h: each of Q1, Q2 (and K1, K2); V has 2 d_h
        self.dropout = float(dropout)
        self.to_q = nn.Linear(width, width, bias=False)
        self.to_k = nn.Linear(width, width, bias=False)
        self.to_v = nn.Linear(width, width, bias=False)
        self.to_out = nn.Linear(width, width)
        if differential:
            self.lambda_init = lambda_init(depth)
            self.lambda_q1 = nn.Parameter(torch.randn(self.head_dim) * 0.1)
            self.lambda_k1 = nn.Parameter(torch.randn(self.head_dim) * 0.1)
            self.lambda_q2 = nn.Parameter(torch.randn(self.head_dim) * 0.1)
            self.lambda_k2 = nn.Parameter(torch.randn(self.head_dim) * 0.1)
            self.head_norm = nn.RMSNorm(2 * self.head_dim, eps=1e-5, elementwise_affine=False)

    def lam(self) -> torch.Tensor:
        """The learnable ``lambda`` (DIFF Transformer eq. 2)."""
        return (
            torch.exp((self.lambda_q1 * self.lambda_k1).sum())
            - torch.exp((self.lambda_q2 * self.lambda_k2).sum())
            + self.lambda_init
        )

    def keys_values(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(K, V)`` of ``y`` split into heads; a caller attending to the same ``y`` many times
        (scDFM's control tokens over the ODE steps) computes them once."""
        B, T, _ = y.shape
        k = self.to_k(y).reshape(B, T, -1, self.head_dim).transpose(1, 2)  # (B, 2H, T, d_h)
        v = self.to_v(y).reshape(B, T, self.heads, -1).transpose(1, 2)  # (B, H, T, 2 d_h)
        return k, v

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x: (B, Tq, width); y: (B, Tk, width) (default ``x``: self-attention) or its cached
        ``kv`` (:meth:`keys_values`); ``mask`` (Tq, Tk) True = may attend."""
        B, Tq, _ = x.shape
        k, v = kv if kv is not None else self.keys_values(x if y is None else y)
        q = self.to_q(x).reshape(B, Tq, -1, self.head_dim).transpose(1, 2)  # (B, 2H, Tq, d_h)
        p = self.dropout if self.training else 0.0
        if self.differential:
            q1, q2 = q[:, 0::2], q[:, 1::2]
            k1, k2 = k[:, 0::2], k[:, 1::2]
            out = differential_attention(q1, k1, q2, k2, v, self.lam(), mask, p)
            out = self.head_norm(out) * (1.0 - self.lambda_init)
        else:  # standard attention: full-width heads (B, H, T, 2 d_h)
            q = (
                q.reshape(B, self.heads, 2, Tq, self.head_dim)
                .transpose(2, 3)
                .reshape(B, self.heads, Tq, -1)
            )
            k = k.reshape(B, self.heads, 2, -1, self.head_dim).transpose(2, 3)
            k = k.reshape(B, self.heads, k.shape[2], -1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.to_out(out.transpose(1, 2).reshape(B, Tq, self.width))
