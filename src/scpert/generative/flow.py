"""Conditional flow matching on the linear (CondOT) path (Lipman et al. 2023; scDFM, arXiv:2602.07103
§3.1-3.2).

``x0 ~ N(0, I)`` (source, ``t = 0``), ``x1`` the data (``t = 1``):

- path: ``x_t = (1 - t) x0 + t x1`` (scDFM's ``pi_t(x0, x1)``; the optimal-transport path with
  ``sigma_min = 0``);
- target velocity: ``u_t = x1 - x0`` (constant along the path), the regression target of
  ``L_CFM = E ||v_theta(x_t, t) - u_t||^2`` (scDFM eq. 2);
- one-step endpoint: ``x1_hat = x_t + (1 - t) v_theta(x_t, t)`` (scDFM §3.2), exact when
  ``v_theta = u_t``; the MMD regulariser compares it with the data;
- time: ``t ~ U(0, 1)`` (scDFM), or logit-normal (Esser et al. 2024) as an option.

Sampling integrates ``dx/dt = v`` from noise with :class:`scpert.generative.samplers.ODESampler`.
Networks embed ``t in [0, 1]`` with :class:`scpert.nn.TimestepEmbedder` at ``time_scale=1000``,
so the sinusoid frequencies cover the same range as for integer diffusion timesteps.
"""

from __future__ import annotations

import torch

TIME_DISTRIBUTIONS = ("uniform", "logit_normal")


def _rows(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.to(like).reshape(t.shape + (1,) * (like.ndim - t.ndim))


def path_sample(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``x_t = (1 - t) x0 + t x1`` with one ``t`` per row."""
    t = _rows(t, x1)
    return (1.0 - t) * x0 + t * x1


def target_velocity(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """``u_t = x1 - x0``."""
    return x1 - x0


def endpoint(x_t: torch.Tensor, t: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """One-step endpoint ``x1_hat = x_t + (1 - t) v``."""
    return x_t + (1.0 - _rows(t, x_t)) * velocity


def sample_time(
    n: int,
    generator: torch.Generator | None = None,
    distribution: str = "uniform",
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """``n`` times in [0, 1): uniform, or ``sigmoid(N(0, 1))`` (logit-normal)."""
    if distribution == "uniform":
        t = torch.rand(n, generator=generator)
    elif distribution == "logit_normal":
        t = torch.sigmoid(torch.randn(n, generator=generator))
    else:
        raise ValueError(
            f"unknown time distribution '{distribution}' (available: {TIME_DISTRIBUTIONS})"
        )
    return t.to(device)
