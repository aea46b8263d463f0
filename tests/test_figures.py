"""Figure families (scpert.plots): each figure's data table against the metric tables it claims to
show, the figures rendered (PDF + PNG, titled panels), and which families a run makes."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scpert import plots, stats, tables
from scpert.metrics.reference import has_ceiling
from scpert.plots import ablations, combinations, comparisons, dose_response, radar, scatter
from scpert.plots.common import KEY_METRICS, save
from scpert.tables import LONG_COLUMNS

SPLIT_TYPES = {
    "cell_ood": "cell_ood",
    "drug_ood": "drug_ood",
    "combo_seen0": "combo_seen0",
    "combo_seen1": "combo_seen1",
}
METHODS = ["base_control", "base_reg", "scppdm", "scppdm_residual", "oracle", "ceiling"]
BASELINES = ["base_control", "base_reg"]
BASES = {
    "base_control": "base_control",
    "base_reg": "base_reg",
    "scppdm": "scppdm",
    "scppdm_residual": "scppdm",
}


@pytest.fixture(scope="module")
def long():
    rng = np.random.default_rng(0)
    rows = []
    for split in SPLIT_TYPES:
        for k in range(6):
            condition = f"CL0{k % 2}|drug{k}|1"
            for i, method in enumerate(METHODS):
                for c in KEY_METRICS:
                    if method == "ceiling" and not has_ceiling(c.protocol, c.metric):
                        continue
                    value = 0.1 * i + rng.normal(0, 0.05)
                    rows.append(
                        ("d", split, method, condition, c.protocol, c.metric, c.deg_set, value)
                    )
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


@pytest.fixture(scope="module")
def summary(long):
    return tables.summarise(long)


def _mean(summary, split, method, column):
    rows = summary[
        (summary["split"] == split)
        & (summary["method"] == method)
        & (summary["metric"] == column.metric)
        & (summary["protocol"] == column.protocol)
        & (summary["deg_set"] == column.deg_set)
    ]
    return float(rows["mean"].iloc[0])


def _render(fig, tmp_path, name, table):
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert titled, name
    save(fig, tmp_path / f"{name}.pdf", tmp_path / f"{name}.png", table, tmp_path / f"{name}.tsv")
    for ext in ("pdf", "png", "tsv"):
        assert (tmp_path / f"{name}.{ext}").stat().st_size > 0


def test_radar_shows_the_summary_means_scaled_per_split(summary, tmp_path):
    table = radar.data(summary, "d")
    assert set(table["split"]) == set(SPLIT_TYPES)
    for row in table.sample(20, random_state=0).itertuples():
        column = next(c for c in KEY_METRICS if c.label == row.label)
        assert row.mean == pytest.approx(_mean(summary, row.split, row.method, column))
    for (_, label), block in table.groupby(["split", "label"]):
        column = next(c for c in KEY_METRICS if c.label == label)
        best = block["mean"].idxmax() if column.higher_better else block["mean"].idxmin()
        worst = block["mean"].idxmin() if column.higher_better else block["mean"].idxmax()
        assert block.at[best, "score"] == pytest.approx(1.0)
        assert block.at[worst, "score"] == pytest.approx(0.0)
    # the ceiling is the Spearman-Brown corrected mean of the summary
    row = table[(table["method"] == "ceiling") & (table["label"] == "PDCorr")].iloc[0]
    assert row["mean"] == pytest.approx(_mean(summary, row["split"], "ceiling", KEY_METRICS[0]))
    _render(radar.draw(table), tmp_path, "radar", table)


def test_scatter_pairs_each_method_with_the_best_baseline(long, tmp_path):
    table = scatter.data(long, "d", BASELINES)
    assert set(table["reference"]) == {"base_reg"}  # the better baseline on PDCorr
    assert "ceiling" not in set(table["method"]) and "base_reg" not in set(table["method"])
    metric = long[(long["metric"] == "pearson_delta") & (long["protocol"] == "celleval")]
    values = metric.set_index(["split", "method", "condition"])["value"]
    for row in table.itertuples():
        assert row.y == values[row.split, row.method, row.condition]
        assert row.x == values[row.split, "base_reg", row.condition]
    assert len(table) == 4 * 6 * 4  # splits x conditions x (methods but the reference, + oracle)
    _render(scatter.draw(table), tmp_path, "scatter", table)


def test_combinations_show_the_combo_splits_only(summary, tmp_path):
    table = combinations.data(summary, "d", SPLIT_TYPES)
    assert set(table["split"]) == {"combo_seen0", "combo_seen1"}
    for row in table.itertuples():
        column = next(c for c in KEY_METRICS if c.label == row.label)
        assert row.mean == pytest.approx(_mean(summary, row.split, row.method, column))
        if row.method != "ceiling":
            assert row.sem == pytest.approx(row.sd / np.sqrt(row.n))
    _render(combinations.draw(table), tmp_path, "combinations", table)


def test_ablations_group_the_variants_of_a_base(summary, tmp_path):
    table = ablations.data(summary, "d", BASES)
    assert set(table["base"]) == {"scppdm"}
    assert set(table["method"]) == {"scppdm", "scppdm_residual", "oracle", "ceiling"}
    for row in table.sample(10, random_state=1).itertuples():
        column = next(c for c in KEY_METRICS if c.label == row.label)
        assert row.mean == pytest.approx(_mean(summary, row.split, row.method, column))
    _render(ablations.draw(table), tmp_path, "ablations", table)
    assert ablations.data(summary, "d", {"scppdm": "scppdm"}).empty  # one variant: no figure


def test_comparisons_figure_shows_the_comparison_table(long, tmp_path):
    table = stats.compare_to_best_baseline(long, BASELINES, tables.metric_directions())
    shown = comparisons.data(table)
    assert set(shown["method"]) == {"scppdm", "scppdm_residual"}
    for row in shown.itertuples():
        column = next(c for c in KEY_METRICS if c.label == row.label)
        sign = 1 if column.higher_better else -1
        source = table[
            (table["split"] == row.split)
            & (table["method"] == row.method)
            & (table["metric"] == column.metric)
            & (table["deg_set"] == column.deg_set)
        ].iloc[0]
        assert row.improvement == pytest.approx(sign * source["mean_diff"])
        assert row.improvement_low <= row.improvement <= row.improvement_high
    _render(comparisons.draw(shown), tmp_path, "comparisons", shown)


def test_dose_response_effects_by_hand(tmp_path):
    """Two genes; controls at (0, 0); truth at doses 0.1/1/10 at (1, 0), (0, 2), (3, 4); a
    prediction that shrinks the largest dose: sizes 1, 2, 5 (monotone) vs 1, 2, 1 (not)."""
    obs = pd.DataFrame(
        {
            "cell_line": "L",
            "drug": ["control"] * 2 + ["a"] * 6,
            "dose": ["0", "0", "0.1", "0.1", "1", "1", "10", "10"],
        }
    )
    obs["condition"] = obs["cell_line"] + "|" + obs["drug"] + "|" + obs["dose"]
    obs.index = [f"c{i}" for i in range(len(obs))]
    x = np.array([[0, 0], [0, 0], [1, 0], [1, 0], [0, 2], [0, 2], [3, 4], [3, 4]], dtype=float)
    truth = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=["g1", "g2"]))
    pred = truth[2:].copy()
    pred.X = np.array([[1, 0], [1, 0], [0, 2], [0, 2], [1, 0], [1, 0]], dtype=float)
    test = ["L|a|0.1", "L|a|1", "L|a|10"]
    table = dose_response.effects(truth, {"m": pred}, "control", test)
    table = table.assign(dataset="d", split="drug_ood")[dose_response.COLUMNS]
    got = table.set_index(["method", "dose"])["effect"]
    assert got["truth"].tolist() == pytest.approx([1, 2, 5])
    assert got["m"].tolist() == pytest.approx([1, 2, 1])
    mono = dose_response.monotone(table).set_index("method")["monotone"]
    assert bool(mono["truth"]) and not bool(mono["m"])
    _render(dose_response.draw(table), tmp_path, "dose_response", table)


def test_figure_names_follow_the_configured_split_types():
    names = plots.figure_names(["cell_ood", "combo_seen0"], ["d"])
    assert "combinations_d" not in names  # needs two combination split types
    assert "dose_response_d" not in names  # needs a drug_ood split
    assert {"radar_d", "scatter_d", "ablations_d", "comparisons"} <= set(names)
    names = plots.figure_names(["drug_ood", "combo_seen0", "combo_seen2"], ["d", "e"])
    assert {"combinations_d", "combinations_e", "dose_response_e"} <= set(names)
    assert names.count("comparisons") == 1
    assert "ablations_d" not in plots.figure_names(["cell_ood"], ["d"], has_variants=False)


def test_padj_density_splits_genes_by_true_de_status(tmp_path):
    """Gene g0 shifts strongly in the truth (DE), g1-g3 do not; a prediction equal to the truth
    has the truth's histograms; a control-like prediction has no significant DE gene."""
    from scpert.metrics.de import MannWhitneyReference, bh_fdr
    from scpert.plots import padj_density

    rng = np.random.default_rng(0)
    ctrl = rng.poisson(2.0, (40, 4)).astype(np.float32)
    treated = rng.poisson(2.0, (40, 4)).astype(np.float32)
    treated[:, 0] += 6
    obs = pd.DataFrame(
        {"cell_line": "L", "drug": ["control"] * 40 + ["a"] * 40, "dose": ["0"] * 40 + ["1"] * 40}
    )
    obs["condition"] = obs["cell_line"] + "|" + obs["drug"] + "|" + obs["dose"]
    obs.index = [f"c{i}" for i in range(80)]
    truth = ad.AnnData(np.vstack([ctrl, treated]), obs=obs, var=pd.DataFrame(index=list("wxyz")))
    same = truth[40:].copy()
    flat = truth[40:].copy()
    flat.X = rng.poisson(2.0, (40, 4)).astype(np.float32)
    table = padj_density.histograms(truth, {"same": same, "flat": flat}, "control", ["L|a|1"])
    counts = table.groupby(["method", "gene_set"])["count"].sum()
    assert counts["truth", "DE"] == 1 and counts["truth", "non-DE"] == 3
    pivot = table.pivot_table(index=["gene_set", "bin_low"], columns="method", values="count")
    assert (pivot["same"] == pivot["truth"]).all()
    fdr = bh_fdr(MannWhitneyReference(ctrl).test(treated)[1])
    top = -np.log10(max(fdr[0], 1e-10))
    de_bin = table[
        (table["method"] == "truth") & (table["gene_set"] == "DE") & (table["count"] > 0)
    ]
    assert de_bin["bin_low"].iloc[0] <= top <= de_bin["bin_high"].iloc[0]  # last bin closed
    flat_fdr = bh_fdr(MannWhitneyReference(ctrl).test(flat.X)[1])
    assert (flat_fdr >= 0.05).all()
    low = table[(table["method"] == "flat") & (table["bin_high"] <= -np.log10(0.05) + 0.25)]
    assert low["count"].sum() == 4  # every gene of the flat prediction in the lowest bins
    table = table.assign(dataset="d", split="drug_ood")[padj_density.COLUMNS]
    _render(padj_density.draw(table), tmp_path, "padj_density", table)


