"""Diversity scaling at a fixed sample budget (StateXDiff arXiv:2605.16104 App. B.6, Fig. 9).

The test (and validation) conditions of a split stay fixed; only the training subset changes. For
a diversity level ``K`` of an identity axis (``drug`` or ``cell_line``), the training subset holds
the perturbed training cells of ``K`` identities, ``N_fix`` cells in all, drawn by
identity-balanced subsampling: each identity contributes ``floor(N_fix / K)`` cells (all of its
cells when it has fewer), and the remainder is filled by random completion from the selected
identities' other cells until ``N_fix`` is reached (App. B.6). Control cells are inputs, not
training samples: all are kept.

Departures, both forced by small data: the ``K`` identities of every level are the first ``K`` of
one seeded random order of the training identities (nested sets, so a curve adds identities
instead of redrawing them); and ``N_fix`` is ``budget_fraction`` (paper: 0.7) of the cells of the
smallest level's identities rather than of the whole training set, since with few identities the
whole-set budget cannot be met (StateXDiff draws from Tahoe-100M).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

AXES = ("drug", "cell_line")


def identity_order(identities: Sequence[str], seed: int) -> list[str]:
    """The training identities in one seeded random order (level K takes the first K)."""
    unique = sorted(set(map(str, identities)))
    rng = np.random.default_rng(seed)
    return [unique[i] for i in rng.permutation(len(unique))]


def balanced_subsample(
    identity: Sequence[str], chosen: Sequence[str], n_fix: int, rng: np.random.Generator
) -> np.ndarray:
    """Sorted row indices of ``n_fix`` rows whose ``identity`` is in ``chosen``: ``floor(n_fix /
    K)`` per identity (all rows of an identity with fewer), then random completion from the
    chosen identities' remaining rows. Raises ``ValueError`` when they hold fewer than ``n_fix``."""
    identity = np.asarray(identity, dtype=str)
    chosen = list(dict.fromkeys(map(str, chosen)))
    if not chosen:
        raise ValueError("balanced_subsample: no identity chosen")
    pools = {c: np.flatnonzero(identity == c) for c in chosen}
    available = sum(p.size for p in pools.values())
    if available < n_fix:
        raise ValueError(
            f"balanced_subsample: the {len(chosen)} chosen identities have {available} rows, "
            f"fewer than the budget {n_fix}"
        )
    share = n_fix // len(chosen)
    picked, rest = [], []
    for c in chosen:
        pool = rng.permutation(pools[c])
        picked.append(pool[:share])
        rest.append(pool[share:])
    picked = np.concatenate(picked)
    rest = np.concatenate(rest)
    fill = rng.choice(rest, n_fix - picked.size, replace=False)
    return np.sort(np.concatenate([picked, fill]))


def budget(
    identity: Sequence[str], order: Sequence[str], levels: Sequence[int], fraction: float
) -> int:
    """``N_fix = floor(fraction * rows of the first min(levels) identities of order)``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"budget_fraction must be in (0, 1], got {fraction}")
    identity = np.asarray(identity, dtype=str)
    smallest = list(order)[: min(levels)]
    return int(np.floor(fraction * np.isin(identity, smallest).sum()))


def training_subset(
    obs: pd.DataFrame,
    split: pd.DataFrame,
    axis: str,
    level: int,
    levels: Sequence[int],
    fraction: float,
    control: str,
    seed: int,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Rows of ``obs`` to keep for diversity ``level`` on ``axis``, and the split table of the kept
    cells: training conditions without kept cells removed, the others' ``n_cells`` recounted.

    Kept: every control cell, every cell of a non-training condition (test, val), and the
    balanced subset of the perturbed training cells (:func:`balanced_subsample`).
    """
    if axis not in AXES:
        raise ValueError(f"diversity axis must be one of {', '.join(AXES)}, got {axis!r}")
    train_conditions = set(split.loc[split["split"] == "train", "condition"].astype(str))
    condition = obs["condition"].astype(str).to_numpy()
    is_control = (obs["drug"].astype(str) == control).to_numpy()
    is_train = np.isin(condition, list(train_conditions)) & ~is_control
    identity = obs[axis].astype(str).to_numpy()
    order = identity_order(identity[is_train], seed)
    if max(levels) > len(order) or min(levels) < 1:
        raise ValueError(
            f"diversity levels of {axis} must be in 1..{len(order)} (training identities), "
            f"got {sorted(levels)}"
        )
    if level not in levels:
        raise ValueError(f"level {level} is not one of the levels {sorted(levels)}")
    n_fix = budget(identity[is_train], order, levels, fraction)
    rng = np.random.default_rng([seed, AXES.index(axis), level])
    train_rows = np.flatnonzero(is_train)
    chosen = balanced_subsample(identity[train_rows], order[:level], n_fix, rng)
    keep = ~is_train
    keep[train_rows[chosen]] = True
    counts = pd.Series(condition[keep]).value_counts()
    kept_cells = split["condition"].astype(str).map(counts).fillna(0).astype(int)
    is_train_row = (split["split"] == "train").to_numpy()
    table = split.copy()
    table.loc[is_train_row, "n_cells"] = kept_cells[is_train_row]
    # a split lists exactly the conditions of its data: training conditions left without cells go
    table = table[kept_cells.to_numpy() > 0].reset_index(drop=True)
    return np.flatnonzero(keep), table
