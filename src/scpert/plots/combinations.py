"""Combination splits side by side (StateXDiff arXiv:2605.16104 Fig. 4): the key metrics of each
method on the combination splits whose test combinations had 0, 1 or 2 components seen singly
(split types ``combo_seen0/1/2``); bars are means over the split's test conditions ± standard
error, reference rows are grey ticks (dashed: oracle, dotted: ceiling)."""

from __future__ import annotations

import pandas as pd

from scpert.plots.common import KEY_METRICS, bar_data, grouped_bars

COMBO_TYPES = ("combo_seen0", "combo_seen1", "combo_seen2")


def data(summary: pd.DataFrame, dataset: str, split_types: dict[str, str]) -> pd.DataFrame:
    table = bar_data(summary, KEY_METRICS, dataset)
    kinds = table["split"].map(split_types)
    table = table[kinds.isin(COMBO_TYPES)]
    return table.assign(split_type=kinds[kinds.isin(COMBO_TYPES)]).sort_values(
        ["split_type", "split", "method", "protocol", "metric"], kind="stable"
    )


def draw(table: pd.DataFrame, title: str = ""):
    order = (
        list(table.sort_values(["split_type", "split"])["split"].drop_duplicates())
        if not table.empty
        else None
    )
    return grouped_bars(
        table,
        KEY_METRICS,
        "split",
        title or "Combination splits: 0, 1 or 2 components seen singly",
        group_order=order,
    )
