"""Out-of-distribution splits (docs/architecture.md "Splits").

Each split assigns every perturbed condition to ``train``, ``val``, ``test`` or ``exclude`` and
writes one row per condition (``condition, cell_line, drug, dose, split``). Control conditions
are always ``train``: every scenario gives the model the target context's control cells, as the
scPerturBench cell-context scenario does. ``exclude`` marks conditions that are neither tested
nor trainable without leaking a held-out entity (e.g. a combination containing a held-out drug
in ``drug_ood``).

Types
- ``cell_ood``: held-out cell lines; all their perturbed conditions are test (StateXDiff
  "cell-context generalization").
- ``drug_ood``: held-out single drugs, across every dose and context ("UD"); stratified by MoA
  when the drug table has one, so each MoA keeps training drugs. Combinations containing a
  held-out drug are excluded.
- ``pair_ood``: held-out (cell line, drug) pairs, all doses; each held-out drug is still seen in
  another line and each line with other drugs (scPPDM "UC").
- ``combo_seen0/1/2``: held-out combinations of which 0, 1 or 2 components were seen singly in
  training (StateXDiff, arXiv:2605.16104 §5.3). For seen0/seen1 a set H of drugs is held out: its
  singles and every non-test combination containing an H drug are excluded.

Validation (``val_fraction`` > 0)
    After the test conditions are chosen, a share of the remaining training conditions moves to
    ``val``, for methods that select checkpoints or stop early
    (:attr:`scpert.methods.base.PerturbData.val`). Validation never draws on test conditions, is
    drawn from its own generator seeded by the split's ``seed`` (so adding it leaves the test
    assignment unchanged), and mirrors the split's held-out unit, so that validation asks the
    question the test asks:

    - ``cell_ood``: ``val_fraction`` of the training cell lines (at least one, at least one left
      for training), all their perturbed conditions;
    - ``drug_ood``: ``val_fraction`` of the training single drugs, stratified by MoA like the
      test drugs, at every dose and context, with the training combinations that contain them;
    - ``pair_ood``: ``val_fraction`` of the training (cell line, drug) pairs, all doses, each
      drug and each line still trained on in another pair;
    - ``combo_seen0/1/2``: ``val_fraction`` of the training combinations (their components stay
      in training singly).

    Validation cells are not training cells: HVG selection and every split-level prior see the
    ``train`` conditions only (:func:`scpert.data.preprocess.train_cells_mask`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scpert.data import schema
from scpert.errors import InputError

SPLIT_TYPES = ("cell_ood", "drug_ood", "pair_ood", "combo_seen0", "combo_seen1", "combo_seen2")
SPLIT_LABELS = ("train", "val", "test", "exclude")


class SplitError(InputError):
    """A split cannot be made from this dataset with these settings."""


def condition_table(obs: pd.DataFrame, control: str) -> pd.DataFrame:
    """One row per condition with cell_line, drug, dose, n_cells, is_control, is_combo."""
    t = (
        obs.groupby(schema.CONDITION, observed=True)
        .agg(
            cell_line=(schema.CELL_LINE, "first"),
            drug=(schema.DRUG, "first"),
            dose=(schema.DOSE, "first"),
            n_cells=(schema.DRUG, "size"),
        )
        .reset_index()
    )
    for c in ("cell_line", "drug", "dose", schema.CONDITION):
        t[c] = t[c].astype(str)
    t["is_control"] = t["drug"] == control
    t["is_combo"] = t["drug"].map(schema.is_combo) & ~t["is_control"]
    return t.sort_values(schema.CONDITION).reset_index(drop=True)


def make_split(
    conditions: pd.DataFrame,
    split_type: str,
    *,
    seed: int = 0,
    test_fraction: float = 0.25,
    val_fraction: float = 0.0,
    test_cell_lines: list[str] | None = None,
    test_drugs: list[str] | None = None,
    drug_moa: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Assign conditions (from :func:`condition_table`) to train/val/test/exclude."""
    if split_type not in SPLIT_TYPES:
        raise SplitError(f"unknown split type '{split_type}' (known: {', '.join(SPLIT_TYPES)})")
    rng = np.random.default_rng(seed)
    t = conditions.copy()
    t["split"] = "train"
    pert = ~t["is_control"]
    single = pert & ~t["is_combo"]
    combo = pert & t["is_combo"]
    comps = t["drug"].map(schema.components)

    if split_type == "cell_ood":
        lines = sorted(t.loc[pert, "cell_line"].unique())
        held = test_cell_lines or _choose(rng, lines, test_fraction)
        _check_known(held, lines, "test_cell_lines")
        if len(held) >= len(lines):
            raise SplitError("cell_ood: every cell line would be held out")
        t.loc[pert & t["cell_line"].isin(held), "split"] = "test"
    elif split_type == "drug_ood":
        drugs = sorted(t.loc[single, "drug"].unique())
        held = test_drugs or _choose_stratified(rng, drugs, test_fraction, drug_moa)
        _check_known(held, drugs, "test_drugs")
        held_set = set(held)
        t.loc[single & t["drug"].isin(held_set), "split"] = "test"
        has_held = comps.map(lambda cs: bool(held_set.intersection(cs)))
        t.loc[combo & has_held, "split"] = "exclude"
    elif split_type == "pair_ood":
        _pair_ood(t, single, rng, test_fraction)
    else:
        _combo_split(t, single, combo, comps, int(split_type[-1]), rng, test_fraction, test_drugs)

    if not (t["split"] == "test").any():
        raise SplitError(f"{split_type}: no test conditions (dataset too small for these settings)")
    if val_fraction > 0:
        _validation(
            t, split_type, np.random.default_rng([seed, VAL_STREAM]), val_fraction, drug_moa
        )
    return t[[schema.CONDITION, "cell_line", "drug", "dose", "n_cells", "split"]]


