"""Guidance rules: a prediction as a weighted sum of model outputs under condition modes.

A *mode* is the tuple of condition channels kept for one forward pass (sorted names; ``()`` is
fully unconditional). A :class:`Guidance` holds one weight per mode, a scalar or a per-sample
tensor (B,), and combines outputs as ``sum_m w_m * out_m``. The sampler evaluates all modes of a
rule in ONE batched forward pass (the denoiser receives the mode list) and combines them here.

Rules (weights sum to one, so the combination is parameterisation-independent; see
:mod:`scpert.generative.parameterization`):

- :func:`cfg` (Ho & Salimans 2022): ``(1 + w) out(c) - w out(null)``.
- :func:`dual_knob` (scPPDM eq. 15): ``(1 + s_p + s_d) out(both) - s_p out(no-pre)
  - s_d out(no-drug)``.
- :func:`interaction_aware` (StateXDiff eq. 13): ``out(0) + w_c (out(c) - out(0)) + w_d (out(d) -
  out(0)) + w_cd (out(cd) - out(c) - out(d) + out(0))``.
- :func:`conditional`: the conditional output alone (no guidance).

With all strengths zero, :func:`cfg` and :func:`dual_knob` reduce to the fully conditional output.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

Mode = tuple[str, ...]


def mode(*channels: str) -> Mode:
    """The canonical mode keeping ``channels`` (order-free)."""
    return tuple(sorted(set(channels)))


Weight = float | torch.Tensor


@dataclass(frozen=True)
class Guidance:
    """``out = sum_m weights[m] * out_m`` over the modes in ``weights`` (insertion order)."""

    weights: dict[Mode, Weight]

    def __post_init__(self):
        if not self.weights:
            raise ValueError("Guidance needs at least one mode")
        object.__setattr__(self, "weights", {mode(*m): w for m, w in self.weights.items()})

    @property
    def modes(self) -> list[Mode]:
        return list(self.weights)

    def combine(self, outputs: torch.Tensor) -> torch.Tensor:
        """outputs: (n_modes, B, ...) in :attr:`modes` order -> (B, ...)."""
        if outputs.shape[0] != len(self.weights):
            raise ValueError(f"expected {len(self.weights)} mode outputs, got {outputs.shape[0]}")
        total = torch.zeros_like(outputs[0])
        for out, weight in zip(outputs, self.weights.values()):
            if isinstance(weight, torch.Tensor):
                weight = weight.to(out).reshape(weight.shape + (1,) * (out.ndim - weight.ndim))
            total = total + weight * out
        return total


def conditional(channels: Iterable[str]) -> Guidance:
    """No guidance: the output with every channel in ``channels`` kept."""
    return Guidance({mode(*channels): 1.0})


def cfg(scale: Weight, channels: Iterable[str]) -> Guidance:
    """Classifier-free guidance on all ``channels`` at once (single-channel CFG)."""
    return Guidance({mode(*channels): 1.0 + scale, mode(): -scale})


def dual_knob(s_p: Weight, s_d: Weight, state: str = "pre", drug: str = "drug") -> Guidance:
    """scPPDM factorised guidance with a state knob ``s_p`` and a drug knob ``s_d``."""
    return Guidance({mode(state, drug): 1.0 + s_p + s_d, mode(drug): -s_p, mode(state): -s_d})


def interaction_aware(
    w_c: Weight, w_d: Weight, w_cd: Weight, cell: str = "cell", drug: str = "drug"
) -> Guidance:
    """StateXDiff's 4-mode rule, expanded to one weight per mode."""
    return Guidance(
        {
            mode(cell, drug): w_cd,
            mode(cell): w_c - w_cd,
            mode(drug): w_d - w_cd,
            mode(): 1.0 - w_c - w_d + w_cd,
        }
    )
