"""What every method does with cells, written once: control matching, pseudobulks, cell-set
batches, and predicted cells realised as control cells plus a shift.

Control matching
    A perturbed group is matched to the control cells of its own context (``cell_line``) on its
    own plate (``plate``, the batch): plate-matched DMSO pairs (scPPDM §4.1.1, App. E), PerturbDiff's
    "random control of the same (cell type, batch)". When that plate has no controls of the
    context, the context's controls on all plates stand in; every such fallback is counted
    (:attr:`ControlIndex.fallbacks`) and logged as a warning naming the first (context, plate)
    pairs. A context without any control cell is an input error naming the field.
Pseudobulks
    Mean log-normalised expression per key (e.g. ``(cell_line, drug, dose, plate)``), doses in
    their canonical text (:func:`scpert.data.schema.format_dose`), computed without densifying a
    sparse ``X`` (:func:`group_means`). :func:`pseudobulk_pairs` gives scPPDM's training pairs
    ``(x_post, x_pre)``; :func:`condition_deltas` the baselines' per-condition shift against the
    context's control mean.
Cell pairing and cell sets
    :func:`random_control_pairs`: one random control cell of the same (context, plate) per
    perturbed cell. :class:`CellSets`: sets of ``m`` perturbed cells of one (context, drug, dose,
    plate) group with ``m`` matched control cells; a group shorter than ``m`` (or its last chunk)
    is padded by resampling its own cells and the padded slots are flagged (PerturbDiff's sets;
    scDFM's per-perturbation batches).
Realisation
    A prediction for a condition is ``n_cells`` control cells of its context plus a shift,
    clipped at 0 (log-normalised expression is non-negative): ``max(x_ctrl + shift, 0)``.
    :meth:`ControlCells.draw` picks the cells (generator seeded by ``(seed, crc32(condition))``,
    plus ``crc32(plate)`` when the condition names one, so a condition's cells never depend on
    which other conditions are predicted; with replacement only when the pool is smaller than
    ``n_cells``); a condition row that names a ``plate`` draws from that plate's controls of
    its context (the fallback above when there are none), a row without one from all plates
    of the context. Predicted cells carry the row's plate in ``obs["plate"]`` (else the plate of
    the control cell they started from). The shift may differ per drawn cell's (row, plate of
    the control cell) unit (:attr:`Draw.units`), e.g. scPPDM's samples per plate-matched control
    pseudobulk.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scpert.data import schema
from scpert.data.schema import CELL_LINE, CONDITION, DOSE, DRUG, PLATE, SchemaError

log = logging.getLogger(__name__)

#: the columns of a table of conditions to predict; ``plate`` is optional
CONDITION_COLUMNS = (CELL_LINE, DRUG, DOSE, "n_cells")
#: the plate of cells whose controls carry no ``plate`` column
NO_PLATE = "predicted"
#: pseudobulk key of scPPDM's training pairs (scppdm.txt §4.1.1)
PAIR_KEYS = (CELL_LINE, DRUG, DOSE, PLATE)


# ----------------------------------------------------------------------------- pseudobulks
def dense(X) -> np.ndarray:
    """``X`` as a dense ndarray (sparse matrices converted)."""
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def group_means(X, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Row means of ``X`` per group code ``0 .. n_groups - 1`` (float64; sparse X stays sparse)."""
    codes = np.asarray(codes, dtype=np.int64)
    n = X.shape[0]
    indicator = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_groups, n))
    sums = dense(indicator @ X).astype(np.float64)
    sizes = np.bincount(codes, minlength=n_groups)[:, None]
    return sums / np.maximum(sizes, 1)


