"""Distances and the scPerturBench protocol: hand-computed values, pertpy / ott-jax / POT, and
evaluate_predictions end to end."""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scpert.data.schema import SchemaError
from scpert.metrics import distances, evaluate, evaluate_predictions, scperturbench
from scpert.metrics.evaluate import ConditionContext, ControlCells

SQRT2, SQRT5, SQRT17 = math.sqrt(2.0), math.sqrt(5.0), math.sqrt(17.0)


def _clouds(seed: int = 0, n_x: int = 30, n_y: int = 22, n_genes: int = 6):
    rng = np.random.default_rng(seed)
    x = np.log1p(rng.poisson(1.5, (n_x, n_genes))).astype(np.float64)
    y = np.log1p(rng.poisson(2.0, (n_y, n_genes))).astype(np.float64)
    return x, y


# ---------------------------------------------------------------- distances by hand
def test_energy_distance_by_hand():
    x = np.array([[0.0, 0.0], [2.0, 0.0]])
    y = np.array([[0.0, 0.0], [0.0, 2.0]])
    # between: 0, 2, 2, 2*sqrt2 -> mean 1 + sqrt2/2; within x and y (diagonal included): mean 1
    assert distances.energy_distance(x, y) == pytest.approx(SQRT2, rel=1e-12)
    # squared: between 0, 4, 4, 8 -> 4; within 0, 4, 4, 0 -> 2 each
    assert distances.energy_distance(x, y, squared=True) == pytest.approx(4.0, rel=1e-12)
    assert distances.energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)


def test_sym_kl_by_hand():
    # gene 0: N(1, 1) vs N(2, 1) -> KL 0.5 each way; gene 1: identical constants -> 0
    x = np.array([[0.0, 3.0], [2.0, 3.0]])
    y = np.array([[1.0, 3.0], [3.0, 3.0]])
    # std + 1e-8: gene 0 gives 1 / (1 + 1e-8)^2, gene 1 gives exactly 0
    assert distances.sym_kl_gaussian(x, y) == pytest.approx(0.5 / (1 + 1e-8) ** 2, rel=1e-12)


def test_sym_kl_std_floor_by_hand():
    # gene 0 constant in x (std 0 -> floor 0.5), std 1 in y, means 0 and 1:
    # KL(x||y) = log(1/0.5) + (0.25 + 1)/2 - 0.5, KL(y||x) = log(0.5) + (1 + 1)/(2 * 0.25) - 0.5
    x = np.array([[0.0], [0.0]])
    y = np.array([[0.0], [2.0]])
    want = math.log(2.0) + 1.25 / 2 - 0.5 + math.log(0.5) + 2.0 / 0.5 - 0.5
    assert distances.sym_kl_gaussian(x, y, std_floor=0.5) == pytest.approx(want, rel=1e-12)
    # a std above the floor is kept: N(1, 1) vs N(2, 1) -> 1, as without the floor
    x2, y2 = np.array([[0.0], [2.0]]), np.array([[1.0], [3.0]])
    assert distances.sym_kl_gaussian(x2, y2, std_floor=0.5) == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ValueError, match="std_floor"):
        distances.sym_kl_gaussian(x, y, std_floor=0.0)


def test_kl_saturates_on_a_gene_never_detected_in_one_group():
    """Why scPerturBench's KL cannot rank methods (docs/decisions.md): one gene with zero std in
    the prediction puts ``(s^2 + d^2) / 2e-16`` into the mean, so ``log2(1 + mean)`` is about
    ``log2(1e15)`` for a good and a bad prediction alike; ``kl_floor`` keeps them apart."""
    pt = pytest.importorskip("pertpy")
    rng = np.random.default_rng(0)
    truth = np.log1p(rng.poisson(2.0, (30, 20))).astype(np.float64)
    good = np.log1p(rng.poisson(2.0, (30, 20))).astype(np.float64)
    bad = np.log1p(rng.poisson(8.0, (30, 20))).astype(np.float64)
    truth[:, 0] = np.log1p(rng.poisson(0.3, 30))
    good[:, 0] = bad[:, 0] = 0.0  # the sparse gene is never detected in the prediction
    kl = {}
    for name, pred in (("good", good), ("bad", bad)):
        raw = pt.tl.Distance("sym_kldiv", obsm_key="X")(pred, truth)  # scPerturBench's call
        assert distances.sym_kl_gaussian(pred, truth) == pytest.approx(raw, rel=1e-10)
        kl[name] = (math.log2(1 + raw), distances.sym_kl_gaussian(pred, truth, std_floor=0.2))
    assert kl["good"][0] > 40 and abs(kl["bad"][0] - kl["good"][0]) < 0.01 * kl["good"][0]
    assert kl["bad"][1] > 3 * kl["good"][1]


