"""The scPPDM, Systema and cell-eval protocols on hand-computed values, their helpers against
scipy/sklearn, and all protocols through evaluate_predictions and the workflow's reference."""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scpert.metrics import celleval, correlation, evaluate_predictions, scppdm, systema
from scpert.metrics.evaluate import ConditionContext, ControlCells, across_label
from scpert.steps import evaluate as evaluate_step


def _context(control, truth, pred, reference=None, condition="L1|d|1") -> ConditionContext:
    genes = pd.Index([f"g{i}" for i in range(np.shape(truth)[1])])
    return ConditionContext(
        condition=condition,
        cell_line="L1",
        genes=genes,
        truth=np.asarray(truth, dtype=np.float64),
        pred=np.asarray(pred, dtype=np.float64),
        control=ControlCells(np.asarray(control, dtype=np.float64)),
        train_reference=None if reference is None else np.asarray(reference, float),
    )


def _as_dict(rows) -> dict[tuple[str, str], float]:
    return {(metric, deg_set): value for metric, deg_set, value in rows}


# ---------------------------------------------------------------- scPPDM (App. C) by hand
# control mean (0.1, 0.3, 0.7), truth mean (0.3, 0.1, 3.1), prediction mean (0.7, 0.3, 1.5);
# with eps = 0.1: LFC = log2((0.4, 0.2, 3.2) / (0.2, 0.4, 0.8)) = (1, -1, 2),
# predicted LFC = log2((0.8, 0.4, 1.6) / (0.2, 0.4, 0.8)) = (2, 0, 1).
CONTROL = [[0.1, 0.3, 0.7], [0.1, 0.3, 0.7]]
TRUTH = [[0.2, 0.0, 3.0], [0.4, 0.2, 3.2]]
PRED = [[0.7, 0.3, 1.0], [0.7, 0.3, 2.0]]


