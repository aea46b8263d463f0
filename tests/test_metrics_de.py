"""The shared DE engine against hand-computed values, scanpy, scipy, statsmodels and pdex."""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from scpert.metrics import de


def _groups(seed: int = 0, n_group: int = 25, n_ref: int = 40, n_genes: int = 60):
    """log1p Poisson data (many ties) with three degenerate genes in front:
    0: zero everywhere, 1: the same constant in both groups, 2: different constants (0.5 vs 0.25)."""
    rng = np.random.default_rng(seed)
    xg = np.log1p(rng.poisson(1.0, (n_group, n_genes))).astype(np.float32)
    xr = np.log1p(rng.poisson(1.3, (n_ref, n_genes))).astype(np.float32)
    xg[:, 0] = xr[:, 0] = 0.0
    xg[:, 1] = xr[:, 1] = 0.75
    xg[:, 2], xr[:, 2] = 0.5, 0.25
    return xg, xr


def _scanpy_scores(xg, xr, *, sparse: bool, **kwargs) -> pd.DataFrame:
    import scanpy as sc

    x = np.vstack([xg, xr])
    obs = pd.DataFrame(
        {"group": ["pert"] * len(xg) + ["control"] * len(xr)},
        index=[f"c{i}" for i in range(len(x))],
    )
    adata = ad.AnnData(
        sp.csr_matrix(x) if sparse else x,
        obs=obs,
        var=pd.DataFrame(index=[f"g{i}" for i in range(x.shape[1])]),
    )
    sc.tl.rank_genes_groups(
        adata, "group", groups=["pert"], reference="control", method="t-test", **kwargs
    )
    return sc.get.rank_genes_groups_df(adata, "pert")