def test_logsumexp_equals_scipys():
    """The Sinkhorn loop's logsumexp is scipy's computation, value for value."""
    from scipy.special import logsumexp

    rng = np.random.default_rng(0)
    for trial in range(60):
        a = rng.normal(size=(int(rng.integers(1, 40)), int(rng.integers(1, 40))))
        a *= float(rng.choice([0.01, 1.0, 300.0]))
        if trial % 3 == 0:
            a[:, 0] = a.max()  # several maxima
        if trial % 4 == 0:
            a[0] = -np.inf  # a row of -inf: its logsumexp along axis 1 is -inf
        for axis in (0, 1):
            np.testing.assert_array_equal(distances.logsumexp(a, axis), logsumexp(a, axis=axis))
    # by hand: log(e^0 + e^0) = log 2 (two maxima), log(e^1 + e^0) = 1 + log1p(e^-1)
    np.testing.assert_allclose(
        distances.logsumexp(np.array([[0.0, 0.0], [1.0, 0.0]]), 1),
        [np.log(2.0), 1.0 + np.log1p(np.exp(-1.0))],
        rtol=1e-15,
    )


def test_sinkhorn_single_points_is_squared_distance():
    # one point each: the only coupling is P = 1 = a b^T, so reg_ot_cost = C = |x - y|^2
    assert distances.sinkhorn_ot_cost([[0.0, 1.0]], [[2.0, 2.0]]) == pytest.approx(5.0, rel=1e-12)
    # std(C) = 0 would give epsilon 0; every coupling costs the same, so the cost is C
    assert distances.sinkhorn_ot_cost([[0.0, 1.0]], [[2.0, 2.0]], epsilon_reference="std") == 5.0
    with pytest.raises(ValueError, match="epsilon"):
        distances.sinkhorn_ot_cost([[0.0]], [[1.0]], epsilon=0.0)


def test_mmd_rbf_by_hand():
    # one point each at squared distance 4: k(x,x) = k(y,y) = 2 (two kernels), k(x,y) = sum exp(-4 g)
    value = distances.mmd_rbf([[0.0, 0.0]], [[2.0, 0.0]], [0.5, 1.0])
    assert value == pytest.approx(2 + 2 - 2 * (math.exp(-2.0) + math.exp(-4.0)), rel=1e-12)


# ---------------------------------------------------------------- distances vs references
def test_distances_match_pertpy():
    pt = pytest.importorskip("pertpy")
    x, y = _clouds()
    # pertpy >= 1.0 E-distance: Euclidean sklearn pairwise_distances, means incl. the diagonal
    ref_e = pt.tl.Distance("edistance", obsm_key="X")(x, y)
    assert distances.energy_distance(x, y) == pytest.approx(ref_e, rel=1e-10)
    from sklearn.metrics import pairwise_distances

    def sq_mean(a, b):
        return pairwise_distances(a, b, metric="sqeuclidean").mean()

    ref_sq = 2 * sq_mean(x, y) - sq_mean(x, x) - sq_mean(y, y)
    assert distances.energy_distance(x, y, squared=True) == pytest.approx(ref_sq, rel=1e-10)
    ref_kl = pt.tl.Distance("sym_kldiv", obsm_key="X")(x, y)
    assert distances.sym_kl_gaussian(x, y) == pytest.approx(ref_kl, rel=1e-10)
    ref_mmd = pt.tl.Distance("mmd", obsm_key="X")(x, y, kernel="rbf", gamma=0.3)
    assert distances.mmd_rbf(x, y, 0.3) == pytest.approx(ref_mmd, rel=1e-10)
    # pertpy 1.x runs ott-jax >= 0.5, whose default epsilon is 0.05 * std(C)
    ref_w = pt.tl.Distance("wasserstein", obsm_key="X")(x, y)
    assert distances.sinkhorn_ot_cost(x, y, epsilon_reference="std") == pytest.approx(
        ref_w, rel=1e-5
    )


