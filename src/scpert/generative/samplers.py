"""Samplers with a ``step()`` (diffusers-style) and ONE sampling loop for every method.

A sampler is a grid of times plus ``step(model, x, i) -> StepOutput(x_next, x0)``, where
``model(x, t)`` is the (already guided) network output at state ``x`` and time ``t`` (a (B,)
tensor) and ``x0`` is the clean-sample prediction the step used. :func:`sample` runs any sampler:
it evaluates every condition mode a :class:`~scpert.generative.guidance.Guidance` needs in one
batched call of the denoiser, combines them, feeds the previous step's clean-sample prediction
back when self-conditioning, and applies an ``x0`` transform (:func:`clip_x0`,
:func:`nonnegative`).

Diffusion samplers (discrete VP schedule, :mod:`scpert.generative.schedules`; model output of
parameterisation ``prediction`` = eps / v / x0, :mod:`scpert.generative.parameterization`), from
timestep ``t`` to the next grid timestep ``t'`` (``abar' = 1`` after the last one, so the final
iterate is the clean-sample prediction):

- :class:`DDIMSampler` (Song et al. 2021, eq. 12): ``sigma = eta sqrt((1 - abar') / (1 - abar))
  sqrt(1 - abar / abar')``, ``x' = sqrt(abar') x0 + sqrt(1 - abar' - sigma^2) eps + sigma z``;
  ``eta = 0`` is the deterministic PF-ODE integrator (scppdm.txt App. A.4), ``eta = 1`` has the
  DDPM posterior variance.
- :class:`DDPMSampler` (Ho et al. 2020, eqs. 6-7, on the grid's own betas ``1 - abar / abar'``):
  ``x' = sqrt(abar') beta / (1 - abar) x0 + sqrt(abar / abar') (1 - abar') / (1 - abar) x_t +
  sigma z`` with ``sigma^2`` the posterior variance ``beta (1 - abar') / (1 - abar)`` ("small")
  or ``beta`` ("large", PerturbDiff App. B); no noise on the last step.

Timestep grids (``spacing``): ``respaced`` = ``steps`` evenly spaced integers from ``T - 1`` down
to 0 (rounded, duplicates removed; the paper texts' K-step DDIM); ``truncated`` = ``steps - 1,
..., 0``, the first ``steps`` timesteps of the original schedule, started from pure noise as
PerturbDiff's code does (t = 99..0 of its 1000-step schedule).

The x0 transform (e.g. diffusers' ``clip_sample``) replaces the clean-sample prediction at every
diffusion step, and the update is recomputed from it (``eps = (x_t - sqrt(abar) x0) /
sqrt(1 - abar)``): at the first steps of a schedule whose final ``abar`` is ~0 (VP-linear: 4e-5)
eps errors are amplified ``1/sqrt(abar)``-fold in ``x0``, and the clip keeps them from
propagating.

Flow matching (:class:`ODESampler`, :mod:`scpert.generative.flow`): ``dx/dt = v(x, t)`` from
``t = 0`` (noise) to ``t = 1`` (data) on ``steps`` uniform intervals with Euler (order 1), Heun
(explicit trapezoid, order 2) or the classic RK4 (order 4). The clean-sample prediction of a step
is the one-step endpoint ``x + (1 - t) v(x, t)`` at its start; the x0 transform is applied to
that prediction (fed back by self-conditioning) and to the final state (e.g. scDFM's clamp at 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from scpert.generative.guidance import Guidance, Mode
from scpert.generative.parameterization import PREDICTIONS, to_x0_eps
from scpert.generative.schedules import NoiseSchedule

#: ``denoise(x_t, t, modes[, self_cond]) -> (len(modes), B, ...)``: one batched call for all modes
Denoiser = Callable[..., torch.Tensor]
#: the guided model output at ``(x, t)``
Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Transform = Callable[[torch.Tensor], torch.Tensor]
SPACINGS = ("respaced", "truncated")
ODE_METHODS = ("euler", "heun", "rk4")


@dataclass
class StepOutput:
    """The state at the next grid point and the clean-sample prediction the step used."""

    x: torch.Tensor
    x0: torch.Tensor


def clip_x0(limit: float) -> Transform:
    """Elementwise clip of the clean-sample prediction to ``[-limit, limit]``."""
    return lambda x0: x0.clamp(-float(limit), float(limit))


def nonnegative(x0: torch.Tensor) -> torch.Tensor:
    """Clamp at 0 (expression is non-negative)."""
    return x0.clamp(min=0.0)


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


class DiffusionSampler:
    """Shared grid and bookkeeping of the discrete-time samplers."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        steps: int = 50,
        prediction: str = "eps",
        spacing: str = "respaced",
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(
                f"unknown prediction type '{prediction}' (available: {', '.join(PREDICTIONS)})"
            )
        if spacing not in SPACINGS:
            raise ValueError(f"unknown timestep spacing '{spacing}' (available: {SPACINGS})")
        if not 1 <= steps <= schedule.num_timesteps:
            raise ValueError(
                f"sampler steps must lie in [1, {schedule.num_timesteps}], got {steps}"
            )
        self.schedule = schedule
        self.steps = int(steps)
        self.prediction = prediction
        self.spacing = spacing
        self._grid = self.timesteps()

    def timesteps(self) -> list[int]:
        """The sampled timesteps, descending."""
        if self.spacing == "truncated":
            return list(range(self.steps - 1, -1, -1))
        grid = torch.linspace(self.schedule.num_timesteps - 1, 0, self.steps, dtype=torch.float64)
        return list(dict.fromkeys(int(t) for t in grid.round().tolist()))

    def __len__(self) -> int:
        return len(self._grid)

    def initial_noise(self, shape, generator=None, device="cpu") -> torch.Tensor:
        """``x_T ~ N(0, I)``."""
        return torch.randn(shape, generator=generator).to(device)

    def _levels(self, i: int, like: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
        abars = self.schedule.alphas_cumprod
        t = self._grid[i]
        abar = abars[t]
        abar_prev = abars[self._grid[i + 1]] if i + 1 < len(self._grid) else torch.ones_like(abar)
        return t, abar, abar_prev

    def _clean(self, model: Model, x, i, x0_transform):
        t, abar, abar_prev = self._levels(i, x)
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x0, eps = to_x0_eps(model(x, t_batch), self.prediction, x, abar)
        if x0_transform is not None:
            x0 = x0_transform(x0)
            eps = to_x0_eps(x0, "x0", x, abar)[1]
        return x0, eps, abar, abar_prev


class DDIMSampler(DiffusionSampler):
    """DDIM (module docstring); ``eta`` >= 0."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        steps: int = 50,
        eta: float = 0.0,
        prediction: str = "eps",
        spacing: str = "respaced",
    ):
        if eta < 0:
            raise ValueError(f"DDIM eta must be >= 0, got {eta}")
        super().__init__(schedule, steps, prediction, spacing)
        self.eta = float(eta)

    def step(
        self,
        model: Model,
        x: torch.Tensor,
        i: int,
        generator: torch.Generator | None = None,
        x0_transform: Transform | None = None,
    ) -> StepOutput:
        x0, eps, abar, abar_prev = self._clean(model, x, i, x0_transform)
        sigma = self.eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
        direction = (1 - abar_prev - sigma**2).clamp(min=0).sqrt()
        nxt = abar_prev.sqrt().to(x.dtype) * x0 + direction.to(x.dtype) * eps
        if self.eta > 0 and i + 1 < len(self):
            nxt = nxt + sigma.to(x.dtype) * _noise(x, generator)
        return StepOutput(nxt, x0)


class DDPMSampler(DiffusionSampler):
    """DDPM ancestral sampling (module docstring); ``variance``: ``small`` or ``large``."""

    VARIANCES = ("small", "large")

    def __init__(
        self,
        schedule: NoiseSchedule,
        steps: int | None = None,
        prediction: str = "eps",
        variance: str = "small",
        spacing: str = "respaced",
    ):
        if variance not in self.VARIANCES:
            raise ValueError(f"unknown DDPM variance '{variance}' (available: {self.VARIANCES})")
        super().__init__(schedule, steps or schedule.num_timesteps, prediction, spacing)
        self.variance = variance

    def step(
        self,
        model: Model,
        x: torch.Tensor,
        i: int,
        generator: torch.Generator | None = None,
        x0_transform: Transform | None = None,
    ) -> StepOutput:
        x0, _, abar, abar_prev = self._clean(model, x, i, x0_transform)
        alpha = abar / abar_prev
        beta = 1 - alpha
        c0 = abar_prev.sqrt() * beta / (1 - abar)
        ct = alpha.sqrt() * (1 - abar_prev) / (1 - abar)
        nxt = c0.to(x.dtype) * x0 + ct.to(x.dtype) * x
        if i + 1 < len(self):
            var = beta * (1 - abar_prev) / (1 - abar) if self.variance == "small" else beta
            nxt = nxt + var.sqrt().to(x.dtype) * _noise(x, generator)
        return StepOutput(nxt, x0)


class ODESampler:
    """Fixed-step integrator of a flow-matching velocity field from t = 0 to 1 (module
    docstring); ``method``: ``euler``, ``heun`` or ``rk4``."""

    def __init__(self, steps: int = 100, method: str = "euler"):
        if method not in ODE_METHODS:
            raise ValueError(f"unknown ODE method '{method}' (available: {ODE_METHODS})")
        if steps < 1:
            raise ValueError(f"ODE steps must be >= 1, got {steps}")
        self.steps = int(steps)
        self.method = method

    def times(self) -> list[float]:
        """The grid ``0, 1/K, ..., 1``."""
        return [k / self.steps for k in range(self.steps + 1)]

    def __len__(self) -> int:
        return self.steps

    def initial_noise(self, shape, generator=None, device="cpu") -> torch.Tensor:
        """``x_0 ~ N(0, I)`` (the source of the linear path)."""
        return torch.randn(shape, generator=generator).to(device)

    def step(
        self,
        model: Model,
        x: torch.Tensor,
        i: int,
        generator: torch.Generator | None = None,
        x0_transform: Transform | None = None,
    ) -> StepOutput:
        t, h = i / self.steps, 1.0 / self.steps

        def v(state, time):
            return model(state, torch.full((x.shape[0],), time, dtype=x.dtype, device=x.device))

        k1 = v(x, t)
        if self.method == "euler":
            nxt = x + h * k1
        elif self.method == "heun":
            k2 = v(x + h * k1, t + h)
            nxt = x + 0.5 * h * (k1 + k2)
        else:
            k2 = v(x + 0.5 * h * k1, t + 0.5 * h)
            k3 = v(x + 0.5 * h * k2, t + 0.5 * h)
            k4 = v(x + h * k3, t + h)
            nxt = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        endpoint = x + (1.0 - t) * k1
        if x0_transform is not None:
            endpoint = x0_transform(endpoint)
            if i + 1 == self.steps:
                nxt = x0_transform(nxt)
        return StepOutput(nxt, endpoint)


Sampler = DiffusionSampler | ODESampler


@torch.no_grad()
def sample(
    sampler: Sampler,
    denoise: Denoiser,
    x_init: torch.Tensor,
    guidance: Guidance,
    *,
    self_conditioning: bool = False,
    x0_transform: Transform | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[int, StepOutput], None] | None = None,
) -> torch.Tensor:
    """Run ``sampler`` from ``x_init`` (noise, shape (B, ...)) to a clean sample.

    ``denoise(x, t, modes)`` returns the outputs of all ``guidance.modes`` stacked (one batched
    forward pass); with ``self_conditioning`` it is called as ``denoise(x, t, modes, self_cond)``
    with the previous step's clean-sample prediction (None at the first step: the network's own
    "no estimate" input, e.g. zeros). ``generator`` drives the samplers' noise; ``callback(i,
    out)`` sees every step.
    """
    modes: Sequence[Mode] = guidance.modes
    previous: list[torch.Tensor | None] = [None]

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        outputs = denoise(x, t, modes, previous[0]) if self_conditioning else denoise(x, t, modes)
        return guidance.combine(outputs)

    x = x_init
    for i in range(len(sampler)):
        out = sampler.step(model, x, i, generator=generator, x0_transform=x0_transform)
        x = out.x
        previous[0] = out.x0
        if callback is not None:
            callback(i, out)
    return x
