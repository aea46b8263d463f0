"""Reference rows (scpert.metrics.reference): the Spearman-Brown ceiling against cell-eval 0.8's
``compute_ceiling`` machinery, the oracle's cells against the world's cell model, and the
tables' handling of both."""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scpert import tables
from scpert.data import simulate
from scpert.metrics import reference
from scpert.metrics.reference import CEILING, ORACLE

CONTROL = "control"
TOL = 1e-6


def test_spearman_brown_hand_values():
    got = reference.spearman_brown([0.5, 1.0, 0.2, 0.0, -0.3, np.nan])
    assert got[:3] == pytest.approx([2 / 3, 1.0, 0.4 / 1.2])
    assert np.isnan(got[3:]).all()  # r <= 0 and NaN: no ceiling (cell-eval's rule)


def test_celleval_ceiling_metrics_are_cell_evals_sb_metrics():
    cell_eval = pytest.importorskip("cell_eval._evaluator")
    assert reference.CEILING_METRICS["celleval"] == cell_eval.SB_METRICS


def make_truth(seed=0, lines=("L1",), n_conditions=5, n_genes=60, n_control=50):
    """Log1p Poisson cells of a few conditions per line (odd and even cell counts, one condition
    of 3 cells) plus controls; float64, no zero-variance genes."""
    rng = np.random.default_rng(seed)
    blocks, rows = [], []
    for line in lines:
        rate = rng.gamma(2.0, 1.5, n_genes) + 0.2
        blocks.append(np.log1p(rng.poisson(rate, (n_control, n_genes))))
        rows += [(line, CONTROL, f"{line}|{CONTROL}|0")] * n_control
        for k in range(n_conditions):
            effect = np.exp(rng.normal(0, 0.7, n_genes) * (rng.uniform(size=n_genes) < 0.4))
            n = 3 if k == 0 else 30 + k  # odd sizes drop one cell
            blocks.append(np.log1p(rng.poisson(rate * effect, (n, n_genes))))
            rows += [(line, f"d{k}", f"{line}|d{k}|1")] * n
    obs = pd.DataFrame(rows, columns=["cell_line", "drug", "condition"])
    obs.index = [f"c{i}" for i in range(len(obs))]
    truth = ad.AnnData(
        np.vstack(blocks), obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)])
    )
    conditions = [c for c in dict.fromkeys(obs["condition"]) if f"|{CONTROL}|" not in c]
    return truth, conditions


def _cell_eval_view(adata: ad.AnnData) -> ad.AnnData:
    out = adata.copy()
    out.obs["pert"] = np.where(out.obs["drug"] == CONTROL, CONTROL, out.obs["condition"])
    return out


@pytest.mark.parametrize("seed", [0, 3])
def test_halves_are_cell_evals_disjoint_halves(tmp_path, seed):
    """Per cell line the same cells as cell-eval 0.8.2's ``_disjoint_halves`` (same generator,
    group order and permutations); the controls stay whole instead of being halved."""
    pytest.importorskip("cell_eval")
    from cell_eval import MetricsEvaluator

    truth, conditions = make_truth(seed=seed, lines=("L1", "L2"))
    first, second = reference.disjoint_halves(truth.obs, conditions, CONTROL, seed)
    assert not set(first) & set(second)
    names_a, names_b = truth.obs_names[first], truth.obs_names[second]
    for line in ("L1", "L2"):
        real = _cell_eval_view(truth[truth.obs["cell_line"] == line])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = MetricsEvaluator(
                None, real, control_pert=CONTROL, pert_col="pert", outdir=str(tmp_path / line)
            )
        half_real, half_pred = evaluator._disjoint_halves(seed)
        for half, names in ((half_real, names_a), (half_pred, names_b)):
            mine = [n for n in names if truth.obs.at[n, "cell_line"] == line]
            assert list(half.obs_names[half.obs["pert"] != CONTROL]) == mine
    sizes = truth.obs.iloc[first]["condition"].value_counts()
    assert sizes["L1|d0|1"] == 1 and sizes["L1|d2|1"] == 16  # floor(3/2), floor(32/2)


