"""Aggregation of per-condition metrics and paper-layout tables (rule ``aggregate``;
docs/architecture.md "Data contract").

``metrics_long.tsv``: dataset, split, method, condition, protocol, metric, deg_set, value.
``summary.tsv``: dataset, split, method, protocol, metric, deg_set, mean, sd, n (sd with ddof=1,
empty when n < 2). Paper tables are rendered from the long table (their cells are means over a
split's test conditions, ``mean (±sd)``, or medians where the paper reports medians), markdown and
LaTeX, Rank-1 in bold and Rank-2 underlined within each (dataset, split) block.

Layouts (:data:`PAPER_TABLES`; a table is written when its protocols are evaluated and, if it is
tied to split types, one of them is configured):

- StateXDiff Table 1 (``table1_scperturbench_top100``) and its top-5000 twin: rows (dataset, split,
  method) in sections by setting (cell_ood = "Cell-context generalization", drug_ood =
  "Perturbation generalization", further split types in their own sections); columns E-dist, MSE,
  PCCΔ, KL, WD, Common-DEGs (WD and Common-DEGs exist for top-100 only); the relative gain of
  Rank-1 over Rank-2 beside Rank-1 (↓ lower-is-better, ↑ higher-is-better). Tables 11/12 are the
  same layout for the unseen-drug (drug_ood) setting alone, top-100/top-5000; Tables 13/14 for the
  unseen-cell (cell_ood) setting.
- PerturbDiff Table 4 (cell-eval): R2, DEOver (``overlap_at_N``), DEPrec (``precision_at_N``), ES
  (``de_spearman_sig``, one value per cell line), DirAgr, LFCSpear, AUPRC, AUROC, PDCorr, MSE, MAE,
  PDS_L1/L2/cos; means without sd, as the paper prints them.
- scPPDM Tables 1/2 (main text) and 3/4 (appendix): metrics as rows, methods as columns, one block
  per (dataset, split) (the paper's Table 1/3 are its UC split = pair_ood, Table 2/4 its UD split =
  drug_ood). Tables 1/2: logFC and Δ Pearson/Spearman (all genes and top-200 DEGs),
  DEG-accuracy top-200/top-1000, EV_median (all, DEG); Tables 3/4 add DEG-accuracy top-50/top-100
  and E[EV] (the mean).
- scPPDM ablations (Fig. 4; ``scppdm_ablations``): rows per setting, UC = pair_ood (Fig. 4a) and
  UD = drug_ood (Fig. 4b), and per variant, the full model and (A)-(F) of §4.3 as configured by
  ``config/scppdm_ablations.yaml`` (method names in :data:`SCPPDM_ABLATIONS`; the residual
  variant beside them); columns: the scPPDM protocol's DEG correlations, DEG accuracy and
  EV-median, and scPerturBench's top-100 MSE and PCCΔ.
- StateXDiff Table 2 (``statexdiff_table2_top100``) and its top-5000 twin (App. Table 15):
  rows per setting, UD = drug_ood and UC = cell_ood, and per variant of
  ``config/statexdiff_ablations.yaml`` (method names in :data:`STATEXDIFF_ABLATIONS`, the paper's
  order, "Ours" = the full model last: the default config's ``statexdiff``); the Table 1 columns.
- scDFM Table 1 (additive split; ours: every split): L2, MSE, MAE, DE-Spearman ρ, Pearson Δ, DS,
  Pearson Δ̂, Pearson Δ̂20. Table 2 (holdout): the same columns with rows per setting, "Single"
  (single-drug test conditions) and "Double" (combinations), for the held-out-drug split types.
  Table 3 (ComboSciPlex, drugs): the first six columns. scDFM writes MSE/MAE over cells but says it
  follows cell-eval, whose MSE/MAE are on pseudobulks; we take cell-eval's, DE-Spearman ρ =
  ``de_spearman_lfc_sig`` and Pearson Δ = ``pearson_delta`` from the cell-eval protocol, L2,
  DS and Pearson Δ̂ from the Systema protocol.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scpert import runtime
from scpert.data import schema
from scpert.layout import REFERENCE_ROWS

log = logging.getLogger(__name__)

KEYS = ["dataset", "split", "method", "protocol", "metric", "deg_set"]
LONG_COLUMNS = ["dataset", "split", "method", "condition", "protocol", "metric", "deg_set", "value"]

#: (metric, column label, higher is better) in StateXDiff Table 1 order
SCPERTURBENCH_COLUMNS = [
    ("e_distance", "E-dist", False),
    ("mse", "MSE", False),
    ("pcc_delta", "PCCΔ", True),
    ("kl", "KL", False),
    ("wasserstein", "WD", False),
    ("common_degs", "Common-DEGs", True),
]

#: section headings of the split types (StateXDiff Table 1 names its two settings)
SETTINGS = {
    "cell_ood": "Cell-context generalization",
    "drug_ood": "Perturbation generalization",
    "pair_ood": "Unseen cell line-drug pairs",
    "combo_seen0": "Combinations, no component seen",
    "combo_seen1": "Combinations, one component seen",
    "combo_seen2": "Combinations, both components seen",
}

#: a table cell: text, rank (1, 2 or 0) and the relative-gain text shown beside Rank-1
Cell = tuple[str, int, str]


@dataclass(frozen=True)
class Column:
    """One value column (or, in metric-row layouts, one row) of a paper table."""

    protocol: str
    metric: str
    deg_set: str
    label: str
    higher_better: bool
    stat: str = "mean"  # "mean" or "median" over the split's test conditions


@dataclass
class Table:
    title: str
    header: list[str]
    #: a list of cells, or a str: a section heading spanning the table
    rows: list[list[Cell] | str]
    label_columns: int
    note: str


def read_long(paths: list[str | Path]) -> pd.DataFrame:
    """The metric tables of ``evaluate`` as one long table (each file validated when read)."""
    from scpert.data import io  # anndata; the Snakemake head imports this module for table names

    dtype = {"condition": str, "deg_set": str}
    frames = [
        io.read_tsv(p, "metric table", LONG_COLUMNS, dtype=dtype, nonempty=LONG_COLUMNS[:-1])
        for p in paths
    ]
    long = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LONG_COLUMNS)
    missing = [c for c in LONG_COLUMNS if c not in long.columns]
    if missing:
        raise runtime.InputError(f"metric tables lack columns {missing}")
    return long[LONG_COLUMNS].sort_values(LONG_COLUMNS[:-1], kind="stable").reset_index(drop=True)


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample sd (ddof=1) and n of each metric over a split's test conditions (the
    ceiling's mean Spearman-Brown corrected, :func:`scpert.metrics.reference.ceiling_stats`)."""
    from scpert.metrics.reference import ceiling_stats

    g = long.groupby(KEYS, sort=True)["value"]
    summary = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.count()}).reset_index()
    return ceiling_stats(summary).reset_index(drop=True)


