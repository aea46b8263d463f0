"""StateXDiff inference (arXiv:2605.16104 §3.4 Eq. 13, App. A.4 "Inference", Table 7).

DDIM (eta 0, ``sampler_steps`` = 50 uniformly spaced steps, v-prediction) from ``delta_z_T ~
N(0, I)``, with interaction-aware classifier-free guidance (Eq. 13, w_c 1.0, w_d 1.5, w_cd 2.0)
expanded to one weight per mode (:func:`scpert.generative.interaction_aware`): the four modes
(unconditional, cell-only, drug-only, joint) run as ONE batched forward pass per step
(:func:`scpert.generative.sample`). Their condition tokens and the Eq. 11 interaction do not depend
on the step and are computed once per batch of cells (:meth:`StateXDiffNet.condition`).
Variants: ``guidance: cfg`` ("w/o ICFG") is monolithic CFG on both channels at once,
``(1 + w) v(c, d) - w v(0)`` with ``w = cfg_scale``; ``none`` the joint prediction alone.
"""

from __future__ import annotations

import torch

from scpert.generative import DDIMSampler, Guidance, cfg, conditional, interaction_aware, sample
from scpert.generative.schedules import NoiseSchedule
from scpert.generative.trainer import autocast_settings
from scpert.methods.statexdiff.model import CellInput, StateXDiffNet
from scpert.methods.statexdiff.train import CELL, DRUG_CHANNEL


def guidance_rule(p: dict) -> Guidance:
    if p["guidance"] == "interaction":
        return interaction_aware(
            float(p["w_c"]), float(p["w_d"]), float(p["w_cd"]), cell=CELL, drug=DRUG_CHANNEL
        )
    if p["guidance"] == "cfg":
        return cfg(float(p["cfg_scale"]), [CELL, DRUG_CHANNEL])
    return conditional([CELL, DRUG_CHANNEL])


def _sample(
    net: StateXDiffNet,
    schedule: NoiseSchedule,
    p: dict,
    cell: CellInput,
    drug: torch.Tensor,
    log_dose: torch.Tensor,
    keep_protein: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    net.eval()
    rule = guidance_rule(p)
    modes = rule.modes
    n, device = len(noise), noise.device
    keep_cell = torch.cat([torch.full((n,), CELL in m, device=device) for m in modes])
    keep_drug = torch.cat([torch.full((n,), DRUG_CHANNEL in m, device=device) for m in modes])
    reps = len(modes)
    repeated = CellInput(
        *(
            None if x is None else x.repeat(reps, *([1] * (x.ndim - 1)))
            for x in (cell.z_c, cell.shared, cell.protein)
        )
    )
    cond = net.condition(
        repeated,
        drug.repeat(reps, 1),
        log_dose.repeat(reps, 1),
        keep_cell,
        keep_drug,
        keep_protein.repeat(reps),
    )

    def denoise(dz_t, t, modes_):
        assert list(modes_) == modes, "condition tokens were built for the rule's modes"
        v = net.denoise(dz_t.repeat(reps, 1), t.repeat(reps), cond)
        return v.float().reshape(reps, n, -1)

    sampler = DDIMSampler(schedule, int(p["sampler_steps"]), float(p["eta"]), p["prediction"])
    return sample(sampler, denoise, noise, rule)


@torch.no_grad()
def sample_residuals(net, schedule, p, cell, drug, log_dose, keep_protein, noise) -> torch.Tensor:
    """Guided DDIM samples of the (standardised) residual for B rows, all on the net's device;
    the network runs under the preset's mixed precision on GPUs (bf16 in the paper preset; the
    sampler's arithmetic stays float32)."""
    enabled, dtype, _ = autocast_settings(noise.device, str(p["mixed_precision"]))
    with torch.autocast(noise.device.type, dtype=dtype, enabled=enabled):
        return _sample(net, schedule, p, cell, drug, log_dose, keep_protein, noise)
