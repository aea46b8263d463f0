"""Guided Decomposable Attention block (scPPDM, scppdm.txt §3.2 and App. G.3, eqs. 30-32).

Tokens ``H`` (B, M, d) and a condition vector ``c`` (B, D_c):

1. self-attention over the tokens, with a residual and LayerNorm: ``H1 = LN(H + MHA(H, H, H))``;
2. cross-attention from the tokens to the condition tokens ``u = reshape(W_c c)`` (B, K, d):
   ``Hc = MHA(H1, u, u)``;
3. FiLM of the cross-attention output by the condition, residual and LayerNorm:
   ``H_out = LN(H1 + gamma(c) * Hc + beta(c))`` with ``gamma(c), beta(c)`` of shape (M, d), one
   modulation per token and feature (eq. 32 multiplies elementwise with ``Hc`` in R^{M x d}).

Choice where the paper is silent or degenerate: eq. 32 adds the modulated cross-attention output
to the block input ``H``, so the self-attention output would only reach the output through the
cross-attention queries; with a single condition token (K = 1, the paper's "compact condition
token") the softmax over one key is 1 and the queries have no effect at all. The residual of step 1
keeps the self-attention path alive; ``cond_tokens > 1`` splits ``W_c c`` into several keys. With
one condition token the cross-attention output is the same vector for every latent token, so the
per-token FiLM is what lets the condition address tokens individually; a FiLM shared across tokens
passes only ``d`` numbers of condition per block.
Dropout (App. D: global 0.15) acts on both attention outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from scpert.nn.film import FiLM


class GDAttnBlock(nn.Module):
    def __init__(
        self,
        width: int,
        heads: int,
        cond_dim: int,
        tokens: int,
        cond_tokens: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        if width % heads:
            raise ValueError(f"GD-Attn: width {width} is not divisible by heads {heads}")
        self.tokens, self.cond_tokens, self.width = tokens, cond_tokens, width
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm_self = nn.LayerNorm(width)
        self.cond_proj = nn.Linear(cond_dim, cond_tokens * width)
        self.cross_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.film = FiLM(cond_dim, tokens * width)
        self.norm_out = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """tokens: (B, M, width); cond: (B, cond_dim) -> (B, M, width)."""
        attended, _ = self.self_attn(tokens, tokens, tokens, need_weights=False)
        h = self.norm_self(tokens + self.dropout(attended))
        u = self.cond_proj(cond).reshape(len(cond), self.cond_tokens, self.width)
        crossed, _ = self.cross_attn(h, u, u, need_weights=False)
        crossed = self.dropout(crossed).reshape(len(cond), -1)
        modulated = self.film(crossed, cond).reshape(h.shape)
        return self.norm_out(h + modulated)
