"""Ablation bars per method (StateXDiff arXiv:2605.16104 Table 2, scPPDM Fig. 4, scDFM
arXiv:2602.07103 Fig. 5): every configured variant of a method (config entries with the same
``base``, e.g. ``scppdm``, ``scppdm_residual`` and the (A)-(F) ablations of
``config/scppdm_ablations.yaml``) on the key metrics, per split; bars are means over the
split's test conditions ± standard error, reference rows grey ticks. A method with a single
variant in the run has no panel row."""

from __future__ import annotations

import pandas as pd

from scpert.layout import REFERENCE_ROWS
from scpert.plots.common import KEY_METRICS, bar_data, empty, grouped_bars


def data(summary: pd.DataFrame, dataset: str, bases: dict[str, str]) -> pd.DataFrame:
    """Rows of the key metrics for the methods whose base has >= 2 variants in ``bases``
    (method -> base), with a ``base`` column; the reference rows repeated for every base."""
    table = bar_data(summary, KEY_METRICS, dataset)
    families = pd.Series(bases).groupby(pd.Series(bases)).groups
    frames = []
    for base, variants in sorted(families.items()):
        shown = set(table["method"])
        variants = [v for v in variants if v in shown]
        if len(variants) < 2:
            continue
        rows = table[table["method"].isin([*variants, *REFERENCE_ROWS])]
        frames.append(rows.assign(base=base))
    if not frames:
        return table.iloc[:0].assign(base=pd.Series(dtype=str))
    return pd.concat(frames, ignore_index=True)


def draw(table: pd.DataFrame, title: str = ""):
    if table.empty:
        return empty("ablations: no method has two or more variants in this run")
    base = sorted(table["base"].unique())
    # one figure; several bases are stacked as separate groups of the x axis
    table = table.assign(split=table["base"] + " · " + table["split"]) if len(base) > 1 else table
    return grouped_bars(table, KEY_METRICS, "split", title or f"Variants of {', '.join(base)}")
