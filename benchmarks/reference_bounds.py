"""Do the reference rows bound the methods? Per (split, metric with a direction), the oracle's and
the ceiling's mean against the best method's, from a run's ``results/tables/summary.tsv``.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/reference_bounds.py <workdir>
(docs/decisions.md "Reference rows against the methods").
"""

import sys

import numpy as np
import pandas as pd

from scpert import tables
from scpert.layout import REFERENCE_ROWS


def bounds(summary: pd.DataFrame) -> pd.DataFrame:
    directions = tables.metric_directions()
    rows = []
    keys = ["dataset", "split", "protocol", "metric", "deg_set"]
    for key, block in summary.groupby(keys):
        if (key[2], key[3]) not in directions:
            continue
        higher = directions[key[2], key[3]]
        methods = block[~block["method"].isin(REFERENCE_ROWS)].set_index("method")["mean"]
        methods = methods.dropna()
        if methods.empty:
            continue
        best_method = methods.idxmax() if higher else methods.idxmin()
        best = methods[best_method]
        for ref in REFERENCE_ROWS:
            value = block.loc[block["method"] == ref, "mean"]
            if value.empty or np.isnan(value.iloc[0]):
                continue
            value = float(value.iloc[0])
            ok = value >= best if higher else value <= best
            rows.append((*key, ref, value, best_method, best, ok))
    return pd.DataFrame(
        rows, columns=[*keys, "reference", "value", "best_method", "best", "bounds"]
    )


if __name__ == "__main__":
    summary = pd.read_csv(
        f"{sys.argv[1]}/results/tables/summary.tsv", sep="\t", dtype={"deg_set": str}
    )
    table = bounds(summary)
    print(table.groupby("reference")["bounds"].agg(["sum", "count"]).to_markdown())
    print(table[~table["bounds"]].round(4).to_markdown(index=False))