def test_ceiling_matches_cell_eval_on_the_halves(tmp_path):
    """Raw half-depth values: cell-eval's pipeline on the two halves (full controls appended to
    both, as every method is scored) equals ours per condition; the ceiling of the summary is
    cell-eval's ``_spearman_brown_correct`` of the mean over conditions."""
    pytest.importorskip("cell_eval")
    import polars as pl
    from cell_eval import MetricsEvaluator
    from cell_eval._evaluator import _spearman_brown_correct

    logging.getLogger("cell_eval").setLevel(logging.ERROR)
    truth, conditions = make_truth(seed=1)
    ours = reference.ceiling_metrics(truth, conditions, CONTROL, ("celleval",), seed=0)
    first, second = reference.disjoint_halves(truth.obs, conditions, CONTROL, 0)
    controls = np.flatnonzero(truth.obs["drug"] == CONTROL)
    real = _cell_eval_view(truth[np.concatenate([first, controls])])
    pred = _cell_eval_view(truth[np.concatenate([second, controls])])
    pred.obs_names = [f"p{n}" for n in pred.obs_names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluator = MetricsEvaluator(
            pred, real, control_pert=CONTROL, pert_col="pert", num_threads=1, outdir=str(tmp_path)
        )
        results, _ = evaluator.compute(profile="full", write_csv=False, break_on_error=True)
    ref = results.to_pandas().set_index("perturbation")
    compared = 0
    for metric in sorted(reference.CEILING_METRICS["celleval"] & set(ref.columns)):
        mine = ours[ours["metric"] == metric].set_index("condition")["value"]
        if metric == "de_spearman_sig":  # one value per cell line
            assert mine.tolist() == pytest.approx([ref[metric].dropna().unique()[0]], abs=TOL)
            continue
        want = ref[metric].dropna()
        assert set(mine.index) == set(want.index), metric
        for condition, value in want.items():
            assert mine[condition] == pytest.approx(value, abs=TOL), (metric, condition)
            compared += 1
    assert compared > 50
    # the Spearman-Brown step, on the per-condition metrics (cell-eval averages them first)
    per_condition = sorted(set(ours["metric"]) - {"de_spearman_sig"})
    agg = _spearman_brown_correct(
        pl.from_pandas(ref[per_condition].reset_index()).drop("perturbation").mean()
    ).to_pandas()
    long = ours.assign(dataset="d", split="s", method=CEILING)
    stats = tables.summarise(long).set_index("metric")
    for metric in per_condition:
        want = agg[metric].iloc[0]
        got = stats.at[metric, "mean"]
        assert (np.isnan(want) and np.isnan(got)) or got == pytest.approx(want, abs=TOL), metric
        assert np.isnan(stats.at[metric, "sd"])


def test_ceiling_stats_corrects_only_the_ceiling():
    stats = pd.DataFrame(
        {
            "dataset": "d",
            "split": "s",
            "method": [CEILING, CEILING, CEILING, "m"],
            "protocol": ["scperturbench", "scperturbench", "scperturbench", "scperturbench"],
            "metric": ["pcc_delta", "common_degs", "mse", "pcc_delta"],
            "deg_set": "top100",
            "mean": [0.6, -0.1, 0.3, 0.6],
            "sd": [0.1, 0.1, 0.1, 0.1],
            "n": 4,
        }
    )
    out = reference.ceiling_stats(stats).set_index(["method", "metric"])
    assert out.at[(CEILING, "pcc_delta"), "mean"] == pytest.approx(1.2 / 1.6)
    assert np.isnan(out.at[(CEILING, "common_degs"), "mean"])  # r <= 0
    assert (CEILING, "mse") not in out.index  # an error metric has no ceiling
    assert out.at[("m", "pcc_delta"), "mean"] == 0.6 and out.at[("m", "pcc_delta"), "sd"] == 0.1
    assert np.isnan(out.at[(CEILING, "pcc_delta"), "sd"])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from pathlib import Path

    out = tmp_path_factory.mktemp("world")
    params = dict(seed=3, n_genes=300, n_landmarks=60, n_programs=8, n_cell_lines=2)
    params.update(drugs_per_moa=2, n_moas=3, n_l1000_only_drugs=3, n_combos=2, citeseq_cells=50)
    params.update(n_proteins=10, l1000_cell_lines=2)
    repo = Path(__file__).resolve().parents[1]
    simulate.simulate_world(params, out, repo / "resources")
    return ad.read_h5ad(out / "ground_truth.h5ad"), ad.read_h5ad(out / "counts.h5ad")


def test_oracle_cells_follow_the_worlds_truth(world):
    """Many oracle cells of one condition: their pooled expression is the world's noise-free
    truth X = log1p(1e4 E[p]) (E over phases, plates and cell noise), and their zero fraction and
    library sizes match the world's own cells of that condition."""
    truth, counts = world
    condition = truth.obs_names[truth.obs["drug"] != CONTROL][4]
    plates = ["plate1", "plate2", "plate3"]
    requests = pd.DataFrame({"condition": condition, "plate": plates, "n_cells": 3000})
    cells = simulate.sample_cells(truth, requests, seed=7)
    assert cells.n_obs == 9000 and list(cells.var_names) == list(truth.var_names)
    x = cells.X.toarray()
    pooled = np.log1p(1e4 * (x / x.sum(1, keepdims=True)).mean(0))
    true = truth[condition].X.ravel()
    assert np.corrcoef(pooled, true)[0, 1] > 0.999
    assert np.median(np.abs(pooled - true)) < 0.03 and np.abs(pooled - true).max() < 0.25
    cond = (
        counts.obs["cell_line"].astype(str)
        + "|"
        + counts.obs["drug"].astype(str)
        + "|"
        + counts.obs["dose"].astype(str)
    )
    real = counts[(cond == condition).to_numpy()].X.toarray()
    zeros = lambda a: (a == 0).mean()  # noqa: E731
    assert zeros(x) == pytest.approx(zeros(real), abs=0.03)
    assert np.median(x.sum(1)) == pytest.approx(np.median(real.sum(1)), rel=0.35)
    again = simulate.sample_cells(truth, requests, seed=7)
    assert (again.X != cells.X).nnz == 0  # deterministic given the seed


def test_oracle_prediction_is_normalised_like_processed(world):
    truth, _ = world
    condition = truth.obs_names[truth.obs["drug"] != CONTROL][0]
    line, drug, dose = condition.split("|")
    requests = pd.DataFrame(
        {
            "condition": condition,
            "cell_line": line,
            "drug": drug,
            "dose": dose,
            "plate": ["plate1", "plate3"],
            "n_cells": [4, 6],
        }
    )
    qc_genes = list(truth.var_names[:250])
    genes = qc_genes[10:60]
    pred = reference.oracle_prediction(truth, requests, qc_genes, genes, seed=1)
    assert list(pred.var_names) == genes and pred.n_obs == 10
    assert pred.obs["plate"].tolist() == ["plate1"] * 4 + ["plate3"] * 6
    assert set(pred.obs["condition"]) == {condition} and set(pred.obs["drug"]) == {drug}
    assert pred.uns["method"] == ORACLE
    full = reference.oracle_prediction(truth, requests, qc_genes, qc_genes, seed=1)
    assert np.expm1(full.X.toarray()).sum(1) == pytest.approx(1e4, rel=1e-4)
    np.testing.assert_allclose(full[:, genes].X.toarray(), pred.X.toarray())


def test_tables_list_reference_rows_last_unranked():
    rows = []
    for method, value in (("a", 0.5), ("b", 0.4), (ORACLE, 0.9), (CEILING, 0.8)):
        for k in range(3):
            rows.append(
                ("d", "s", method, f"L|x{k}|1", "scperturbench", "pcc_delta", "top100", value)
            )
    long = pd.DataFrame(rows, columns=tables.LONG_COLUMNS)
    table = tables.method_rows(
        tables.condition_stats(long),
        [tables.Column("scperturbench", "pcc_delta", "top100", "PCCΔ", True)],
        {"s": "drug_ood"},
        title="t",
    )
    body = [r for r in table.rows if not isinstance(r, str)]
    assert [r[2][0] for r in body] == ["a", "b", "[oracle]", "[ceiling]"]
    ranks = {r[2][0]: r[3][1] for r in body}
    assert ranks == {"a": 1, "b": 2, "[oracle]": 0, "[ceiling]": 0}
    ceiling = next(r for r in body if r[2][0] == "[ceiling]")
    assert ceiling[3][0].startswith(f"{2 * 0.8 / 1.8:.4g}")  # Spearman-Brown of the mean
    assert "[oracle]" in table.note