def test_scppdm_by_hand():
    got = _as_dict(scppdm.scppdm_metrics(_context(CONTROL, TRUTH, PRED)))
    # LFC deviations from their means: (1/3, -5/3, 4/3) and (1, -1, 0): cov 2, sums of squares 42/9, 2
    assert got["logfc_pearson", "all"] == pytest.approx(2 / math.sqrt(42 / 9 * 2), rel=1e-9)
    # ranks (2, 1, 3) and (3, 1, 2)
    assert got["logfc_spearman", "all"] == pytest.approx(0.5, rel=1e-12)
    # deltas (0.2, -0.2, 2.4) and (0.6, 0, 0.8): deviations (-0.6, -1, 1.6), (2/15, -7/15, 5/15)
    cov = -0.6 * 2 / 15 + 7 / 15 + 1.6 * 5 / 15
    ss_a, ss_b = 0.36 + 1 + 2.56, (4 + 49 + 25) / 225
    assert got["delta_pearson", "all"] == pytest.approx(cov / math.sqrt(ss_a * ss_b), rel=1e-9)
    assert got["delta_spearman", "all"] == pytest.approx(1.0)  # same ranks (2, 1, 3)
    # EV: y - y_hat = (-0.4, -0.2, 1.6), y = (0.3, 0.1, 3.1); 1 - SS(y - y_hat) / SS(y)
    resid = np.array([-0.4, -0.2, 1.6])
    y = np.array([0.3, 0.1, 3.1])
    ev = 1 - ((resid - resid.mean()) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert got["ev", "all"] == pytest.approx(ev, rel=1e-9)
    assert ev == pytest.approx(1 - 2.4266666667 / 5.6266666667, rel=1e-9)
    # three genes: top200 is all genes; accuracy@K only for K below the gene count
    assert got["logfc_pearson", "top200"] == got["logfc_pearson", "all"]
    assert not any(metric == "deg_accuracy" for metric, _ in got)


def test_scppdm_deg_sets_by_hand(monkeypatch):
    monkeypatch.setattr(scppdm, "DEG_K", 2)
    monkeypatch.setattr(scppdm, "ACCURACY_K", (1, 2))
    got = _as_dict(scppdm.scppdm_metrics(_context(CONTROL, TRUTH, PRED)))
    # |LFC| = (1, 1, 2): top-2 = genes 2, 0 (gene order among the tie); |LFC_hat| = (2, 0, 1): 0, 2
    assert got["deg_accuracy", "top1"] == 0.0  # {2} vs {0}
    assert got["deg_accuracy", "top2"] == 1.0  # {2, 0} vs {0, 2}
    # on genes (2, 0): LFC (2, 1) vs (1, 2), deltas (2.4, 0.2) vs (0.8, 0.6)
    assert got["logfc_pearson", "top2"] == pytest.approx(-1.0)
    assert got["delta_pearson", "top2"] == pytest.approx(1.0)
    # EV on genes (2, 0): y = (3.1, 0.3), residual (1.6, -0.4): 1 - 2^2 / 2.8^2
    assert got["ev", "top2"] == pytest.approx(1 - 4 / 2.8**2, rel=1e-9)


def test_scppdm_constant_prediction_leaves_correlations_out():
    got = _as_dict(scppdm.scppdm_metrics(_context(CONTROL, TRUTH, CONTROL)))
    assert ("logfc_pearson", "all") not in got and ("delta_spearman", "all") not in got
    assert got["ev", "all"] == pytest.approx(
        1 - np.var(np.array([0.3, 0.1, 3.1]) - [0.1, 0.3, 0.7]) / np.var([0.3, 0.1, 3.1])
    )


# ---------------------------------------------------------------- Systema by hand
def test_systema_by_hand():
    # gene 2 is a dropout (0 in the condition, 0.7 in the control): left out of the top-20
    truth = [[0.0, 2.0, 0.0], [2.0, 4.0, 0.0]]  # mean (1, 3, 0)
    pred = [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]  # mean (1, 1, 1)
    ref = [0.5, 1.5, 0.1]
    got = _as_dict(systema.systema_metrics(_context(CONTROL, truth, pred, ref)))
    assert got["l2", "all"] == pytest.approx(math.sqrt(0 + 4 + 1))
    # (pred - ref, truth - ref) = ((0.5, -0.5, 0.9), (0.5, 1.5, -0.1))
    assert got["pearson_delta_hat", "all"] == pytest.approx(
        stats.pearsonr([0.5, -0.5, 0.9], [0.5, 1.5, -0.1])[0], rel=1e-12
    )
    # top-20 non-dropout genes: 0 and 1 only; two points: (0.5, -0.5) vs (0.5, 1.5) -> -1
    assert got["pearson_delta_hat", "top20"] == pytest.approx(-1.0)
    ctx = _context(CONTROL, truth, pred, ref)
    np.testing.assert_array_equal(np.sort(systema.top_non_dropout_degs(ctx)), [0, 1])


def test_systema_needs_the_training_reference():
    with pytest.raises(ValueError, match="train_reference"):
        systema.systema_metrics(_context(CONTROL, TRUTH, PRED))


def test_centroid_accuracy_and_discrimination_by_hand():
    truth = np.array([[0.0], [1.0], [3.0]])
    pred = np.array([[0.4], [2.2], [2.4]])
    # distances of pred 1 (2.2) to the truths: 2.2, 1.2 (own), 0.8 -> one farther, one closer
    np.testing.assert_allclose(systema.centroid_accuracy(pred, truth), [1.0, 0.5, 1.0])
    np.testing.assert_allclose(systema.discrimination_score(pred, truth), [1.0, 0.5, 1.0])
    # a tie (1.5 is as far from 1 as from 2) counts neither as farther nor as closer
    tie_pred, tie_truth = np.array([[1.5], [5.0]]), np.array([[1.0], [2.0]])
    assert systema.centroid_accuracy(tie_pred, tie_truth)[0] == 0.0
    assert systema.discrimination_score(tie_pred, tie_truth)[0] == 1.0
    # L1 for the discrimination score, Euclidean for the centroid accuracy: from (0, 0) its own
    # truth (1.5, 1.5) is at L2 2.12 / L1 3, the other truth (2.5, 0) at L2 2.5 / L1 2.5
    truth2, pred2 = np.array([[1.5, 1.5], [2.5, 0.0]]), np.array([[0.0, 0.0], [5.0, 5.0]])
    assert systema.centroid_accuracy(pred2, truth2)[0] == 1.0
    assert systema.discrimination_score(pred2, truth2)[0] == 0.0


# ---------------------------------------------------------------- cell-eval helpers
def test_top_k_overlap_and_precision_rules():
    truth = np.array([5, 3, 9, 1])
    pred = np.array([3, 7])
    assert celleval.top_k_overlap(truth, pred, 2) == 0.5  # {5, 3} & {3, 7}
    assert celleval.top_k_overlap(truth, pred, 4) == 0.25  # pred has only 2 -> 1 / 4
    assert celleval.top_k_overlap(truth, pred, 0) == 0.0


def test_discrimination_scores_by_hand():
    true_effects = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    pred_effects = np.array([[0.9, 0.0], [1.0, 0.1], [0.0, 1.0]])
    # pred 0 is nearest to truth 1: own rank 1 of 3 -> 1 - 1/3; pred 1 nearest to its own -> 1;
    # pred 2: L1 distances 1, 2, 2 (own, tie with truth 1 ordered first) -> rank 2 -> 1/3
    np.testing.assert_allclose(
        celleval.discrimination_scores(pred_effects, true_effects, "l1"), [2 / 3, 1.0, 1 / 3]
    )
    # Euclidean: pred 2 to truths 1, sqrt 2, 2 (own) -> rank 2
    np.testing.assert_allclose(
        celleval.discrimination_scores(pred_effects, true_effects, "l2"), [2 / 3, 1.0, 1 / 3]
    )
    # cosine: the zero truth vector has distance 1 to everything (sklearn normalize keeps it zero)
    cosine = celleval.discrimination_scores(pred_effects, true_effects, "cosine")
    np.testing.assert_allclose(cosine, [2 / 3, 1.0, 1.0])
    with pytest.raises(ValueError, match="unknown discrimination metric"):
        celleval.discrimination_scores(pred_effects, true_effects, "l3")


def test_auc_scores_follow_polars_float32():
    import polars as pl

    fdr = np.array([1e-12, 1e-10, 0.03, 0.5, 1.0, 0.049999997], dtype=np.float32)
    want = pl.DataFrame({"q": fdr}).select(-pl.col("q").clip(1e-10, 1.0).log10())["q"].to_numpy()
    got = celleval.auc_scores(fdr)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-7)
    assert got[0] == got[1]  # clipped at 1e-10