@pytest.mark.parametrize("reference", ["mean", "std"])
def test_sinkhorn_matches_ott_jax(reference):
    pytest.importorskip("ott")
    from ott.geometry.pointcloud import PointCloud
    from ott.problems.linear.linear_problem import LinearProblem
    from ott.solvers.linear.sinkhorn import Sinkhorn

    x, y = _clouds(seed=1, n_x=40, n_y=35, n_genes=8)
    out = Sinkhorn()(LinearProblem(PointCloud(x, y, relative_epsilon=reference)))
    ours = distances.sinkhorn_ot_cost(x, y, epsilon_reference=reference)
    assert ours == pytest.approx(float(out.reg_ot_cost), rel=1e-5)


def test_sinkhorn_small_epsilon_approaches_exact_ot():
    import ot

    x, y = _clouds(seed=2, n_x=7, n_y=5, n_genes=3)
    cost = ot.dist(x, y)  # squared Euclidean
    exact = ot.emd2(np.full(7, 1 / 7), np.full(5, 1 / 5), cost)
    eps = 1e-3 * cost.mean()
    reg = distances.sinkhorn_ot_cost(x, y, epsilon=eps, threshold=1e-12, max_iterations=200_000)
    # <P,C> >= exact and 0 <= eps KL(P | ab^T) <= eps log(n m)
    assert exact - 1e-9 <= reg <= exact + eps * math.log(35) + 1e-9
    default = distances.sinkhorn_ot_cost(x, y)
    assert default > reg  # larger default epsilon, larger regularised cost


# ---------------------------------------------------------------- the protocol by hand
#     control C = (0,1), (1,1), (2,1)   means (1, 1), variances (1, 0)
#     truth   T = (1,0), (2,1), (3,2)   means (2, 1), variances (1, 1)
#     pred    P = T + (-1, 2)           means (1, 3), variances (1, 1)
# t(T vs C) = (1/sqrt(2/3), 0)  -> ranking g0, g1;  t(P vs C) = (0, 2/sqrt(1/3)) -> g1, g0.
CONTROL = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
TRUTH = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 2.0]])
PRED = TRUTH + np.array([-1.0, 2.0])


def _tiny_context() -> ConditionContext:
    return ConditionContext(
        condition="L1|d|1",
        cell_line="L1",
        genes=pd.Index(["g0", "g1"]),
        truth=TRUTH.copy(),
        pred=PRED.copy(),
        control=ControlCells(CONTROL.copy()),
    )


def _as_dict(rows) -> dict[tuple[str, str], float]:
    return {(metric, deg_set): value for metric, deg_set, value in rows}


def test_scperturbench_by_hand_all_genes():
    got = _as_dict(scperturbench.scperturbench_metrics(_tiny_context()))
    assert set(got) == {
        (m, "top100")
        for m in ("mse", "pcc_delta", "e_distance", "kl", "kl_floor", "wasserstein", "common_degs")
    } | {(m, "top5000") for m in ("mse", "pcc_delta", "e_distance", "kl", "kl_floor")}
    for label in ("top100", "top5000"):  # 2 genes: both sets are all genes
        assert got["mse", label] == pytest.approx(((1 - 2) ** 2 + (3 - 1) ** 2) / 2)
        # deltas (0, 2) vs (1, 0)
        assert got["pcc_delta", label] == pytest.approx(-1.0)
        # within P = within T = 8 sqrt2 / 9; between = (9 + 5 sqrt5 + sqrt17) / 9
        e = (18 + 10 * SQRT5 + 2 * SQRT17 - 16 * SQRT2) / 9
        assert got["e_distance", label] == pytest.approx(e, rel=1e-12)
        # per gene sym KL = delta^2 / var (equal variances 2/3): 1.5 and 6 -> mean 3.75
        assert got["kl", label] == pytest.approx(math.log2(1 + 3.75), rel=1e-7)
        assert got["kl_floor", label] == pytest.approx(3.75, rel=1e-12)  # stds 0.82 > floor
    assert got["common_degs", "top100"] == 1.0
    # a translation by s: exact OT = |s|^2 = 5; the KL term adds at most eps log(9), eps = 0.05 mean C
    cost = ((PRED[:, None, :] - TRUTH[None, :, :]) ** 2).sum(-1)
    assert 5.0 - 1e-9 <= got["wasserstein", "top100"] <= 5.0 + 0.05 * cost.mean() * math.log(9)


