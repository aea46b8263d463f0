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


def _summary_rows(rows):
    """Summary rows (dataset d, split s, scPerturBench top100) from (method, metric, mean)."""
    return pd.DataFrame(
        [("d", "s", m, "scperturbench", metric, "top100", v, 0.1, 5) for m, metric, v in rows],
        columns=[*tables.KEYS, "mean", "sd", "n"],
    )


def test_aggregate_score_by_hand():
    """Three methods: E-dist/MSE/KL/WD min-max scaled (1 = best), PCCΔ and Common-DEGs raw.
    A: 1, 1, .9, 1, 1, .5 -> 5.4/6; B: 0, .5, .5, 0, .5, .3 -> 1.8/6; C: .5, 0, .7, .5, 0, .4 ->
    2.1/6. Ranks A 1 x6; B 3,2,3,3,2,3 (16/6); C 2,3,2,2,3,2 (14/6): order A, C, B. The oracle is
    not a method; a metric on which every method ties leaves the score."""
    values = {
        "A": {"e_distance": 1, "mse": 0.1, "pcc_delta": 0.9, "kl": 10, "wasserstein": 2, "common_degs": 0.5},
        "B": {"e_distance": 3, "mse": 0.3, "pcc_delta": 0.5, "kl": 30, "wasserstein": 4, "common_degs": 0.3},
        "C": {"e_distance": 2, "mse": 0.5, "pcc_delta": 0.7, "kl": 20, "wasserstein": 6, "common_degs": 0.4},
        "oracle": {"e_distance": 0, "mse": 0, "pcc_delta": 1, "kl": 0, "wasserstein": 0, "common_degs": 1},
    }  # fmt: skip
    summary = _summary_rows([(m, k, v) for m, row in values.items() for k, v in row.items()])
    score = tables.aggregate_score(summary).set_index("method")
    assert list(score.index) == ["A", "C", "B"]
    assert score["score"].to_dict() == pytest.approx({"A": 0.9, "B": 0.3, "C": 0.35})
    assert score["mean_rank"].to_dict() == pytest.approx({"A": 1, "B": 16 / 6, "C": 14 / 6})
    assert score["rank"].to_dict() == {"A": 1, "C": 2, "B": 3}
    assert (score["n_metrics"] == 6).all()
    tie = _summary_rows(
        [("A", "mse", 1.0), ("B", "mse", 1.0), ("A", "pcc_delta", 0.2), ("B", "pcc_delta", 0.6)]
    )
    score = tables.aggregate_score(tie).set_index("method")
    assert score["score"].to_dict() == pytest.approx({"A": 0.2, "B": 0.6})  # MSE ties: left out
    assert score["mean_rank"].to_dict() == pytest.approx({"A": 1.75, "B": 1.25})
    assert score["rank"].to_dict() == {"B": 1, "A": 2}


def test_multiseed_mean_sd_across_seeds_by_hand():
    """m at seeds 0, 1, 2 with means 1, 2, 4: mean 7/3, sd sqrt(7/3); the oracle has one value."""
    summary = _summary_rows(
        [
            ("m", "mse", 1.0),
            ("m.seed1", "mse", 2.0),
            ("m.seed2", "mse", 4.0),
            ("oracle", "mse", 0.5),
        ]
    )
    across = tables.multiseed(summary, first_seed=0).set_index("method")
    assert list(across.columns) == [c for c in tables.MULTISEED_COLUMNS if c != "method"]
    assert across.at["m", "mean"] == pytest.approx(7 / 3)
    assert across.at["m", "sd"] == pytest.approx(np.sqrt(7 / 3))
    assert across.at["m", "n_seeds"] == 3 and across.at["m", "seeds"] == "0,1,2"
    assert across.at["oracle", "n_seeds"] == 1 and np.isnan(across.at["oracle", "sd"])
    md = tables.render(tables.multiseed_table(across.reset_index()), ".md")
    assert "| d | s | m | – | 2.333 ± 1.528 |" in md
    assert "| d | s | [oracle] | – | 0.5 |" in md


def test_seeds_make_method_replicates_with_their_seed():
    import copy

    import yaml
    from snakemake.utils import validate

    from scpert.workflow_config import ConfigError, resolve_config

    from .conftest import REPO

    config = yaml.safe_load((REPO / "config/ci.yaml").read_text())
    config["seeds"] = [3, 5]
    validate(config, str(REPO / "config/schema.yaml"))
    run = resolve_config(copy.deepcopy(config))
    first = next(iter(config["methods"]))
    assert run.methods[first].seed == 3 and run.methods[f"{first}.seed5"].seed == 5
    assert run.methods[f"{first}.seed5"].params == run.methods[first].params
    assert len(run.jobs) == 2 * len(resolve_config({**config, "seeds": None}).jobs)
    config["methods"]["x.seed1"] = {"base": first}
    with pytest.raises(ConfigError, match=r"^methods\.x\.seed1: names ending in '\.seed<n>'"):
        resolve_config(config)


def test_run_aggregate_writes_score_and_tables_across_seeds(tmp_path):
    """Rule aggregate's extra outputs: the aggregate score of the summary and, for a method with
    a seed replicate, the tables across seeds (a: seeds 0 and 1 with MSE means 2 and 4)."""
    long = _long()
    replicate = long[long["method"] == "a"].assign(method="a.seed1")
    replicate["value"] = replicate["value"] * 2
    path = tmp_path / "metrics.tsv"
    pd.concat([long, replicate]).to_csv(path, sep="\t", index=False)
    across = [tmp_path / "multiseed.tsv", tmp_path / "multiseed.md", tmp_path / "multiseed.tex"]
    steps.aggregate(
        [path],
        tmp_path / "long.tsv",
        tmp_path / "summary.tsv",
        [],
        {"drug_ood": "drug_ood"},
        tmp_path / "score.tsv",
        across,
        0,
    )
    score = pd.read_csv(tmp_path / "score.tsv", sep="\t")
    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t")
    expected = tables.aggregate_score(summary)
    pd.testing.assert_frame_equal(score, expected, check_dtype=False, rtol=1e-5)
    table = pd.read_csv(across[0], sep="\t").set_index(["method", "metric"])
    assert table.at[("a", "mse"), "mean"] == pytest.approx(3.0)
    assert table.at[("a", "mse"), "sd"] == pytest.approx(np.sqrt(2.0))
    assert table.at[("a", "mse"), "seeds"] == "0,1"
    assert "3 ± 1.414" in across[1].read_text() and r"$\pm$" in across[2].read_text()
