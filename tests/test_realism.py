"""The synthetic world against real data (scpert.data.realism, rule world_vs_real): the statistics
on hand-made inputs, cross-checks against scipy / statsmodels, the shipped references, and the
default world within the tolerance of every statistic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from statsmodels.stats.multitest import multipletests

from scpert import steps
from scpert.data import realism
from scpert.data.simulate import simulate_world, write_gctx
from scpert.errors import InputError
from scpert.priors.l1000 import Gct, read_gct

from .conftest import REPO

RESOURCES = REPO / "resources"
REAL_L1000 = RESOURCES / "realism/l1000_a375_24h.gctx"
REAL_COUNTS = RESOURCES / "realism/scimilarity_counts.h5ad"
DOSES = [0.1, 1.0, 10.0]


def test_nearest_doses_on_the_real_plate_grid():
    plate = [0.04, 0.12, 0.37, 1.11, 3.33, 10.0, -666.0]
    assert realism.nearest_doses(plate, DOSES) == [0.12, 1.11, 10.0]
    assert realism.nearest_doses(plate, [1.0, 1.2, 2.0]) == [1.11, 3.33]  # log10 2 nearer 3.33
    with pytest.raises(ValueError, match="no positive doses"):
        realism.nearest_doses([-666.0], DOSES)


def test_benjamini_hochberg_matches_statsmodels():
    p = np.random.default_rng(0).uniform(0, 1, (4, 50)) ** 3
    ours = realism._bh_reject(p, 0.05)
    theirs = np.array([multipletests(row, alpha=0.05, method="fdr_bh")[0] for row in p])
    np.testing.assert_array_equal(ours, theirs)
    assert 0 < ours.sum() < ours.size


def test_de_against_controls_is_the_two_sample_t_test_of_one_observation():
    rng = np.random.default_rng(1)
    controls = rng.normal(0, 1, (26, 5))
    x = np.array([[0.1, 8.0, -6.0, 1.0, 1.5]])
    # Student's t of one observation against a sample = pooled two-sample t with n1 = 1
    p = np.array([stats.ttest_ind([x[0, g]], controls[:, g]).pvalue for g in range(5)])
    expected = multipletests(p, alpha=0.05, method="fdr_bh")[0]
    np.testing.assert_array_equal(realism.de_against_controls(x, controls)[0], expected)
    assert expected.tolist() == [False, True, True, False, False]
    with pytest.raises(ValueError, match="at least 3"):
        realism.de_against_controls(x, controls[:2])


def _gct(columns: list[tuple[str, str, float, str]], z: np.ndarray) -> Gct:
    """columns: (drug, cell, dose, pert_type); z: (landmarks, columns)."""
    ids = [f"c{i}" for i in range(len(columns))]
    col = pd.DataFrame(columns, columns=["pert_iname", "cell_id", "pert_dose", "pert_type"])
    col.index = pd.Index(ids, name="id")
    rows = pd.Index([f"g{i}" for i in range(z.shape[0])], name="id")
    row = pd.DataFrame({"pr_gene_symbol": [f"G{i}" for i in range(z.shape[0])]}, index=rows)
    return Gct(pd.DataFrame(z.astype(np.float32), index=rows, columns=ids), row, col)


def test_l1000_measures_by_hand():
    # one line; drugs A, B, C at doses 1 and 10 (and a 5 uM signature that is not used), three
    # controls; responses (mean over doses 1 and 10) are a = (1,2,3,4), b = (2,1,4,3), c = (4,1,3,2)
    a, b, c = np.array([1, 2, 3, 4.0]), np.array([2, 1, 4, 3.0]), np.array([4, 1, 3, 2.0])
    cols, z = [], []
    for name, r in (("A", a), ("B", b), ("C", c)):
        cols += [(name, "L1", 1.0, "trt_cp"), (name, "L1", 10.0, "trt_cp")]
        z += [r - 1, r + 1]
    cols.append(("A", "L1", 5.0, "trt_cp"))
    z.append(np.full(4, 100.0))
    cols += [("DMSO", "L1", -666.0, "ctl_vehicle")] * 3
    z += [np.array([0.1, -0.1, 0.2, 0.0]), np.array([-0.1, 0.1, 0.0, 0.1]), np.zeros(4)]
    m = realism.l1000_measures(_gct(cols, np.array(z).T), [1.0, 10.0])
    assert m.doses == [1.0, 10.0]
    r = lambda x, y: np.corrcoef(x, y)[0, 1]  # noqa: E731
    expected = [r(a, (b + c) / 2), r(b, (a + c) / 2), r(c, (a + b) / 2)]
    np.testing.assert_allclose(m.corr_with_mean, expected)
    np.testing.assert_allclose(m.corr_between, [r(a, b), r(a, c), r(b, c)])
    np.testing.assert_allclose(m.corr_between, [0.6, -0.4, 0.4])  # centred dot products / 5
    # |z| >= 2 per signature: A@1 = (0,1,2,3) -> 2/4, A@10 = (2,3,4,5) -> 4/4, ...
    np.testing.assert_allclose(m.frac_abs_z_ge_2, [0.5, 1.0, 0.5, 1.0, 0.5, 1.0])
    summary = realism.summarize(m, _count_measures())
    assert summary["corr_between_drugs"] == pytest.approx(0.2)
    assert summary["corr_with_mean_response"] == pytest.approx(np.median(expected))


def test_l1000_measures_need_controls():
    cols = [(d, "L1", 1.0, "trt_cp") for d in "ABC"]
    with pytest.raises(InputError, match=r"sigs.gct: cell line L1 has 0 control signatures"):
        realism.l1000_measures(_gct(cols, np.eye(4)[:, :3]), [1.0], "sigs.gct")


def _count_measures():
    # context x: 4 cells x 3 genes; gene 3 never detected; context y: 2 cells
    X = np.array([[0, 1, 0], [2, 0, 0], [0, 3, 0], [2, 4, 0], [5, 5, 0], [1, 3, 0]])
    return realism.count_measures(sp.csr_matrix(X), ["x", "x", "x", "x", "y", "y"])


def test_count_measures_by_hand():
    m = _count_measures()
    # x: gene 1 counts (0,2,0,2): mean 1, var 4/3, zeros 1/2; gene 2 (1,0,3,4): mean 2, var 10/3
    # y: gene 1 (5,1): mean 3, var 8, zeros 0; gene 2 (5,3): mean 4, var 2
    np.testing.assert_allclose(m.gene_mean, [1, 2, 3, 4])
    np.testing.assert_allclose(m.gene_var, [4 / 3, 10 / 3, 8, 2])
    np.testing.assert_allclose(m.gene_zero_fraction, [0.5, 0.25, 0, 0])
    lib_x, lib_y = np.log([1, 2, 3, 6]), np.log([10, 4])
    np.testing.assert_allclose(m.library_sd, [lib_x.std(ddof=1), lib_y.std(ddof=1)])
    np.testing.assert_allclose(
        m.centred_log_library, np.r_[lib_x - np.median(lib_x), lib_y - np.median(lib_y)]
    )
    phi = realism.overdispersion(m.gene_mean, m.gene_var)
    np.testing.assert_allclose(phi, [1 / 3, 1 / 3, 5 / 9, -2 / 16])


def test_comparison_table_ratio_and_tolerance():
    world = dict.fromkeys(realism.STATISTICS, 1.0)
    real = dict.fromkeys(realism.STATISTICS, 1.0)
    world["corr_between_drugs"], world["overdispersion"] = 1.25, 0.7
    table = realism.comparison_table(world, real, {"l1000": "a.gctx", "counts": "b.h5ad"})
    assert table["statistic"].tolist() == list(realism.STATISTICS)
    t = table.set_index("statistic")
    assert (
        t.at["corr_between_drugs", "ratio"] == 1.25
        and t.at["corr_between_drugs", "within_tolerance"]
    )
    assert not t.at["overdispersion", "within_tolerance"]
    assert t.at["overdispersion", "real_source"] == "b.h5ad"
    assert t["within_tolerance"].sum() == len(t) - 1


def test_shipped_references_give_the_documented_statistics():
    # resources/README.md: the statistics of the real references at the default doses
    m = realism.l1000_measures(read_gct(REAL_L1000), DOSES, REAL_L1000)
    X = realism.real_counts(REAL_COUNTS)
    assert X.shape == (1000, 1000)
    real = realism.summarize(m, realism.count_measures(X, np.zeros(1000)))
    assert m.doses == [0.12, 1.11, 10.0] and len(m.corr_with_mean) == 59
    expected = {
        "corr_with_mean_response": 0.3533,
        "corr_between_drugs": 0.1295,
        "frac_abs_z_ge_2": 0.0941,
        "frac_de_vs_controls": 0.0736,
        "gene_zero_fraction": 0.9310,
        "overdispersion": 0.7915,
        "library_size_sd": 0.7321,
    }
    assert real == pytest.approx(expected, abs=5e-5)


@pytest.fixture(scope="module")
def default_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("default_world")
    simulate_world({}, out, RESOURCES)
    return out


def test_default_world_is_within_tolerance_of_real_data(default_world, tmp_path):
    table, pdf, png = tmp_path / "t.tsv", tmp_path / "f.pdf", tmp_path / "f.png"
    steps.world_vs_real(
        default_world / "l1000.gctx",
        default_world / "counts.h5ad",
        REAL_L1000,
        REAL_COUNTS,
        table,
        pdf,
        png,
        {},
        "control",
    )
    result = pd.read_csv(table, sep="\t").set_index("statistic")
    assert list(result.index) == list(realism.STATISTICS)
    assert result["within_tolerance"].all(), result[["world", "real", "ratio"]]
    assert pdf.stat().st_size > 5000 and png.stat().st_size > 5000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png", "t.tsv"]


def test_world_vs_real_without_control_signatures_fails_clearly(default_world, tmp_path):
    gct = read_gct(default_world / "l1000.gctx")
    treated = gct.col_meta.index[gct.col_meta["pert_type"] == "trt_cp"]
    path = tmp_path / "no_controls.gctx"
    col = gct.col_meta.loc[treated].reset_index()
    col = col.apply(lambda c: c.astype(object) if c.dtype == object else c)
    write_gctx(path, gct.data[treated].to_numpy().T, col, gct.row_meta.reset_index())
    with pytest.raises(InputError, match=r"no_controls.gctx: cell line LK01 has 0 control"):
        realism.compare(path, default_world / "counts.h5ad", REAL_L1000, REAL_COUNTS, DOSES)
    assert not (tmp_path / "t.tsv").exists()
