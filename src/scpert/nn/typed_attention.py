"""Joint multi-head self-attention with separate QKV projections per token type (StateXDiff
arXiv:2605.16104 App. A.4, Eq. 30; the per-modality projections of MM-DiT, Esser et al. 2024).

The sequence is the concatenation of contiguous segments, one per token type (StateXDiff: noise,
shared-cell, protein, drug). Each type ``m`` has its own ``W_Q^(m), W_K^(m), W_V^(m)`` (H -> H,
``heads`` heads of ``H / heads``); the projections of all segments are concatenated in sequence
order and ONE standard multi-head attention runs over the whole sequence (every token attends to
every token), followed by one output projection shared by all types.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class TypedJointAttention(nn.Module):
    def __init__(self, width: int, heads: int, n_types: int, bias: bool = True):
        super().__init__()
        if width % heads:
            raise ValueError(f"typed attention: width {width} is not divisible by heads {heads}")
        self.width, self.heads, self.n_types = width, heads, n_types
        self.qkv = nn.ModuleList(nn.Linear(width, 3 * width, bias=bias) for _ in range(n_types))
        self.out = nn.Linear(width, width, bias=bias)

    def forward(self, x: torch.Tensor, segments: Sequence[int]) -> torch.Tensor:
        """x: (B, N, H) whose first ``segments[0]`` tokens are of type 0, the next ``segments[1]``
        of type 1, ... (``sum(segments) == N``, one length per type) -> (B, N, H)."""
        if len(segments) != self.n_types or sum(segments) != x.shape[1]:
            raise ValueError(
                f"typed attention: segments {list(segments)} do not cover {x.shape[1]} tokens "
                f"of {self.n_types} types"
            )
        parts = [
            proj(chunk) for proj, chunk in zip(self.qkv, torch.split(x, list(segments), dim=1))
        ]
        qkv = torch.cat(parts, dim=1)  # (B, N, 3H)
        B, N, _ = qkv.shape
        q, k, v = qkv.view(B, N, 3, self.heads, self.width // self.heads).permute(2, 0, 3, 1, 4)
        attended = attention(q, k, v)  # (B, heads, N, d)
        return self.out(attended.transpose(1, 2).reshape(B, N, self.width))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v``: torch's fused kernel on GPUs; on CPU the plain product,
    whose backward is faster than the fused CPU kernel's for short sequences (StateXDiff's tiny
    preset, 12 tokens; ``docs/decisions.md`` "StateXDiff tiny")."""
    if q.is_cuda:
        return F.scaled_dot_product_attention(q, k, v)
    weights = torch.softmax((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5, dim=-1)
    return weights @ v
