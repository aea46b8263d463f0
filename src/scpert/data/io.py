"""Readers of the workflow's files (inputs and intermediates), each validating what it reads.

Every reader raises :class:`scpert.data.schema.SchemaError` with one message naming the file and
the field, so a job fails where a file is read instead of producing a silently wrong table (the
cases and their messages: tests/bad_input_cases.md). What is checked:

- h5ad files (:func:`read_h5ad`): readable as HDF5/AnnData at all (a truncated or non-HDF5 file is
  one line, not an h5py traceback); ``processed.h5ad`` against the data contract.
- TSV intermediates (:func:`read_tsv`): not empty, tab-separated, complete (a file cut mid-line
  lacks the final newline every writer ends with), the columns its readers use, no empty fields.
- split tables (:func:`read_split`): known labels, each condition exactly once, and exactly the
  conditions of the processed data.
- gene lists (:func:`read_genes`): non-empty, unique, all in the processed data's ``var_names``.
- predictions (:func:`read_prediction`): the contract, the split's genes in order, every test
  condition.
- the drug table (:func:`read_drug_table`): tab-separated (or ``.csv``), its columns, unique drugs,
  and, given the data's drugs, a row for each of them (only those rows are returned, so that rows
  of unused perturbations, e.g. without SMILES, never reach a featuriser).

Writers are atomic and live in :mod:`scpert.runtime` (``write_h5ad``, ``write_tsv``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import anndata as ad
import pandas as pd

from scpert.data import schema
from scpert.data.schema import SchemaError
from scpert.data.splits import SPLIT_LABELS

DRUG_TABLE_COLUMNS = schema.DRUG_TABLE_COLUMNS
#: columns every reader of a split table uses (scpert.data.splits also writes cell_line, drug,
#: dose and n_cells)
SPLIT_COLUMNS = ("condition", "split")


# ----------------------------------------------------------------------------------------- h5ad
def read_h5ad(path: str | Path, backed: str | None = None) -> ad.AnnData:
    """``anndata.read_h5ad``; a missing, truncated or non-HDF5 file is one SchemaError line."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise SchemaError(f"{path}: not a readable h5ad (empty file)")
    try:
        return ad.read_h5ad(path, backed=backed)
    except MemoryError:
        raise
    except Exception as err:  # h5py OSError, anndata read errors, KeyError of a missing group
        reason = " ".join(str(err).split("\n")[0].split()) or type(err).__name__
        raise SchemaError(f"{path}: not a readable h5ad ({reason[:200]})") from None


def read_processed(path: str | Path, control: str) -> ad.AnnData:
    """``processed.h5ad``, validated against the data contract (:mod:`scpert.data.schema`)."""
    adata = read_h5ad(path)
    schema.validate(adata, path, control=control, kind="processed")
    return adata