def test_correlation_helpers_match_scipy_and_sklearn():
    from sklearn.metrics import auc, average_precision_score, roc_curve

    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 40).astype(float)
    b = a + rng.integers(0, 3, 40)
    a[:2], b[3] = np.inf, -np.inf
    assert correlation.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert math.isnan(correlation.spearman([1.0], [2.0]))
    assert math.isnan(correlation.pearson([1.0, 1.0], [1.0, 2.0]))
    labels = rng.uniform(size=200) < 0.3
    scores = np.round(rng.normal(size=200) + labels, 1)  # many tied scores
    fpr, tpr, _ = roc_curve(labels, scores)
    assert correlation.auroc(labels, scores) == pytest.approx(auc(fpr, tpr), abs=1e-12)
    assert correlation.average_precision(labels, scores) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )
    assert math.isnan(correlation.auroc(np.ones(5, bool), np.arange(5.0)))
    assert math.isnan(correlation.average_precision(np.zeros(5, bool), np.arange(5.0)))
    for values in (a, b, scores, np.array([2.0]), np.array([])):
        np.testing.assert_array_equal(correlation.rankdata(values), stats.rankdata(values))
    np.testing.assert_array_equal(correlation.rankdata([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])
    assert np.isnan(correlation.rankdata([1.0, np.nan])).all()  # scipy's nan_policy="propagate"


def test_r2_score_by_hand():
    assert celleval.r2_score(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0])) == pytest.approx(
        0.5
    )
    assert math.isnan(celleval.r2_score(np.ones(3), np.zeros(3)))


