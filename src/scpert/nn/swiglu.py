"""SwiGLU feed-forward network (Shazeer 2020; StateXDiff arXiv:2605.16104 App. A.4):
``FFN(x) = W2 (SiLU(W1 x) * W3 x)`` with ``W1, W3: H -> hidden`` and ``W2: hidden -> H``
(StateXDiff: hidden = 4H, Table 9 "FFN ratio 4")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int, bias: bool = True):
        super().__init__()
        self.w1 = nn.Linear(width, hidden, bias=bias)
        self.w3 = nn.Linear(width, hidden, bias=bias)
        self.w2 = nn.Linear(hidden, width, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
