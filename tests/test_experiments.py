"""Experiment overlays (docs/experiments.md): corruption levels, identity-balanced subsampling,
the experiment table and figure data, and the dry-run DAG of each overlay."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scpert.experiments import corruption, diversity
from scpert.experiments.tables import experiment_table

from .conftest import REPO
from .test_workflow import job_counts, snakemake


# ---------------------------------------------------------------- corruption
def _processed(n_cells: int = 400, n_genes: int = 300, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.08, (n_cells, n_genes)).astype(np.float32)  # ~0.923 sparse
    x = np.log1p(counts * 10.0).astype(np.float32)
    obs = pd.DataFrame(
        {"condition": "L1|control|0", "cell_line": "L1", "drug": "control", "dose": "0"},
        index=[f"c{i}" for i in range(n_cells)],
    )
    return ad.AnnData(sp.csr_matrix(x), obs=obs, layers={"counts": sp.csr_matrix(counts)})


@pytest.mark.parametrize("level", [0.1, 0.5, 0.9])
def test_sparsity_level_drops_that_fraction_of_nonzeros(level):
    adata = _processed()
    s0 = corruption.sparsity(adata.X)
    out = corruption.corrupt(adata, "sparsity", level, seed=1)
    nnz0 = adata.X.nnz
    # s' = s0 + (1 - s0) p in expectation; binomial sd of the kept count sqrt(nnz p (1 - p))
    kept = out.X.nnz
    assert abs(kept - nnz0 * (1 - level)) < 4 * np.sqrt(nnz0 * level * (1 - level))
    assert corruption.sparsity(out.X) == pytest.approx(s0 + (1 - s0) * level, abs=0.005)
    # surviving entries keep their values; counts are dropped at the same places
    x0, x1 = adata.X.toarray(), out.X.toarray()
    survived = x1 != 0
    np.testing.assert_array_equal(x1[survived], x0[survived])
    np.testing.assert_array_equal(out.layers["counts"].toarray() != 0, survived)
    assert out.uns["corruption"] == {"kind": "sparsity", "level": level, "seed": 1}


def test_table10_sparsity_from_0963():
    """The module docstring's numbers: from sparsity 0.963 the levels give 0.967 ... 0.996."""
    s0 = 0.963
    got = [round(s0 + (1 - s0) * p, 3) for p in (0.1, 0.3, 0.5, 0.7, 0.9)]
    assert got == [0.967, 0.974, 0.982, 0.989, 0.996]


@pytest.mark.parametrize("level", [0.1, 0.9])
def test_noise_keeps_zeros_and_the_mean(level):
    adata = _processed(n_cells=2000)
    out = corruption.corrupt(adata, "noise", level, seed=0)
    x0, x1 = adata.X.toarray(), out.X.toarray()
    np.testing.assert_array_equal(x1 != 0, x0 != 0)  # sparsity unchanged (Table 10's noise rows)
    ratio = x1[x0 != 0] / x0[x0 != 0]
    # log of the factor is N(-s^2/2, s^2): its sd is the level and its mean is 1
    assert np.log(ratio).std() == pytest.approx(level, rel=0.03)
    assert ratio.mean() == pytest.approx(1.0, abs=4 * level / np.sqrt(ratio.size) * 3)
    np.testing.assert_array_equal(out.layers["counts"].toarray(), adata.layers["counts"].toarray())


def test_corrupt_is_seeded_and_checks_levels():
    adata = _processed()
    a = corruption.corrupt(adata, "noise", 0.3, seed=2).X.toarray()
    b = corruption.corrupt(adata, "noise", 0.3, seed=2).X.toarray()
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="sparsity level"):
        corruption.corrupt(adata, "sparsity", 1.0)
    with pytest.raises(ValueError, match="noise level"):
        corruption.corrupt(adata, "noise", 0.0)
    with pytest.raises(ValueError, match="kind"):
        corruption.corrupt(adata, "blur", 0.3)