# ---------------------------------------------------------------- all protocols in one pass
def _dataset(seed=0, lines=("L1", "L2"), n_conditions=4, n_genes=30, n_cells=25):
    rng = np.random.default_rng(seed)
    rows, blocks = [], []
    for line in lines:
        base = rng.gamma(2.0, 0.7, n_genes)
        blocks.append(np.log1p(rng.poisson(base, (40, n_genes))))
        rows += [(line, "control", f"{line}|control|0")] * 40
        for k in range(n_conditions):
            effect = np.exp(rng.normal(0, 0.7, n_genes) * (rng.uniform(size=n_genes) < 0.4))
            blocks.append(np.log1p(rng.poisson(base * effect, (n_cells, n_genes))))
            rows += [(line, f"d{k}", f"{line}|d{k}|1")] * n_cells
    obs = pd.DataFrame(
        rows, columns=["cell_line", "drug", "condition"], index=[f"c{i}" for i in range(len(rows))]
    )
    truth = ad.AnnData(
        np.vstack(blocks).astype(np.float32),
        obs=obs,
        var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]),
    )
    pred = truth[truth.obs["drug"] != "control"].copy()
    pred.X = np.log1p(rng.poisson(np.expm1(pred.X) * 0.8 + 0.2)).astype(np.float32)
    conditions = sorted(set(pred.obs["condition"]))
    return truth, pred, conditions


def test_all_protocols_in_one_pass():
    truth, pred, conditions = _dataset()
    reference = np.full(truth.n_vars, 0.5)
    table = evaluate_predictions(
        truth,
        pred,
        conditions,
        "control",
        protocols=("scperturbench", "celleval", "scppdm", "systema"),
        train_reference=reference,
    )
    assert list(table.columns) == ["condition", "protocol", "metric", "deg_set", "value"]
    assert set(table["protocol"]) == {"scperturbench", "celleval", "scppdm", "systema"}
    assert table["value"].notna().all()
    across = table[table["condition"].str.endswith("|*")]
    assert set(across["condition"]) == {across_label("L1"), across_label("L2")}
    assert set(across["metric"]) == {"de_spearman_sig", "pearson_edistance", "clustering_agreement"}
    deg_sets = table.groupby("protocol")["deg_set"].agg(set)
    assert deg_sets["celleval"] == {"all", "sig"}
    assert deg_sets["scppdm"] == {"all", "top200"}  # 30 genes: no accuracy@K
    assert deg_sets["systema"] == {"all", "top20"}
    per_condition = table[~table["condition"].str.endswith("|*")]
    assert set(per_condition["condition"]) == set(conditions)
    pds = per_condition[per_condition["metric"] == "discrimination_score_l1"]["value"]
    assert set(np.round(pds * 4)) <= {1, 2, 3, 4}  # 1 - rank/4 within each cell line
    # the reference enters only the Systema Pearson-delta-hat
    other = evaluate_predictions(
        truth,
        pred,
        conditions,
        "control",
        protocols=("systema",),
        train_reference=np.linspace(0.0, 2.0, truth.n_vars),
    )
    merged = table[table["protocol"] == "systema"].merge(
        other, on=["condition", "metric", "deg_set"]
    )
    changed = merged[merged["value_x"] != merged["value_y"]]
    assert set(changed["metric"]) == {"pearson_delta_hat"}