def test_scperturbench_by_hand_top1(monkeypatch):
    monkeypatch.setattr(scperturbench, "DEG_SETS", (("top100", 1), ("top5000", 2)))
    got = _as_dict(scperturbench.scperturbench_metrics(_tiny_context()))
    # top-1 truth DEG is g0, top-1 prediction DEG is g1
    assert got["common_degs", "top100"] == 0.0
    assert got["mse", "top100"] == pytest.approx(1.0)
    assert math.isnan(got["pcc_delta", "top100"])  # one gene: constant deltas
    # g0: P = {0,1,2}, T = {1,2,3}: between 11/9, within 8/9 each
    assert got["e_distance", "top100"] == pytest.approx(2 / 3, rel=1e-12)
    assert got["kl", "top100"] == pytest.approx(math.log2(1 + 1.5), rel=1e-7)
    assert got["kl_floor", "top100"] == pytest.approx(1.5, rel=1e-12)
    # g0 clouds are a translation by -1 in 1-D: exact OT 1
    assert got["wasserstein", "top100"] >= 1.0 - 1e-9


def test_subsample_follows_scperturbench_random_stream():
    rng = np.random.default_rng(0)
    ctx = ConditionContext(
        condition="c",
        cell_line="L1",
        genes=pd.Index(["g0"]),
        truth=rng.normal(size=(2600, 1)),
        pred=rng.normal(size=(2300, 1)),
        control=ControlCells(rng.normal(size=(5, 1))),
    )
    pred_rows, truth_rows = ctx.subsample(2000)
    np.random.seed(42)
    np.testing.assert_array_equal(pred_rows, np.random.choice(2300, 2000, replace=False))
    np.testing.assert_array_equal(truth_rows, np.random.choice(2600, 2000, replace=False))
    small = ConditionContext(
        condition="c",
        cell_line="L1",
        genes=pd.Index(["g0"]),
        truth=np.ones((3, 1)),
        pred=np.ones((4, 1)),
        control=ControlCells(np.ones((2, 1))),
    )
    np.testing.assert_array_equal(small.subsample(2000)[0], np.arange(4))


# ---------------------------------------------------------------- evaluate_predictions
def _dataset(seed: int = 0, n_genes: int = 150, n_cells: int = 40):
    rng = np.random.default_rng(seed)
    conds, rows = [], []
    for line in ("L1", "L2"):
        rows += [(f"{line}|control|0", line, "control")] * n_cells
        for drug in ("dA", "dB"):
            conds.append(f"{line}|{drug}|1")
            rows += [(conds[-1], line, drug)] * n_cells
    obs = pd.DataFrame(rows, columns=["condition", "cell_line", "drug"])
    obs.index = [f"c{i}" for i in range(len(obs))]
    shift = np.zeros((len(obs), n_genes))
    shift[(obs.drug == "dA").to_numpy(), :10] = 1.0
    x = np.log1p(rng.poisson(np.exp(shift))).astype(np.float32)
    var = pd.DataFrame(index=[f"g{i}" for i in range(n_genes)])
    return ad.AnnData(sp.csr_matrix(x), obs=obs, var=var), conds


