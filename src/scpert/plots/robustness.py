"""Robustness curves (StateXDiff arXiv:2605.16104 App. C.1, Fig. 8): MSE (top row) and PCC-delta
(bottom row) of each method against the noise intensity (left) and the sparsity level (right),
scPerturBench top-100 DEGs, means over the split's test conditions ± standard error. Level 0 is
the uncorrupted data (config/robustness.yaml, docs/experiments.md)."""

from __future__ import annotations

import pandas as pd

from scpert.plots.experiment_curves import curve_data, draw_curves
from scpert.tables import Column

METRICS = [
    Column("scperturbench", "mse", "top100", "MSE top-100", False),
    Column("scperturbench", "pcc_delta", "top100", "PCCΔ top-100", True),
]
AXES = ["noise", "sparsity"]
AXIS_LABELS = {"noise": "noise intensity σ", "sparsity": "sparsity level (dropout p)"}


def data(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of the robustness table that the figure shows (one per axis, metric, method, level)."""
    return curve_data(table, METRICS, AXES)


def draw(table: pd.DataFrame):
    split = ", ".join(sorted(table["split"].unique())) if not table.empty else ""
    return draw_curves(
        table, METRICS, AXES, AXIS_LABELS, f"Robustness to noise and sparsity ({split})"
    )
