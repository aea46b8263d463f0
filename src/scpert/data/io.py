"""Readers of the workflow's files (inputs and intermediates), each validating what it reads.

Every reader raises :class:`scpert.data.schema.SchemaError` with one message naming the file and
the field. Writers are atomic and live in :mod:`scpert.runtime` (``write_h5ad``, ``write_tsv``).
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import pandas as pd

from scpert.data import schema
from scpert.data.schema import SchemaError

DRUG_TABLE_COLUMNS = schema.DRUG_TABLE_COLUMNS


def read_split(path: str | Path) -> pd.DataFrame:
    """A split table (``condition, cell_line, drug, dose, n_cells, split``; scpert.data.splits)."""
    table = pd.read_csv(
        path,
        sep="\t",
        dtype={"dose": str, "condition": str, "drug": str, "cell_line": str},
    )
    for col in ("condition", "split"):
        if col not in table.columns:
            raise SchemaError(f"{path}: column '{col}' is missing")
    return table


def read_genes(path: str | Path) -> list[str]:
    """The gene list of a split (``genes.tsv``, column ``gene``)."""
    genes = pd.read_csv(path, sep="\t")
    if "gene" not in genes.columns:
        raise SchemaError(f"{path}: column 'gene' is missing")
    return genes["gene"].astype(str).tolist()


def read_processed(path: str | Path, control: str) -> ad.AnnData:
    """``processed.h5ad``, validated against the data contract (:mod:`scpert.data.schema`)."""
    adata = ad.read_h5ad(path)
    schema.validate(adata, path, control=control, kind="processed")
    return adata


def restrict_genes(adata: ad.AnnData, genes: list[str], source: str | Path) -> ad.AnnData:
    """``adata[:, genes]``; a gene missing from ``var_names`` names ``source``."""
    missing = [g for g in genes if g not in adata.var_names]
    if missing:
        raise SchemaError(
            f"{source}: genes of the split are missing from var_names, e.g. {missing[:3]}"
        )
    return adata[:, genes]


def read_drug_table(path: str | Path) -> pd.DataFrame:
    """Read ``drugs.tsv`` (drug, smiles, moa, targets); ``targets`` is ``;``-separated symbols."""
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    for col in DRUG_TABLE_COLUMNS:
        if col not in table.columns:
            raise SchemaError(
                f"{path}: column '{col}' is missing (required: {', '.join(DRUG_TABLE_COLUMNS)})"
            )
    if table["drug"].duplicated().any():
        raise SchemaError(
            f"{path}: column 'drug' has duplicates, e.g. "
            f"{table['drug'][table['drug'].duplicated()].iloc[0]}"
        )
    table = table.set_index("drug", drop=False)
    table.attrs["source"] = str(path)
    return table
