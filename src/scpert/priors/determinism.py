"""Reproducible pretraining: deterministic torch kernels on CPU (same seed -> same numbers)."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def deterministic(device: str):
    """Use deterministic kernels while pretraining on CPU (scatter/index-add sums otherwise vary
    with thread scheduling); CUDA keeps its fast kernels unless determinism was already on."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(device == "cpu" or previous)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
