"""PerturbDiff sampling (arXiv:2602.19685 App. B.2.2): reverse diffusion of whole cell sets.

From ``B_T ~ N(0, I)`` (m, G) per set, DDIM with ``sampler_steps`` = K steps and ``eta``
(eq. 34; respaced grid by default, the code's truncated ``t = K-1 .. 0`` start as
``sampler_spacing: truncated``), or DDPM with the fixed-large variance (``sampler: ddpm``), on the
shared loop (:func:`scpert.generative.sample`). The network predicts x0; CFG in eps-space
(eq. 35, ``(1 + w) eps_c - w eps_u``; the unconditional branch drops the metadata and keeps the
control set) equals the same combination of the x0 predictions (the weights sum to one,
:mod:`scpert.generative.parameterization`); the combined x0 is clamped at 0 (expression is
non-negative; the code zeroes x0 < 1e-4). Self-conditioning feeds the previous step's x0 back
(eq. 33), zeros at the first step.
"""

from __future__ import annotations

import torch

from scpert.generative import (
    DDIMSampler,
    DDPMSampler,
    cfg,
    conditional,
    nonnegative,
    sample,
)
from scpert.generative.schedules import NoiseSchedule

#: the metadata channel of CFG (cell line, batch, perturbation); the control set is always kept
META = "meta"


def sampler_for(schedule: NoiseSchedule, p: dict, steps: int | None = None):
    steps = int(steps or p["sampler_steps"])
    if p["sampler"] == "ddpm":
        return DDPMSampler(schedule, steps, "x0", variance="large", spacing=p["sampler_spacing"])
    return DDIMSampler(schedule, steps, float(p["eta"]), "x0", spacing=p["sampler_spacing"])


@torch.no_grad()
def sample_sets(
    net,
    schedule: NoiseSchedule,
    p: dict,
    ctrl: torch.Tensor,
    cov: dict[str, torch.Tensor],
    noise: torch.Tensor,
    steps: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Clean perturbed sets (B, m, G) in the network's scale, given control sets ``ctrl`` and
    initial noise (B, m, G) and the sets' covariates (index tensors, B rows)."""
    w = float(p["guidance_scale"])
    rule = cfg(w, [META]) if w else conditional([META])
    B = len(noise)

    def denoise(x, t, modes, self_cond=None):
        reps = len(modes)
        keep = torch.cat([torch.full((B,), META in m, device=x.device) for m in modes])
        out = net(
            x.repeat(reps, 1, 1),
            t.repeat(reps),
            ctrl.repeat(reps, 1, 1),
            {k: v.repeat(reps, *([1] * (v.ndim - 1))) for k, v in cov.items()},
            keep,
            None if self_cond is None else self_cond.repeat(reps, 1, 1),
        )
        return out.reshape(reps, *x.shape)

    return sample(
        sampler_for(schedule, p, steps),
        denoise,
        noise,
        rule,
        self_conditioning=float(p["p_self_cond"]) > 0,
        x0_transform=nonnegative,
        generator=generator,
    )