#: second entry of the validation generator's seed ([split seed, VAL_STREAM])
VAL_STREAM = 1


def _validation(t: pd.DataFrame, split_type: str, rng, fraction: float, drug_moa) -> None:
    """Move ``fraction`` of the training units of ``split_type`` to ``val`` (module docstring)."""
    train = (t["split"] == "train") & ~t["is_control"]
    single = train & ~t["is_combo"]
    combo = train & t["is_combo"]
    if split_type == "cell_ood":
        lines = sorted(t.loc[train, "cell_line"].unique())
        _need_units(lines, 2, "training cell lines", split_type)
        t.loc[train & t["cell_line"].isin(_choose(rng, lines, fraction)), "split"] = "val"
    elif split_type == "drug_ood":
        drugs = sorted(t.loc[single, "drug"].unique())
        _need_units(drugs, 2, "training drugs", split_type)
        held = set(_choose_stratified(rng, drugs, fraction, drug_moa))
        has_held = t["drug"].map(lambda d: bool(held.intersection(schema.components(d))))
        t.loc[train & has_held, "split"] = "val"
    elif split_type == "pair_ood":
        if not _pair_ood(t, single, rng, fraction, label="val"):
            raise SplitError(
                "split setting 'val_fraction': pair_ood has no training (cell line, drug) pair "
                "whose drug and line are both trained on in other pairs"
            )
    else:
        combos = sorted(t.loc[combo, "drug"].unique())
        _need_units(combos, 2, "training combinations", split_type)
        t.loc[combo & t["drug"].isin(_choose(rng, combos, fraction)), "split"] = "val"


def _need_units(units: list[str], n: int, what: str, split_type: str) -> None:
    if len(units) < n:
        raise SplitError(
            f"split setting 'val_fraction': {split_type} needs at least {n} {what} to hold some "
            f"out for validation, the dataset has {len(units)}"
        )


def _choose(rng, items: list[str], fraction: float) -> list[str]:
    n = min(len(items) - 1, max(1, int(round(fraction * len(items)))))
    return sorted(rng.choice(items, size=n, replace=False).tolist())


def _choose_stratified(
    rng, drugs: list[str], fraction: float, moa: dict[str, str] | None
) -> list[str]:
    """Hold out ``fraction`` of the drugs of each MoA (at least one drug stays in training per MoA)."""
    if not moa:
        return _choose(rng, drugs, fraction)
    groups: dict[str, list[str]] = {}
    for d in drugs:
        groups.setdefault(moa.get(d, "unknown"), []).append(d)
    held = []
    for g in sorted(groups):
        members = groups[g]
        if len(members) > 1:
            held += _choose(rng, members, fraction)
    return sorted(held) if held else _choose(rng, drugs, fraction)


def _check_known(held, known, field):
    unknown = sorted(set(held) - set(known))
    if unknown:
        raise SplitError(f"split setting '{field}' names unknown entries: {unknown}")


def _pair_ood(
    t: pd.DataFrame, single: pd.Series, rng, fraction: float, label: str = "test"
) -> list[tuple[str, str]]:
    """Label ``fraction`` of the (cell line, drug) pairs among ``single`` conditions, keeping each
    drug and each line in another pair; returns the labelled pairs."""
    pairs = (
        t.loc[single, ["cell_line", "drug"]].drop_duplicates().sort_values(["cell_line", "drug"])
    )
    order = rng.permutation(len(pairs))
    n_target = max(1, int(round(fraction * len(pairs))))
    seen_drug = pairs.groupby("drug").size().to_dict()
    seen_line = pairs.groupby("cell_line").size().to_dict()
    held = []
    for i in order:
        line, drug = pairs.iloc[i]["cell_line"], pairs.iloc[i]["drug"]
        if seen_drug[drug] > 1 and seen_line[line] > 1:
            held.append((line, drug))
            seen_drug[drug] -= 1
            seen_line[line] -= 1
        if len(held) == n_target:
            break
    key = pd.MultiIndex.from_frame(t[["cell_line", "drug"]])
    t.loc[single & key.isin(held), "split"] = label
    return held


def _combo_split(t, single, combo, comps, n_seen: int, rng, fraction: float, test_drugs) -> None:
    combos = t.loc[combo, "drug"].unique().tolist()
    if not combos:
        raise SplitError(f"combo_seen{n_seen}: the dataset has no combinations")
    combo_set = sorted(set(combos))
    if n_seen == 2:
        held_combos = set(_choose(rng, combo_set, fraction))
        t.loc[combo & t["drug"].isin(held_combos), "split"] = "test"
        return
    if test_drugs:
        held = set(test_drugs)
    else:
        # grow a held-out drug set H, combination by combination, while the number of
        # combinations with exactly 2 - n_seen components in H increases
        def n_qualifying(h: set) -> int:
            return sum(len(h.intersection(schema.components(c))) == 2 - n_seen for c in combo_set)

        held: set = set()
        n_target = max(1, int(round(fraction * len(combo_set))))
        for c in rng.permutation(combo_set):
            parts = schema.components(c)
            trial = held | set(parts) if n_seen == 0 else held | {parts[rng.integers(2)]}
            if n_qualifying(trial) > n_qualifying(held):
                held = trial
            if n_qualifying(held) >= n_target:
                break
    n_in_h = comps.map(lambda cs: len(held.intersection(cs)))
    test = combo & (n_in_h == 2 - n_seen)
    t.loc[test, "split"] = "test"
    t.loc[combo & ~test & (n_in_h > 0), "split"] = "exclude"
    t.loc[single & t["drug"].isin(held), "split"] = "exclude"
