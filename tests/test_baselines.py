"""Baselines on a hand-made world whose training deltas are known exactly.

Perturbed cells of a condition are the control cells of their line plus a known delta, so every
pseudobulk delta equals the hand-set one and each baseline's expected delta is a mean/sum of them.
"""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scpert.chem import dose_scale, morgan_fingerprints
from scpert.data.schema import SchemaError
from scpert.methods import Method, PerturbData, get_method
from scpert.methods.baselines.mlp import BaseMLP

# real SMILES (sci-Plex drug list, ../shared/data/sciplex_drugs_smiles.csv)
SMILES = {
    "Belinostat": "O=C(/C=C/c1cccc(S(=O)(=O)Nc2ccccc2)c1)NO",
    "Dacinostat": "O=C(/C=C/c1ccc(CN(CCO)CCc2c[nH]c3ccccc23)cc1)NO",
    "Pracinostat": "CCCCc1nc2cc(/C=C/C(=O)NO)ccc2n1CCN(CC)CC",
    "Abexinostat": "CN(C)Cc1c(C(=O)NCCOc2ccc(C(=O)NO)cc2)oc2ccccc12",
    "Panobinostat": "Cc1[nH]c2ccccc2c1CCNCc1ccc(/C=C/C(=O)NO)cc1",
    "Entinostat": "Nc1ccccc1NC(=O)c1ccc(CNC(=O)OCc2cccnc2)cc1",
    "Mocetinostat": "Nc1ccccc1NC(=O)c1ccc(CNc2nccc(-c3cccnc3)n2)cc1",
    "Tucidinostat": "Nc1ccc(F)cc1NC(=O)c1ccc(CNC(=O)/C=C/c2cccnc2)cc1",
    "Ruxolitinib": "N#CC[C@H](C1CCCC1)n1cc(-c2ncnc3[nH]ccc23)cn1",
    "Tofacitinib": "C[C@@H]1CCN(C(=O)CC#N)C[C@@H]1N(C)c1ncnc2[nH]ccc12",
    "Baricitinib": "CCS(=O)(=O)N1CC(CC#N)(n2cc(-c3ncnc4[nH]ccc34)cn2)C1",
    "AZD1480": "Cc1cc(Nc2nc(N[C@@H](C)c3ncc(F)cn3)ncc2Cl)n[nH]1",
    "Busulfan": "CS(=O)(=O)OCCCCOS(C)(=O)=O",
    "Altretamine": "CN(C)c1nc(N(C)C)nc(N(C)C)n1",
}
A, B, C, D = "Belinostat", "Entinostat", "Ruxolitinib", "Busulfan"  # D is never trained
GENES = [f"g{i}" for i in range(6)]
METHODS = [
    "base_control",
    "train_mean",
    "perturb_mean",
    "context_mean",
    "additive",
    "base_reg",
    "base_mlp",
]


def drug_table(names, smiles=SMILES, source="tests/drugs.tsv"):
    table = pd.DataFrame(
        {"smiles": [smiles[n] for n in names], "moa": "", "targets": ""},
        index=pd.Index(list(names), name="drug"),
    )
    table.attrs["source"] = source
    return table


def make_controls(rng, lines: dict[str, int], n_genes: int, zero_gene: bool = True) -> ad.AnnData:
    X, obs = [], []
    for line, n in lines.items():
        x = rng.uniform(1.0, 3.0, size=(n, n_genes))
        if zero_gene:
            x[: n // 2, -1] = 0.0  # a gene off in half the cells, so negative deltas get clipped
        X.append(x)
        obs += [(line, "control", "0", f"plate{i % 2}") for i in range(n)]
    obs = pd.DataFrame(obs, columns=["cell_line", "drug", "dose", "plate"])
    obs.index = [f"ctrl{i}" for i in range(len(obs))]
    return ad.AnnData(
        np.vstack(X).astype(np.float32),
        obs=obs,
        var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]),
    )