# ---------------------------------------------------------------- diversity
def test_balanced_subsample_by_hand():
    # A has 10 rows, B 3, C 10; budget 15 over K = 3: 5 each, but B has 3 -> 13, plus 2 from the
    # remaining rows of A and C
    identity = ["A"] * 10 + ["B"] * 3 + ["C"] * 10 + ["D"] * 5
    rows = diversity.balanced_subsample(identity, ["A", "B", "C"], 15, np.random.default_rng(0))
    picked = pd.Series(np.asarray(identity)[rows]).value_counts()
    assert rows.size == 15 and len(set(rows)) == 15
    assert picked["B"] == 3 and "D" not in picked
    assert picked["A"] >= 5 and picked["C"] >= 5 and picked["A"] + picked["C"] == 12
    # K = 2 with 8 rows: exactly 4 each
    rows = diversity.balanced_subsample(identity, ["A", "D"], 8, np.random.default_rng(1))
    assert pd.Series(np.asarray(identity)[rows]).value_counts().to_dict() == {"A": 4, "D": 4}
    with pytest.raises(ValueError, match="fewer than the budget"):
        diversity.balanced_subsample(identity, ["B"], 4, np.random.default_rng(0))


def test_budget_and_nested_identity_order():
    order = diversity.identity_order(["d3", "d1", "d2", "d1"], seed=0)
    assert sorted(order) == ["d1", "d2", "d3"]
    assert order == diversity.identity_order(["d1", "d2", "d3"], seed=0)  # seeded, input order free
    identity = ["d1"] * 10 + ["d2"] * 20 + ["d3"] * 30
    # the smallest level (1) holds the first identity's rows; 0.7 of them
    first = order[0]
    assert diversity.budget(identity, order, [1, 3], 0.7) == int(0.7 * identity.count(first))


def _split_world():
    """Two lines; drugs d0-d5 at one dose, 20 cells per condition, d5 held out (test)."""
    rows, split = [], []
    for line in ("L1", "L2"):
        rows += [(f"{line}|control|0", line, "control")] * 20
        split.append((f"{line}|control|0", line, "control", "0", 20, "train"))
        for d in range(6):
            cond = f"{line}|d{d}|1"
            rows += [(cond, line, f"d{d}")] * 20
            split.append((cond, line, f"d{d}", "1", 20, "test" if d == 5 else "train"))
    obs = pd.DataFrame(rows, columns=["condition", "cell_line", "drug"])
    table = pd.DataFrame(
        split, columns=["condition", "cell_line", "drug", "dose", "n_cells", "split"]
    )
    return obs, table


@pytest.mark.parametrize("level", [1, 2, 5])
def test_training_subset_has_the_budget_and_keeps_tests_and_controls(level):
    obs, split = _split_world()
    rows, table = diversity.training_subset(obs, split, "drug", level, [1, 2, 5], 0.7, "control", 0)
    kept = obs.iloc[rows]
    is_train = kept["condition"].isin(split.loc[split.split == "train", "condition"])
    perturbed_train = kept[is_train & (kept.drug != "control")]
    # budget: 0.7 x the 40 training cells of the first drug of the order
    assert len(perturbed_train) == 28
    assert perturbed_train["drug"].nunique() == level
    counts = perturbed_train["drug"].value_counts()
    assert counts.min() >= 28 // level  # balanced share
    assert (kept.drug == "control").sum() == 40  # every control kept
    assert (kept.drug == "d5").sum() == 40  # every test cell kept
    # the split lists exactly the kept conditions, training counts recounted
    assert set(table["condition"]) == set(kept["condition"])
    n = table.set_index("condition")["n_cells"]
    assert (kept["condition"].value_counts().reindex(n.index) == n).all()
    # nested: the identities of a level include those of the smaller levels
    if level > 1:
        small, _ = diversity.training_subset(obs, split, "drug", 1, [1, 2, 5], 0.7, "control", 0)
        small_drugs = set(obs.iloc[small].query("drug != 'control' and drug != 'd5'").drug)
        assert small_drugs <= set(perturbed_train["drug"])