def pseudobulk_keys(obs: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Group code of every row of ``obs`` and the distinct keys (sorted), by ``columns``.

    Values are strings; ``dose`` is canonicalised, so ``1.0`` and ``1`` are one key.
    """
    missing = [c for c in columns if c not in obs.columns]
    if missing:
        raise SchemaError(f"obs['{missing[0]}'] is missing (needed as a pseudobulk key)")
    keys = pd.DataFrame(index=range(len(obs)))
    for column in columns:
        values = obs[column].astype(str).to_numpy()
        if column == DOSE:
            canonical = {v: schema.format_dose(v) for v in pd.unique(values)}
            values = np.array([canonical[v] for v in values], dtype=object)
        keys[column] = values
    cols = list(columns)
    codes = keys.groupby(cols, sort=True).ngroup().to_numpy()
    table = keys.drop_duplicates().sort_values(cols).reset_index(drop=True)
    return codes, table


@dataclass
class Pseudobulks:
    """Mean expression per key: ``keys`` table, ``means`` (n, G) float64, ``sizes`` (n,) cells."""

    keys: pd.DataFrame
    means: np.ndarray
    sizes: np.ndarray


def pseudobulks(X, obs: pd.DataFrame, columns: Sequence[str]) -> Pseudobulks:
    """Pseudobulk means of ``X`` by ``columns`` of ``obs``."""
    codes, table = pseudobulk_keys(obs, columns)
    return Pseudobulks(
        table, group_means(X, codes, len(table)), np.bincount(codes, minlength=len(table))
    )


# ------------------------------------------------------------------------ control matching
class ControlIndex:
    """Control cells grouped by (context, plate); the matching rule of the module docstring.

    obs: the control cells' obs (``cell_line``; ``plate`` optional: without it every cell is on
    one plate ``"predicted"``). ``X`` (optional, same rows) enables pseudobulk means.
    """

    def __init__(self, obs: pd.DataFrame, X=None, source: str = "controls"):
        if CELL_LINE not in obs.columns:
            raise SchemaError(f"{source}: obs['{CELL_LINE}'] is missing")
        self.source = source
        self.X = X
        self.lines = obs[CELL_LINE].astype(str).to_numpy()
        self.plates = (
            obs[PLATE].astype(str).to_numpy()
            if PLATE in obs.columns
            else np.full(len(obs), NO_PLATE, dtype=object)
        )
        pairs = pd.DataFrame({"line": self.lines, "plate": self.plates})
        self._by_pair: dict[tuple[str, str], np.ndarray] = {
            (str(line), str(plate)): rows
            for (line, plate), rows in pairs.groupby(["line", "plate"], sort=True).indices.items()
        }
        self._by_line: dict[str, np.ndarray] = {
            str(line): rows for line, rows in pairs.groupby("line", sort=True).indices.items()
        }
        self.fallbacks = 0
        self._fallback_keys: list[tuple[str, str]] = []
        self._means: dict[tuple[str, str | None], np.ndarray] = {}

    @property
    def contexts(self) -> list[str]:
        return sorted(self._by_line)

    def plates_of(self, line: str, needed_by: str = "") -> list[str]:
        """The plates with controls of ``line``, sorted."""
        self._check_line(line, needed_by)
        return sorted(p for (l_, p) in self._by_pair if l_ == line)

    def _check_line(self, line: str, needed_by: str) -> None:
        if line not in self._by_line:
            where = f", needed for {needed_by}" if needed_by else ""
            raise SchemaError(
                f"{self.source}: no control cells of cell line '{line}' (obs['{CELL_LINE}']){where}"
            )

    def rows(self, line: str, plate: str | None = None, needed_by: str = "") -> np.ndarray:
        """Row indices of the controls of ``(line, plate)``; of ``line`` when ``plate`` is None,
        or (a counted, logged fallback) when that plate has no controls of ``line``."""
        self._check_line(line, needed_by)
        if plate is None:
            return self._by_line[line]
        found = self._by_pair.get((line, str(plate)))
        if found is not None:
            return found
        self.fallbacks += 1
        self._fallback_keys.append((line, str(plate)))
        return self._by_line[line]

    def mean(self, line: str, plate: str | None = None, needed_by: str = "") -> np.ndarray:
        """Pseudobulk mean (float64) of :meth:`rows` (needs ``X``)."""
        if self.X is None:
            raise ValueError("ControlIndex.mean needs the control cells' X")
        rows = self.rows(line, plate, needed_by)
        key = (line, str(plate)) if (line, str(plate)) in self._by_pair else (line, None)
        if key not in self._means:
            self._means[key] = dense(self.X[rows]).astype(np.float64).mean(axis=0)
        return self._means[key]

    def report_fallbacks(self, what: str) -> int:
        """Log (warning) and return the fallbacks counted since the last report."""
        n = self.fallbacks
        if n:
            shown = ", ".join(f"({line}, {plate})" for line, plate in self._fallback_keys[:3])
            log.warning(
                "%s: %d lookup(s) had no same-plate controls and used the cell line's controls "
                "on all plates (first: %s)",
                what,
                n,
                shown,
            )
        self.fallbacks = 0
        self._fallback_keys = []
        return n


@dataclass
class PseudobulkPairs:
    """Plate-matched pseudobulk pairs (scppdm.txt §4.1.1): ``keys`` (cell_line, drug, dose,
    plate), ``post`` and ``pre`` means (n, G), ``n_cells`` per key and ``fallbacks`` (pairs whose
    plate had no controls of the line, matched to the line's controls on all plates)."""

    keys: pd.DataFrame
    post: np.ndarray
    pre: np.ndarray
    n_cells: np.ndarray
    fallbacks: int = 0


def _split_controls(adata: ad.AnnData, control: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    obs = adata.obs
    if DRUG not in obs.columns:
        raise SchemaError(f"{source}: obs['{DRUG}'] is missing")
    is_control = (obs[DRUG].astype(str) == control).to_numpy()
    if not is_control.any():
        raise SchemaError(f"{source}: obs['{DRUG}'] has no control cells labelled '{control}'")
    perturbed = np.flatnonzero(~is_control)
    if perturbed.size == 0:
        raise SchemaError(f"{source}: no perturbed cells (every cell is a control)")
    return np.flatnonzero(is_control), perturbed


def pseudobulk_pairs(
    adata: ad.AnnData, control: str, source: str = "training data"
) -> PseudobulkPairs:
    """``x_post`` = mean of each (cell_line, drug, dose, plate) group, ``x_pre`` = mean of the
    same line's controls on the same plate (counted fallback: the line's controls)."""
    ctrl_rows, perturbed = _split_controls(adata, control, source)
    index = ControlIndex(adata.obs.iloc[ctrl_rows], adata.X[ctrl_rows], source)
    post = pseudobulks(adata.X[perturbed], adata.obs.iloc[perturbed], PAIR_KEYS)
    pre = np.stack(
        [
            index.mean(line, plate, f"{source} group ({line}, {drug}, {plate})")
            for line, drug, plate in zip(post.keys[CELL_LINE], post.keys[DRUG], post.keys[PLATE])
        ]
    )
    fallbacks = index.report_fallbacks(f"{source}: plate-matched pairs")
    return PseudobulkPairs(post.keys, post.means, pre, post.sizes, fallbacks)


@dataclass
class ConditionDeltas:
    """Per condition (cell_line, drug, canonical dose): the pseudobulk shift against the cell
    line's control mean over all plates; ``control_means`` (index cell_line, columns genes)."""

    conditions: pd.DataFrame
    deltas: np.ndarray
    control_means: pd.DataFrame


def condition_deltas(
    adata: ad.AnnData, control: str, source: str = "training data"
) -> ConditionDeltas:
    """``mean(X | line, drug, dose) - mean(X | controls of line)`` for every perturbed condition."""
    ctrl_rows, perturbed = _split_controls(adata, control, source)
    genes = adata.var_names.astype(str)
    ctrl = pseudobulks(adata.X[ctrl_rows], adata.obs.iloc[ctrl_rows], [CELL_LINE])
    control_means = pd.DataFrame(
        ctrl.means, index=pd.Index(ctrl.keys[CELL_LINE].to_numpy(), name=CELL_LINE), columns=genes
    )
    groups = pseudobulks(adata.X[perturbed], adata.obs.iloc[perturbed], [CELL_LINE, DRUG, DOSE])
    missing = sorted(set(groups.keys[CELL_LINE]) - set(control_means.index))
    if missing:
        raise SchemaError(
            f"{source}: cell line '{missing[0]}' has perturbed cells but no control cells "
            f"(obs['{DRUG}'] == '{control}')"
        )
    deltas = groups.means - control_means.loc[groups.keys[CELL_LINE]].to_numpy()
    return ConditionDeltas(groups.keys, deltas, control_means)


# ---------------------------------------------------------------- cell pairs and cell sets
def random_control_pairs(
    obs: pd.DataFrame, control: str, rng: np.random.Generator, source: str = "training data"
) -> np.ndarray:
    """For every row of ``obs``: the row of a random control cell of the same (cell line, plate)
    (the line's controls on all plates as counted fallback); controls are paired with
    themselves. Returns an int64 array of rows of ``obs``."""
    is_control = (obs[DRUG].astype(str) == control).to_numpy()
    ctrl_rows = np.flatnonzero(is_control)
    if ctrl_rows.size == 0:
        raise SchemaError(f"{source}: obs['{DRUG}'] has no control cells labelled '{control}'")
    index = ControlIndex(obs.iloc[ctrl_rows], source=source)
    partner = np.arange(len(obs), dtype=np.int64)
    lines = obs[CELL_LINE].astype(str).to_numpy()
    plates = obs[PLATE].astype(str).to_numpy()
    perturbed = np.flatnonzero(~is_control)
    keys = pd.DataFrame({"l": lines[perturbed], "p": plates[perturbed]})
    for (line, plate), members in keys.groupby(["l", "p"], sort=True).indices.items():
        pool = ctrl_rows[index.rows(line, plate, f"{source} cells of ({line}, {plate})")]
        partner[perturbed[members]] = pool[rng.integers(0, pool.size, size=len(members))]
    index.report_fallbacks(f"{source}: random control pairing")
    return partner


@dataclass
class CellSetBatch:
    """``n`` cell sets of size ``m``: rows of perturbed cells and of matched controls (n, m),
    ``padded`` (n, m) True where a slot repeats a cell to fill a short group, ``group`` (n,)."""

    perturbed: np.ndarray
    controls: np.ndarray
    padded: np.ndarray
    group: np.ndarray


class CellSets:
    """Cell sets of one (cell_line, drug, dose, plate) group with matched controls.

    obs: cells (perturbed and controls, rows indexing ``X``); ``set_size``: m; ``rows``: the
    rows whose groups make the sets (default: every perturbed cell; e.g. all cells, controls
    included, for PerturbDiff's control -> control sets, or only the controls for its marginal
    pretraining). :meth:`chunks` cuts every group into consecutive sets of m in a fixed order (the last one
    padded by resampling the group's cells, flagged); :meth:`sample` draws ``n_sets`` random
    groups and m cells of each (without replacement when the group has m cells or more, else
    all its cells plus flagged resampled ones). Controls: m random cells of the group's (line,
    plate), the line's when the plate has none (counted, logged).
    """

    def __init__(
        self,
        obs: pd.DataFrame,
        control: str,
        set_size: int,
        keys: Sequence[str] = PAIR_KEYS,
        source: str = "training data",
        rows: np.ndarray | None = None,
    ):
        if set_size < 1:
            raise ValueError(f"cell sets need set_size >= 1, got {set_size}")
        self.m = int(set_size)
        is_control = (obs[DRUG].astype(str) == control).to_numpy()
        self.control_rows = np.flatnonzero(is_control)
        if self.control_rows.size == 0:
            raise SchemaError(f"{source}: obs['{DRUG}'] has no control cells labelled '{control}'")
        self.source = source
        self.index = ControlIndex(obs.iloc[self.control_rows], source=source)
        perturbed = np.flatnonzero(~is_control) if rows is None else np.asarray(rows, np.int64)
        if perturbed.size == 0:
            raise SchemaError(f"{source}: no cells to make cell sets of")
        codes, self.keys = pseudobulk_keys(obs.iloc[perturbed], keys)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(self.keys) + 1))
        self.members = [perturbed[order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
        self._pools = [
            self.control_rows[self.index.rows(line, plate, f"{source} group ({line}, {plate})")]
            for line, plate in zip(
                self.keys[CELL_LINE],
                self.keys[PLATE] if PLATE in self.keys.columns else [None] * len(self.keys),
            )
        ]
        self.fallbacks = self.index.report_fallbacks(f"{source}: cell-set controls")

    def __len__(self) -> int:
        return len(self.members)

    def _fill(self, cells: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        short = self.m - len(cells)
        if short <= 0:
            return cells, np.zeros(len(cells), dtype=bool)
        extra = cells[rng.integers(0, len(cells), size=short)]
        return np.concatenate([cells, extra]), np.r_[
            np.zeros(len(cells), bool), np.ones(short, bool)
        ]

    def _controls(self, group: int, rng: np.random.Generator) -> np.ndarray:
        pool = self._pools[group]
        return pool[rng.choice(pool.size, size=self.m, replace=pool.size < self.m)]

    def sample(self, n_sets: int, rng: np.random.Generator) -> CellSetBatch:
        groups = rng.integers(0, len(self.members), size=n_sets)
        cells, pads, ctrls = [], [], []
        for g in groups:
            members = self.members[g]
            pick = members[rng.choice(members.size, size=min(self.m, members.size), replace=False)]
            filled, padded = self._fill(pick, rng)
            cells.append(filled)
            pads.append(padded)
            ctrls.append(self._controls(g, rng))
        return CellSetBatch(np.stack(cells), np.stack(ctrls), np.stack(pads), groups)

    def chunks(self, rng: np.random.Generator) -> CellSetBatch:
        """Every perturbed cell exactly once (unflagged), in sets of m per group."""
        cells, pads, ctrls, groups = [], [], [], []
        for g, members in enumerate(self.members):
            for start in range(0, members.size, self.m):
                filled, padded = self._fill(members[start : start + self.m], rng)
                cells.append(filled)
                pads.append(padded)
                ctrls.append(self._controls(g, rng))
                groups.append(g)
        return CellSetBatch(np.stack(cells), np.stack(ctrls), np.stack(pads), np.array(groups))


# ------------------------------------------------------------------------------ realisation
def prediction_table(conditions: pd.DataFrame) -> pd.DataFrame:
    """The conditions to predict with canonical dose text, a ``condition`` key and, when given,
    the ``plate`` each row's cells come from (one row per (condition, plate)), sorted by
    condition (and plate)."""
    for column in CONDITION_COLUMNS:
        if column not in conditions.columns:
            raise SchemaError(
                f"conditions: column '{column}' is missing "
                f"(required: {', '.join(CONDITION_COLUMNS)}; optional: {PLATE})"
            )
    table = pd.DataFrame(
        {
            CELL_LINE: conditions[CELL_LINE].astype(str).to_numpy(),
            DRUG: conditions[DRUG].astype(str).to_numpy(),
            DOSE: [
                schema.format_dose(x if isinstance(x, str) else float(x)) for x in conditions[DOSE]
            ],
            "n_cells": conditions["n_cells"].astype(int).to_numpy(),
        }
    )
    table[CONDITION] = schema.add_condition(table).to_numpy()
    keys = [CONDITION]
    if PLATE in conditions.columns:
        table[PLATE] = conditions[PLATE].astype(str).to_numpy()
        keys.append(PLATE)
    # one canonical order, so that a condition's cells never depend on the order of the rows
    return table.sort_values(keys, kind="stable").reset_index(drop=True)


@dataclass
class Draw:
    """Control cells drawn for a prediction table: per drawn cell its table ``row`` and control
    ``cell``; ``units`` the distinct (row, plate of the drawn cell) pairs and ``unit`` per cell."""

    row: np.ndarray
    cell: np.ndarray
    plate: np.ndarray
    units: pd.DataFrame = field(repr=False)
    unit: np.ndarray = field(repr=False)


class ControlCells:
    """Control cells in a method's gene order, with their (context, plate) index.

    ``X`` is materialised once in ``genes`` order (dense or CSR rows); a gene the controls lack
    is an input error naming the field.
    """

    def __init__(self, controls: ad.AnnData, genes: Sequence[str], source: str = "controls"):
        genes = [str(g) for g in genes]
        have = [str(g) for g in controls.var_names]
        if have != genes:
            present = set(have)
            missing = [g for g in genes if g not in present]
            if missing:
                raise SchemaError(
                    f"{source}: var_names lack {len(missing)} training genes, e.g. {missing[:3]}"
                )
            controls = controls[:, genes]
        self.genes = genes
        self.X = controls.X
        self.obs = controls.obs
        self.index = ControlIndex(controls.obs, self.X, source)

    def draw(self, table: pd.DataFrame, seed: int) -> Draw:
        """``n_cells`` control cells per row of a :func:`prediction_table` (module docstring)."""
        has_plate = PLATE in table.columns
        rows, cells = [], []
        for i, r in enumerate(table.itertuples(index=False)):
            plate = getattr(r, PLATE) if has_plate else None
            pool = self.index.rows(r.cell_line, plate, f"condition '{r.condition}'")
            parts = [int(seed), zlib.crc32(r.condition.encode())]
            if plate is not None:
                parts.append(zlib.crc32(str(plate).encode()))
            rng = np.random.default_rng(parts)
            pick = pool[rng.choice(pool.size, size=r.n_cells, replace=r.n_cells > pool.size)]
            rows.append(np.full(r.n_cells, i, dtype=np.int64))
            cells.append(pick)
        self.index.report_fallbacks("predictions: control cells of the condition's plate")
        row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        cell = np.concatenate(cells) if cells else np.zeros(0, dtype=np.int64)
        plate = self.index.plates[cell]
        pairs = pd.DataFrame({"row": row, PLATE: plate})
        unit = pairs.groupby(["row", PLATE], sort=True).ngroup().to_numpy()
        units = pairs.drop_duplicates().sort_values(["row", PLATE]).reset_index(drop=True)
        return Draw(row, cell, plate, units, unit)

    def realise(self, draw: Draw, shift: np.ndarray) -> np.ndarray:
        """``max(x_ctrl + shift, 0)`` per drawn cell; ``shift`` (n_cells, G) or (G,)."""
        X = dense(self.X[draw.cell]).astype(np.float32)
        return np.maximum(X + np.asarray(shift, dtype=np.float32), 0.0)

    def prediction(
        self, table: pd.DataFrame, draw: Draw, X: np.ndarray, uns: dict | None = None
    ) -> ad.AnnData:
        """Predicted cells as AnnData: obs ``cell_line, drug, dose, plate, condition`` (``plate``:
        the row's plate when the table names plates, else the drawn control cell's), index
        ``condition#j``, var = genes."""
        obs = table.iloc[draw.row][[CELL_LINE, DRUG, DOSE, CONDITION]].reset_index(drop=True)
        obs[PLATE] = table[PLATE].to_numpy()[draw.row] if PLATE in table.columns else draw.plate
        obs.index = [f"{c}#{j}" for c, j in zip(obs[CONDITION], obs.groupby(CONDITION).cumcount())]
        return ad.AnnData(
            X=np.asarray(X, dtype=np.float32),
            obs=obs[[CELL_LINE, DRUG, DOSE, PLATE, CONDITION]],
            var=pd.DataFrame(index=pd.Index(self.genes)),
            uns=dict(uns or {}),
        )


def realise_cells(
    controls: ControlCells,
    table: pd.DataFrame,
    row_shifts: np.ndarray,
    seed: int,
    uns: dict | None = None,
) -> ad.AnnData:
    """Predicted cells = drawn control cells + their row's shift (n_rows, G), clipped at 0."""
    draw = controls.draw(table, seed)
    shift = np.asarray(row_shifts)[draw.row] if len(draw.row) else 0.0
    return controls.prediction(table, draw, controls.realise(draw, shift), uns)
