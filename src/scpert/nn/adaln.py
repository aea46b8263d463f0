"""Adaptive LayerNorm with zero initialisation (AdaLN-Zero; DiT, Peebles & Xie 2023, §3.2).

Two forms of one block, both zero-initialised so that each gated residual block starts as the
identity:

- :class:`AdaLNZero` (PerturbDiff arXiv:2602.19685 App. B.3 eqs. 38-44): A conditioning vector ``s`` (B, cond_dim) is mapped by ``SiLU -> Linear`` to ``chunks`` vectors of
``width`` each (shifts, scales, residual gates, in the caller's order). The linear layer starts at
zero, so every shift, scale and gate is 0 at initialisation: with gated residuals
``h + g * f(modulate(LN(h), shift, scale))`` each block starts as the identity.

:func:`modulate` is ``LN(h) * (1 + scale) + shift`` (PerturbDiff arXiv:2602.19685 App. B.3 eq. 44;
DiT's ``modulate``), for tokens ``(B, N, width)`` or vectors ``(B, width)``.

- :class:`AdaLNZeroNorm` (StateXDiff arXiv:2605.16104 App. A.4, Eq. 29): LayerNorm, modulation
  and gate in one module. ``AdaLN(x, c) = (1 + alpha) * LayerNorm(x) + delta`` with ``(alpha, delta, gamma) = Linear(c)``:
a per-feature scale ``alpha`` and shift ``delta`` (H each) and a gate ``gamma``. The linear map is
zero-initialised, so at the start of training the modulation is the identity (``1 + 0``) and the
gate is 0: a residual branch ``x + gamma * f(AdaLN(x, c))`` is then the identity mapping, the
"zero-initialised gates ensure identity mapping" of Eq. 29. Eq. 29 writes the scale as ``alpha``
multiplying LayerNorm(x) directly; with a zero-initialised map that would erase the input, so the
scale is parameterised as ``1 + alpha`` as in DiT (the same function class).

``gate``: ``"scalar"`` (Eq. 29: ``gamma_l in R``, one gate per branch) or ``"channel"`` (DiT: one
per feature); ``None``: no gate (the output head's final AdaLN).
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


GATES = ("scalar", "channel", None)


class AdaLNZeroNorm(nn.Module):
    """``forward(x (B, N, H), c (B, C)) -> (AdaLN(x, c), gate)`` with gate (B, 1, 1|H) or None."""

    def __init__(self, width: int, cond_dim: int, gate: str | None = "scalar"):
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"AdaLN-Zero gate must be one of {GATES}, got {gate!r}")
        self.width, self.gate = width, gate
        self.n_gate = {"scalar": 1, "channel": width, None: 0}[gate]
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(cond_dim, 2 * width + self.n_gate)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mod = self.modulation(c)
        scale, shift = mod[:, : self.width], mod[:, self.width : 2 * self.width]
        out = modulate(self.norm(x), shift, scale)
        gate = mod[:, 2 * self.width :][:, None] if self.n_gate else None
        return out, gate
