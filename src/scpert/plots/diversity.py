"""Diversity-scaling curves (StateXDiff arXiv:2605.16104 App. C.2, Fig. 9): E-distance, KL
(scPerturBench's and the ``kl_floor`` variant), Wasserstein and PCC-delta (top-100 DEGs) against
the number of training drugs (held-out drugs, UD) and training cell lines (held-out lines, UC) at a
fixed training-set size; means over test conditions ± standard error (config/diversity.yaml,
docs/experiments.md)."""

from __future__ import annotations

import pandas as pd

from scpert.plots.experiment_curves import curve_data, draw_curves
from scpert.tables import Column

METRICS = [
    Column("scperturbench", "e_distance", "top100", "E-dist top-100", False),
    Column("scperturbench", "kl", "top100", "KL top-100", False),
    Column("scperturbench", "kl_floor", "top100", "KL (floored std) top-100", False),
    Column("scperturbench", "wasserstein", "top100", "WD top-100", False),
    Column("scperturbench", "pcc_delta", "top100", "PCCΔ top-100", True),
]
AXES = ["drug", "cell_line"]
AXIS_LABELS = {"drug": "training drugs K_d (UD)", "cell_line": "training cell lines K_c (UC)"}


def data(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of the diversity table that the figure shows (one per axis, metric, method, level)."""
    return curve_data(table, METRICS, AXES)


def draw(table: pd.DataFrame):
    return draw_curves(
        table, METRICS, AXES, AXIS_LABELS, "Diversity scaling at a fixed sample budget", log_x=True
    )