def test_ttest_scores_by_hand():
    group = np.array([[1.0, 0.0, 5.0], [2.0, 0.0, 5.0], [3.0, 0.0, 5.0]])
    ref = np.array([[0.0, 0.0, 4.0], [1.0, 0.0, 4.0], [2.0, 0.0, 4.0]])
    # gene 0: means 2 vs 1, variances 1 and 1 -> t = 1 / sqrt(1/3 + 1/3)
    # gene 1: all zero -> NaN -> 0; gene 2: constants 5 vs 4 -> +inf
    expected = np.array([1.0 / math.sqrt(2.0 / 3.0), 0.0, np.inf])
    np.testing.assert_allclose(de.ttest_scores(group, ref), expected, rtol=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_ttest_scores_match_scanpy(sparse):
    xg, xr = _groups()
    ref = _scanpy_scores(xg, xr, sparse=sparse)
    ref_scores = ref.set_index("names")["scores"].reindex([f"g{i}" for i in range(xg.shape[1])])
    as_input = sp.csr_matrix if sparse else np.asarray
    ours = de.ttest_scores(as_input(xg), as_input(xr))
    assert ours[0] == 0.0 and ours[1] == 0.0 and ours[2] == np.inf
    # scanpy stores scores as float32
    np.testing.assert_allclose(ours, ref_scores.to_numpy(dtype=np.float64), rtol=2e-7)


def test_rank_degs_matches_scanpy_abs_ranking():
    xg, xr = _groups(seed=3)
    ref = _scanpy_scores(xg, xr, sparse=False, n_genes=30, rankby_abs=True)
    ours = de.rank_degs(xg, xr, 30)
    assert [f"g{i}" for i in ours] == ref["names"].tolist()
    assert ours[0] == 2  # the infinite score ranks first


def test_top_by_abs_ties_keep_gene_order():
    scores = np.array([1.0, -3.0, 3.0, 0.0, -1.0, np.inf])
    np.testing.assert_array_equal(de.top_by_abs(scores), [5, 1, 2, 0, 4, 3])
    np.testing.assert_array_equal(de.top_by_abs(scores, 2), [5, 1])


def test_mean_var_single_cell_is_not_rescaled():
    mean, var = de.mean_var(np.array([[2.0, 3.0]]))
    np.testing.assert_array_equal(mean, [2.0, 3.0])
    np.testing.assert_array_equal(var, [0.0, 0.0])


def test_mannwhitney_by_hand():
    # x = {1, 2}, y = {3, 4}: R1 = 3, U1 = 0, U = max(0, 4) = 4, mu = 2,
    # sigma = sqrt(2*2/12 * 5) (no ties), z = (4 - 2 - 0.5) / sigma, p = 2 sf(z) = erfc(z / sqrt 2)
    u, p = de.mannwhitney_u(np.array([[1.0], [2.0]]), np.array([[3.0], [4.0]]))
    z = 1.5 / math.sqrt(4.0 / 12.0 * 5.0)
    assert u[0] == 0.0
    assert p[0] == pytest.approx(math.erfc(z / math.sqrt(2.0)), rel=1e-14)
    # ties: x = {1, 1}, y = {1, 2}: ranks 2, 2, 2, 4 -> R1 = 4, U1 = 1, U = 3;
    # tie term 3^3 - 3 = 24, sigma^2 = 4/12 * (5 - 24/12) = 1, z = (3 - 2 - 0.5) / 1
    u, p = de.mannwhitney_u(np.array([[1.0], [1.0]]), np.array([[1.0], [2.0]]))
    assert u[0] == 1.0
    assert p[0] == pytest.approx(math.erfc(0.5 / math.sqrt(2.0)), rel=1e-14)


def test_mannwhitney_matches_scipy_with_ties_and_constant_genes(monkeypatch):
    xg, xr = _groups(seed=5, n_group=31, n_ref=47, n_genes=80)
    xg, xr = xg.astype(np.float64), xr.astype(np.float64)  # scipy ranks in the input dtype
    ref = stats.mannwhitneyu(xg, xr, method="asymptotic", axis=0)
    u, p = de.mannwhitney_u(xg, xr)
    np.testing.assert_allclose(u, ref.statistic, rtol=0, atol=1e-10)
    np.testing.assert_allclose(p, ref.pvalue, rtol=0, atol=1e-10)
    assert p[0] == 1.0 and p[1] == 1.0  # constant genes
    # gene chunking does not change the result; CSR input is accepted
    monkeypatch.setattr(de, "_MWU_CHUNK_ENTRIES", 200)
    u2, p2 = de.mannwhitney_u(sp.csr_matrix(xg), sp.csr_matrix(xr))
    np.testing.assert_array_equal(u2, u)
    np.testing.assert_array_equal(p2, p)


@pytest.mark.parametrize("kind", ["negative_float32", "float64_not_float32"])
def test_mannwhitney_key_sort_and_argsort_paths_match_scipy(kind):
    """float32-exact data are ranked by sorting integer keys (negative values, -0.0 == +0.0 and
    ties included); other float64 data by a stable argsort. Both equal scipy."""
    xg, xr = _groups(seed=7, n_group=23, n_ref=35, n_genes=50)
    if kind == "negative_float32":
        xg[:, 3], xr[:, 3] = -0.0, 0.0  # signed zeros tie
        xg[:6, 4], xr[:4, 4] = -1.5, -2.5
        xg[:, 5:9] -= 1.0
        assert de._float32_keys(xg) is not None
    else:
        xg = xg.astype(np.float64) + 1e-9 * np.random.default_rng(0).normal(size=xg.shape)
        xg[:, :3] = np.round(xg[:, :3])  # keep the degenerate genes degenerate
        assert de._float32_keys(xg) is None
    ref = stats.mannwhitneyu(
        np.asarray(xg, np.float64), np.asarray(xr, np.float64), method="asymptotic", axis=0
    )
    u, p = de.mannwhitney_u(xg, xr)
    np.testing.assert_allclose(u, ref.statistic, rtol=0, atol=1e-10)
    np.testing.assert_allclose(p, ref.pvalue, rtol=0, atol=1e-12)


@pytest.mark.parametrize("max_runs", [0.0, 1.0], ids=["pooled_sort", "run_merge"])
def test_one_reference_serves_many_groups_on_every_path(monkeypatch, max_runs):
    """MannWhitneyReference is prepared once (the controls) and tests many groups; each result
    equals scipy's, on the uint32 paths (non-negative float32, signed zeros tie: one sort of the
    pooled cells, or the group's runs of ties merged with the reference's), the int64 path
    (negative values) and the argsort path (float64 values that are not float32)."""
    monkeypatch.setattr(de, "_MAX_RUNS_PER_CELL", max_runs)
    xg, xr = _groups(seed=9, n_group=19, n_ref=33, n_genes=40)
    xr[:5, 7], xg[:3, 7] = -0.0, 0.0
    reference = de.MannWhitneyReference(xr)
    assert reference.tagged_uint32 is not None
    negative = xg.copy()
    negative[:4, 5] = -1.25
    off_grid = xg.astype(np.float64) + 1e-9
    continuous = xg + np.random.default_rng(1).uniform(0.0, 1e-3, xg.shape).astype(np.float32)
    for group in (xg, negative, off_grid, xg[:1], continuous, xg):
        u, p = reference.test(group)
        ref = stats.mannwhitneyu(
            np.asarray(group, np.float64), np.asarray(xr, np.float64), method="asymptotic", axis=0
        )
        np.testing.assert_allclose(u, ref.statistic, rtol=0, atol=1e-10)
        np.testing.assert_allclose(p, ref.pvalue, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="gene counts differ"):
        reference.test(xg[:, :5])
    # gene chunks (each against its slice of the reference's runs) give the same values
    unchunked = reference.test(xg)
    monkeypatch.setattr(de, "_MWU_CHUNK_ENTRIES", 7 * (xg.shape[0] + xr.shape[0]))
    for got, want in zip(reference.test(xg), unchunked):
        np.testing.assert_array_equal(got, want)


def test_bh_by_hand_and_statsmodels():
    # sorted 0.01, 0.03, 0.04, 0.2 -> p*m/i = 0.04, 0.06, 0.0533, 0.2 -> running min from the end
    q = de.bh_fdr([0.01, 0.04, 0.03, 0.2])
    np.testing.assert_allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.2], rtol=1e-12)
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(0).uniform(size=500) ** 3
    p[:20] = p[20]  # ties
    p[-1] = 1.0
    np.testing.assert_allclose(
        de.bh_fdr(p), multipletests(p, method="fdr_bh")[1], rtol=0, atol=1e-15
    )