def test_training_subset_checks_levels():
    obs, split = _split_world()
    with pytest.raises(ValueError, match=r"levels of drug must be in 1\.\.5"):
        diversity.training_subset(obs, split, "drug", 6, [2, 6], 0.7, "control", 0)
    with pytest.raises(ValueError, match="axis"):
        diversity.training_subset(obs, split, "dose", 1, [1, 2], 0.7, "control", 0)


# ---------------------------------------------------------------- table and figure data
def test_experiment_table_and_figure_data_match_the_metrics():
    from scpert.plots import robustness

    def metrics(values):
        return pd.DataFrame(
            [
                ("synthetic", "cell_ood", "base_reg", f"c{i}", "scperturbench", m, "top100", v)
                for i, v in enumerate(values)
                for m in ("mse", "pcc_delta")
            ],
            columns=[
                "dataset",
                "split",
                "method",
                "condition",
                "protocol",
                "metric",
                "deg_set",
                "value",
            ],
        )

    variants = [{"axis": "noise", "level": 0.0}, {"axis": "noise", "level": 0.5}]
    table = experiment_table("robustness", variants, [metrics([1.0, 3.0]), metrics([2.0, 6.0])])
    mse = table[table.metric == "mse"].set_index("level")
    assert mse.loc[0.0, "mean"] == 2.0 and mse.loc[0.5, "mean"] == 4.0
    assert mse.loc[0.5, "sem"] == pytest.approx(np.std([2.0, 6.0], ddof=1) / np.sqrt(2))
    assert (mse["n"] == 2).all()
    shown = robustness.data(table)
    assert set(shown["label"]) == {"MSE top-100", "PCCΔ top-100"}
    assert shown.loc[shown.label == "MSE top-100", "mean"].tolist() == [2.0, 4.0]
    fig = robustness.draw(shown)
    assert len(fig.axes) == 2  # one axis (noise) x two metrics


# ---------------------------------------------------------------- dry runs
@pytest.mark.parametrize(
    ("overlay", "target", "jobs"),
    [
        # 10 corrupted datasets x 4 methods (level 0 is the default run's models), 11 evaluations
        (
            "robustness",
            "robustness",
            {
                "corrupt_dataset": 10,
                "experiment_train": 40,
                "experiment_sample": 40,
                "train": 4,
                "sample": 4,
                "experiment_table_robustness": 1,
                "figure_robustness": 1,
            },
        ),
        # 4 drug levels + 3 cell-line levels, 2 methods each
        (
            "diversity",
            "diversity",
            {
                "diversity_dataset": 7,
                "experiment_train": 14,
                "experiment_sample": 14,
                "experiment_table_diversity": 1,
                "figure_diversity": 1,
            },
        ),
    ],
)
def test_dry_run_of_each_overlay(tmp_path, overlay, target, jobs):
    out = snakemake(
        "-n",
        "-d",
        tmp_path,
        "--configfile",
        REPO / "config/config.yaml",
        REPO / f"config/{overlay}.yaml",
        "--",
        target,
    ).stdout
    counts = job_counts(out)
    for rule, n in jobs.items():
        assert counts.get(rule) == n, (rule, counts)
    evaluations = {
        k: v for k, v in counts.items() if k.startswith(f"experiment_evaluate_{overlay}")
    }
    assert sum(evaluations.values()) == (11 if overlay == "robustness" else 7)


def test_overlay_rejects_a_method_with_a_cell_fitted_prior(tmp_path):
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(
        "experiments:\n  robustness: {dataset: synthetic, split: cell_ood, methods: [scppdm]}\n"
    )
    proc = snakemake(
        "-n", "-d", tmp_path, "--configfile", REPO / "config/config.yaml", overlay, check=False
    )
    assert proc.returncode != 0
    assert "experiments.robustness.methods: 'scppdm' needs priors fitted on cells (latent)" in (
        proc.stdout + proc.stderr
    )