# ------------------------------------------------------------------------------------------ TSV
def read_tsv(
    path: str | Path,
    what: str,
    columns: Sequence[str],
    *,
    dtype=None,
    min_rows: int = 1,
    nonempty: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A complete tab-separated table written by the workflow, with at least ``columns`` and
    ``min_rows`` rows.

    what: what the file is (for messages, e.g. "split table"). The file must end with a newline
    (every writer of the workflow ends with one; a file cut mid-line does not), and the columns
    ``nonempty`` (default: ``columns``) must have no empty field.
    """
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise SchemaError(f"{path}: empty file (a {what} with columns {', '.join(columns)})")
    header = raw.split(b"\n", 1)[0]
    if b"\t" not in header and b"," in header:
        raise SchemaError(
            f"{path}: not tab-separated (the header line has commas but no tabs); "
            f"a {what} is a TSV file"
        )
    if not raw.endswith(b"\n"):
        raise SchemaError(f"{path}: the last line is incomplete (the file was cut short)")
    try:
        table = pd.read_csv(path, sep="\t", dtype=dtype, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        reason = " ".join(str(err).split())
        raise SchemaError(f"{path}: not a readable {what} ({reason[:200]})") from None
    _require_columns(table, path, columns)
    if len(table) < min_rows:
        raise SchemaError(f"{path}: no rows (a {what} needs at least {min_rows})")
    for col in columns if nonempty is None else nonempty:
        empty = table[col].isna().to_numpy()
        if empty.any():
            row = int(empty.argmax()) + 2  # 1-based line number, after the header
            raise SchemaError(f"{path}: line {row} has no value in column '{col}'")
    return table


def _require_columns(table: pd.DataFrame, path, columns: Sequence[str]) -> None:
    for col in columns:
        if col not in table.columns:
            raise SchemaError(f"{path}: column '{col}' is missing (required: {', '.join(columns)})")


def read_split(
    path: str | Path, conditions: Iterable[str] | None = None, data_path: str | Path | None = None
) -> pd.DataFrame:
    """A split table (``condition, cell_line, drug, dose, n_cells, split``; scpert.data.splits),
    with at least ``condition`` and ``split``.

    conditions: the ``obs["condition"]`` values of the processed data the split was made from
    (``data_path``); the table must list each of them exactly once and nothing else.
    """
    table = read_tsv(
        path,
        "split table",
        SPLIT_COLUMNS,
        dtype={"dose": str, "condition": str, "drug": str, "cell_line": str, "split": str},
    )
    bad = ~table["split"].isin(SPLIT_LABELS)
    if bad.any():
        row = table[bad].iloc[0]
        raise SchemaError(
            f"{path}: column 'split' has unknown label '{row['split']}' (condition "
            f"'{row['condition']}'; allowed: {', '.join(SPLIT_LABELS)})"
        )
    dup = table["condition"].duplicated()
    if dup.any():
        name = table.loc[dup, "condition"].iloc[0]
        n = int((table["condition"] == name).sum())
        raise SchemaError(f"{path}: condition '{name}' is listed {n} times (each exactly once)")
    if conditions is not None:
        expected = set(map(str, conditions))
        listed = set(table["condition"])
        source = data_path or "the processed data"
        missing = sorted(expected - listed)
        if missing:
            raise SchemaError(
                f"{path}: {len(missing)} of the {len(expected)} conditions of {source} are missing, "
                f"e.g. '{missing[0]}' (a split lists every condition of its data exactly once)"
            )
        extra = sorted(listed - expected)
        if extra:
            raise SchemaError(
                f"{path}: {len(extra)} conditions are not in {source}, e.g. '{extra[0]}' "
                "(the split was made from other data)"
            )
    return table


def read_genes(
    path: str | Path, var_names: Iterable[str] | None = None, data_path: str | Path | None = None
) -> list[str]:
    """The gene list of a split (``genes.tsv``, column ``gene``): non-empty, unique and, given
    the processed data's ``var_names`` (of ``data_path``), a subset of them."""
    table = read_tsv(path, "gene list", ("gene",), dtype={"gene": str})
    genes = table["gene"].astype(str).tolist()
    dup = table["gene"].duplicated()
    if dup.any():
        raise SchemaError(f"{path}: gene '{table.loc[dup, 'gene'].iloc[0]}' is listed twice")
    if var_names is not None:
        known = set(map(str, var_names))
        missing = [g for g in genes if g not in known]
        if missing:
            raise SchemaError(
                f"{path}: {len(missing)} genes are not in the var_names of "
                f"{data_path or 'the processed data'}, e.g. {missing[:3]}"
            )
    return genes


def restrict_genes(adata: ad.AnnData, genes: list[str], source: str | Path) -> ad.AnnData:
    """``adata[:, genes]``; a gene missing from ``var_names`` names ``source``."""
    missing = [g for g in genes if g not in adata.var_names]
    if missing:
        raise SchemaError(
            f"{source}: genes of the split are missing from var_names, e.g. {missing[:3]}"
        )
    return adata[:, genes]


def read_prediction(
    path: str | Path, genes: Sequence[str], test_conditions: Iterable[str]
) -> ad.AnnData:
    """``pred.h5ad`` of a method: the prediction contract, ``var_names`` equal to the split's
    ``genes`` (same order) and cells for every test condition of the split."""
    pred = read_h5ad(path)
    schema.validate(
        pred,
        path,
        kind="prediction",
        required_obs=(schema.CELL_LINE, schema.DRUG, schema.DOSE),
    )
    if list(pred.var_names) != list(genes):
        if pred.n_vars != len(genes):
            detail = f"{pred.n_vars} genes, the split has {len(genes)}"
        else:
            i = next(i for i, (a, b) in enumerate(zip(pred.var_names, genes)) if a != b)
            detail = f"position {i}: '{pred.var_names[i]}', the split has '{genes[i]}'"
        raise SchemaError(f"{path}: var_names differ from the split's genes ({detail})")
    predicted = set(pred.obs[schema.CONDITION].astype(str))
    wanted = list(dict.fromkeys(map(str, test_conditions)))
    missing = [c for c in wanted if c not in predicted]
    if missing:
        raise SchemaError(
            f"{path}: no predicted cells for {len(missing)} of the {len(wanted)} test conditions, "
            f"e.g. '{missing[0]}' (obs['{schema.CONDITION}'])"
        )
    return pred


# ----------------------------------------------------------------------------------- drug table
def read_drug_table(
    path: str | Path,
    data_drugs: Iterable[str] | None = None,
    data_path: str | Path | None = None,
    control: str = schema.DEFAULT_CONTROL,
) -> pd.DataFrame:
    """Read ``drugs.tsv`` (drug, smiles, moa, targets); ``targets`` is ``;``-separated symbols.

    Tab-separated, or comma-separated when the file name ends in ``.csv``. data_drugs: the
    ``obs["drug"]`` values of the data (of ``data_path``; combinations ``A+B`` count as their
    components, ``control`` is skipped): each must have a row, and only their rows are returned,
    so that rows of perturbations absent from the data are never featurised.
    """
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: file not found")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    header = path.read_text(errors="replace").split("\n", 1)[0]
    if sep == "\t" and "\t" not in header and "," in header:
        raise SchemaError(
            f"{path}: not tab-separated (the header line has commas but no tabs); write the drug "
            f"table as TSV or name it .csv (columns: {', '.join(DRUG_TABLE_COLUMNS)})"
        )
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = " ".join(str(err).split())
        raise SchemaError(f"{path}: not a readable drug table ({reason[:200]})") from None
    table.columns = [str(c).strip() for c in table.columns]
    for col in DRUG_TABLE_COLUMNS:
        if col not in table.columns:
            raise SchemaError(
                f"{path}: column '{col}' is missing (required: {', '.join(DRUG_TABLE_COLUMNS)})"
            )
    table["drug"] = table["drug"].str.strip()
    if (table["drug"] == "").any():
        row = int((table["drug"] == "").to_numpy().argmax()) + 2
        raise SchemaError(f"{path}: line {row} has no value in column 'drug'")
    if table["drug"].duplicated().any():
        raise SchemaError(
            f"{path}: column 'drug' has duplicates, e.g. "
            f"{table['drug'][table['drug'].duplicated()].iloc[0]}"
        )
    table = table.set_index("drug", drop=False)
    if data_drugs is not None:
        used = sorted(
            {c for d in map(str, data_drugs) if d != control for c in schema.components(d)}
        )
        missing = [d for d in used if d not in table.index]
        if missing:
            raise SchemaError(
                f"{path}: no row for drug '{missing[0]}' of {data_path or 'the data'} "
                f"(column 'drug'; {len(missing)} of its {len(used)} drugs missing"
                + (f": {', '.join(missing[:5])}" if len(missing) > 1 else "")
                + ")"
            )
        table = table.loc[used]
    table.attrs["source"] = str(path)
    return table
