"""DDIM sampling (Song et al. 2021, eq. 12) for eps/v/x0-parameterised denoisers with guidance.

One step from timestep ``t`` to the previous sampled timestep ``t'`` (``abar' = 1`` after the last
step, so the final iterate is the predicted clean sample):

    x0, eps = parameterisation(guided model output at (x_t, t))
    sigma   = eta * sqrt((1 - abar') / (1 - abar)) * sqrt(1 - abar / abar')
    x_t'    = sqrt(abar') x0 + sqrt(1 - abar' - sigma^2) eps + sigma z

``eta = 0`` is the deterministic sampler (the PF-ODE integrator of scppdm.txt App. A.4); ``eta =
1`` matches DDPM ancestral sampling variance. ``clip_x0`` (diffusers' ``clip_sample_range``)
clamps the predicted clean sample elementwise to ``[-clip_x0, clip_x0]`` and recomputes ``eps``
from it: at the first steps of a schedule whose final ``abar`` is ~0 (VP-linear: 4e-5), small
eps errors are amplified ``1/sqrt(abar)``-fold in ``x0``, and the clip keeps them from
propagating. Use it on standardised data. Sampled timesteps are ``steps`` evenly spaced
integers from ``T - 1`` down to 0 (rounded, duplicates removed).

The denoiser is any callable ``denoise(x_t, t, modes) -> (len(modes), B, ...)``: it evaluates
every condition mode a :class:`~scpert.generative.guidance.Guidance` needs in one batched pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from scpert.generative.guidance import Guidance, Mode
from scpert.generative.parameterization import PREDICTIONS, to_x0_eps
from scpert.generative.schedules import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor, Sequence[Mode]], torch.Tensor]


class DDIMSampler:
    """``DDIMSampler(schedule, steps, eta, prediction, clip_x0).sample(denoise, x_T, guidance)``."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        steps: int = 50,
        eta: float = 0.0,
        prediction: str = "eps",
        clip_x0: float | None = None,
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(
                f"unknown prediction type '{prediction}' (available: {', '.join(PREDICTIONS)})"
            )
        if not 1 <= steps <= schedule.num_timesteps:
            raise ValueError(f"DDIM steps must lie in [1, {schedule.num_timesteps}], got {steps}")
        if eta < 0:
            raise ValueError(f"DDIM eta must be >= 0, got {eta}")
        self.schedule = schedule
        self.steps = int(steps)
        self.eta = float(eta)
        self.prediction = prediction
        self.clip_x0 = clip_x0

    def timesteps(self) -> list[int]:
        """The sampled timesteps, descending."""
        grid = torch.linspace(self.schedule.num_timesteps - 1, 0, self.steps, dtype=torch.float64)
        return list(dict.fromkeys(int(t) for t in grid.round().tolist()))

    @torch.no_grad()
    def sample(
        self,
        denoise: Denoiser,
        x_T: torch.Tensor,
        guidance: Guidance,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Integrate from ``x_T`` (B, ...) to a clean sample; ``generator`` drives eta > 0 noise."""
        abars = self.schedule.alphas_cumprod.to(x_T.device)
        steps = self.timesteps()
        x = x_T
        modes = guidance.modes
        for i, t in enumerate(steps):
            abar = abars[t]
            abar_prev = abars[steps[i + 1]] if i + 1 < len(steps) else torch.ones_like(abar)
            t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            output = guidance.combine(denoise(x, t_batch, modes))
            x0, eps = to_x0_eps(output, self.prediction, x, abar)
            if self.clip_x0 is not None:
                x0 = x0.clamp(-self.clip_x0, self.clip_x0)
                eps = to_x0_eps(x0, "x0", x, abar)[1]
            sigma = self.eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
            direction = (1 - abar_prev - sigma**2).clamp(min=0).sqrt()
            x = abar_prev.sqrt().to(x.dtype) * x0 + direction.to(x.dtype) * eps
            if self.eta > 0 and i + 1 < len(steps):
                noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
                x = x + sigma.to(x.dtype) * noise
        return x