def test_protein_modality_shows_the_fig_3c_arms_in_order(tmp_path):
    """The arms of config/statexdiff_protein_modality.yaml, hand-made values: per arm two test
    conditions of E-dist (1, 3) + 2 k; the mean and sem are the summary's; base_reg is no
    arm."""
    from scpert.plots import protein_modality

    rows = []
    for k, method in enumerate(["statexdiff", "base_control", "statexdiff_rna_only", "base_reg"]):
        for c, value in enumerate([1.0, 3.0]):
            row = ("w", "cite_uc", method, f"L|d{c}|1", "scperturbench", "e_distance", "top100")
            rows.append((*row, value + 2 * k))
    summary = tables.summarise(pd.DataFrame(rows, columns=LONG_COLUMNS))
    table = protein_modality.data(summary, "w")
    assert table["arm"].tolist() == ["baseControl", "RNA-only", "PseudoProt"]  # Fig. 3c order
    means = table.set_index("method")["mean"]
    assert means["statexdiff"] == pytest.approx(2.0)  # (1 + 3) / 2
    assert means["base_control"] == pytest.approx(4.0)
    # sd of (1, 3) = sqrt(2), sem = sqrt(2) / sqrt(2) = 1
    assert table["sem"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    _render(protein_modality.draw(table), tmp_path, "protein_modality", table)


def test_protein_modality_figure_needs_its_arms_and_writes_a_run_table():
    assert "protein_modality_d" not in plots.figure_names(["cell_ood"], ["d"], methods=["x"])
    names = plots.figure_names(["cell_ood"], ["d"], methods=["statexdiff", "statexdiff_rna_only"])
    assert "protein_modality_d" in names
    files = plots.figure_files("protein_modality_d")
    assert files["tsv"] == "results/tables/statexdiff_fig3c_d.tsv"
    assert files["png"] == "results/figures/protein_modality_d.png"
    assert plots.figure_files("radar_d")["tsv"] == "results/figures/radar_d.tsv"
