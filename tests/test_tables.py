"""Aggregation and the paper-table layouts on hand-made metric rows."""

import numpy as np
import pandas as pd
import pytest

from scpert import steps, tables
from scpert.errors import InputError


def _long():
    rows = []
    for method, mse, pcc in [
        ("a", [1.0, 3.0], [0.5, 0.7]),
        ("b", [2.0, 2.0], [0.2, 0.2]),
        ("c", [4.0, 6.0], [0.9, 0.9]),
    ]:
        for i, cond in enumerate(["L1|x|1", "L1|y|1"]):
            rows.append(("ds", "drug_ood", method, cond, "scperturbench", "mse", "top100", mse[i]))
            rows.append(
                ("ds", "drug_ood", method, cond, "scperturbench", "pcc_delta", "top100", pcc[i])
            )
    return pd.DataFrame(rows, columns=tables.LONG_COLUMNS)


def _rows(table):
    return [r for r in table.rows if not isinstance(r, str)]


def test_summary_mean_sd_n():
    s = tables.summarise(_long())
    a = s[(s["method"] == "a") & (s["metric"] == "mse")].iloc[0]
    assert a["mean"] == 2.0 and np.isclose(a["sd"], np.sqrt(2.0)) and a["n"] == 2
    assert list(s.columns) == tables.KEYS + ["mean", "sd", "n"]


def test_table1_ranks_and_gain():
    header, rows = tables.table1(tables.summarise(_long()), "top100")
    assert header == ["Dataset", "Split", "Method", "MSE ↓", "PCCΔ ↑"]
    assert rows[0] == "Perturbation generalization"  # section heading of drug_ood
    by_method = {r[2][0]: r for r in rows[1:]}
    # MSE: a = 2 and b = 2 tie (stable order keeps a first), c = 5; gain 0%
    assert by_method["a"][3][1] == 1 and by_method["b"][3][1] == 2 and by_method["c"][3][1] == 0
    # PCC: c = 0.9 best, a = 0.6 second; relative gain (0.9 - 0.6) / 0.6 = 50%
    assert by_method["c"][4] == ("0.9 (±0)", 1, "↑50%")
    assert by_method["a"][4][1] == 2
    md = tables.to_markdown(header, rows, "t")
    assert "**0.9 (±0)** ↑50%" in md and "<u>0.6 (±0.1414)</u>" in md
    assert "| *Perturbation generalization* | | | | |" in md
    tex = tables.to_latex(header, rows, "t")
    assert r"\textbf{0.9 ($\pm$0)} $\uparrow$50\%" in tex
    assert r"\multicolumn{5}{l}{\textit{Perturbation generalization}} \\" in tex


def _long_all_protocols():
    """Two methods on two splits; per condition values chosen so means and medians differ."""
    rows = []
    conds = {
        "drug_ood": ["L1|dA|1", "L1|dB|1", "L1|dC|1"],
        "combo_seen1": ["L1|dA+dB|1+1", "L1|dC|1"],
    }
    for split, conditions in conds.items():
        for method, shift in (("m1", 0.0), ("m2", 0.3)):
            for i, cond in enumerate(conditions):
                value = [0.1, 0.2, 0.9][i] + shift
                for protocol, metric, deg_set in [
                    ("scperturbench", "mse", "top100"),
                    ("scppdm", "ev", "all"),
                    ("scppdm", "logfc_pearson", "top200"),
                    ("celleval", "overlap_at_N", "sig"),
                    ("celleval", "mse", "all"),
                    ("systema", "l2", "all"),
                    ("systema", "pearson_delta_hat", "top20"),
                ]:
                    rows.append(("ds", split, method, cond, protocol, metric, deg_set, value))
            rows.append(
                ("ds", split, method, "L1|*", "celleval", "de_spearman_sig", "sig", 0.5 + shift)
            )
    return pd.DataFrame(rows, columns=tables.LONG_COLUMNS)


SPLIT_TYPES = {"drug_ood": "drug_ood", "combo_seen1": "combo_seen1"}