def condition_stats(long: pd.DataFrame) -> pd.DataFrame:
    """:func:`summarise` plus the median, for the table layouts."""
    from scpert.metrics.reference import ceiling_stats

    g = long.groupby(KEYS, sort=True)["value"]
    stats = pd.DataFrame(
        {"mean": g.mean(), "sd": g.std(ddof=1), "n": g.count(), "median": g.median()}
    ).reset_index()
    return ceiling_stats(stats).reset_index(drop=True)


def is_reference(method: str) -> bool:
    """Whether ``method`` is a reference row (oracle, ceiling), not a method."""
    return method in REFERENCE_ROWS


def method_order(methods: Iterable[str]) -> list[str]:
    """Methods sorted by name, then the reference rows present, in :data:`REFERENCE_ROWS` order."""
    methods = set(methods)
    return sorted(m for m in methods if not is_reference(m)) + [
        r for r in REFERENCE_ROWS if r in methods
    ]


def method_label(method: str) -> str:
    """Row/column label: the method's name; a reference row in brackets (``[oracle]``)."""
    return f"[{method}]" if is_reference(method) else method


#: appended to a table's note when it has reference rows
REFERENCE_NOTE = (
    " Reference rows in [brackets], not ranked: [oracle] = the synthetic world's truth sampled "
    "with its own noise; [ceiling] = split-half of the true cells with the Spearman-Brown "
    "correction (cell-eval 0.8), for agreement metrics only."
)


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.4g}"


def ranked_cells(
    block: pd.DataFrame,
    higher_better: bool,
    *,
    stat: str = "mean",
    show_sd: bool = True,
    show_gain: bool = True,
) -> dict[str, Cell]:
    """Per method: (value text, rank 1/2/0, relative-gain text for rank 1) from one metric's rows.

    Ranks follow ``stat`` (ties keep method order) among the methods, the reference rows left
    out; text is ``mean (±sd)`` or the bare value.
    """
    vals = block.set_index("method")
    ranked = vals[[not is_reference(m) for m in vals.index]]
    order = ranked[stat].dropna().sort_values(ascending=not higher_better, kind="stable")
    rank = {m: i + 1 for i, m in enumerate(order.index[:2])}
    gain = ""
    if show_gain and len(order) >= 2:
        r1, r2 = order.iloc[0], order.iloc[1]
        if r2 != 0 and np.isfinite(r1) and np.isfinite(r2):
            rel = abs(r1 - r2) / abs(r2) * 100
            gain = f"{'↑' if higher_better else '↓'}{rel:.0f}%"
    out = {}
    for m, row in vals.iterrows():
        with_sd = show_sd and stat == "mean" and not (is_reference(m) and pd.isna(row["sd"]))
        text = f"{_fmt(row[stat])} (±{_fmt(row['sd'])})" if with_sd else _fmt(row[stat])
        out[m] = (text, rank.get(m, 0), gain if rank.get(m) == 1 else "")
    return out