def make_train(controls: ad.AnnData, deltas: dict[tuple[str, str, str], np.ndarray]) -> ad.AnnData:
    """Controls + for each (line, drug, dose) the line's control cells shifted by the delta."""
    blocks = [controls.X]
    obs = [controls.obs]
    for (line, drug, dose), delta in deltas.items():
        mask = (controls.obs["cell_line"] == line).to_numpy()
        blocks.append(controls.X[mask] + delta.astype(np.float32))
        part = controls.obs[mask].copy()
        part["drug"], part["dose"] = drug, dose
        part.index = [f"{line}|{drug}|{dose}#{i}" for i in range(mask.sum())]
        obs.append(part)
    obs = pd.concat(obs)
    obs["condition"] = obs["cell_line"] + "|" + obs["drug"] + "|" + obs["dose"]
    return ad.AnnData(sp.csr_matrix(np.vstack(blocks)), obs=obs, var=controls.var.copy())


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(7)
    controls = make_controls(rng, {"L1": 12, "L2": 8, "L3": 10}, len(GENES))
    keys = [
        ("L1", A, "0.1"),
        ("L1", A, "1"),
        ("L1", B, "1"),
        ("L1", C, "1"),
        ("L2", A, "1"),
        ("L2", B, "0.1"),
        ("L2", B, "1"),
        ("L2", f"{A}+{C}", "1+1"),
    ]
    truth = {k: rng.uniform(-0.5, 0.5, size=len(GENES)) for k in keys}
    train_cells = make_train(controls[controls.obs["cell_line"] != "L3"], truth)
    data = PerturbData(train_cells, drug_table([A, B, C, D]))
    fitted = {}
    for name in METHODS:
        method = get_method(name).from_preset("tiny", seed=3)
        method.fit(data)
        fitted[name] = method
    return {"controls": controls, "truth": truth, "data": data, "fitted": fitted}


def conditions(*rows, n_cells=5):
    return pd.DataFrame(
        [(line, drug, dose, n_cells) for line, drug, dose in rows],
        columns=["cell_line", "drug", "dose", "n_cells"],
    )


def deltas(world, name, *rows):
    """The predicted deltas of ``rows``, in the order of ``rows`` (predictions come back sorted
    by condition key)."""
    got = world["fitted"][name].predict_deltas(world["controls"], conditions(*rows))
    keys = ["|".join(row) for row in rows]
    assert sorted(got.index) == sorted(keys)
    return got.loc[keys].to_numpy()


def test_train_mean_is_mean_of_all_training_deltas(world):
    expected = np.mean(list(world["truth"].values()), axis=0)
    got = deltas(world, "train_mean", ("L1", D, "1"), ("L3", A, "1"))
    np.testing.assert_allclose(got, [expected, expected], atol=1e-5)


def test_context_mean_in_line_and_fallback(world):
    t = world["truth"]
    l1 = np.mean([v for k, v in t.items() if k[0] == "L1"], axis=0)
    l2 = np.mean([v for k, v in t.items() if k[0] == "L2"], axis=0)
    overall = np.mean(list(t.values()), axis=0)
    got = deltas(world, "context_mean", ("L1", D, "1"), ("L2", A, "1"), ("L3", A, "1"))
    np.testing.assert_allclose(got, [l1, l2, overall], atol=1e-5)


def test_perturb_mean_same_dose_then_any_dose_then_train_mean(world):
    t = world["truth"]
    got = deltas(
        world,
        "perturb_mean",
        ("L3", A, "1"),
        ("L2", A, "10"),
        ("L2", C, "1"),
        ("L1", D, "1"),
        ("L1", f"{A}+{C}", "1+1"),
    )
    expected = [
        (t["L1", A, "1"] + t["L2", A, "1"]) / 2,
        (t["L1", A, "0.1"] + t["L1", A, "1"] + t["L2", A, "1"]) / 3,
        t["L1", C, "1"],
        np.mean(list(t.values()), axis=0),
        t["L2", f"{A}+{C}", "1+1"],
    ]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_additive_sums_nearest_dose_singles_with_fallbacks(world):
    t = world["truth"]
    got = deltas(
        world,
        "additive",
        ("L1", f"{A}+{B}", "1+1"),
        (
            "L1",
            f"{A}+{C}",
            "0.3+1",
        ),  # A: 0.1 is nearer than 1 in log1p; the trained L2 combo is ignored
        ("L2", f"{C}+{B}", "1+0.1"),  # C not in L2 -> C at 1 across lines
        ("L2", f"{C}+{D}", "10+1"),  # C at 10 nowhere -> C at any dose; D unseen -> 0
        ("L1", A, "3"),  # single: nearest in-line dose (1)
        ("L1", A, "0.5"),
    )  # log1p(0.5) is nearer log1p(1) than log1p(0.1)
    expected = [
        t["L1", A, "1"] + t["L1", B, "1"],
        t["L1", A, "0.1"] + t["L1", C, "1"],
        t["L1", C, "1"] + t["L2", B, "0.1"],
        t["L1", C, "1"],
        t["L1", A, "1"],
        t["L1", A, "1"],
    ]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def _rows_of(controls, line):
    part = controls[controls.obs["cell_line"] == line]
    return np.asarray(part.X), part.obs["plate"].astype(str).to_numpy()