def test_scppdm_layout_has_methods_as_columns_and_medians():
    long = _long_all_protocols()
    blocks = tables.PAPER_TABLES["scppdm_table3_4"].tables(long, SPLIT_TYPES)
    block = next(t for t in blocks if t.title.endswith("drug_ood"))
    assert block.header == ["(drug_ood)", "m1", "m2"]
    rows = {r[0][0]: r[1:] for r in block.rows}
    # drug_ood values m1: 0.1, 0.2, 0.9 (mean 0.4, median 0.2); m2: +0.3
    assert rows["E[EV] ↑"] == [("0.4", 2, ""), ("0.7", 1, "")]
    assert rows["EV-median ↑"] == [("0.2", 2, ""), ("0.5", 1, "")]
    assert rows["logFC-Pearson(DEG) ↑"][1] == ("0.7", 1, "")
    assert "logFC-Pearson ↑" not in rows  # no all-gene logFC rows in this input
    md = tables.render(blocks, ".md")
    assert "| EV-median ↑ | <u>0.2</u> | **0.5** |" in md


def test_perturbdiff_scdfm_and_statexdiff_layouts():
    long = _long_all_protocols()
    (t4,) = tables.PAPER_TABLES["perturbdiff_table4"].tables(long, SPLIT_TYPES)
    assert t4.header == ["Dataset", "Split", "Method", "DEOver ↑", "ES ↑", "MSE ↓"]
    assert t4.rows[0] == "Perturbation generalization"
    m1 = next(r for r in _rows(t4) if r[1][0] == "drug_ood" and r[2][0] == "m1")
    assert m1[3:] == [("0.4", 2, ""), ("0.5", 2, ""), ("0.4", 1, "")]  # means, no sd, no gain
    (t1,) = tables.PAPER_TABLES["scdfm_table1"].tables(long, SPLIT_TYPES)
    assert t1.header[3:] == ["L2 ↓", "MSE ↓", "Pearson Δ̂20 ↑"]
    (t2,) = tables.PAPER_TABLES["scdfm_table2"].tables(long, SPLIT_TYPES)
    assert [r for r in t2.rows if isinstance(r, str)] == ["Single", "Double"]
    # "Double" holds the one combination condition of combo_seen1 (value 0.1 for m1)
    double = t2.rows[t2.rows.index("Double") + 1 :]
    assert double[0][:3] == [("ds", 0, ""), ("combo_seen1", 0, ""), ("m1", 0, "")]
    assert double[0][3][0] == "0.1 (±–)"
    (t11,) = tables.PAPER_TABLES["statexdiff_table11_ud_top100"].tables(long, SPLIT_TYPES)
    assert {r[1][0] for r in _rows(t11)} == {"drug_ood"}  # unseen drugs only


def test_paper_tables_follow_protocols_and_split_types():
    names = tables.paper_tables(["scperturbench"], ["drug_ood"])
    assert names == [
        "table1_scperturbench_top100",
        "table1_scperturbench_top5000",
        "statexdiff_table11_ud_top100",
        "statexdiff_table12_ud_top5000",
        "statexdiff_table2_top100",
        "statexdiff_table2_top5000",
    ]
    names = tables.paper_tables(["scperturbench", "celleval", "scppdm", "systema"], ["cell_ood"])
    assert "statexdiff_table13_uc_top100" in names and "scdfm_table2" not in names
    assert "perturbdiff_table4" in names and "scppdm_table1_2" in names
    assert "scdfm_table1" not in tables.paper_tables(["celleval"], ["drug_ood"])


def test_run_aggregate_roundtrip(tmp_path):
    long = _long()
    paths = []
    for m, block in long.groupby("method"):
        p = tmp_path / f"{m}.tsv"
        block.to_csv(p, sep="\t", index=False)
        paths.append(p)
    out = [
        tmp_path / "table1_scperturbench_top100.md",
        tmp_path / "table1_scperturbench_top100.tex",
        tmp_path / "statexdiff_table13_uc_top100.md",
    ]
    steps.aggregate(
        paths, tmp_path / "long.tsv", tmp_path / "summary.tsv", out, {"drug_ood": "drug_ood"}
    )
    back = pd.read_csv(tmp_path / "long.tsv", sep="\t")
    assert len(back) == len(long) and list(back.columns) == tables.LONG_COLUMNS
    md = out[0].read_text()
    assert md.startswith("**scPerturBench metrics, top-100 DEGs")
    assert "| *Perturbation generalization* |" in md
    assert "No results for this layout" in out[2].read_text()  # no cell_ood split here
    with pytest.raises(InputError, match="unknown paper table 'nope'"):
        steps.aggregate(paths, tmp_path / "l.tsv", tmp_path / "s.tsv", [tmp_path / "nope.md"])