def _select(stats: pd.DataFrame, column: Column) -> pd.DataFrame:
    return stats[
        (stats["protocol"] == column.protocol)
        & (stats["metric"] == column.metric)
        & (stats["deg_set"] == column.deg_set)
    ]


def _arrow(higher_better: bool) -> str:
    return "↑" if higher_better else "↓"


def _setting(split: str, split_types: dict[str, str]) -> str:
    split_type = split_types.get(split, split)
    return SETTINGS.get(split_type, split_type)


def method_rows(
    stats: pd.DataFrame,
    columns: Sequence[Column],
    split_types: dict[str, str],
    *,
    title: str,
    show_sd: bool = True,
    show_gain: bool = True,
    groups: Sequence[tuple[str, pd.DataFrame]] | None = None,
) -> Table:
    """Rows (dataset, split, method) in sections by setting; one column per metric.

    ``groups``: explicit (section heading, stats) pairs instead of sections by split type.
    """
    present = [c for c in columns if not _select(stats, c).empty]
    header = ["Dataset", "Split", "Method"] + [
        f"{c.label} {_arrow(c.higher_better)}" for c in present
    ]
    if groups is None:
        stats = stats.assign(_setting=stats["split"].map(lambda s: _setting(s, split_types)))
        order = list(dict.fromkeys([*SETTINGS.values(), *sorted(stats["_setting"].unique())]))
        groups = [
            (name, stats[stats["_setting"] == name])
            for name in order
            if (stats["_setting"] == name).any()
        ]
    rows: list[list[Cell] | str] = []
    for heading, group in groups:
        section: list[list[Cell]] = []
        for (dataset, split), block in group.groupby(["dataset", "split"], sort=True):
            cells = {
                c: ranked_cells(
                    _select(block, c),
                    c.higher_better,
                    stat=c.stat,
                    show_sd=show_sd,
                    show_gain=show_gain,
                )
                for c in present
            }
            methods = method_order(set().union(*(_select(block, c)["method"] for c in present)))
            for method in methods:
                row = [(dataset, 0, ""), (split, 0, ""), (method_label(method), 0, "")]
                row += [cells[c].get(method, ("–", 0, "")) for c in present]
                section.append(row)
        if section:
            rows += [heading, *section]
    value = "mean (±sd)" if show_sd else "mean"
    note = (
        f"Rank-1 in **bold**, Rank-2 <u>underlined</u> within each dataset and split"
        f"{'; ↑/↓ is the relative gain of Rank-1 over Rank-2' if show_gain else ''}. "
        f"Values: {value} over the split's test conditions."
    )
    if stats["method"].map(is_reference).any():
        note += REFERENCE_NOTE
    return Table(title, header, rows, 3, note)


def metric_rows(stats: pd.DataFrame, rows_spec: Sequence[Column], *, title: str) -> list[Table]:
    """scPPDM layout: one table per (dataset, split), metrics as rows, methods as columns."""
    tables = []
    for (dataset, split), block in stats.groupby(["dataset", "split"], sort=True):
        present = [c for c in rows_spec if not _select(block, c).empty]
        if not present:
            continue
        methods = method_order(set().union(*(_select(block, c)["method"] for c in present)))
        rows: list[list[Cell] | str] = []
        for c in present:
            cells = ranked_cells(
                _select(block, c), c.higher_better, stat=c.stat, show_sd=False, show_gain=False
            )
            rows.append(
                [(f"{c.label} {_arrow(c.higher_better)}", 0, "")]
                + [cells.get(m, ("–", 0, "")) for m in methods]
            )
        note = (
            "Rank-1 in **bold**, Rank-2 <u>underlined</u> per metric. Values: mean over the "
            "split's test conditions; EV-median and its DEG variant: median."
        )
        if any(map(is_reference, methods)):
            note += REFERENCE_NOTE
        header = [f"({split})", *map(method_label, methods)]
        tables.append(Table(f"{title}: {dataset}, {split}", header, rows, 1, note))
    return tables


def to_markdown(header, rows, title: str, note: str | None = None) -> str:
    def cell(text, rank, gain):
        text = f"**{text}**" if rank == 1 else f"<u>{text}</u>" if rank == 2 else text
        return f"{text} {gain}".strip()

    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if isinstance(row, str):
            lines.append(f"| *{row}* |" + " |" * (len(header) - 1))
        else:
            lines.append("| " + " | ".join(cell(*c) for c in row) + " |")
    if note is None:
        note = (
            "Rank-1 in **bold**, Rank-2 <u>underlined</u>; ↑/↓ is the relative gain of Rank-1 "
            "over Rank-2. Values: mean (±sd) over the split's test conditions."
        )
    lines += ["", note, ""]
    return "\n".join(lines)