def test_evaluation_is_deterministic_and_order_free():
    truth, pred, conditions = _dataset(seed=1, lines=("L1",), n_conditions=3)
    kwargs = dict(
        protocols=("celleval", "scppdm", "systema"), train_reference=np.zeros(truth.n_vars)
    )
    first = evaluate_predictions(truth, pred, conditions, "control", **kwargs)
    shuffled = pred[np.random.default_rng(0).permutation(pred.n_obs)].copy()
    second = evaluate_predictions(truth, shuffled, list(reversed(conditions)), "control", **kwargs)
    pd.testing.assert_frame_equal(first, second, rtol=1e-9)


def test_one_ground_truth_scores_many_predictions_as_separate_runs():
    """The workflow scores every method of a split against one GroundTruth; its truth-side caches
    (truth DE, the true centroids' clusters) must give each prediction exactly the table of a
    fresh evaluation, whatever the order."""
    from scpert.metrics.evaluate import GroundTruth

    truth, pred, conditions = _dataset(seed=2)
    rng = np.random.default_rng(5)
    noisy = pred.copy()
    noisy.X = np.log1p(rng.poisson(np.expm1(pred.X) + 0.5)).astype(np.float32)
    constant = pred.copy()  # one profile for every condition of a cell line
    for line in ("L1", "L2"):
        rows = (constant.obs["cell_line"] == line).to_numpy()
        constant.X[rows] = constant.X[rows][0]
    kwargs = dict(train_reference=np.full(truth.n_vars, 0.3))
    protocols = ("scperturbench", "celleval", "scppdm", "systema")
    ground = GroundTruth(truth, conditions, "control", **kwargs)
    for prediction in (pred, noisy, constant, pred):
        shared = ground.evaluate(prediction, protocols)
        alone = evaluate_predictions(
            truth, prediction, conditions, "control", protocols=protocols, **kwargs
        )
        pd.testing.assert_frame_equal(shared, alone, check_exact=True)
    assert ground.across_shared["celleval"]  # the true clusters were kept


def test_scoring_logs_progress(monkeypatch, caplog):
    from scpert.metrics import evaluate

    monkeypatch.setattr(evaluate, "PROGRESS_SECONDS", 0.0)
    truth, pred, conditions = _dataset(seed=3, lines=("L1",), n_conditions=3)
    with caplog.at_level("INFO", logger="scpert.metrics.evaluate"):
        evaluate_predictions(truth, pred, conditions, "control", protocols=("scppdm",))
    lines = [r.getMessage() for r in caplog.records if r.name == "scpert.metrics.evaluate"]
    assert [line.split(" (")[0] for line in lines] == [
        "scored 1/3 conditions",
        "scored 2/3 conditions",
    ]


def test_training_perturbation_reference_by_hand(tmp_path):
    # training conditions A (cells (1, 0), (3, 0)) and B (cell (0, 4)): centroids (2, 0), (0, 4);
    # the reference is their mean (1, 2), not the cell-weighted mean; controls and test cells are out
    x = np.array([[1, 0], [3, 0], [0, 4], [9, 9], [7, 7]], dtype=np.float32)
    obs = pd.DataFrame(
        {
            "condition": ["L|a|1", "L|a|1", "L|b|1", "L|control|0", "L|c|1"],
            "drug": ["a", "a", "b", "control", "c"],
        },
        index=[f"c{i}" for i in range(5)],
    )
    adata = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=["g0", "g1"]))
    split = pd.DataFrame(
        {
            "condition": ["L|a|1", "L|b|1", "L|c|1", "L|control|0"],
            "split": ["train", "train", "test", "train"],
        }
    )
    ref = evaluate_step.training_perturbation_reference(
        adata, split, ["g1", "g0"], "control", "split.tsv"
    )
    np.testing.assert_allclose(ref, [2.0, 1.0])  # in the order of the requested genes
    none_train = split.assign(split=["val", "val", "test", "train"])
    with pytest.raises(Exception, match="split.tsv: no training perturbed conditions"):
        evaluate_step.training_perturbation_reference(
            adata, none_train, ["g0"], "control", "split.tsv"
        )
