"""Conversions between the eps-, v- and x0-parameterisations of a VP diffusion model.

With ``a = sqrt(abar_t)``, ``s = sqrt(1 - abar_t)`` (so ``a^2 + s^2 = 1``) and
``x_t = a x0 + s eps``:

- eps-prediction (Ho et al. 2020; scPPDM): ``x0 = (x_t - s eps) / a``;
- v-prediction (Salimans & Ho 2022; StateXDiff): ``v = a eps - s x0``, hence
  ``x0 = a x_t - s v`` and ``eps = s x_t + a v``;
- x0-prediction (PerturbDiff): ``eps = (x_t - a x0) / s``.

Every conversion is affine in the prediction for fixed ``(x_t, t)``, so guidance rules whose
weights sum to one (CFG and its variants) give the same result in every parameterisation.
"""

from __future__ import annotations

import torch

PREDICTIONS = ("eps", "v", "x0")


def _coefficients(alpha_bar: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    abar = alpha_bar.to(device=like.device, dtype=torch.float64)
    abar = abar.reshape(abar.shape + (1,) * (like.ndim - abar.ndim))
    return abar.sqrt().to(like.dtype), (1.0 - abar).sqrt().to(like.dtype)


def to_x0_eps(
    prediction: torch.Tensor, kind: str, x_t: torch.Tensor, alpha_bar: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0, eps)`` implied by a model output of parameterisation ``kind`` at ``x_t``.

    alpha_bar: ``abar_t`` per row of ``x_t`` (shape (B,)) or a scalar tensor.
    """
    a, s = _coefficients(alpha_bar, x_t)
    if kind == "eps":
        return (x_t - s * prediction) / a, prediction
    if kind == "v":
        return a * x_t - s * prediction, s * x_t + a * prediction
    if kind == "x0":
        return prediction, (x_t - a * prediction) / s
    raise ValueError(f"unknown prediction type '{kind}' (available: {', '.join(PREDICTIONS)})")


def from_x0_eps(
    x0: torch.Tensor, eps: torch.Tensor, kind: str, alpha_bar: torch.Tensor
) -> torch.Tensor:
    """The training target of parameterisation ``kind`` for clean data ``x0`` and noise ``eps``."""
    a, s = _coefficients(alpha_bar, x0)
    if kind == "eps":
        return eps
    if kind == "v":
        return a * eps - s * x0
    if kind == "x0":
        return x0
    raise ValueError(f"unknown prediction type '{kind}' (available: {', '.join(PREDICTIONS)})")


def convert(
    prediction: torch.Tensor, source: str, target: str, x_t: torch.Tensor, alpha_bar: torch.Tensor
) -> torch.Tensor:
    """Re-express a model output of parameterisation ``source`` as ``target``."""
    x0, eps = to_x0_eps(prediction, source, x_t, alpha_bar)
    return from_x0_eps(x0, eps, target, alpha_bar)
