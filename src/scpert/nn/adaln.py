"""Adaptive LayerNorm with zero initialisation (AdaLN-Zero; DiT, Peebles & Xie 2023, §3.2).

A conditioning vector ``s`` (B, cond_dim) is mapped by ``SiLU -> Linear`` to ``chunks`` vectors of
``width`` each (shifts, scales, residual gates, in the caller's order). The linear layer starts at
zero, so every shift, scale and gate is 0 at initialisation: with gated residuals
``h + g * f(modulate(LN(h), shift, scale))`` each block starts as the identity.

:func:`modulate` is ``LN(h) * (1 + scale) + shift`` (PerturbDiff arXiv:2602.19685 App. B.3 eq. 44;
DiT's ``modulate``), for tokens ``(B, N, width)`` or vectors ``(B, width)``.
"""

from __future__ import annotations

import torch
from torch import nn


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift``; ``shift``/``scale`` (B, width) broadcast over x's tokens."""
    if x.ndim == 3:
        shift, scale = shift[:, None], scale[:, None]
    return x * (1.0 + scale) + shift


class AdaLNZero(nn.Module):
    """``s -> (c_1, ..., c_chunks)``, each (B, width), from one zero-initialised linear layer."""

    def __init__(self, cond_dim: int, width: int, chunks: int):
        super().__init__()
        self.chunks = int(chunks)
        self.linear = nn.Linear(cond_dim, chunks * width)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(nn.functional.silu(s)).chunk(self.chunks, dim=-1)
