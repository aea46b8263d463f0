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


def _drug_world(rng, lines=("L1", "L2"), drugs=("a", "b"), genes=12, cells=20):
    """Controls and two drugs per line; drug ``a`` raises genes 0-3, ``b`` lowers genes 4-7."""
    blocks, obs = [], []
    for li, line in enumerate(lines):
        base = 2.0 + li + 0.1 * np.arange(genes)
        for drug in ("control", *drugs):
            x = base + rng.normal(0, 0.2, (cells, genes))
            if drug == "a":
                x[:, :4] += 2.0
            elif drug == "b":
                x[:, 4:8] -= 1.5
            blocks.append(np.maximum(x, 0))
            obs += [(line, drug, "0" if drug == "control" else "1")] * cells
    obs = pd.DataFrame(obs, columns=["cell_line", "drug", "dose"])
    obs["condition"] = obs["cell_line"] + "|" + obs["drug"] + "|" + obs["dose"]
    obs.index = [f"c{i}" for i in range(len(obs))]
    var = pd.DataFrame(index=[f"g{i}" for i in range(genes)])
    return ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs, var=var)


def test_umap_layout_follows_umap_learn():
    """a, b of the min_dist curve equal umap's; neighbours equal scikit-learn's; the embedding
    preserves neighbourhoods as well as umap-learn's (trustworthiness within 0.02)."""
    umap = pytest.importorskip("umap")
    from sklearn.datasets import make_blobs
    from sklearn.manifold import trustworthiness
    from sklearn.neighbors import NearestNeighbors

    from scpert.plots.umap_layout import find_ab_params, knn, umap_embedding

    assert find_ab_params(1.0, 0.1) == pytest.approx(umap.umap_.find_ab_params(1.0, 0.1), rel=1e-6)
    x, _ = make_blobs(600, 20, centers=5, cluster_std=3.0, random_state=0)
    indices, distances = knn(x, 15)
    ref_d, ref_i = NearestNeighbors(n_neighbors=15).fit(x).kneighbors(x)
    assert (indices == ref_i).all()
    assert distances == pytest.approx(ref_d, abs=1e-5)  # sklearn's self-distance is not 0
    ours = trustworthiness(x, umap_embedding(x, seed=0), n_neighbors=10)
    ref = umap.UMAP(n_epochs=200, random_state=0).fit_transform(x)
    assert ours >= trustworthiness(x, ref, n_neighbors=10) - 0.02
    assert ours > 0.9


def test_umap_figure_logfc_by_hand(tmp_path):
    """The violins' logFC is scPPDM's log2((mean + 0.1) / (control mean + 0.1)) per condition and
    gene; the genes are the line's largest mean |logFC| in the truth; the UMAP keeps every source's
    cells (fewer than the cap) with their cell line."""
    from scpert.plots import umap

    rng = np.random.default_rng(0)
    truth = _drug_world(rng)
    test = ["L1|a|1", "L1|b|1", "L2|a|1", "L2|b|1"]
    pred = truth[truth.obs["drug"] != "control"].copy()
    pred.X = pred.X + 0.5  # a shifted copy of the truth
    table = umap.data(truth, {"m": pred}, "control", test)
    table = table.assign(dataset="d", split="drug_ood")[umap.COLUMNS]
    lfc = table[table["kind"] == "logfc"].set_index(["method", "condition", "gene"])["logfc"]
    x = truth.X
    for line in ("L1", "L2"):
        ctrl = x[(truth.obs["condition"] == f"{line}|control|0").to_numpy()].mean(axis=0)
        rows = (truth.obs["condition"] == f"{line}|a|1").to_numpy()
        expected = np.log2((x[rows].mean(axis=0) + 0.1) / (ctrl + 0.1))
        shifted = np.log2((x[rows].mean(axis=0) + 0.5 + 0.1) / (ctrl + 0.1))
        genes = set(table[(table["kind"] == "logfc") & (table["cell_line"] == line)]["gene"])
        assert len(genes) == umap.N_GENES and genes <= {f"g{i}" for i in range(8)}
        for gene in genes:
            g = int(gene[1:])
            assert lfc["truth", f"{line}|a|1", gene] == pytest.approx(expected[g], abs=1e-5)
            assert lfc["m", f"{line}|a|1", gene] == pytest.approx(shifted[g], abs=1e-5)
    cells = table[table["kind"] == "umap"]
    assert cells.groupby("method").size().to_dict() == {"truth": 80, "m": 80}
    assert np.isfinite(cells[["umap1", "umap2"]].to_numpy()).all()
    assert (cells.groupby("method")["cell_line"].value_counts() == 40).all()
    _render(umap.draw(table), tmp_path, "umap", table)


