"""scPPDM inference (scppdm.txt §3.3.2, Fig. 2): factorised dual-knob guidance and DDIM.

``eps = (1 + s_p + s_d) eps(both) - s_p eps(no-pre) - s_d eps(no-drug)`` (eq. 15) with
``s_d(dose) = s0 sigmoid(alpha log(1 + dose) + gamma)`` per condition (eq. 16; a combination uses
the mean of its components' ``s_d``); the three modes run as one batched forward pass per step
(:func:`scpert.generative.sample`). DDIM (eta 0, ``sampler_steps`` respaced steps; the paper
says "Inference uses DDIM" without a step count). Ablations: (A) No-Cond samples the
unconditional model without guidance; (D) single-channel CFG ``(1 + s_d) eps(both) - s_d
eps(none)`` keeping the dose mapping; (E) constant ``s_d = s0``.

``clip_x0`` (the ``scppdm_residual`` variant: 5 on standardised latents; None in the paper
preset) clips the predicted clean sample at every step (:func:`scpert.generative.clip_x0`).
"""

from __future__ import annotations

import torch

from scpert.generative import DDIMSampler, Guidance, cfg, clip_x0, conditional, dual_knob, sample
from scpert.generative.schedules import NoiseSchedule
from scpert.methods.scppdm.model import ConditionBatch, ScppdmNet, strengths
from scpert.methods.scppdm.train import DRUG_CHANNEL, PRE


def guidance_rule(p: dict, conditions: ConditionBatch, device) -> Guidance:
    """The inference rule for a batch of conditions (ablations included)."""
    if p["conditioning"] == "none":
        return conditional([])
    s_d = strengths(conditions, p).to(device)
    if p["guidance"] == "single":
        return cfg(s_d, [PRE, DRUG_CHANNEL])
    return dual_knob(float(p["s_p"]), s_d, state=PRE, drug=DRUG_CHANNEL)


@torch.no_grad()
def sample_standardised(
    net: ScppdmNet,
    schedule: NoiseSchedule,
    p: dict,
    pre: torch.Tensor,
    conditions: ConditionBatch,
    noise: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DDIM samples of the standardised diffused variable given standardised ``z_pre`` (B, D),
    conditions (B) and initial noise (B, D) on the network's device; ``generator`` drives the
    noise of eta > 0."""
    net.eval()
    device = noise.device
    cond = conditions.to(device)
    drug = net.drug_encoder(cond)
    rule = guidance_rule(p, conditions, device)

    def denoise(z_t, t, modes):
        n, reps = len(z_t), len(modes)
        keep_pre = torch.cat([torch.full((n,), PRE in m, device=device) for m in modes])
        keep_drug = torch.cat([torch.full((n,), DRUG_CHANNEL in m, device=device) for m in modes])
        c = net.fusion(pre.repeat(reps, 1), drug.repeat(reps, 1), keep_pre, keep_drug)
        return net.denoiser(z_t.repeat(reps, 1), t.repeat(reps), c).reshape(reps, n, -1)

    sampler = DDIMSampler(
        schedule,
        int(p["sampler_steps"]),
        float(p["eta"]),
        p["prediction"],
        spacing=p["sampler_spacing"],
    )
    transform = None if p["clip_x0"] is None else clip_x0(float(p["clip_x0"]))
    return sample(sampler, denoise, noise, rule, x0_transform=transform, generator=generator)
