"""Timestep embeddings for diffusion denoisers.

:func:`sinusoidal_embedding` is the transformer/DDPM encoding ``[cos(t w_k), sin(t w_k)]`` with
``w_k = max_period^(-k / half)`` (Vaswani et al. 2017; the ``gamma(t)`` of scppdm.txt §3.1);
:class:`TimestepEmbedder` follows it with a two-layer SiLU MLP (DiT, Peebles & Xie 2023).
``time_scale`` multiplies ``t`` first: flow-matching times in [0, 1] use ``time_scale=1000`` so that
the sinusoid spans the same phases as integer diffusion timesteps 0..999 (with ``1`` the highest
frequency would move by less than one radian over the whole interval).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) timesteps (any real values) -> (B, dim); odd ``dim`` gets a zero last column."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """``MLP(sinusoidal(t))``: frequency_dim -> width -> width with SiLU."""

    def __init__(self, width: int, frequency_dim: int = 128, time_scale: float = 1.0):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.time_scale = float(time_scale)
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, width), nn.SiLU(), nn.Linear(width, width)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t.float() * self.time_scale, self.frequency_dim))
