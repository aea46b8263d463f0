"""Shared generative machinery (docs/architecture.md, "Packages"), written once and used by every method.

========================  ===========================================================
module                    what
========================  ===========================================================
``schedules``             discrete VP noise schedules (linear, cosine)
``parameterization``      eps / v / x0 conversions
``samplers``              DDIM, DDPM, ODE (Euler/Heun/RK4) with ``step()``; the one loop
``guidance``              CFG, scPPDM dual knob, StateXDiff interaction-aware rule
``conditioning``          condition-mode sampling (Bernoulli per channel, categorical)
``flow``                  flow matching on the linear path
``losses``                energy distance, multi-kernel MMD^2, cosine-margin triplet
``ema``                   exponential moving average of weights
``trainer``               the one training loop (schedules, AMP, EMA, checkpoints, DDP)
``distributed``           torchrun launch of data-parallel train jobs
========================  ===========================================================
"""

from scpert.generative import flow, losses
from scpert.generative.conditioning import (
    STATEXDIFF_MODES,
    ModeSample,
    bernoulli_modes,
    categorical_modes,
)
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
from scpert.generative.samplers import (
    DDIMSampler,
    DDPMSampler,
    ODESampler,
    StepOutput,
    clip_x0,
    nonnegative,
    sample,
)
from scpert.generative.schedules import NoiseSchedule, cosine, linear_vp, make_schedule

__all__ = [
    "DDIMSampler",
    "DDPMSampler",
    "EMA",
    "STATEXDIFF_MODES",
    "Guidance",
    "ModeSample",
    "NoiseSchedule",
    "ODESampler",
    "StepOutput",
    "bernoulli_modes",
    "categorical_modes",
    "cfg",
    "clip_x0",
    "conditional",
    "convert",
    "cosine",
    "dual_knob",
    "flow",
    "from_x0_eps",
    "interaction_aware",
    "linear_vp",
    "losses",
    "make_schedule",
    "mode",
    "nonnegative",
    "sample",
    "to_x0_eps",
]
