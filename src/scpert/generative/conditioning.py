"""Condition-mode sampling for classifier-free-guidance training: which condition channels each
training row keeps.

- :func:`bernoulli_modes`: every channel dropped independently with its own probability
  (scPPDM App. D: ``p(drop-pre) = p(drop-drug) = 0.1``, so ``P(both) = 0.81``, ``P(no-pre) =
  P(no-drug) = 0.09``, ``P(none) = 0.01``; PerturbDiff: the metadata channel with 0.5).
- :func:`categorical_modes`: one mode per row drawn from a categorical over modes (StateXDiff
  App. A: joint 0.85, no-condition / cell-only / drug-only 0.05 each; :data:`STATEXDIFF_MODES`).

Both return :class:`ModeSample`: per channel a (B,) bool ``keep`` mask (the network replaces a
dropped channel by its null embedding), drawn from the caller's generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from scpert.generative.guidance import Mode, mode

#: StateXDiff's structured dropout over its two channels
STATEXDIFF_MODES: dict[Mode, float] = {
    mode("cell", "drug"): 0.85,
    mode(): 0.05,
    mode("cell"): 0.05,
    mode("drug"): 0.05,
}


@dataclass
class ModeSample:
    """``keep[channel]``: (B,) bool, True where the row keeps that channel."""

    keep: dict[str, torch.Tensor]

    def modes(self) -> list[Mode]:
        """The mode of every row."""
        channels = sorted(self.keep)
        n = len(next(iter(self.keep.values()))) if self.keep else 0
        masks = [self.keep[c].tolist() for c in channels]
        return [mode(*(c for c, m in zip(channels, masks) if m[i])) for i in range(n)]

    def to(self, device) -> ModeSample:
        return ModeSample({c: k.to(device) for c, k in self.keep.items()})


def bernoulli_modes(
    n: int, drop: Mapping[str, float], generator: torch.Generator | None = None
) -> ModeSample:
    """Each channel of ``drop`` (channel -> drop probability) kept with ``1 - p``, independently."""
    for channel, p in drop.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability of '{channel}' must lie in [0, 1], got {p}")
    return ModeSample(
        {c: torch.rand(n, generator=generator) >= float(p) for c, p in sorted(drop.items())}
    )


def categorical_modes(
    n: int,
    probabilities: Mapping[Mode, float],
    channels: Sequence[str] | None = None,
    generator: torch.Generator | None = None,
) -> ModeSample:
    """One mode per row from ``probabilities`` (mode -> probability, summing to 1)."""
    modes = [mode(*m) for m in probabilities]
    probs = torch.tensor([float(p) for p in probabilities.values()], dtype=torch.float64)
    if (probs < 0).any() or abs(float(probs.sum()) - 1.0) > 1e-6:
        raise ValueError(f"mode probabilities must be >= 0 and sum to 1, got {probs.tolist()}")
    channels = sorted(set(channels or ()) | {c for m in modes for c in m})
    draw = torch.multinomial(probs, n, replacement=True, generator=generator)
    keep = {}
    for channel in channels:
        has = torch.tensor([channel in m for m in modes], dtype=torch.bool)
        keep[channel] = has[draw]
    return ModeSample(keep)