def test_base_control_returns_control_cells_of_the_line(world):
    pred = world["fitted"]["base_control"].predict(
        world["controls"], conditions(("L2", A, "1"), n_cells=6), seed=1
    )
    X, plates = _rows_of(world["controls"], "L2")
    assert pred.n_obs == 6 and pred.uns == {
        "method": "base_control",
        "seed": 1,
        "sampler": "control+delta",
    }
    matches = [np.flatnonzero((X == row).all(axis=1)) for row in pred.X]
    assert all(m.size == 1 for m in matches)
    picked = np.concatenate(matches)
    assert len(set(picked)) == 6  # without replacement while the line has enough controls
    assert (pred.obs["plate"].to_numpy() == plates[picked]).all()
    assert (pred.obs["condition"] == "L2|Belinostat|1").all() and (pred.obs["dose"] == "1").all()
    many = world["fitted"]["base_control"].predict(
        world["controls"], conditions(("L2", A, "1"), n_cells=20)
    )
    assert many.n_obs == 20 and len({tuple(r) for r in many.X}) <= 8  # with replacement


def test_cells_are_clipped_control_plus_delta(world):
    method = world["fitted"]["context_mean"]
    conds = conditions(("L1", D, "1"), ("L2", D, "1"), n_cells=12)
    pred = method.predict(world["controls"], conds, seed=0)
    delta = method.predict_deltas(world["controls"], conds)
    clipped = 0
    for line, row in zip(pred.obs["cell_line"], pred.X):
        X, _ = _rows_of(world["controls"], line)
        candidates = np.maximum(X + delta.loc[f"{line}|{D}|1"].to_numpy(), 0)
        assert np.isclose(candidates, row, atol=1e-5).all(axis=1).any()
        clipped += int((row == 0).sum())
    assert clipped > 0 and pred.X.min() == 0  # the test exercises the clip


def test_draws_are_seeded_and_independent_of_condition_order(world):
    method = world["fitted"]["train_mean"]
    conds = conditions(("L1", A, "1"), ("L2", B, "1"), ("L3", C, "1"))
    first = method.predict(world["controls"], conds, seed=5)
    again = method.predict(world["controls"], conds.iloc[::-1], seed=5)
    other = method.predict(world["controls"], conds, seed=6)
    for condition in conds.apply(lambda r: f"{r.cell_line}|{r.drug}|{r.dose}", axis=1):
        a = first[first.obs["condition"] == condition].X
        np.testing.assert_array_equal(a, again[again.obs["condition"] == condition].X)
    assert not np.array_equal(first.X, other.X)


@pytest.mark.parametrize("name", METHODS)
def test_save_load_round_trip_predicts_identically(world, name, tmp_path):
    method = world["fitted"][name]
    method.save(tmp_path / name)
    loaded = Method.load(tmp_path / name)
    assert type(loaded) is type(method) and loaded.genes == GENES and loaded.params == method.params
    conds = conditions(("L1", f"{A}+{C}", "1+1"), ("L3", A, "0.1"), ("L2", D, "10"))
    a, b = (
        method.predict(world["controls"], conds, seed=2),
        loaded.predict(world["controls"], conds, seed=2),
    )
    np.testing.assert_array_equal(a.X, b.X)
    pd.testing.assert_frame_equal(a.obs, b.obs)


