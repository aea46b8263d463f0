"""LINCS L1000 phase I (GEO GSE92742) for StateXDiff's MDT (arXiv:2605.16104 App. A.3).

The level-5 file ``GSE92742_Broad_LINCS_Level5_COMPZ.MODZ_n473647x12328.gctx`` (gzip on GEO;
rule ``gunzip``) is a GCTX whose metadata hold ids only: rows ``pr_gene_id``, columns
``sig_id``; the side tables ``*_gene_info.txt`` (``pr_gene_symbol``, ``pr_is_lmark``) and
``*_sig_info.txt`` (``pert_iname``, ``pert_id``, ``pert_type``, ``cell_id``, ``pert_dose``, ...)
name them. GCTX and text GCT 1.2/1.3 are read by :func:`scpert.priors.l1000.read_gct`.

:func:`compact_l1000` writes the part the priors use -- the 978 landmark rows and the compound
signatures (``pert_type`` ``trt_cp``) -- as one GCTX with the side tables merged into its
metadata: 978 of the 12,328 rows of the 473,647 x 12,328 float32 matrix (23 GB as released), and
only the compound signatures. The matrix is copied in blocks of ``block`` signatures, so memory
stays at one block. :func:`read_l1000` returns signatures as an
AnnData (obs = signature metadata, var = landmark genes by symbol).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd

from scpert.data.schema import SchemaError
from scpert.priors import l1000

log = logging.getLogger(__name__)


def _metadata(path, sig_info=None, gene_info=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, cols = l1000.read_gct_meta(path)
    if gene_info:
        rows = l1000.merge_info(rows, gene_info, "pr_gene_id")
    if sig_info:
        cols = l1000.merge_info(cols, sig_info, "sig_id")
    return rows, cols


def select(
    rows: pd.DataFrame,
    cols: pd.DataFrame,
    *,
    landmarks_only: bool = True,
    pert_types: Sequence[str] | None = ("trt_cp",),
    source="<gct>",
) -> tuple[pd.Index, pd.Index]:
    """Ids of the landmark rows and the signatures of the wanted perturbation types."""
    if landmarks_only:
        if l1000.LANDMARK_FIELD not in rows.columns:
            raise SchemaError(
                f"{source}: row field '{l1000.LANDMARK_FIELD}' is missing (give gene_info)"
            )
        flag = rows[l1000.LANDMARK_FIELD].astype(str).str.lower().isin(("1", "1.0", "true"))
        rows = rows[flag.to_numpy()]
    if pert_types:
        if "pert_type" not in cols.columns:
            raise SchemaError(f"{source}: column field 'pert_type' is missing (give sig_info)")
        cols = cols[cols["pert_type"].astype(str).isin(pert_types).to_numpy()]
    if rows.empty or cols.empty:
        raise SchemaError(
            f"{source}: no {'landmark ' if landmarks_only else ''}rows or no signatures of types {list(pert_types or [])}"
        )
    return rows.index, cols.index


def _write_meta(group: h5py.Group, meta: pd.DataFrame) -> None:
    group.create_dataset("id", data=np.array(meta.index.astype(str), dtype="S"))
    for name in meta.columns:
        values = meta[name]
        if pd.api.types.is_numeric_dtype(values):
            group.create_dataset(name, data=values.to_numpy())
        else:
            group.create_dataset(name, data=np.array(values.astype(str), dtype="S"))


def compact_l1000(
    gctx,
    out_path,
    *,
    sig_info=None,
    gene_info=None,
    landmarks_only: bool = True,
    pert_types: Sequence[str] | None = ("trt_cp",),
    block: int = 20000,
) -> tuple[int, int]:
    """Write the landmark x compound-signature GCTX (cmapPy layout, metadata merged) to
    ``out_path``; returns (rows, signatures). The caller makes the write atomic."""
    rows, cols = _metadata(gctx, sig_info, gene_info)
    rids, cids = select(
        rows, cols, landmarks_only=landmarks_only, pert_types=pert_types, source=gctx
    )
    with h5py.File(out_path, "w") as f:
        f.attrs["version"] = np.bytes_("GCTX1.0")
        f.attrs["src"] = np.bytes_(Path(out_path).name)
        matrix = f.create_dataset(
            l1000.GCTX_MATRIX,
            shape=(len(cids), len(rids)),
            dtype=np.float32,
            chunks=(min(len(cids), 1024), len(rids)),
        )
        for start in range(0, len(cids), block):
            part = l1000.read_gct(gctx, cids=cids[start : start + block], rids=rids)
            matrix[start : start + len(part.data.columns)] = part.data.to_numpy().T
            log.info(
                "%s: copied signatures %d-%d of %d",
                gctx,
                start,
                start + len(part.data.columns),
                len(cids),
            )
        _write_meta(f.require_group(l1000.GCTX_ROW_META), rows.loc[rids])
        _write_meta(f.require_group(l1000.GCTX_COL_META), cols.loc[cids])
    return len(rids), len(cids)


def read_l1000(
    path, *, sig_info=None, gene_info=None, cids: Sequence[str] | None = None
) -> ad.AnnData:
    """Signatures x landmark genes (var index ``pr_gene_symbol``) with metadata in obs/var."""
    rows, cols = _metadata(path, sig_info, gene_info)
    rids, _ = select(
        rows,
        cols,
        landmarks_only=l1000.LANDMARK_FIELD in rows.columns,
        pert_types=None,
        source=path,
    )
    gct = l1000.read_gct(path, cids=cids, rids=rids)
    if l1000.SYMBOL_FIELD not in rows.columns:
        raise SchemaError(f"{path}: row field '{l1000.SYMBOL_FIELD}' is missing (give gene_info)")
    var = rows.loc[gct.data.index].copy()
    var.index = pd.Index(ad.utils.make_index_unique(var[l1000.SYMBOL_FIELD].astype(str)), name=None)
    obs = cols.loc[gct.data.columns].copy()
    obs.index = obs.index.astype(str)
    return ad.AnnData(X=gct.data.to_numpy().T.astype(np.float32), obs=obs, var=var)
