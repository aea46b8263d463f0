"""The AnnData data contract (DESIGN §4) and its validation.

`processed.h5ad`
    ``X``: log1p(normalize_total(1e4)) float32 CSR; ``layers["counts"]``: raw counts.
    ``obs``: ``cell_line`` (context), ``drug`` (perturbation; controls carry the configured control
    label, combinations ``drugA+drugB``), ``dose`` (float uM for singles, 0 for controls; string
    ``"doseA+doseB"`` for combinations, so ``dose`` is stored as string), ``plate`` (batch),
    ``condition`` (= ``cell_line|drug|dose``), optional ``phase``. ``var`` index: gene symbols.

Raw counts (``resources/raw/{dataset}/counts.h5ad``) follow the same contract without ``condition``
and with integer counts in ``X``.

Predictions (``pred.h5ad``): the same obs keys, ``X`` log-normalised in the split's gene space,
``uns["method"]``, ``uns["seed"]``, ``uns["sampler"]``.

Every check raises :class:`SchemaError` with one message naming the file and the field.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scpert.errors import InputError

CELL_LINE = "cell_line"
DRUG = "drug"
DOSE = "dose"
PLATE = "plate"
CONDITION = "condition"
PHASE = "phase"
COMBO_SEP = "+"
CONDITION_SEP = "|"
DEFAULT_CONTROL = "control"

REQUIRED_OBS = (CELL_LINE, DRUG, DOSE, PLATE)
DRUG_TABLE_COLUMNS = ("drug", "smiles", "moa", "targets")


class SchemaError(InputError):
    """An input violates the data contract; the message names the file and the field."""


def format_dose(dose) -> str:
    """Canonical text of a dose: ``0``, ``0.1``, ``10`` (no trailing zeros); combos pass through."""
    if isinstance(dose, str):
        parts = dose.split(COMBO_SEP)
        return (
            COMBO_SEP.join(format_dose(float(p)) for p in parts)
            if len(parts) > 1
            else format_dose(float(dose))
        )
    return f"{float(dose):g}"


def condition_key(cell_line: str, drug: str, dose) -> str:
    """``cell_line|drug|dose`` with the canonical dose text."""
    return CONDITION_SEP.join((str(cell_line), str(drug), format_dose(dose)))


def add_condition(obs: pd.DataFrame) -> pd.Series:
    """The ``condition`` column for an obs table with cell_line, drug and dose."""
    return pd.Series(
        [condition_key(c, d, x) for c, d, x in zip(obs[CELL_LINE], obs[DRUG], obs[DOSE])],
        index=obs.index,
        name=CONDITION,
    )


def components(drug: str) -> list[str]:
    """The single drugs of a (possibly combined) perturbation name."""
    return drug.split(COMBO_SEP)


def component_doses(dose) -> list[float]:
    """The doses of a (possibly combined) dose text, aligned with :func:`components`."""
    return [float(x) for x in str(dose).split(COMBO_SEP)]


def is_combo(drug: str) -> bool:
    return COMBO_SEP in drug


def _where(path) -> str:
    return f"{path}" if path is not None else "<in-memory AnnData>"


def validate(
    adata,
    path: str | Path | None = None,
    *,
    control: str = DEFAULT_CONTROL,
    kind: str = "processed",
    required_obs: Iterable[str] = REQUIRED_OBS,
) -> None:
    """Check an AnnData against the contract; raise :class:`SchemaError` naming file and field.

    kind: ``"raw"`` (integer counts in X), ``"processed"`` (log-normalised X and a counts layer,
    plus ``condition``) or ``"prediction"`` (log-normalised X; ``uns["method"]``).
    """
    where = _where(path)
    if adata.n_obs == 0:
        raise SchemaError(f"{where}: no cells (obs is empty)")
    if adata.n_vars == 0:
        raise SchemaError(f"{where}: no genes (var is empty)")
    required = list(required_obs) + ([CONDITION] if kind in ("processed", "prediction") else [])
    for key in required:
        if key not in adata.obs.columns:
            raise SchemaError(f"{where}: obs['{key}'] is missing (required: {', '.join(required)})")
        if adata.obs[key].isna().any():
            n = int(adata.obs[key].isna().sum())
            raise SchemaError(f"{where}: obs['{key}'] has {n} missing values")
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()][:3].tolist()
        raise SchemaError(f"{where}: var_names (gene symbols) are not unique, e.g. {dup}")
    X = adata.X
    data = X.data if sp.issparse(X) else np.asarray(X)
    if not np.all(np.isfinite(data)):
        n = int((~np.isfinite(data)).sum())
        raise SchemaError(f"{where}: X has {n} NaN/inf values")
    if data.size and data.min() < 0:
        raise SchemaError(f"{where}: X has negative values (expected counts or log1p expression)")
    if kind == "raw":
        if data.size and not np.allclose(data, np.round(data)):
            from scpert.data.input_forms import not_counts_message

            raise SchemaError(not_counts_message(X, where))
    if kind == "processed":
        if "counts" not in adata.layers:
            raise SchemaError(f"{where}: layers['counts'] (raw counts) is missing")
    if kind == "prediction" and "method" not in adata.uns:
        raise SchemaError(f"{where}: uns['method'] is missing")
    if kind in ("raw", "processed"):
        drugs = adata.obs[DRUG].astype(str)
        if not (drugs == control).any():
            raise SchemaError(f"{where}: obs['{DRUG}'] has no control cells labelled '{control}'")
        without = lines_without_controls(adata.obs, control)
        if without:
            raise SchemaError(
                f"{where}: {missing_controls_message(without, control)}; every cell line needs "
                "its own control cells (methods start from them and metrics compare to them)"
            )
        doses = adata.obs[DOSE].astype(str)
        bad = [x for x in pd.unique(doses) if not _is_dose(x)]
        if bad:
            raise SchemaError(f"{where}: obs['{DOSE}'] has non-numeric values, e.g. {bad[:3]}")
        n_comp_drug = drugs.str.count(r"\+")
        n_comp_dose = doses.str.count(r"\+")
        mism = (n_comp_drug != n_comp_dose).to_numpy()
        if mism.any():
            i = int(np.flatnonzero(mism)[0])
            raise SchemaError(
                f"{where}: obs['{DOSE}'] does not match obs['{DRUG}'] components "
                f"(cell {adata.obs_names[i]}: drug '{drugs.iloc[i]}', dose '{doses.iloc[i]}')"
            )


def lines_without_controls(obs: pd.DataFrame, control: str = DEFAULT_CONTROL) -> list[str]:
    """Cell lines (``obs["cell_line"]``) with perturbed cells but no control cells."""
    lines = obs[CELL_LINE].astype(str).to_numpy()
    is_control = (obs[DRUG].astype(str) == control).to_numpy()
    return sorted(set(lines[~is_control]) - set(lines[is_control]))


def missing_controls_message(lines: list[str], control: str) -> str:
    """``cell line 'X' (obs['cell_line']) has no control cells (...)`` for the first of ``lines``."""
    others = f"; neither have {', '.join(lines[1:4])}" + (", ..." if len(lines) > 4 else "")
    return (
        f"cell line '{lines[0]}' (obs['{CELL_LINE}']) has no control cells "
        f"(obs['{DRUG}'] == '{control}')" + (others if len(lines) > 1 else "")
    )


def _is_dose(text: str) -> bool:
    try:
        return all(np.isfinite(float(p)) and float(p) >= 0 for p in str(text).split(COMBO_SEP))
    except ValueError:
        return False