def test_feature_baselines_need_valid_smiles():
    rng = np.random.default_rng(0)
    controls = make_controls(rng, {"L1": 4}, 3, zero_gene=False)
    cells = make_train(controls, {("L1", A, "1"): np.ones(3)})
    broken = drug_table(
        [A, D], smiles={A: SMILES[A], D: "C1CC("}, source="resources/raw/x/drugs.tsv"
    )
    with pytest.raises(
        SchemaError, match=r"resources/raw/x/drugs.tsv: field 'smiles' of drug 'Busulfan'"
    ):
        get_method("base_reg").from_preset("tiny").fit(PerturbData(cells, broken))


def test_predict_errors_name_the_field(world):
    method = world["fitted"]["train_mean"]
    with pytest.raises(SchemaError, match="no control cells of cell line 'L9'"):
        method.predict(world["controls"], conditions(("L9", A, "1")))
    with pytest.raises(SchemaError, match="column 'n_cells' is missing"):
        method.predict(world["controls"], conditions(("L1", A, "1")).drop(columns="n_cells"))
    with pytest.raises(SchemaError, match="lack 1 training genes"):
        method.predict(world["controls"][:, :5], conditions(("L1", A, "1")))


# ---------------------------------------------------------------- structure-aware baselines
@pytest.fixture(scope="module")
def linear_world():
    """Deltas linear in the base_reg features: dose_scale(d) * (FP . u) * g + line offset.

    u is a combination of the training drugs' fingerprints, so the ground truth lies in the span
    the training conditions identify and a held-out drug's delta is recoverable from structure.
    """
    rng = np.random.default_rng(11)
    held_out = ["Panobinostat", "Tucidinostat", "Baricitinib"]
    trained = [d for d in SMILES if d not in held_out]
    fps = morgan_fingerprints(SMILES).astype(float)
    u = rng.normal(size=len(trained)) @ fps.loc[trained].to_numpy()
    u /= np.abs(fps.loc[trained].to_numpy() @ u).max()
    g = rng.normal(0, 0.6, size=len(GENES))
    offset = {"L1": rng.normal(0, 0.1, len(GENES)), "L2": rng.normal(0, 0.1, len(GENES))}
    doses = ["0.1", "1", "10"]

    def truth(line, drug, dose):
        return dose_scale(float(dose), 10.0) * (fps.loc[drug].to_numpy() @ u) * g + offset[line]

    controls = make_controls(rng, {"L1": 6, "L2": 6}, len(GENES), zero_gene=False)
    cells = make_train(
        controls,
        {(line, d, x): truth(line, d, x) for line in offset for d in trained for x in doses},
    )
    test = [(line, d, x) for line in offset for d in held_out for x in doses]
    return (
        PerturbData(cells, drug_table(SMILES)),
        controls,
        test,
        np.array([truth(*k) for k in test]),
    )


def test_base_reg_recovers_linear_truth_on_held_out_drugs(linear_world):
    data, controls, test, expected = linear_world
    reg = get_method("base_reg").from_preset("tiny", {"alpha": 0.01}, seed=0)
    reg.fit(data)
    mean = get_method("train_mean").from_preset("tiny")
    mean.fit(data)
    keys = ["|".join(k) for k in test]  # predictions come back sorted by condition key
    err_reg = np.mean(
        (reg.predict_deltas(controls, conditions(*test)).loc[keys].to_numpy() - expected) ** 2
    )
    err_mean = np.mean(
        (mean.predict_deltas(controls, conditions(*test)).loc[keys].to_numpy() - expected) ** 2
    )
    assert err_reg < 0.1 * err_mean


@pytest.fixture(scope="module")
def shifted_world():
    """Every drug raises g0 by 1 and lowers g1 by 0.5 in the trained lines L1, L2; L3 is unseen."""
    rng = np.random.default_rng(5)
    controls = make_controls(rng, {"L1": 8, "L2": 8, "L3": 8}, len(GENES), zero_gene=False)
    controls.X[controls.obs["cell_line"].to_numpy() == "L3"] += 0.7  # L3 controls differ from L1/L2
    shift = np.zeros(len(GENES))
    shift[0], shift[1] = 1.0, -0.5
    cells = make_train(
        controls[controls.obs["cell_line"] != "L3"],
        {
            (line, d, "1"): shift + rng.normal(0, 0.05, len(GENES))
            for line in ("L1", "L2")
            for d in (A, B, C)
        },
    )
    return PerturbData(cells, drug_table([A, B, C, D])), controls


