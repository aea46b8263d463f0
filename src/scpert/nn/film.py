"""Feature-wise linear modulation (FiLM; Perez et al. 2018): ``gamma(c) * x + beta(c)``.

``gamma`` and ``beta`` come from the condition through one linear layer, or through an MLP with one
SiLU hidden layer when ``hidden`` is given (scPPDM's dose FiLM, App. D: hidden 128). FiLM rescales
and shifts each feature without mixing features, so it changes magnitude, not direction (scppdm.txt
§3.2, eq. 6).
"""

from __future__ import annotations

import torch
from torch import nn


class FiLM(nn.Module):
    def __init__(self, cond_dim: int, features: int, hidden: int | None = None):
        super().__init__()
        self.features = features
        if hidden:
            self.to_scale_shift = nn.Sequential(
                nn.Linear(cond_dim, hidden), nn.SiLU(), nn.Linear(hidden, 2 * features)
            )
        else:
            self.to_scale_shift = nn.Linear(cond_dim, 2 * features)

    def scale_shift(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gamma, beta)``, each (B, features)."""
        gamma, beta = self.to_scale_shift(cond).chunk(2, dim=-1)
        return gamma, beta

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: (B, features); cond: (B, cond_dim)."""
        gamma, beta = self.scale_shift(cond)
        return gamma * x + beta