def _enrichment_score(ranking: pd.Series, genes: set) -> float:
    """GSEA's ES (Subramanian et al. 2005, weight p = 1): the largest deviation from 0 of the
    running sum of |r| over hits / total |r| of hits minus misses / number of misses."""
    order = ranking.sort_values(ascending=False, kind="stable")
    hit = order.index.isin(list(genes))
    step = np.where(hit, np.abs(order.to_numpy()) / np.abs(order[hit]).sum(), -1 / (~hit).sum())
    running = np.cumsum(step)
    return float(running[np.argmax(np.abs(running))])


def test_gsea_figure_scores_by_hand(tmp_path):
    """gseapy's ES on the truth's mean logFC ranking equals GSEA's formula; the set of the genes
    that drug ``a`` raises has the largest ES; a prediction equal to the truth has its ES."""
    pytest.importorskip("gseapy")
    from scpert.plots import gsea
    from scpert.plots.lfc import condition_lfc

    rng = np.random.default_rng(1)
    truth = _drug_world(rng, drugs=("a", "b"))
    # drug a's response is the largest: scale b's down
    test = ["L1|a|1", "L2|a|1", "L1|b|1", "L2|b|1"]
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("UP\tgenes a raises\tg0\tg1\tg2\tg3\tg9\nOTHER\tx\tg8\tg9\tg10\tg11\tg5\n")
    sets = gsea.read_gmt(gmt)
    same = truth[truth.obs["drug"] != "control"].copy()
    table = gsea.enrichment(truth, {"same": same}, "control", test, sets)
    table = table.assign(dataset="d", split="drug_ood")[gsea.COLUMNS]
    scores = table[table["kind"] == "score"].set_index(["method", "term"])["value"]
    described, lfc = condition_lfc(truth, {}, "control", test)
    drug = table["drug"].iloc[0]
    ranking = lfc["truth"].loc[described.index[described["drug"] == drug]].mean(axis=0)
    for term in ("UP", "OTHER"):
        expected = _enrichment_score(ranking, set(sets[term]))
        assert scores["truth", term] == pytest.approx(expected, abs=1e-6)
        assert scores["same", term] == pytest.approx(scores["truth", term])
    hits = table[(table["kind"] == "hit") & (table["method"] == "truth") & (table["term"] == "UP")]
    assert len(hits) == 5
    curve = table[(table["kind"] == "curve") & (table["method"] == "truth")]
    assert curve.groupby("term").size().eq(truth.n_vars).all()
    _render(gsea.draw(table), tmp_path, "gsea", table)


def test_read_gmt_names_the_file_on_a_bad_line(tmp_path):
    from scpert import runtime
    from scpert.plots import gsea

    bad = tmp_path / "bad.gmt"
    bad.write_text("SET_A\tdescription only\n")
    with pytest.raises(runtime.InputError, match="bad.gmt: line 1"):
        gsea.read_gmt(bad)


def test_figure_logfc_is_the_scppdm_protocols():
    """The logFC the violins and the GSEA rankings show is the scPPDM protocol's: the Pearson of
    the truth's and a prediction's logFC over all genes equals its ``logfc_pearson`` (all)."""
    from scpert.metrics.correlation import pearson
    from scpert.metrics.evaluate import evaluate_predictions
    from scpert.plots.lfc import condition_lfc

    rng = np.random.default_rng(2)
    truth = _drug_world(rng)
    test = ["L1|a|1", "L1|b|1", "L2|a|1", "L2|b|1"]
    pred = truth[truth.obs["drug"] != "control"].copy()
    pred.X = pred.X + rng.normal(0, 0.3, pred.shape).astype(np.float32)
    _, lfc = condition_lfc(truth, {"m": pred}, "control", test)
    metrics = evaluate_predictions(truth, pred, test, "control", ("scppdm",))
    rows = metrics[(metrics["metric"] == "logfc_pearson") & (metrics["deg_set"] == "all")]
    for condition, value in rows.set_index("condition")["value"].items():
        got = pearson(lfc["truth"].loc[condition].to_numpy(), lfc["m"].loc[condition].to_numpy())
        assert got == pytest.approx(value, abs=1e-6)
    assert len(rows) == len(test)


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