@pytest.mark.parametrize("name", ["base_reg", "base_mlp"])
def test_unseen_line_gets_the_control_to_perturbed_shift(shifted_world, name):
    # scPerturBench's cell-context baseReg/baseMLP learn perturbed -> control and apply it to
    # control cells, which flips this shift; trained control -> perturbed, g0 must rise and g1 fall.
    data, controls = shifted_world
    method = get_method(name).from_preset("tiny", seed=0)
    method.fit(data)
    pred = method.predict(controls, conditions(("L3", A, "1"), n_cells=200), seed=0)
    shift = np.asarray(pred.X).mean(axis=0) - np.asarray(
        controls[controls.obs["cell_line"] == "L3"].X
    ).mean(axis=0)
    assert 0.7 < shift[0] < 1.3 and -0.8 < shift[1] < -0.2


def test_base_mlp_is_deterministic_and_counts_its_parameters(world):
    data = world["data"]
    first, second = (
        BaseMLP.from_preset("tiny", {"hidden": [16, 8], "epochs": 5}, seed=4),
        BaseMLP.from_preset("tiny", {"hidden": [16, 8], "epochs": 5}, seed=4),
    )
    first.fit(data)
    second.fit(data)
    conds = conditions(("L3", D, "1"), ("L1", A, "1"))
    np.testing.assert_array_equal(
        first.predict_deltas(world["controls"], conds),
        second.predict_deltas(world["controls"], conds),
    )
    n_features = 2 * 1024 + 1  # two training lines -> one context PC
    assert first.parameter_counts() == {
        "mlp.input": n_features * 16 + 16,
        "mlp.hidden": 16 * 8 + 8,
        "mlp.output": 8 * len(GENES) + len(GENES),
    }
    assert sum(first.parameter_counts().values()) == sum(p.numel() for p in first.net.parameters())


def test_describe_without_data_uses_preset_sizes():
    assert BaseMLP.describe("tiny") == {
        "mlp.input": (2048 + 4) * 64 + 64,
        "mlp.output": 64 * 500 + 500,
    }
    assert get_method("base_reg").describe("paper") == {
        "ridge.coef": (2048 + 10) * 5000,
        "ridge.intercept": 5000,
    }
    assert get_method("train_mean").describe("paper") == {}


def test_controls_in_other_gene_order_or_sparse_give_the_same_cells(world):
    method = world["fitted"]["perturb_mean"]
    controls = world["controls"]
    shuffled = controls[:, GENES[::-1]].copy()
    shuffled.X = sp.csr_matrix(shuffled.X)
    conds = conditions(("L1", A, "1"), ("L3", B, "0.1"))
    a, b = method.predict(controls, conds, seed=1), method.predict(shuffled, conds, seed=1)
    assert list(b.var_names) == GENES
    np.testing.assert_allclose(a.X, b.X, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(40, 12), (6, 30)])  # more rows than features, and fewer
def test_ridge_fit_equals_scikit_learn_ridge(shape):
    from sklearn.linear_model import Ridge

    from scpert.methods.baselines.deltas import ridge_fit

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=shape), rng.normal(size=(shape[0], 5)) + 3.0
    reference = Ridge(alpha=0.7).fit(X, Y)
    coef, intercept = ridge_fit(X, Y, 0.7)
    np.testing.assert_allclose(coef, reference.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(intercept, reference.intercept_, rtol=1e-9, atol=1e-12)


def test_pca_fit_equals_scikit_learn_full_pca_signs_included():
    from sklearn.decomposition import PCA

    from scpert.methods.baselines.deltas import pca_fit

    rng = np.random.default_rng(1)
    X = rng.normal(size=(7, 20)) * np.linspace(3.0, 0.1, 20)
    reference = PCA(n_components=4, svd_solver="full").fit(X)
    mean, components, variance = pca_fit(X, 4)
    np.testing.assert_allclose(mean, reference.mean_, atol=1e-12)
    np.testing.assert_allclose(components, reference.components_, atol=1e-10)
    np.testing.assert_allclose(variance, reference.explained_variance_, rtol=1e-10)