def _esc(s: str) -> str:
    return (
        s.replace("\\", r"\textbackslash{}")
        .replace("_", r"\_")
        .replace("%", r"\%")
        .replace("&", r"\&")
        .replace("±", r"$\pm$")
        .replace("Δ̂20", r"$\hat{\Delta}_{20}$")
        .replace("Δ̂", r"$\hat{\Delta}$")
        .replace("Δ", r"$\Delta$")
        .replace("ρ", r"$\rho$")
        .replace("↑", r"$\uparrow$")
        .replace("↓", r"$\downarrow$")
    )


def to_latex(header, rows, title: str, label_columns: int = 3) -> str:
    def cell(text, rank, gain):
        text = _esc(text)
        text = (
            rf"\textbf{{{text}}}" if rank == 1 else rf"\underline{{{text}}}" if rank == 2 else text
        )
        return f"{text} {_esc(gain)}".strip()

    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_esc(title)}}}",
        r"\small",
        r"\begin{tabular}{" + "l" * label_columns + "r" * (len(header) - label_columns) + "}",
        r"\toprule",
        " & ".join(_esc(h) for h in header) + r" \\",
        r"\midrule",
    ]
    for row in rows:
        if isinstance(row, str):
            lines.append(rf"\multicolumn{{{len(header)}}}{{l}}{{\textit{{{_esc(row)}}}}} \\")
        else:
            lines.append(" & ".join(cell(*c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def render(tables: Sequence[Table], suffix: str) -> str:
    if suffix == ".md":
        return "\n".join(to_markdown(t.header, t.rows, t.title, t.note) for t in tables)
    return "\n".join(to_latex(t.header, t.rows, t.title, t.label_columns) for t in tables)


# -- the paper layouts ---------------------------------------------------------------------------


def _scperturbench_columns(deg_set: str) -> list[Column]:
    return [
        Column("scperturbench", m, deg_set, label, hb) for m, label, hb in SCPERTURBENCH_COLUMNS
    ]


PERTURBDIFF_TABLE4 = [
    Column("celleval", "r2", "all", "R2", True),
    Column("celleval", "overlap_at_N", "sig", "DEOver", True),
    Column("celleval", "precision_at_N", "sig", "DEPrec", True),
    Column("celleval", "de_spearman_sig", "sig", "ES", True),
    Column("celleval", "de_direction_match", "sig", "DirAgr", True),
    Column("celleval", "de_spearman_lfc_sig", "sig", "LFCSpear", True),
    Column("celleval", "pr_auc", "all", "AUPRC", True),
    Column("celleval", "roc_auc", "all", "AUROC", True),
    Column("celleval", "pearson_delta", "all", "PDCorr", True),
    Column("celleval", "mse", "all", "MSE", False),
    Column("celleval", "mae", "all", "MAE", False),
    Column("celleval", "discrimination_score_l1", "all", "PDSL1", True),
    Column("celleval", "discrimination_score_l2", "all", "PDSL2", True),
    Column("celleval", "discrimination_score_cosine", "all", "PDScos", True),
]


def _scppdm(metric: str, deg_set: str, label: str, stat: str = "mean") -> Column:
    return Column("scppdm", metric, deg_set, label, True, stat)


SCPPDM_CORRELATIONS = [
    _scppdm("logfc_pearson", "all", "logFC-Pearson"),
    _scppdm("logfc_spearman", "all", "logFC-Spearman"),
    _scppdm("logfc_pearson", "top200", "logFC-Pearson(DEG)"),
    _scppdm("logfc_spearman", "top200", "logFC-Spearman(DEG)"),
    _scppdm("delta_pearson", "all", "Δ-Pearson"),
    _scppdm("delta_spearman", "all", "Δ-Spearman"),
    _scppdm("delta_pearson", "top200", "Δ-Pearson(DEG)"),
    _scppdm("delta_spearman", "top200", "Δ-Spearman(DEG)"),
]
SCPPDM_MAIN = SCPPDM_CORRELATIONS + [
    _scppdm("deg_accuracy", "top200", "DEG-accuracy(top200)"),
    _scppdm("deg_accuracy", "top1000", "DEG-accuracy(top1000)"),
    _scppdm("ev", "all", "EV-median", "median"),
    _scppdm("ev", "top200", "EV-median(DEG)", "median"),
]
SCPPDM_COMPLETE = (
    SCPPDM_CORRELATIONS
    + [_scppdm("deg_accuracy", f"top{k}", f"DEG-accuracy(top{k})") for k in (50, 100, 200, 1000)]
    + [
        _scppdm("ev", "all", "E[EV]"),
        _scppdm("ev", "top200", "E[EV](DEG)"),
        _scppdm("ev", "all", "EV-median", "median"),
        _scppdm("ev", "top200", "EV-median(DEG)", "median"),
    ]
)

#: method name -> row label of the scPPDM ablation table (scPPDM §4.3, Fig. 4)
SCPPDM_ABLATIONS = {
    "scppdm": "Full (scppdm)",
    "scppdm_residual": "Residual variant",
    "scppdm_no_cond": "(A) No-Cond",
    "scppdm_concat_mlp": "(B) Concat+MLP",
    "scppdm_drug_id": "(C) Drug-ID",
    "scppdm_single_cfg": "(D) Single CFG",
    "scppdm_const_sd": "(E) Constant s_d",
    "scppdm_concat_attn": "(F) Concat+Attn",
}
SCPPDM_ABLATION_COLUMNS = [
    _scppdm("logfc_pearson", "top200", "logFC-Pearson(DEG)"),
    _scppdm("delta_pearson", "top200", "Δ-Pearson(DEG)"),
    _scppdm("delta_spearman", "top200", "Δ-Spearman(DEG)"),
    _scppdm("deg_accuracy", "top200", "DEG-acc(top200)"),
    _scppdm("ev", "all", "EV-median", "median"),
    Column("scperturbench", "mse", "top100", "MSE", False),
    Column("scperturbench", "pcc_delta", "top100", "PCCΔ", True),
]
#: the ablation settings: (heading, split type)
SCPPDM_ABLATION_SETTINGS = (("UC (Fig. 4a)", "pair_ood"), ("UD (Fig. 4b)", "drug_ood"))

SCDFM_COLUMNS = [
    Column("systema", "l2", "all", "L2", False),
    Column("celleval", "mse", "all", "MSE", False),
    Column("celleval", "mae", "all", "MAE", False),
    Column("celleval", "de_spearman_lfc_sig", "sig", "DE-Spearman ρ", True),
    Column("celleval", "pearson_delta", "all", "Pearson Δ", True),
    Column("systema", "discrimination_score", "all", "DS", True),
    Column("systema", "pearson_delta_hat", "all", "Pearson Δ̂", True),
    Column("systema", "pearson_delta_hat", "top20", "Pearson Δ̂20", True),
]
#: method name -> row label of the StateXDiff ablation table (arXiv:2605.16104 §5.4, Table 2)
STATEXDIFF_ABLATIONS = {
    "statexdiff_no_vmcs": "w/o VMCS",
    "statexdiff_no_pseudo": "w/o pseudo",
    "statexdiff_no_mdt": "w/o MDT",
    "statexdiff_no_pqm": "w/o PQM",
    "statexdiff_no_triplet": "w/o triplet",
    "statexdiff_no_icfg": "w/o ICFG",
    "statexdiff": "Ours",
}
#: the ablation settings: (heading, split type)
STATEXDIFF_ABLATION_SETTINGS = (("UD", "drug_ood"), ("UC", "cell_ood"))

#: split types whose test sets hold out drugs (scDFM's holdout setting)
HOLDOUT_TYPES = ("drug_ood", "combo_seen0", "combo_seen1")


def _restrict(
    stats: pd.DataFrame, split_types: dict[str, str], types: Iterable[str]
) -> pd.DataFrame:
    types = set(types)
    return stats[stats["split"].map(lambda s: split_types.get(s, s) in types)]


def _holdout_groups(
    long: pd.DataFrame, split_types: dict[str, str]
) -> list[tuple[str, pd.DataFrame]]:
    """scDFM Table 2 settings: single-drug ("Single") and combination ("Double") test conditions."""
    # imported here: the Snakemake head process imports this module for the table names only
    from scpert.metrics.evaluate import ALL_CONDITIONS

    long = _restrict(long, split_types, HOLDOUT_TYPES)
    drug = long["condition"].str.split(schema.CONDITION_SEP).str[1]
    long = long[drug != ALL_CONDITIONS]  # values across conditions belong to neither setting
    combo = drug[drug != ALL_CONDITIONS].map(schema.is_combo)
    return [
        (name, condition_stats(long[mask]))
        for name, mask in (("Single", ~combo), ("Double", combo))
        if mask.any()
    ]


def _statexdiff(deg_set: str):
    def build(long, split_types, title):
        return [
            method_rows(
                condition_stats(long), _scperturbench_columns(deg_set), split_types, title=title
            )
        ]

    return build


def _perturbdiff(long, split_types, title):
    return [
        method_rows(
            condition_stats(long),
            PERTURBDIFF_TABLE4,
            split_types,
            title=title,
            show_sd=False,
            show_gain=False,
        )
    ]


def _scppdm_layout(spec: Sequence[Column]):
    def build(long, split_types, title):
        return metric_rows(condition_stats(long), spec, title=title)

    return build


def _scppdm_ablations(long, split_types, title):
    long = long[long["method"].isin([*SCPPDM_ABLATIONS, *REFERENCE_ROWS])]
    order = {m: i for i, m in enumerate(SCPPDM_ABLATIONS)}
    long = long.assign(
        method=long["method"].map(
            lambda m: m if is_reference(m) else f"{order[m]}. {SCPPDM_ABLATIONS[m]}"
        )
    )
    groups = [
        (heading, condition_stats(_restrict(long, split_types, [split_type])))
        for heading, split_type in SCPPDM_ABLATION_SETTINGS
    ]
    groups = [(heading, stats) for heading, stats in groups if not stats.empty]
    return [
        method_rows(
            condition_stats(long),
            SCPPDM_ABLATION_COLUMNS,
            split_types,
            title=title,
            show_sd=False,
            show_gain=False,
            groups=groups,
        )
    ]


def _statexdiff_ablations(deg_set: str):
    """Table 2 layout: rows per setting (UD, UC) and variant, in the paper's order."""

    def build(long, split_types, title):
        long = long[long["method"].isin(list(STATEXDIFF_ABLATIONS))]
        if long.empty:
            note = "No StateXDiff variant of config/statexdiff_ablations.yaml was evaluated."
            return [Table(title, ["Dataset", "Split", "Method"], [], 3, note)]
        order = {m: i for i, m in enumerate(STATEXDIFF_ABLATIONS)}
        long = long.assign(
            method=long["method"].map(lambda m: f"{order[m]}. {STATEXDIFF_ABLATIONS[m]}")
        )
        groups = [
            (heading, condition_stats(_restrict(long, split_types, [split_type])))
            for heading, split_type in STATEXDIFF_ABLATION_SETTINGS
        ]
        groups = [(heading, stats) for heading, stats in groups if not stats.empty]
        return [
            method_rows(
                condition_stats(long),
                _scperturbench_columns(deg_set),
                split_types,
                title=title,
                groups=groups,
            )
        ]

    return build


def _scdfm(columns: Sequence[Column], by_setting: bool = False):
    def build(long, split_types, title):
        groups = _holdout_groups(long, split_types) if by_setting else None
        return [
            method_rows(
                condition_stats(long),
                columns,
                split_types,
                title=title,
                show_gain=False,
                groups=groups,
            )
        ]

    return build


@dataclass(frozen=True)
class PaperTable:
    """A paper layout: the protocols it needs, the split types it is tied to (None: any), its title
    and ``build(long, split_types, title) -> [Table]``."""

    protocols: tuple[str, ...]
    split_types: tuple[str, ...] | None
    title: str
    build: Callable[[pd.DataFrame, dict[str, str], str], list[Table]]

    def tables(self, long: pd.DataFrame, split_types: dict[str, str]) -> list[Table]:
        if self.split_types is not None:
            long = _restrict(long, split_types, self.split_types)
        return self.build(long, split_types, self.title)


PAPER_TABLES: dict[str, PaperTable] = {
    "table1_scperturbench_top100": PaperTable(
        ("scperturbench",),
        None,
        "scPerturBench metrics, top-100 DEGs (StateXDiff Table 1 layout)",
        _statexdiff("top100"),
    ),
    "table1_scperturbench_top5000": PaperTable(
        ("scperturbench",),
        None,
        "scPerturBench metrics, top-5000 DEGs (StateXDiff Table 1 layout)",
        _statexdiff("top5000"),
    ),
    "statexdiff_table11_ud_top100": PaperTable(
        ("scperturbench",),
        ("drug_ood",),
        "Unseen drugs, top-100 DEGs (StateXDiff Table 11 layout)",
        _statexdiff("top100"),
    ),
    "statexdiff_table12_ud_top5000": PaperTable(
        ("scperturbench",),
        ("drug_ood",),
        "Unseen drugs, top-5000 DEGs (StateXDiff Table 12 layout)",
        _statexdiff("top5000"),
    ),
    "statexdiff_table13_uc_top100": PaperTable(
        ("scperturbench",),
        ("cell_ood",),
        "Unseen cells, top-100 DEGs (StateXDiff Table 13 layout)",
        _statexdiff("top100"),
    ),
    "statexdiff_table14_uc_top5000": PaperTable(
        ("scperturbench",),
        ("cell_ood",),
        "Unseen cells, top-5000 DEGs (StateXDiff Table 14 layout)",
        _statexdiff("top5000"),
    ),
    "perturbdiff_table4": PaperTable(
        ("celleval",), None, "cell-eval metrics (PerturbDiff Table 4 layout)", _perturbdiff
    ),
    "scppdm_table1_2": PaperTable(
        ("scppdm",), None, "scPPDM metrics (scPPDM Tables 1-2 layout)", _scppdm_layout(SCPPDM_MAIN)
    ),
    "scppdm_table3_4": PaperTable(
        ("scppdm",),
        None,
        "scPPDM metrics, complete (scPPDM Tables 3-4 layout)",
        _scppdm_layout(SCPPDM_COMPLETE),
    ),
    "scppdm_ablations": PaperTable(
        ("scppdm", "scperturbench"),
        tuple(t for _, t in SCPPDM_ABLATION_SETTINGS),
        "scPPDM ablations (scPPDM Fig. 4 as a table)",
        _scppdm_ablations,
    ),
    "statexdiff_table2_top100": PaperTable(
        ("scperturbench",),
        tuple(t for _, t in STATEXDIFF_ABLATION_SETTINGS),
        "StateXDiff component ablations, top-100 DEGs (StateXDiff Table 2 layout)",
        _statexdiff_ablations("top100"),
    ),
    "statexdiff_table2_top5000": PaperTable(
        ("scperturbench",),
        tuple(t for _, t in STATEXDIFF_ABLATION_SETTINGS),
        "StateXDiff component ablations, top-5000 DEGs (StateXDiff Table 2 layout, App. Table 15)",
        _statexdiff_ablations("top5000"),
    ),
    "scdfm_table1": PaperTable(
        ("celleval", "systema"), None, "scDFM metrics (scDFM Table 1 layout)", _scdfm(SCDFM_COLUMNS)
    ),
    "scdfm_table2": PaperTable(
        ("celleval", "systema"),
        HOLDOUT_TYPES,
        "scDFM metrics by setting, held-out drugs (scDFM Table 2 layout)",
        _scdfm(SCDFM_COLUMNS, by_setting=True),
    ),
    "scdfm_table3": PaperTable(
        ("celleval", "systema"),
        None,
        "scDFM metrics without Systema references (scDFM Table 3 layout)",
        _scdfm(SCDFM_COLUMNS[:6]),
    ),
}


def paper_tables(protocols: Iterable[str], split_types: Iterable[str]) -> list[str]:
    """Names of the paper tables a run with these protocols and split types can fill."""
    protocols, split_types = set(protocols), set(split_types)
    return [
        name
        for name, spec in PAPER_TABLES.items()
        if set(spec.protocols) <= protocols
        and (spec.split_types is None or split_types & set(spec.split_types))
    ]


def table1(summary: pd.DataFrame, deg_set: str) -> tuple[list[str], list[list[Cell] | str]]:
    """Header and rows of the StateXDiff Table 1 layout for one DEG set (sections by split name)."""
    table = method_rows(summary, _scperturbench_columns(deg_set), {}, title="")
    return table.header, table.rows


#: directions of metrics that no table layout shows (higher is better?)
EXTRA_DIRECTIONS = {
    **{("celleval", f"overlap_at_{k}"): True for k in (50, 100, 200, 500)},
    **{("celleval", f"precision_at_{k}"): True for k in (50, 100, 200, 500)},
    ("celleval", "de_sig_genes_recall"): True,
    ("celleval", "mse_delta"): False,
    ("celleval", "mae_delta"): False,
    ("celleval", "pearson_edistance"): True,
    ("celleval", "clustering_agreement"): True,
    ("systema", "centroid_accuracy"): True,
}


def metric_directions() -> dict[tuple[str, str], bool]:
    """(protocol, metric) -> higher is better, for every metric with a direction (the table
    layouts' columns plus :data:`EXTRA_DIRECTIONS`; DE-gene counts have none)."""
    columns = [
        *(Column("scperturbench", m, "", "", hb) for m, _, hb in SCPERTURBENCH_COLUMNS),
        *PERTURBDIFF_TABLE4,
        *SCPPDM_COMPLETE,
        *SCDFM_COLUMNS,
    ]
    return {**{(c.protocol, c.metric): c.higher_better for c in columns}, **EXTRA_DIRECTIONS}


# -- scPerturBench's aggregate score and rank ----------------------------------------------------

#: the scPerturBench metrics that its aggregate score min-max scales (lower is better)
SCALED_METRICS = ("e_distance", "mse", "wasserstein", "kl")
AGGREGATE_COLUMNS = [
    "dataset",
    "split",
    "deg_set",
    "method",
    "score",
    "mean_rank",
    "rank",
    "n_metrics",
]


def aggregate_score(summary: pd.DataFrame) -> pd.DataFrame:
    """scPerturBench's aggregate score and rank of every method per (dataset, split, DEG set), from
    the summary's scPerturBench means (reference rows excluded: they are not methods):

    - ``score``: the mean over its metrics of E-distance, MSE, Wasserstein and KL min-max scaled
      across the block's methods with 1 = best (``(max - x) / (max - min)``), and PCCΔ and
      Common-DEGs as they are (already "higher is better" on [-1, 1] / [0, 1]); a metric on which
      every method ties (max = min) is left out of the mean;
    - ``mean_rank``: the mean over the metrics of the method's rank on each (1 = best, ties
      averaged); ``rank``: the rank of ``mean_rank`` (1 = best, ties share the lower rank);
    - ``n_metrics``: the metrics the method has values for (WD exists for top-100 only).
    """
    directions = {m: hb for m, _, hb in SCPERTURBENCH_COLUMNS}
    rows = summary[
        (summary["protocol"] == "scperturbench")
        & summary["metric"].isin(list(directions))
        & ~summary["method"].map(is_reference)
    ]
    out = []
    for (dataset, split, deg_set), block in rows.groupby(["dataset", "split", "deg_set"]):
        wide = block.pivot_table(index="method", columns="metric", values="mean", aggfunc="first")
        scaled = pd.DataFrame(index=wide.index)
        ranks = pd.DataFrame(index=wide.index)
        for metric in wide.columns:
            values = wide[metric]
            ranks[metric] = values.rank(ascending=not directions[metric], method="average")
            if metric in SCALED_METRICS:
                spread = values.max() - values.min()
                if spread > 0:
                    scaled[metric] = (values.max() - values) / spread
            else:
                scaled[metric] = values
        mean_rank = ranks.mean(axis=1)
        out.append(
            pd.DataFrame(
                {
                    "dataset": dataset,
                    "split": split,
                    "deg_set": deg_set,
                    "method": wide.index,
                    "score": scaled.mean(axis=1).to_numpy(),
                    "mean_rank": mean_rank.to_numpy(),
                    "rank": mean_rank.rank(method="min").astype(int).to_numpy(),
                    "n_metrics": wide.notna().sum(axis=1).to_numpy(),
                }
            )
        )
    if not out:
        return pd.DataFrame(columns=AGGREGATE_COLUMNS)
    table = pd.concat(out, ignore_index=True)
    return table.sort_values(["dataset", "split", "deg_set", "rank", "method"], kind="stable")[
        AGGREGATE_COLUMNS
    ].reset_index(drop=True)


# -- several seeds -------------------------------------------------------------------------------

MULTISEED_COLUMNS = [*KEYS, "mean", "sd", "n_seeds", "seeds"]


def multiseed(summary: pd.DataFrame, first_seed: int = 0) -> pd.DataFrame:
    """Mean and sample sd (ddof=1; empty with one seed) across seeds of each method's per-seed
    means: the replicates of a method (``<method>.seed<k>``, :func:`scpert.layout.seed_replicate`)
    pooled with the method itself (run at ``first_seed``); ``seeds``: the seeds pooled,
    comma-separated (empty for the reference rows, which no method seed changes)."""
    from scpert.layout import split_seed_replicate

    parsed = summary["method"].map(split_seed_replicate)
    seed = ["" if is_reference(name) else str(first_seed if k is None else k) for name, k in parsed]
    table = summary.assign(method=[name for name, _ in parsed], seed=seed)
    table = table.assign(order=pd.to_numeric(table["seed"], errors="coerce")).sort_values(
        [*KEYS, "order"], kind="stable"
    )
    g = table.groupby(KEYS, sort=True)
    out = pd.DataFrame(
        {
            "mean": g["mean"].mean(),
            "sd": g["mean"].std(ddof=1),
            "n_seeds": g["mean"].count(),
            "seeds": g["seed"].agg(lambda s: ",".join(x for x in s if x)),
        }
    ).reset_index()
    return out[MULTISEED_COLUMNS]


def multiseed_table(table: pd.DataFrame, deg_set: str = "top100") -> list[Table]:
    """StateXDiff Table 1's columns as ``mean ± sd`` across seeds (rows: dataset, split, method)."""
    columns = _scperturbench_columns(deg_set)
    rows: list[list[Cell] | str] = []
    for (dataset, split), block in table.groupby(["dataset", "split"], sort=True):
        for method in method_order(block["method"].unique()):
            cells: list[Cell] = [(dataset, 0, ""), (split, 0, ""), (method_label(method), 0, "")]
            for column in columns:
                row = block[
                    (block["method"] == method)
                    & (block["protocol"] == column.protocol)
                    & (block["metric"] == column.metric)
                    & (block["deg_set"] == column.deg_set)
                ]
                if row.empty:
                    cells.append(("–", 0, ""))
                    continue
                mean, sd, n = row["mean"].iloc[0], row["sd"].iloc[0], int(row["n_seeds"].iloc[0])
                text = _fmt(mean) if n < 2 else f"{_fmt(mean)} ± {_fmt(sd)}"
                cells.append((text, 0, ""))
            rows.append(cells)
    header = ["dataset", "split", "method"] + [
        f"{c.label} {_arrow(c.higher_better)}" for c in columns
    ]
    note = (
        "Mean ± sd across seeds of each seed's mean over the split's test conditions "
        "(the seeds of `seeds:` in the config; a row with one value has one seed)."
    )
    title = f"scPerturBench metrics (top-{deg_set[3:]} DEGs) across seeds"
    return [Table(title, header, rows, 3, note)]
