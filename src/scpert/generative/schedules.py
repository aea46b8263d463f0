"""Discrete variance-preserving noise schedules (DDPM forward process).

``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` with ``abar_t = prod_{s<=t} (1 - beta_s)``
(scppdm.txt eq. 2; Ho et al. 2020). Timesteps are integers ``0 .. T-1``; index ``t`` holds the
``t+1``-th noising step, so ``abar[0]`` is the least noisy level.

- :func:`linear_vp`: ``beta_t`` linear from ``beta_start`` to ``beta_end`` (DDPM defaults 1e-4,
  0.02, T = 1000); scPPDM App. D "VP-linear", PerturbDiff App. B.
- :func:`cosine`: ``abar(t) = f(t)/f(0)``, ``f(t) = cos(((t/T + s)/(1 + s)) pi/2)^2`` with
  ``s = 0.008`` and betas clipped at ``max_beta = 0.999`` (Nichol & Dhariwal 2021, eq. 17);
  StateXDiff App. A.

The tables are float64; coefficients are formed in float64 and cast to the data's dtype only at
the end (``1 - abar`` near ``t = 0`` loses digits in float32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NoiseSchedule:
    """``betas`` (T,) float64; every other quantity is derived from them."""

    betas: torch.Tensor
    name: str = "custom"

    def __post_init__(self):
        betas = self.betas.to(torch.float64)
        if betas.ndim != 1 or len(betas) == 0:
            raise ValueError("NoiseSchedule: betas must be a non-empty 1-D tensor")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("NoiseSchedule: betas must lie in (0, 1)")
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas_cumprod", torch.cumprod(1.0 - betas, dim=0))

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """``abar_t`` (float64) for integer timesteps ``t`` (any shape), on ``t``'s device."""
        return self.alphas_cumprod.to(t.device)[t.long()]

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` (t: one timestep per row)."""
        abar = _rows(self.alpha_bar(t.to(x0.device)), x0)
        return abar.sqrt().to(x0.dtype) * x0 + (1.0 - abar).sqrt().to(x0.dtype) * noise

    def sample_timesteps(
        self, n: int, generator: torch.Generator | None = None, device: str | torch.device = "cpu"
    ) -> torch.Tensor:
        """Uniform integer timesteps in ``[0, T)``."""
        return torch.randint(0, self.num_timesteps, (n,), generator=generator).to(device)


def _rows(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape per-row values (B,) to broadcast over ``like`` (B, ...)."""
    return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


def linear_vp(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> NoiseSchedule:
    """DDPM's linear beta schedule."""
    betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    return NoiseSchedule(betas, name="linear_vp")


def cosine(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
    """Improved-DDPM cosine schedule (betas from consecutive ``abar`` ratios, clipped)."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    betas = (1.0 - abar[1:] / abar[:-1]).clamp(min=1e-12, max=max_beta)
    return NoiseSchedule(betas, name="cosine")


SCHEDULES = {"linear_vp": linear_vp, "cosine": cosine}


def make_schedule(name: str, num_timesteps: int = 1000, **kwargs) -> NoiseSchedule:
    """A schedule by name (``linear_vp`` or ``cosine``)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown noise schedule '{name}' (available: {', '.join(SCHEDULES)})")
    return SCHEDULES[name](num_timesteps, **kwargs)
