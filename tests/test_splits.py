"""Split leakage and scenario definitions (DESIGN §7)."""

import pytest

from scpert.data import schema
from scpert.data.splits import SplitError, condition_table, make_split

from .conftest import make_raw


@pytest.fixture(scope="module")
def conditions():
    return condition_table(
        make_raw(cells=2).obs.assign(condition=lambda o: schema.add_condition(o)), "control"
    )


def _train_drugs(t):
    train = t[t["split"] == "train"]
    return {c for d in train["drug"] for c in schema.components(d)}


def test_controls_always_train(conditions):
    for kind in ("cell_ood", "drug_ood", "pair_ood", "combo_seen0", "combo_seen1", "combo_seen2"):
        t = make_split(conditions, kind, seed=1)
        assert set(t.loc[t["drug"] == "control", "split"]) == {"train"}, kind
        assert (t["split"] == "test").any(), kind


def test_drug_ood_no_test_drug_in_train(conditions):
    moa = {"dA": "m1", "dB": "m1", "dC": "m2", "dD": "m2", "dE": "m3", "dF": "m3"}
    t = make_split(conditions, "drug_ood", seed=3, test_fraction=0.5, drug_moa=moa)
    test_drugs = set(t.loc[t["split"] == "test", "drug"])
    assert test_drugs and not test_drugs & _train_drugs(t)
    # stratified: one of the two drugs of every MoA is held out, the other trains
    assert len(test_drugs) == 3 and {moa[d] for d in test_drugs} == {"m1", "m2", "m3"}
    # held-out drugs are tested at every dose in every line
    assert (t["split"] == "test").sum() == 3 * 2 * 3
    excluded = t[t["split"] == "exclude"]
    assert all(set(schema.components(d)) & test_drugs for d in excluded["drug"])


def test_cell_ood_holds_out_whole_lines(conditions):
    t = make_split(conditions, "cell_ood", test_cell_lines=["L2"])
    pert = t[t["drug"] != "control"]
    assert set(pert.loc[pert["cell_line"] == "L2", "split"]) == {"test"}
    assert set(pert.loc[pert["cell_line"] != "L2", "split"]) == {"train"}
    with pytest.raises(SplitError, match="test_cell_lines"):
        make_split(conditions, "cell_ood", test_cell_lines=["nope"])


def test_pair_ood_pairs_unseen_but_parts_seen(conditions):
    t = make_split(conditions, "pair_ood", seed=2, test_fraction=0.3)
    single = t[(t["drug"] != "control") & ~t["drug"].str.contains(r"\+")]
    train_pairs = set(
        map(tuple, single.loc[single["split"] == "train", ["cell_line", "drug"]].values)
    )
    test_pairs = set(
        map(tuple, single.loc[single["split"] == "test", ["cell_line", "drug"]].values)
    )
    assert test_pairs and not test_pairs & train_pairs
    for line, drug in test_pairs:
        assert any(d == drug for _, d in train_pairs) and any(ln == line for ln, _ in train_pairs)
    # all doses of a held-out pair are test
    for line, drug in test_pairs:
        assert set(
            single.loc[(single["cell_line"] == line) & (single["drug"] == drug), "split"]
        ) == {"test"}


@pytest.mark.parametrize("n_seen", [0, 1, 2])
def test_combo_seen_k_components_seen(conditions, n_seen):
    t = make_split(conditions, f"combo_seen{n_seen}", seed=0, test_fraction=0.34)
    seen_singles = set(t.loc[(t["split"] == "train") & ~t["drug"].str.contains(r"\+"), "drug"])
    test = t[t["split"] == "test"]
    assert len(test) and all(test["drug"].str.contains(r"\+"))
    for combo in test["drug"].unique():
        assert sum(c in seen_singles for c in schema.components(combo)) == n_seen, combo
    # no training combination shares an unseen component with a test combination
    train_combos = t.loc[(t["split"] == "train") & t["drug"].str.contains(r"\+"), "drug"]
    unseen = {c for d in test["drug"] for c in schema.components(d)} - seen_singles
    assert not any(set(schema.components(d)) & unseen for d in train_combos)


def test_deterministic_and_val(conditions):
    a = make_split(conditions, "drug_ood", seed=5, val_fraction=0.2)
    b = make_split(conditions, "drug_ood", seed=5, val_fraction=0.2)
    assert a.equals(b)
    no_val = make_split(conditions, "drug_ood", seed=5)
    n_train_pert = ((no_val["split"] == "train") & (no_val["drug"] != "control")).sum()
    assert (a["split"] == "val").sum() == round(0.2 * n_train_pert)
    assert set(a.loc[a["split"] == "val", "drug"]).isdisjoint({"control"})
    # validation only draws from training conditions: test assignments are unchanged
    assert a["split"].eq("test").equals(no_val["split"].eq("test"))


def test_unknown_type(conditions):
    with pytest.raises(SplitError, match="unknown split type"):
        make_split(conditions, "nope")