# ---------------------------------------------------------------- screening
def test_pathway_scores_and_ranking_by_hand():
    from scpert.experiments import screening

    x = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 2.0], [0.0, 9.0, 0.0]])
    scores = screening.pathway_scores(
        x, ["b", "b", "a"], np.array([1.0, 0.0, 1.0]), np.array([0, 2])
    )
    # b: means (2, 1) - (1, 1) -> (1, 0) -> 0.5; a: (0, 0) - (1, 1) -> -1
    assert scores.to_dict() == {"a": -1.0, "b": 0.5}
    up = screening.rank_drugs(pd.Series({"a": 1.0, "b": 2.0, "c": 1.0}), "up")
    assert up["drug"].tolist() == ["b", "a", "c"] and up["rank"].tolist() == [1, 2, 3]
    assert screening.rank_drugs(pd.Series({"a": 1.0, "b": 2.0}), "down")["drug"].tolist() == [
        "a",
        "b",
    ]


def test_moa_enrichment_matches_scipy_and_statsmodels():
    from scipy.stats import hypergeom
    from statsmodels.stats.multitest import multipletests

    from scpert.experiments import screening

    drugs = [f"d{i}" for i in range(12)]
    ranked = pd.DataFrame({"drug": drugs, "rank": range(1, 13)})
    moa = pd.Series(["apo"] * 3 + ["x"] + ["apo"] + ["x"] * 3 + ["y"] * 3 + [""], index=drugs)
    table = screening.moa_enrichment(ranked, moa, top_n=4).set_index("moa")
    # apo: 3 of its 4 drugs in the top 4 of 12 (the unknown drug counts in N)
    assert table.loc["apo", ["k", "K", "n", "N"]].tolist() == [3, 4, 4, 12]
    # P(X >= 3) by hand: [C(4,3) C(8,1) + C(4,4) C(8,0)] / C(12,4) = 33 / 495
    assert table.loc["apo", "p"] == pytest.approx(33 / 495, rel=1e-12)
    for name in ("apo", "x", "y"):
        k, K = table.loc[name, "k"], table.loc[name, "K"]
        assert table.loc[name, "p"] == pytest.approx(hypergeom(12, K, 4).sf(k - 1), rel=1e-12)
    assert table.loc["y", "p"] == 1.0  # k = 0: P(X >= 0)
    want = multipletests(table["p"].to_numpy(), method="fdr_bh")[1]
    np.testing.assert_allclose(table["fdr"].to_numpy(), want, rtol=1e-12)
    with pytest.raises(ValueError, match="top_n"):
        screening.moa_enrichment(ranked, moa, top_n=13)


def test_screen_conditions_by_hand():
    from scpert.experiments.screening import screen_conditions

    table = screen_conditions(["b", "a", "b"], "CL04", "10", 5)
    assert table.to_dict("list") == {
        "condition": ["CL04|a|10", "CL04|b|10"],
        "cell_line": ["CL04", "CL04"],
        "drug": ["a", "b"],
        "dose": ["10", "10"],
        "n_cells": [5, 5],
    }
    with_plate = screen_conditions(["a"], "L", "1", 2, plate="p2")
    assert list(with_plate.columns) == [
        "condition",
        "cell_line",
        "drug",
        "dose",
        "plate",
        "n_cells",
    ]
    assert with_plate["plate"].tolist() == ["p2"]
    with pytest.raises(ValueError, match="cells_per_drug"):
        screen_conditions(["a"], "L", "1", 0)


