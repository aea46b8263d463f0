"""Extract the L1000 landmark genes (symbol, Entrez id) from a GCT 1.3 text file.

Usage::

    python resources/genes/make_landmarks.py GCT OUT_TSV

Rows with ``pr_is_lmark`` equal to 1 (or ``Y``) are kept in file order; the output columns are
``pr_gene_symbol`` and ``pr_gene_id``.
"""

from __future__ import annotations

import sys

import pandas as pd


def read_gct_row_meta(path: str) -> pd.DataFrame:
    """Row metadata of a GCT 1.3 file (line 2: n_rows, n_cols, n_row_meta, n_col_meta)."""
    with open(path) as handle:
        version = handle.readline().strip()
        if version != "#1.3":
            sys.exit(f"{path}: expected a GCT 1.3 header '#1.3', found '{version}'")
        n_rows, _, n_row_meta, n_col_meta = (int(x) for x in handle.readline().split("\t")[:4])
    table = pd.read_csv(
        path, sep="\t", skiprows=2, dtype=str, keep_default_na=False, usecols=range(n_row_meta + 1)
    )
    return table.iloc[n_col_meta:].reset_index(drop=True).iloc[:n_rows]


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit(__doc__)
    gct, out = argv
    rows = read_gct_row_meta(gct)
    for col in ("pr_gene_symbol", "pr_gene_id", "pr_is_lmark"):
        if col not in rows.columns:
            sys.exit(f"{gct}: row metadata field '{col}' is missing")
    landmarks = rows[rows["pr_is_lmark"].isin(["1", "Y"])]
    landmarks[["pr_gene_symbol", "pr_gene_id"]].to_csv(out, sep="\t", index=False)
    print(f"{len(landmarks)} landmark genes written to {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
