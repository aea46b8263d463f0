"""Aggregation of per-condition metrics and paper-layout tables (DESIGN §3 ``aggregate``).

``metrics_long.tsv``: dataset, split, method, condition, protocol, metric, deg_set, value.
``summary.tsv``: dataset, split, method, protocol, metric, deg_set, mean, sd, n (sd with ddof=1,
empty when n < 2). Paper tables are rendered from the summary; later protocols add rows to the
same long/summary layout and add table layouts here.

StateXDiff Table 1 layout (top-100 DEGs; Tables 12/14 for top-5000): one row per
(dataset, split, method); columns E-dist, MSE, PCCΔ, KL, WD, Common-DEGs as ``mean (±sd)``;
Rank-1 in bold, Rank-2 underlined, and the relative gain of Rank-1 over Rank-2 beside Rank-1
(↓ for lower-is-better, ↑ for higher-is-better). WD and Common-DEGs exist only for top-100.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from scpert import runtime

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


def read_long(paths: list[str | Path]) -> pd.DataFrame:
    frames = [pd.read_csv(p, sep="\t", dtype={"condition": str, "deg_set": str}) for p in paths]
    long = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LONG_COLUMNS)
    missing = [c for c in LONG_COLUMNS if c not in long.columns]
    if missing:
        raise runtime.InputError(f"metric tables lack columns {missing}")
    return long[LONG_COLUMNS].sort_values(LONG_COLUMNS[:-1], kind="stable").reset_index(drop=True)


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample sd (ddof=1) and n of each metric over a split's test conditions."""
    g = long.groupby(KEYS, sort=True)["value"]
    summary = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.count()}).reset_index()
    return summary


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.4g}"


def ranked_cells(block: pd.DataFrame, higher_better: bool) -> dict[str, tuple[str, int, str]]:
    """Per method: (``mean (±sd)`` text, rank 1/2/0, relative-gain text for rank 1)."""
    vals = block.set_index("method")
    order = vals["mean"].dropna().sort_values(ascending=not higher_better, kind="stable")
    rank = {m: i + 1 for i, m in enumerate(order.index[:2])}
    gain = ""
    if len(order) >= 2:
        r1, r2 = order.iloc[0], order.iloc[1]
        if r2 != 0 and np.isfinite(r1) and np.isfinite(r2):
            rel = abs(r1 - r2) / abs(r2) * 100
            gain = f"{'↑' if higher_better else '↓'}{rel:.0f}%"
    out = {}
    for m, row in vals.iterrows():
        text = f"{_fmt(row['mean'])} (±{_fmt(row['sd'])})"
        out[m] = (text, rank.get(m, 0), gain if rank.get(m) == 1 else "")
    return out


def table1(summary: pd.DataFrame, deg_set: str) -> tuple[list[str], list[list[tuple[str, int, str]]]]:
    """Header and rows (cells with rank marks) of StateXDiff Table 1 for one DEG set."""
    sub = summary[(summary["protocol"] == "scperturbench") & (summary["deg_set"] == deg_set)]
    columns = [c for c in SCPERTURBENCH_COLUMNS if (sub["metric"] == c[0]).any()]
    header = ["Dataset", "Split", "Method"] + [f"{lab} {'↑' if hb else '↓'}" for _, lab, hb in columns]
    rows = []
    for (dataset, split), block in sub.groupby(["dataset", "split"], sort=True):
        cells = {metric: ranked_cells(block[block["metric"] == metric], hb) for metric, _, hb in columns}
        for method in sorted(block["method"].unique()):
            row = [(dataset, 0, ""), (split, 0, ""), (method, 0, "")]
            row += [cells[metric].get(method, ("–", 0, "")) for metric, _, _ in columns]
            rows.append(row)
    return header, rows


def to_markdown(header, rows, title: str) -> str:
    def cell(text, rank, gain):
        text = f"**{text}**" if rank == 1 else f"<u>{text}</u>" if rank == 2 else text
        return f"{text} {gain}".strip()

    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(*c) for c in row) + " |" for row in rows]
    lines += ["", "Rank-1 in **bold**, Rank-2 <u>underlined</u>; ↑/↓ is the relative gain of Rank-1 "
              "over Rank-2. Values: mean (±sd) over the split's test conditions.", ""]
    return "\n".join(lines)


def to_latex(header, rows, title: str) -> str:
    def esc(s: str) -> str:
        return (s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")
                .replace("&", r"\&").replace("±", r"$\pm$").replace("Δ", r"$\Delta$")
                .replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$"))

    def cell(text, rank, gain):
        text = esc(text)
        text = rf"\textbf{{{text}}}" if rank == 1 else rf"\underline{{{text}}}" if rank == 2 else text
        return f"{text} {esc(gain)}".strip()

    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{esc(title)}}}", r"\small",
             r"\begin{tabular}{lll" + "r" * (len(header) - 3) + "}", r"\toprule",
             " & ".join(esc(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(*c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def run_aggregate(metric_paths, long_path, summary_path, table_paths) -> None:
    long = read_long(metric_paths)
    summary = summarise(long)
    runtime.write_tsv(long, long_path, float_format="%.10g")
    runtime.write_tsv(summary, summary_path, float_format="%.10g")
    for path in map(Path, table_paths):
        deg_set = path.stem.rsplit("_", 1)[-1]
        header, rows = table1(summary, deg_set)
        title = f"scPerturBench metrics, {deg_set.replace('top', 'top-')} DEGs (StateXDiff Table 1 layout)"
        text = to_markdown(header, rows, title) if path.suffix == ".md" else to_latex(header, rows, title)
        runtime.write_atomic(path, lambda p, t=text: p.write_text(t))
    log.info("aggregated %d values from %d files", len(long), len(metric_paths))
