"""scpert.data.pairing: control matching, pseudobulks, cell pairs and sets, realisation."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scpert.data import pairing, schema
from scpert.data.schema import CELL_LINE, CONDITION, DOSE, DRUG, PLATE

from .conftest import make_raw


def _adata(rows, X) -> ad.AnnData:
    obs = pd.DataFrame(rows, columns=[CELL_LINE, DRUG, DOSE, PLATE])
    obs.index = [f"c{i}" for i in range(len(obs))]
    return ad.AnnData(X=np.asarray(X, dtype=np.float32), obs=obs)


@pytest.fixture
def toy() -> ad.AnnData:
    rows = [
        ("L1", "control", "0", "p1"),
        ("L1", "control", "0", "p1"),
        ("L1", "control", "0", "p2"),
        ("L1", "dA", "1", "p1"),
        ("L1", "dA", "1.0", "p2"),
        ("L1", "dA", "1", "p2"),
        ("L1", "dA", "1", "p3"),  # plate p3 has no controls of L1
        ("L2", "control", "0", "p1"),
        ("L2", "dA", "1", "p1"),
    ]
    X = [[1.0], [3.0], [10.0], [5.0], [20.0], [22.0], [7.0], [100.0], [104.0]]
    return _adata(rows, X)


def test_pseudobulk_pairs_are_plate_matched_and_count_the_fallback(toy, caplog):
    with caplog.at_level(logging.WARNING, logger="scpert.data.pairing"):
        pairs = pairing.pseudobulk_pairs(toy, "control")
    keys = pairs.keys[[CELL_LINE, DOSE, PLATE]].apply(tuple, axis=1).tolist()
    assert keys == [("L1", "1", "p1"), ("L1", "1", "p2"), ("L1", "1", "p3"), ("L2", "1", "p1")]
    assert pairs.post[:, 0].tolist() == [5.0, 21.0, 7.0, 104.0]
    assert pairs.n_cells.tolist() == [1, 2, 1, 1]
    # p1 controls of L1: mean 2; p2: 10; p3 has none -> all L1 controls (1 + 3 + 10) / 3
    assert pairs.pre[:, 0].tolist() == pytest.approx([2.0, 10.0, 14 / 3, 100.0])
    assert pairs.fallbacks == 1
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "1 lookup(s) had no same-plate controls" in warning and "(L1, p3)" in warning


def test_condition_deltas_by_hand(toy):
    td = pairing.condition_deltas(toy, "control")
    assert td.conditions.values.tolist() == [["L1", "dA", "1"], ["L2", "dA", "1"]]
    l1_ctrl = (1 + 3 + 10) / 3
    assert td.deltas[:, 0] == pytest.approx([(5 + 20 + 22 + 7) / 4 - l1_ctrl, 104 - 100])
    assert td.control_means.loc["L1"].iloc[0] == pytest.approx(l1_ctrl)


def test_pseudobulks_of_sparse_and_dense_agree():
    adata = make_raw(n_genes=6, cells=4)
    dense = pairing.pseudobulks(adata.X.toarray(), adata.obs, [CELL_LINE, PLATE])
    sparse = pairing.pseudobulks(sp.csr_matrix(adata.X), adata.obs, [CELL_LINE, PLATE])
    np.testing.assert_allclose(dense.means, sparse.means)
    rows = (adata.obs[CELL_LINE] == "L2").to_numpy() & (adata.obs[PLATE] == "p1").to_numpy()
    i = dense.keys.index[(dense.keys[CELL_LINE] == "L2") & (dense.keys[PLATE] == "p1")][0]
    np.testing.assert_allclose(dense.means[i], adata.X.toarray()[rows].mean(0))
    with pytest.raises(schema.SchemaError, match="obs\\['batch'\\] is missing"):
        pairing.pseudobulks(adata.X, adata.obs, ["batch"])


def _random_obs(seed=0, n=400):
    rng = np.random.default_rng(seed)
    lines = rng.choice(["L1", "L2", "L3"], n)
    plates = rng.choice(["p1", "p2", "p3"], n)
    drug = rng.choice(["control", "dA", "dB"], n, p=[0.4, 0.3, 0.3])
    obs = pd.DataFrame({CELL_LINE: lines, DRUG: drug, DOSE: "1", PLATE: plates})
    # L3 has no controls on p3: those cells must fall back (counted, logged)
    no_ctrl = (obs[CELL_LINE] == "L3") & (obs[PLATE] == "p3") & (obs[DRUG] == "control")
    obs.loc[no_ctrl, DRUG] = "dA"
    return obs


def test_random_pairing_never_crosses_contexts_or_plates_unless_logged(caplog):
    obs = _random_obs()
    with caplog.at_level(logging.WARNING, logger="scpert.data.pairing"):
        partner = pairing.random_control_pairs(obs, "control", np.random.default_rng(1))
    perturbed = (obs[DRUG] != "control").to_numpy()
    assert (obs[DRUG].to_numpy()[partner[perturbed]] == "control").all()
    same_line = obs[CELL_LINE].to_numpy() == obs[CELL_LINE].to_numpy()[partner]
    same_plate = obs[PLATE].to_numpy() == obs[PLATE].to_numpy()[partner]
    assert same_line.all()
    crossing = perturbed & ~same_plate
    fallback = ((obs[CELL_LINE] == "L3") & (obs[PLATE] == "p3")).to_numpy()
    assert crossing.any() and (crossing == (perturbed & fallback)).all()
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "random control pairing: 1 lookup(s)" in warning and "(L3, p3)" in warning
    controls = ~perturbed
    assert (partner[controls] == np.flatnonzero(controls)).all()


def test_cell_sets_group_cells_and_flag_padding():
    obs = _random_obs(2)
    sets = pairing.CellSets(obs, "control", set_size=16)
    assert sets.fallbacks == 2  # (L3, dA, p3) and (L3, dB, p3) use L3's controls
    batch = sets.sample(50, np.random.default_rng(3))
    assert batch.perturbed.shape == batch.controls.shape == batch.padded.shape == (50, 16)
    keys = obs[[CELL_LINE, DRUG, PLATE]].astype(str).agg("|".join, axis=1).to_numpy()
    for cells, ctrls, group in zip(batch.perturbed, batch.controls, batch.group):
        assert len(set(keys[cells])) == 1  # one (line, drug, dose, plate) group
        line, _, plate = keys[cells[0]].split("|")
        assert set(obs[CELL_LINE].to_numpy()[ctrls]) == {line}
        assert (obs[DRUG].to_numpy()[ctrls] == "control").all()
        if (line, plate) != ("L3", "p3"):
            assert set(obs[PLATE].to_numpy()[ctrls]) == {plate}
        size = len(sets.members[group])
        flagged = batch.padded[np.flatnonzero(batch.group == group)[0]]
        assert flagged.sum() == max(16 - size, 0)
        assert len(set(cells[~flagged])) == min(16, size)  # real slots are distinct cells
    chunks = sets.chunks(np.random.default_rng(4))
    real = chunks.perturbed[~chunks.padded]
    assert sorted(real.tolist()) == sorted(np.flatnonzero((obs[DRUG] != "control").to_numpy()))


# --------------------------------------------------------------------------- realisation
@pytest.fixture
def controls() -> ad.AnnData:
    adata = make_raw(n_genes=8, cells=6)
    return adata[(adata.obs[DRUG] == "control").to_numpy()].copy()


def _conditions(**plate):
    table = pd.DataFrame(
        {
            CONDITION: ["L1|dA|1", "L2|dB|0.1"],
            CELL_LINE: ["L1", "L2"],
            DRUG: ["dA", "dB"],
            DOSE: ["1", "0.1"],
            "n_cells": [9, 30],  # L2 has 12 controls: drawn with replacement
        }
    )
    return table.assign(**plate)


def test_every_predicted_cell_is_a_clipped_control_plus_shift(controls):
    genes = list(controls.var_names)
    cells = pairing.ControlCells(controls, genes)
    table = pairing.prediction_table(_conditions())
    shifts = np.linspace(-3, 3, 2 * len(genes)).reshape(2, -1)
    pred = pairing.realise_cells(cells, table, shifts, seed=5, uns={"method": "x"})
    assert pred.n_obs == 39 and pred.uns["method"] == "x" and list(pred.var_names) == genes
    assert pred.obs.index[0] == "L1|dA|1#0" and pred.obs.index[-1] == "L2|dB|0.1#29"
    X = controls.X.toarray()
    lines = controls.obs[CELL_LINE].to_numpy()
    plates = controls.obs[PLATE].to_numpy()
    for i in range(pred.n_obs):
        row = 0 if pred.obs[CONDITION].iloc[i] == "L1|dA|1" else 1
        line = table[CELL_LINE].iloc[row]
        candidates = np.maximum(X[lines == line] + shifts[row], 0)
        match = np.abs(candidates - pred.X[i]).max(axis=1)
        assert match.min() < 1e-6  # max(control cell of its context + shift, 0)
        j = np.flatnonzero(lines == line)[match.argmin()]
        assert pred.obs[PLATE].iloc[i] == plates[j]
    assert (pred.X >= 0).all() and (pred.X == 0).any()
    # a condition's cells do not depend on the other conditions
    alone = pairing.realise_cells(cells, table.iloc[[1]].reset_index(drop=True), shifts[1:], 5)
    np.testing.assert_array_equal(alone.X, pred.X[9:])


def test_a_condition_plate_draws_from_that_plate_or_falls_back(controls, caplog):
    genes = list(controls.var_names)
    cells = pairing.ControlCells(controls, genes)
    table = pairing.prediction_table(_conditions(plate=["p1", "p9"]))
    with caplog.at_level(logging.WARNING, logger="scpert.data.pairing"):
        draw = cells.draw(table, seed=0)
    plates = controls.obs[PLATE].to_numpy()[draw.cell]
    lines = controls.obs[CELL_LINE].to_numpy()[draw.cell]
    assert set(plates[draw.row == 0]) == {"p1"} and set(lines[draw.row == 0]) == {"L1"}
    assert set(lines[draw.row == 1]) == {"L2"} and set(plates[draw.row == 1]) == {"p0", "p1"}
    assert any("(L2, p9)" in r.getMessage() for r in caplog.records)
    assert draw.units.values.tolist() == [[0, "p1"], [1, "p0"], [1, "p1"]]
    assert (draw.units.iloc[draw.unit]["row"].to_numpy() == draw.row).all()
    pred = cells.prediction(table, draw, cells.realise(draw, 0.0))
    assert pred.obs[PLATE].tolist() == ["p1"] * 9 + ["p9"] * 30  # labelled with the row's plate


def test_bad_conditions_and_controls_are_named(controls):
    with pytest.raises(schema.SchemaError, match="column 'n_cells' is missing"):
        pairing.prediction_table(_conditions().drop(columns="n_cells"))
    with pytest.raises(schema.SchemaError, match="var_names lack 1 training genes"):
        pairing.ControlCells(controls, [*controls.var_names, "GX"])
    cells = pairing.ControlCells(controls, list(controls.var_names))
    table = pairing.prediction_table(_conditions().assign(**{CELL_LINE: ["L1", "L9"]}))
    with pytest.raises(schema.SchemaError, match="no control cells of cell line 'L9'"):
        cells.draw(table, 0)
