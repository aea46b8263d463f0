"""StateXDiff's protein-modality comparison (arXiv:2605.16104 §5.3 Fig. 3c, App. B.4): the arms
of ``config/statexdiff_protein_modality.yaml`` on the CITE-seq perturbation set, held-out cell
line, on the scPerturBench metrics (top-100 DEGs, the Table 1 columns). Bars are means over the
test conditions ± standard error; arms in Fig. 3c's order, those missing from the run left out.
"""

from __future__ import annotations

import pandas as pd

from scpert.plots.common import bar_data, empty, grouped_bars
from scpert.tables import SCPERTURBENCH_COLUMNS, Column

#: configured method -> Fig. 3c arm (B.4), in the figure's order
ARMS = {
    "base_control": "baseControl",
    "statexdiff_rna_only": "RNA-only",
    "statexdiff_no_protein": "VMCS w/o protein",
    "statexdiff": "PseudoProt",
    "statexdiff_trueprot": "TrueProt",
    "statexdiff_trueprot_ft": "TrueProt-FT",
}

COLUMNS = [
    Column("scperturbench", m, "top100", label, hb) for m, label, hb in SCPERTURBENCH_COLUMNS
]


def data(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Rows of the arms in ``dataset`` (one per split, arm and metric) with the ``arm`` label and
    its position ``order`` in Fig. 3c, sorted by split, metric and arm."""
    table = bar_data(summary, COLUMNS, dataset)
    table = table[table["method"].isin(list(ARMS))]
    order = {m: i for i, m in enumerate(ARMS)}
    labels = {c.label: i for i, c in enumerate(COLUMNS)}
    table = table.assign(
        arm=table["method"].map(ARMS),
        order=table["method"].map(order),
        _metric=table["label"].map(labels),
    )
    table = table.sort_values(["split", "_metric", "order"]).drop(columns="_metric")
    return table.reset_index(drop=True)


def draw(table: pd.DataFrame, title: str = ""):
    if table.empty:
        return empty("protein modality: none of the Fig. 3c arms was evaluated in this run")
    arms = table.drop_duplicates("method").sort_values("order")
    # grouped_bars orders methods by scpert.tables.method_order; name them "<order>. <arm>"
    named = table.assign(method=table["order"].astype(str) + ". " + table["arm"])
    return grouped_bars(
        named,
        COLUMNS,
        "split",
        title or f"Protein modality (StateXDiff Fig. 3c): {', '.join(arms['arm'])}",
    )