def test_perfect_prediction():
    truth, conds = _dataset()
    pred = truth[truth.obs.drug != "control"].copy()
    pred.X = pred.X.toarray()
    table = evaluate_predictions(truth, pred, conds, "control")
    assert list(table.columns) == ["condition", "protocol", "metric", "deg_set", "value"]
    assert len(table) == len(conds) * 12
    by_metric = table.groupby("metric")["value"]
    np.testing.assert_allclose(by_metric.get_group("mse"), 0.0, atol=0)
    np.testing.assert_allclose(by_metric.get_group("pcc_delta"), 1.0, rtol=1e-12)
    np.testing.assert_allclose(by_metric.get_group("e_distance"), 0.0, atol=1e-6)
    np.testing.assert_allclose(by_metric.get_group("kl"), 0.0, atol=1e-12)
    np.testing.assert_allclose(by_metric.get_group("kl_floor"), 0.0, atol=1e-12)
    np.testing.assert_allclose(by_metric.get_group("common_degs"), 1.0)
    # reg_ot_cost of a cloud with itself is the entropic blur, > 0 (ott-jax semantics)
    assert (by_metric.get_group("wasserstein") > 0).all()
    keys = table[["condition", "protocol", "metric", "deg_set"]].apply(tuple, axis=1).tolist()
    assert keys == sorted(keys)


def test_results_do_not_depend_on_storage_or_order():
    truth, conds = _dataset(seed=1)
    rng = np.random.default_rng(2)
    pred = truth[truth.obs.drug != "control"].copy()
    pred.X = np.log1p(rng.poisson(1.0, pred.shape)).astype(np.float32)
    first = evaluate_predictions(truth, pred, conds, "control")
    truth_dense = truth.copy()
    truth_dense.X = truth.X.toarray()
    shuffled = pred[rng.permutation(pred.n_obs)].copy()
    shuffled.X = sp.csr_matrix(shuffled.X)
    second = evaluate_predictions(truth_dense, shuffled, list(reversed(conds)), "control")
    # subsampling is inactive (< 2000 cells), so cell order does not matter
    pd.testing.assert_frame_equal(first, second, rtol=1e-9)


def test_nan_prediction_rows_become_the_control_mean():
    truth, conds = _dataset(seed=3)
    rng = np.random.default_rng(4)
    pred = truth[truth.obs.drug != "control"].copy()
    pred.X = np.log1p(rng.poisson(1.0, pred.shape)).astype(np.float32)
    first_row = np.flatnonzero(pred.obs.condition == conds[0])[0]
    with_nan = pred.copy()
    with_nan.X[first_row, 5] = np.nan
    fixed = pred.copy()
    ctrl = truth[(truth.obs.drug == "control") & (truth.obs.cell_line == "L1")].X.toarray()
    fixed.X[first_row] = ctrl.astype(np.float64).mean(0).astype(np.float32)
    got = evaluate_predictions(truth, with_nan, conds, "control")
    want = evaluate_predictions(truth, fixed, conds, "control")
    pd.testing.assert_frame_equal(got, want)
    assert np.isnan(with_nan.X[first_row, 5])  # the caller's prediction is untouched


def test_schema_errors():
    truth, conds = _dataset()
    pred = truth[truth.obs.drug != "control"].copy()
    reordered = pred[:, list(reversed(pred.var_names))].copy()
    with pytest.raises(SchemaError, match="var_names"):
        evaluate_predictions(truth, reordered, conds, "control")
    partial = pred[pred.obs.condition != conds[1]].copy()
    with pytest.raises(SchemaError, match=r"prediction: no cells for condition 'L1\|dB\|1'"):
        evaluate_predictions(truth, partial, conds, "control")
    with pytest.raises(SchemaError, match="ground truth: no cells"):
        evaluate_predictions(truth, pred, ["L9|dA|1"], "control")
    with pytest.raises(SchemaError, match="no control cells"):
        evaluate_predictions(truth, pred, conds, "DMSO")
    with pytest.raises(KeyError, match="unknown metric protocol"):
        evaluate_predictions(truth, pred, conds, "control", protocols=("nope",))


def test_registered_protocol_with_cross_condition_hook(monkeypatch):
    monkeypatch.setattr(evaluate, "_REGISTRY", dict(evaluate._REGISTRY))

    def across(summaries, shared):
        # rank of each condition's number of predicted cells among all conditions
        order = sorted(summaries, key=summaries.get)
        return [(c, "n_pred_rank", "all", order.index(c)) for c in summaries]

    @evaluate.register_protocol("toy", summarize=lambda ctx: ctx.pred.shape[0], across=across)
    def toy(ctx):
        return [("n_truth", "all", ctx.truth.shape[0])]

    truth, conds = _dataset(n_genes=12)
    pred = truth[truth.obs.drug != "control"].copy()
    keep = np.ones(pred.n_obs, dtype=bool)
    keep[np.flatnonzero(pred.obs.condition == conds[2])[:5]] = False
    table = evaluate_predictions(truth, pred[keep].copy(), conds, "control", protocols=("toy",))
    ranks = table[table.metric == "n_pred_rank"].set_index("condition")["value"]
    assert ranks[conds[2]] == 0.0
    assert (table[table.metric == "n_truth"]["value"] == 40).all()
    assert "toy" in evaluate.available_protocols()


