"""Split leakage, scenario definitions and validation conditions (docs/architecture.md "Splits")."""

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


MOA = {"dA": "m1", "dB": "m1", "dC": "m2", "dD": "m2", "dE": "m3", "dF": "m3"}


def _val_split(conditions, kind, **kwargs):
    """The split with validation, the same split without, and its val rows."""
    with_val = make_split(conditions, kind, seed=2, val_fraction=0.34, drug_moa=MOA, **kwargs)
    without = make_split(conditions, kind, seed=2, drug_moa=MOA, **kwargs)
    return with_val, without, with_val[with_val["split"] == "val"]


@pytest.mark.parametrize(
    "kind", ["cell_ood", "drug_ood", "pair_ood", "combo_seen0", "combo_seen1", "combo_seen2"]
)
def test_val_only_moves_training_conditions_and_is_seeded(conditions, kind):
    a, no_val, val = _val_split(conditions, kind)
    assert len(val) and (val["drug"] != "control").all()
    # validation draws on training conditions only: every other label is unchanged
    moved = a["split"] != no_val["split"]
    assert set(no_val.loc[moved, "split"]) == {"train"} and set(a.loc[moved, "split"]) == {"val"}
    assert a.equals(make_split(conditions, kind, seed=2, val_fraction=0.34, drug_moa=MOA))


def test_val_of_cell_ood_holds_out_whole_training_lines(conditions):
    a, _, val = _val_split(conditions, "cell_ood", test_cell_lines=["L2"])
    # 0.34 of the 2 training lines -> 1 line, all its perturbed conditions; L2 stays test
    assert set(val["cell_line"]) in ({"L1"}, {"L3"})
    (line,) = set(val["cell_line"])
    pert = a[(a["drug"] != "control") & (a["cell_line"] == line)]
    assert set(pert["split"]) == {"val"} and len(val) == len(pert)
    assert ((a["split"] == "train") & (a["drug"] != "control")).any()


def test_val_of_drug_ood_holds_out_training_drugs_by_moa(conditions):
    a, _, val = _val_split(conditions, "drug_ood", test_drugs=["dA"])
    singles = val[~val["drug"].str.contains(r"\+")]
    val_drugs = set(singles["drug"])
    # m1 has one training drug left (dB): it stays; m2 and m3 lose one of their two drugs each
    assert len(val_drugs) == 2 and {MOA[d] for d in val_drugs} == {"m2", "m3"}
    # every dose in every line, and the training combinations containing a validation drug
    assert len(singles) == 2 * 2 * 3
    for drug in val["drug"]:
        assert set(schema.components(drug)) & val_drugs
    train = a[a["split"] == "train"]
    assert not {c for d in train["drug"] for c in schema.components(d)} & val_drugs


def test_val_of_pair_ood_keeps_drug_and_line_trained(conditions):
    a, _, val = _val_split(conditions, "pair_ood")
    train = a[(a["split"] == "train") & (a["drug"] != "control") & ~a["drug"].str.contains(r"\+")]
    for line, drug in set(map(tuple, val[["cell_line", "drug"]].values)):
        assert (train["drug"] == drug).any() and (train["cell_line"] == line).any()
        pair = a[(a["cell_line"] == line) & (a["drug"] == drug)]
        assert set(pair["split"]) == {"val"}  # all doses of the pair


def test_val_of_combo_splits_holds_out_training_combinations(conditions):
    a, _, val = _val_split(conditions, "combo_seen2")
    assert val["drug"].str.contains(r"\+").all()
    seen = set(a.loc[(a["split"] == "train") & ~a["drug"].str.contains(r"\+"), "drug"])
    assert all(set(schema.components(d)) <= seen for d in val["drug"])


def test_val_needs_units_to_spare(conditions):
    with pytest.raises(SplitError, match="val_fraction.*at least 2 training cell lines"):
        make_split(conditions, "cell_ood", test_cell_lines=["L1", "L2"], val_fraction=0.2)
    # seed 5 leaves combo_seen0 no training combination to validate on
    with pytest.raises(SplitError, match="combo_seen0 needs at least 2 training combinations"):
        make_split(conditions, "combo_seen0", seed=5, val_fraction=0.2)


def test_unknown_type(conditions):
    with pytest.raises(SplitError, match="unknown split type"):
        make_split(conditions, "nope")
