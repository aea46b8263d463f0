"""Shared generative machinery (DESIGN §2): noise schedules, parameterisations, DDIM with guidance,
EMA. Written once and used by every diffusion method (scPPDM, StateXDiff, PerturbDiff)."""

from scpert.generative.ddim import DDIMSampler
from scpert.generative.ema import EMA
from scpert.generative.guidance import (
    Guidance,
    cfg,
    conditional,
    dual_knob,
    interaction_aware,
    mode,
)
from scpert.generative.parameterization import convert, from_x0_eps, to_x0_eps
from scpert.generative.schedules import NoiseSchedule, cosine, linear_vp, make_schedule

__all__ = [
    "DDIMSampler",
    "EMA",
    "Guidance",
    "NoiseSchedule",
    "cfg",
    "conditional",
    "convert",
    "cosine",
    "dual_knob",
    "from_x0_eps",
    "interaction_aware",
    "linear_vp",
    "make_schedule",
    "mode",
    "to_x0_eps",
]
