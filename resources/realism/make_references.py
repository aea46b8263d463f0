"""Build the real references of the ``world_vs_real`` rule (``scpert.data.realism``).

Usage::

    python resources/realism/make_references.py L1000_GCT SCIMILARITY_H5AD OUTDIR

L1000_GCT: the LINCS L1000 A375 24 h plate of cmapPy's functional tests (978 landmarks x 377
level-4 wells; a GCT 1.3 text file named ``.gctx``; read by ``scpert.priors.l1000.read_gct``,
which detects the format from the content). SCIMILARITY_H5AD: SCimilarity's ``tests/data/test.h5ad``
(1,000 cells x 1,000 genes, raw counts in ``layers["counts"]``).

Writes to OUTDIR:

``l1000_a375_24h.gctx``
    GCTX 1.0 (cmapPy layout, ``scpert.data.simulate.write_gctx``): the landmark rows
    (``pr_is_lmark`` = 1) with ``pr_gene_id``, ``pr_gene_symbol``, ``pr_is_lmark``; every column
    with the fields ``COLUMN_FIELDS``; z-scores stored with two decimals (HDF5 scale-offset
    filter, then gzip: 662 kB instead of 1.5 MB), which changes no value by more than 0.01 and
    none of the statistics in their fourth decimal.
``scimilarity_counts.h5ad``
    The raw counts as ``X`` (int32 CSR), the cell barcodes as ``obs_names``, the gene symbols as
    ``var_names``; nothing else. gzip-compressed.

Both are deterministic given their inputs. The script prints each file's size and the statistics
of ``scpert.data.realism`` on the original and on the written file (they must agree).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from scpert.data import realism  # noqa: E402
from scpert.data.simulate import DEFAULT_PARAMS, write_gctx  # noqa: E402
from scpert.priors.l1000 import landmark_rows, read_gct  # noqa: E402

COLUMN_FIELDS = (
    "pert_id",
    "pert_iname",
    "pert_type",
    "cell_id",
    "pert_dose",
    "pert_dose_unit",
    "pert_time",
    "pert_time_unit",
)
ROW_FIELDS = ("pr_gene_id", "pr_gene_symbol", "pr_is_lmark")
Z_DECIMALS = 2
L1000_OUT = "l1000_a375_24h.gctx"
COUNTS_OUT = "scimilarity_counts.h5ad"


def l1000_reference(gct_path: Path, out: Path) -> None:
    gct = read_gct(gct_path)
    rows, _ = landmark_rows(gct, gct_path)
    row = gct.row_meta.iloc[rows][list(ROW_FIELDS)].reset_index()
    col = gct.col_meta[list(COLUMN_FIELDS)].reset_index()
    matrix = gct.data.iloc[rows].to_numpy(dtype=np.float32).T  # (columns, rows)
    write_gctx(out, matrix, _as_text(col), _as_text(row), decimals=Z_DECIMALS)


def _as_text(table: pd.DataFrame) -> pd.DataFrame:
    """Text fields as Python strings (object), numbers as they are."""
    return table.apply(lambda c: c.astype(str).astype(object) if c.dtype == object else c)


def counts_reference(h5ad_path: Path, out: Path) -> None:
    adata = ad.read_h5ad(h5ad_path)
    X = sp.csr_matrix(adata.layers["counts"] if "counts" in adata.layers else adata.X)
    if not np.allclose(X.data, np.round(X.data)):
        sys.exit(f"{h5ad_path}: counts are not integers")
    obs = pd.DataFrame(index=pd.Index(adata.obs_names.astype(str), name="barcode"))
    var = pd.DataFrame(index=pd.Index(adata.var_names.astype(str), name="gene"))
    ad.AnnData(X.astype(np.int32), obs=obs, var=var).write_h5ad(out, compression="gzip")


def statistics(gct_path: Path, h5ad_path: Path) -> dict[str, float]:
    measures = realism.l1000_measures(read_gct(gct_path), DEFAULT_PARAMS["doses"], gct_path)
    X = realism.real_counts(h5ad_path)
    counts = realism.count_measures(X, np.zeros(X.shape[0], dtype=int))
    return realism.summarize(measures, counts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("l1000_gct", type=Path)
    parser.add_argument("scimilarity_h5ad", type=Path)
    parser.add_argument("outdir", type=Path)
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    l1000_reference(args.l1000_gct, args.outdir / L1000_OUT)
    counts_reference(args.scimilarity_h5ad, args.outdir / COUNTS_OUT)
    before = statistics(args.l1000_gct, args.scimilarity_h5ad)
    after = statistics(args.outdir / L1000_OUT, args.outdir / COUNTS_OUT)
    for name in (L1000_OUT, COUNTS_OUT):
        print(f"{name}: {(args.outdir / name).stat().st_size / 1e3:.0f} kB")
    for key, value in before.items():
        print(f"{key}: {value:.4f} (original) {after[key]:.4f} (written)")


if __name__ == "__main__":
    main()