# ---------------------------------------------------------------- a no-change prediction
def _no_change_world(n_conditions: int = 30, n_genes: int = 400, n_cells: int = 40):
    """One line, 200 controls, conditions shifting genes 0-39 (the first genes in var order, as
    in a dispersion-sorted gene list); expression log1p(Poisson(6)), rarely zero."""
    rng = np.random.default_rng(7)
    rows = [("L1|control|0", "L1", "control")] * 200
    conds = [f"L1|d{i}|1" for i in range(n_conditions)]
    for c in conds:
        rows += [(c, "L1", c.split("|")[1])] * n_cells
    obs = pd.DataFrame(rows, columns=["condition", "cell_line", "drug"])
    obs.index = [f"c{i}" for i in range(len(obs))]
    rate = np.full((len(obs), n_genes), 6.0)
    for c in conds:  # each condition moves each of genes 0-39 up or down
        rows = (obs.condition == c).to_numpy()
        rate[np.ix_(rows, np.arange(40))] *= rng.choice([0.4, 2.5], size=40)
    x = np.log1p(rng.poisson(rate)).astype(np.float32)
    var = pd.DataFrame(index=[f"g{i}" for i in range(n_genes)])
    return ad.AnnData(x, obs=obs, var=var), conds


def _no_change_prediction(truth, conds, copies: bool, n_cells: int = 40):
    """Per condition, the line's controls unchanged: all of them (``copies``, every DE score 0)
    or ``n_cells`` drawn from them (base_control's realisation)."""
    ctrl = truth[truth.obs.drug == "control"]
    rng = np.random.default_rng(3)
    blocks = []
    for c in conds:
        rows = np.arange(ctrl.n_obs) if copies else rng.choice(ctrl.n_obs, n_cells, replace=False)
        block = ctrl[rows].copy()
        block.obs["condition"] = c
        block.obs_names = [f"{c}#{j}" for j in range(block.n_obs)]
        blocks.append(block)
    return ad.concat(blocks)


@pytest.mark.parametrize("copies", [True, False])
def test_a_no_change_prediction_scores_at_chance(copies):
    """Common-DEGs, scPPDM DEG accuracy and cell-eval's DE metrics of a prediction with no change
    are at chance (docs/decisions.md, "Common-DEGs at chance"). With ``copies`` every score ties;
    ranked in var order (the old rule) the 40 true DEGs, first in var order, would all be in the
    prediction's top 100 and Common-DEGs would be 0.51 instead of 100/400 (measured)."""
    truth, conds = _no_change_world()
    pred = _no_change_prediction(truth, conds, copies)
    table = evaluate_predictions(
        truth, pred, conds, "control", ("scperturbench", "scppdm", "celleval")
    )
    value = table.groupby(["metric", "deg_set"])["value"].mean()
    n_genes = truth.n_vars
    # 30 conditions: the mean overlap of random top-k sets has sd about sqrt(k/G (1-k/G) / k / 30)
    assert value["common_degs", "top100"] == pytest.approx(100 / n_genes, abs=0.04)
    assert value["deg_accuracy", "top50"] == pytest.approx(50 / n_genes, abs=0.05)
    assert value["deg_accuracy", "top200"] == pytest.approx(200 / n_genes, abs=0.03)
    assert value["overlap_at_N", "sig"] < 0.05
    assert value["roc_auc", "all"] == pytest.approx(0.5, abs=0.05)
    if copies:  # identical to the controls: nothing is called, every AUC is exactly 0.5
        assert value["overlap_at_N", "sig"] == 0.0
        assert value["roc_auc", "all"] == 0.5