def test_l1000_scores_by_hand():
    from scpert.experiments.screening import l1000_scores

    obs = pd.DataFrame(
        {
            "pert_iname": ["a", "a", "a", "b", "DMSO"],
            "cell_id": ["X", "Y", "X", "X", "X"],
            "pert_type": ["trt_cp"] * 4 + ["ctl_vehicle"],
            "pert_dose": [10.0, 10.0, 1.0, 10.0, -666],
        },
        index=[f"s{i}" for i in range(5)],
    )
    x = np.array(
        [[1, 3, 100], [5, 7, 100], [50, 50, 50], [-2, 0, 100], [9, 9, 9]], dtype=np.float32
    )
    sig = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=["g1", "g2", "g3"]))
    scores = l1000_scores(sig, ["g1", "g2", "not_a_landmark"], 10)
    # a: line X mean(1, 3) = 2, line Y mean(5, 7) = 6 -> 4 (the dose-1 signature left out);
    # b: mean(-2, 0) = -1; the DMSO control left out
    assert scores.to_dict() == {"a": 4.0, "b": -1.0}
    with pytest.raises(ValueError, match="no treated signature at dose 3"):
        l1000_scores(sig, ["g1"], 3)


def test_dry_run_of_the_screening_overlay(tmp_path):
    out = snakemake(
        "-n",
        "-d",
        tmp_path,
        "--configfile",
        REPO / "config/config.yaml",
        REPO / "config/screening.yaml",
        "--",
        "screening",
    ).stdout
    counts = job_counts(out)
    # one screen of every drug per method from the default run's models of cell_ood (3 methods
    # trained there), then one screen job
    assert counts["screening_sample"] == 3 and counts["screening_screen"] == 1
    assert counts["screening"] == 1 and counts["train"] >= 3
    assert "experiment_train" not in counts


