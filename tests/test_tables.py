"""Aggregation and the StateXDiff Table 1 layout on hand-made metric rows."""

import numpy as np
import pandas as pd

from scpert import tables


def _long():
    rows = []
    for method, mse, pcc in [("a", [1.0, 3.0], [0.5, 0.7]), ("b", [2.0, 2.0], [0.2, 0.2]),
                             ("c", [4.0, 6.0], [0.9, 0.9])]:
        for i, cond in enumerate(["L1|x|1", "L1|y|1"]):
            rows.append(("ds", "drug_ood", method, cond, "scperturbench", "mse", "top100", mse[i]))
            rows.append(("ds", "drug_ood", method, cond, "scperturbench", "pcc_delta", "top100", pcc[i]))
    return pd.DataFrame(rows, columns=tables.LONG_COLUMNS)


def test_summary_mean_sd_n():
    s = tables.summarise(_long())
    a = s[(s["method"] == "a") & (s["metric"] == "mse")].iloc[0]
    assert a["mean"] == 2.0 and np.isclose(a["sd"], np.sqrt(2.0)) and a["n"] == 2
    assert list(s.columns) == tables.KEYS + ["mean", "sd", "n"]


def test_table1_ranks_and_gain():
    header, rows = tables.table1(tables.summarise(_long()), "top100")
    assert header == ["Dataset", "Split", "Method", "MSE ↓", "PCCΔ ↑"]
    by_method = {r[2][0]: r for r in rows}
    # MSE: a = 2 and b = 2 tie (stable order keeps a first), c = 5; gain 0%
    assert by_method["a"][3][1] == 1 and by_method["b"][3][1] == 2 and by_method["c"][3][1] == 0
    # PCC: c = 0.9 best, a = 0.6 second; relative gain (0.9 - 0.6) / 0.6 = 50%
    assert by_method["c"][4] == ("0.9 (±0)", 1, "↑50%")
    assert by_method["a"][4][1] == 2
    md = tables.to_markdown(header, rows, "t")
    assert "**0.9 (±0)** ↑50%" in md and "<u>0.6 (±0.1414)</u>" in md
    tex = tables.to_latex(header, rows, "t")
    assert r"\textbf{0.9 ($\pm$0)} $\uparrow$50\%" in tex


def test_run_aggregate_roundtrip(tmp_path):
    long = _long()
    paths = []
    for m, block in long.groupby("method"):
        p = tmp_path / f"{m}.tsv"
        block.to_csv(p, sep="\t", index=False)
        paths.append(p)
    out = [tmp_path / "t_top100.md", tmp_path / "t_top100.tex"]
    tables.run_aggregate(paths, tmp_path / "long.tsv", tmp_path / "summary.tsv", out)
    back = pd.read_csv(tmp_path / "long.tsv", sep="\t")
    assert len(back) == len(long) and list(back.columns) == tables.LONG_COLUMNS
    assert out[0].read_text().startswith("**scPerturBench metrics, top-100 DEGs")
