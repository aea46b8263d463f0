"""Exponential moving average of model weights (evaluation copy).

``shadow <- decay * shadow + (1 - decay) * param`` every ``every``-th call of :meth:`EMA.update`
(scPPDM App. D: decay 0.999 every step; PerturbDiff App. B: 0.99 every 10 steps). Floating-point
buffers (e.g. BatchNorm statistics) are averaged the same way; integer buffers are copied.
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999, every: int = 1):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        if every < 1:
            raise ValueError(f"EMA 'every' must be >= 1, got {every}")
        self.decay = float(decay)
        self.every = int(every)
        self.calls = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._pairs: tuple | None = None

    def _tensors(self, model: nn.Module) -> tuple[list, list, list, list]:
        """(float shadows, their live tensors, other shadows, their live tensors), cached: building
        a state_dict every step costs more than the averaging on small models."""
        if self._pairs is None or self._pairs[0] is not model:
            live = dict(model.named_parameters())
            live.update(dict(model.named_buffers()))
            floats, targets, others, sources = [], [], [], []
            for key, shadow in self.shadow.items():
                tensor = live[key]
                if shadow.is_floating_point():
                    floats.append(shadow)
                    targets.append(tensor)
                else:
                    others.append(shadow)
                    sources.append(tensor)
            self._pairs = (model, (floats, targets, others, sources))
        return self._pairs[1]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.calls += 1
        if self.calls % self.every:
            return
        floats, targets, others, sources = self._tensors(model)
        if floats:  # one fused pass over all tensors (per-tensor lerp costs ms on small models)
            torch._foreach_lerp_(floats, [t.detach() for t in targets], 1.0 - self.decay)
        for shadow, source in zip(others, sources):
            shadow.copy_(source)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model``."""
        model.load_state_dict(self.shadow)

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "every": self.every,
            "calls": self.calls,
            "shadow": self.shadow,
        }

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.every, self.calls = state["decay"], state["every"], state["calls"]
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}
        self._pairs = None