def test_screening_step_on_a_tiny_world(tmp_path):
    """The step end to end: observed screen of a world where drugs of MoA 'apo' raise genes g0-g4."""
    from scpert.steps.experiments import screening

    rng = np.random.default_rng(0)
    drugs = [f"d{i}" for i in range(8)]
    moa = ["apo"] * 3 + ["other"] * 5
    rows = [("L1|control|0", "L1", "control", "0")] * 30
    split = [("L1|control|0", "L1", "control", "0", 30, "train")]
    for d in drugs:
        for dose in ("1", "10"):
            rows += [(f"L1|{d}|{dose}", "L1", d, dose)] * 20
            split.append((f"L1|{d}|{dose}", "L1", d, dose, 20, "test"))
    obs = pd.DataFrame(rows, columns=["condition", "cell_line", "drug", "dose"])
    obs["plate"] = "p1"
    obs.index = [f"c{i}" for i in range(len(obs))]
    rate = np.full((len(obs), 20), 3.0)
    up = obs["drug"].isin(drugs[:3]).to_numpy() & (obs["dose"] == "10").to_numpy()
    rate[np.ix_(up, np.arange(5))] = 12.0
    counts = rng.poisson(rate).astype(np.float32)
    x = np.log1p(counts)
    genes = [f"g{i}" for i in range(20)]
    adata = ad.AnnData(sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=genes))
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.write_h5ad(tmp_path / "processed.h5ad")
    pd.DataFrame(
        split, columns=["condition", "cell_line", "drug", "dose", "n_cells", "split"]
    ).to_csv(tmp_path / "split.tsv", sep="\t", index=False)
    pd.DataFrame({"gene": genes}).to_csv(tmp_path / "genes.tsv", sep="\t", index=False)
    (tmp_path / "sets.gmt").write_text("APO\tdesc\t" + "\t".join(genes[:5]) + "\n")
    # d8: a drug without cells (L1000-only), of MoA 'apo'
    pd.DataFrame(
        {"drug": [*drugs, "d8"], "smiles": "C", "moa": [*moa, "apo"], "targets": ""}
    ).to_csv(tmp_path / "drugs.tsv", sep="\t", index=False)
    # L1000 signatures of all 9 drugs on two lines at dose 10 (and 1), plus a DMSO control:
    # z = 2 on g0-g4 for the 'apo' drugs d0, d1, d2, d8, their rank in the name order otherwise
    from scpert.data.simulate import write_gctx

    keys = [(d, line, dose) for d in [*drugs, "d8"] for line in ("X", "Y") for dose in (1, 10)]
    keys.append(("DMSO", "X", -666))
    z = np.zeros((len(keys), 10), np.float32)
    for i, (d, _, dose) in enumerate(keys):
        if d in ("d0", "d1", "d2", "d8") and dose == 10:
            z[i, :5] = 2.0
        elif d != "DMSO":
            z[i, :5] = -int(d[1:]) / 10
    col = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(len(keys))],
            "pert_iname": [k[0] for k in keys],
            "cell_id": [k[1] for k in keys],
            "pert_type": ["ctl_vehicle" if k[0] == "DMSO" else "trt_cp" for k in keys],
            "pert_dose": [float(k[2]) for k in keys],
        }
    )
    row = pd.DataFrame(
        {"id": [str(i) for i in range(10)], "pr_gene_symbol": genes[:10], "pr_is_lmark": 1}
    )
    write_gctx(tmp_path / "l1000.gctx", z, col, row)
    pred = adata[adata.obs["drug"] != "control"].copy()  # a perfect "method"
    pred.uns["method"] = "copy"
    pred.write_h5ad(tmp_path / "pred.h5ad")
    inputs = {
        k: str(tmp_path / v)
        for k, v in [
            ("h5ad", "processed.h5ad"),
            ("split", "split.tsv"),
            ("genes", "genes.tsv"),
            ("gmt", "sets.gmt"),
            ("drugs", "drugs.tsv"),
            ("l1000", "l1000.gctx"),
        ]
    }
    inputs["preds"] = [str(tmp_path / "pred.h5ad")]
    outputs = {
        k: str(tmp_path / f"out.{k}") for k in ("ranking", "enrichment", "pdf", "png", "tsv")
    }
    screening(inputs, ["copy"], outputs, None, "APO", "up", 3, "control")
    ranking = pd.read_csv(outputs["ranking"], sep="\t")
    observed = ranking[ranking["source"] == "observed"]
    assert set(observed.nsmallest(3, "rank")["drug"]) == {"d0", "d1", "d2"}
    assert (observed["dose"] == 10).all()  # the highest dose of each drug
    assert ranking.loc[ranking["source"] == "copy", "spearman_vs_observed"].iloc[0] == 1.0
    enrichment = pd.read_csv(outputs["enrichment"], sep="\t").set_index(["source", "moa"])
    # 3 of 3 'apo' drugs in the top 3 of 8: P = 1 / C(8, 3)
    assert enrichment.loc[("observed", "apo"), "p"] == pytest.approx(1 / 56, rel=1e-9)  # %.10g
    # the L1000 screen ranks all 9 drugs: the 4 'apo' ones first (ties by name), then d3 ... d7;
    # 3 of its 4 'apo' drugs in the top 3 of 9: P = C(4,3) C(5,0) / C(9,3) = 4 / 84
    l1000 = ranking[ranking["source"] == "l1000"]
    assert l1000["drug"].tolist() == ["d0", "d1", "d2", "d8", "d3", "d4", "d5", "d6", "d7"]
    assert l1000["score"].iloc[0] == pytest.approx(2.0)  # mean z of g0-g4 (APO) on both lines
    assert l1000["spearman_vs_observed"].iloc[0] == pytest.approx(
        ranking.loc[ranking["source"] == "observed", "spearman_vs_l1000"].iloc[0]
    )
    assert ranking.set_index(["source", "drug"]).loc[("l1000", "d8"), "l1000_only"]
    assert not ranking["l1000_only"][ranking["drug"] != "d8"].any()
    assert enrichment.loc[("l1000", "apo"), "p"] == pytest.approx(4 / 84, rel=1e-9)
    assert list(dict.fromkeys(ranking["source"])) == ["observed", "l1000", "copy"]