def test_bh_nan_is_left_out():
    q = de.bh_fdr([0.01, np.nan, 0.04])
    np.testing.assert_allclose(q, [0.02, np.nan, 0.04])


def test_log2fc_expm1_means():
    group = np.log(np.array([3.0, 1.0, 2.0, 1.0]))  # expm1 -> 2, 0, 1, 0
    ref = np.log(np.array([2.0, 1.0, 1.0, 5.0]))  # expm1 -> 1, 0, 0, 4
    lfc = de.log2fc_expm1_means(group, ref)
    np.testing.assert_allclose(lfc, [1.0, 0.0, np.inf, -np.inf], rtol=1e-12)
    import pdex

    lfc_pdex = pdex.log2_fold_change(np.expm1(group), np.expm1(ref), 0.0)
    np.testing.assert_allclose(lfc, lfc_pdex, rtol=1e-12)
    np.testing.assert_allclose(
        de.log2fc_expm1_means(group, ref, epsilon=1.0)[:2], [math.log2(1.5), 0.0]
    )
    # bulk_dtype rounds expm1(mean) before the ratio, as pdex keeps float32 pseudobulks
    m = np.float32(0.1234567)
    rounded = de.log2fc_expm1_means([m], [np.float32(0.2)], bulk_dtype=np.float32)
    c = float(np.float32(0.2))
    want = math.log2(float(np.float32(math.expm1(float(m)))) / float(np.float32(math.expm1(c))))
    assert rounded[0] == pytest.approx(want, rel=1e-15)


def test_log2fc_pseudocount():
    np.testing.assert_allclose(de.log2fc_pseudocount([1.0, 0.0], [3.0, 0.0], 1.0), [-1.0, 0.0])
    with pytest.raises(ValueError, match="pseudocount"):
        de.log2fc_pseudocount([1.0], [1.0], 0.0)
