"""LINCS L1000 signatures for MDT: GCT/GCTX reading, TAS, and the K highest-TAS views per drug.

Reader (:func:`read_gct`)
    The format is detected from the content, not the file name: HDF5 (GCTX 1.0, cmapPy layout:
    ``/0/DATA/0/matrix`` of shape (columns, rows), metadata fields under ``/0/META/ROW`` and
    ``/0/META/COL``, strings as bytes) or text GCT 1.3 (``#1.3``; dimensions line ``rows cols
    row-fields col-fields``; header ``id, row fields..., column ids``; one line per column field;
    then data lines) or GCT 1.2 (``Name, Description``). Columns can be selected before the matrix
    is read (only those rows of the HDF5 dataset are loaded), so a level-5 GSE92742 file
    (473,647 signatures) is read in parts. Side tables of GSE92742 (``sig_info``, ``gene_info``)
    are merged on the ids with :func:`merge_info` when the file itself carries only ids.
TAS (:func:`transcriptional_activity`)
    ``"mean_abs_z"`` (default): the definition StateXDiff App. A.3.2 gives, the mean absolute
    z-score over the landmark genes of a signature. ``"cmap"``: the CMap transcriptional activity
    score that the paper cites ([23]), ``sqrt(distil_ss * max(distil_cc_q75, 0) / n_landmarks)``,
    which needs the replicate metrics ``distil_ss`` and ``distil_cc_q75`` (GSE92742
    ``sig_metrics``; the synthetic world's ``l1000.gctx``).
Views (:func:`select_views`)
    Compound signatures (``pert_type`` not ``ctl_*``) are matched to the drug table by
    ``pert_iname`` or ``pert_id`` (case-insensitive). Per drug, up to K signatures with the highest
    TAS are kept (App. A.3.2), one per cell line first (Table 5: "multi-cell-line sampling"), then
    the next highest. TAS is rescaled so the most active kept signature has 1: the soft labels
    ``sqrt(TAS_i TAS_j)`` then lie in [0, 1] as App. A.3.3 states. z-scores are clipped to
    +-``clip_z``. Landmark rows (``pr_is_lmark`` = 1 when the field exists) are named by
    ``pr_gene_symbol``: that symbol is how they are mapped onto a dataset's genes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from scpert.data.schema import SchemaError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
GCTX_MATRIX = "/0/DATA/0/matrix"
GCTX_ROW_META = "/0/META/ROW"
GCTX_COL_META = "/0/META/COL"
SYMBOL_FIELD = "pr_gene_symbol"
LANDMARK_FIELD = "pr_is_lmark"
DRUG_FIELDS = ("pert_iname", "pert_id")
TAS_METHODS = ("mean_abs_z", "cmap")


@dataclass
class Gct:
    """A GCT(X) matrix: ``data`` rows x columns (float32), row and column metadata by id."""

    data: pd.DataFrame
    row_meta: pd.DataFrame
    col_meta: pd.DataFrame


def is_hdf5(path: str | Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def _typed(values: pd.Series) -> pd.Series:
    """Text metadata -> numbers where every value parses (CMap writes -666 for missing)."""
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers if numbers.notna().all() else values


def _gctx_meta(group: h5py.Group) -> pd.DataFrame:
    fields = {}
    for name, dataset in group.items():
        values = dataset[()]
        if values.dtype.kind in ("S", "O"):
            values = np.array(
                [v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object
            )
        fields[name] = values
    if "id" not in fields:
        raise SchemaError(f"{group.file.filename}: {group.name}/id is missing")
    ids = pd.Index(fields.pop("id").astype(str), name="id")
    return pd.DataFrame(fields, index=ids)


def _read_gctx(path: Path, cids: Sequence[str] | None, rids: Sequence[str] | None) -> Gct:
    with h5py.File(path, "r") as f:
        for node in (GCTX_MATRIX, GCTX_ROW_META, GCTX_COL_META):
            if node not in f:
                raise SchemaError(f"{path}: GCTX node '{node}' is missing")
        rows, cols = _gctx_meta(f[GCTX_ROW_META]), _gctx_meta(f[GCTX_COL_META])
        matrix = f[GCTX_MATRIX]
        if matrix.shape != (len(cols), len(rows)):
            raise SchemaError(
                f"{path}: {GCTX_MATRIX} has shape {matrix.shape}, metadata give "
                f"({len(cols)} columns, {len(rows)} rows)"
            )
        col_idx = _positions(cols.index, cids, path, "column")
        row_idx = _positions(rows.index, rids, path, "row")
        order = np.argsort(col_idx)
        block = matrix[np.sort(col_idx), :] if len(col_idx) else np.zeros((0, len(rows)))
        block = block[np.argsort(order)][:, row_idx]
    rows, cols = rows.iloc[row_idx], cols.iloc[col_idx]
    data = pd.DataFrame(block.T.astype(np.float32), index=rows.index, columns=cols.index)
    return Gct(data, rows, cols)


def _positions(index: pd.Index, wanted, path: Path, what: str) -> np.ndarray:
    if wanted is None:
        return np.arange(len(index))
    wanted = [str(w) for w in wanted]
    missing = [w for w in wanted if w not in index]
    if missing:
        raise SchemaError(f"{path}: {what} id(s) not in the file, e.g. {missing[:3]}")
    return index.get_indexer(wanted)


def _read_gct_text(path: Path) -> Gct:
    with open(path) as handle:
        lines = handle.read().splitlines()
    version = lines[0].strip() if lines else ""
    if version not in ("#1.2", "#1.3"):
        raise SchemaError(
            f"{path}: line 1 is {version[:20]!r}, expected a GCT version "
            "('#1.2' or '#1.3') or an HDF5 (GCTX) file"
        )
    dims = [int(x) for x in lines[1].split("\t") if x.strip()] if len(lines) > 1 else []
    if version == "#1.2":
        dims += [1, 0]
    if len(dims) != 4:
        raise SchemaError(
            f"{path}: line 2 must give the dimensions (rows, columns"
            f"{', row fields, column fields' if version == '#1.3' else ''})"
        )
    n_rows, n_cols, n_rf, n_cf = dims
    header = lines[2].split("\t")
    if len(header) != 1 + n_rf + n_cols:
        raise SchemaError(
            f"{path}: line 3 has {len(header)} fields, expected "
            f"{1 + n_rf + n_cols} (id, {n_rf} row fields, {n_cols} columns)"
        )
    row_fields = header[1 : 1 + n_rf]
    col_ids = pd.Index(header[1 + n_rf :], name="id")
    col_lines = [line.split("\t") for line in lines[3 : 3 + n_cf]]
    data_lines = [line.split("\t") for line in lines[3 + n_cf : 3 + n_cf + n_rows]]
    if len(data_lines) != n_rows or any(len(f) != len(header) for f in col_lines + data_lines):
        raise SchemaError(
            f"{path}: expected {n_cf} column-field lines and {n_rows} data lines "
            f"of {len(header)} fields each"
        )
    col_meta = pd.DataFrame(
        {f[0]: _typed(pd.Series(f[1 + n_rf :], index=col_ids)) for f in col_lines}, index=col_ids
    )
    row_ids = pd.Index([f[0] for f in data_lines], name="id")
    row_meta = pd.DataFrame(
        {
            name: _typed(pd.Series([f[1 + j] for f in data_lines], index=row_ids))
            for j, name in enumerate(row_fields)
        },
        index=row_ids,
    )
    if version == "#1.2":
        row_meta = row_meta.rename(columns={"Description": "description"})
    try:
        values = np.array([f[1 + n_rf :] for f in data_lines], dtype=np.float32)
    except ValueError as err:
        raise SchemaError(f"{path}: data values are not numeric ({err})") from None
    return Gct(pd.DataFrame(values, index=row_ids, columns=col_ids), row_meta, col_meta)


def read_gct(
    path: str | Path, cids: Sequence[str] | None = None, rids: Sequence[str] | None = None
) -> Gct:
    """Read a GCTX (HDF5) or text GCT 1.2/1.3 file, detected by content; optionally a subset of
    columns ``cids`` / rows ``rids`` (ids, in the order given)."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: file is missing")
    if is_hdf5(path):
        return _read_gctx(path, cids, rids)
    gct = _read_gct_text(path)
    col_idx = _positions(gct.col_meta.index, cids, path, "column")
    row_idx = _positions(gct.row_meta.index, rids, path, "row")
    return Gct(
        gct.data.iloc[row_idx, col_idx], gct.row_meta.iloc[row_idx], gct.col_meta.iloc[col_idx]
    )


def read_gct_meta(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Row and column metadata only (for a GCTX, without reading the matrix)."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: file is missing")
    if is_hdf5(path):
        with h5py.File(path, "r") as f:
            return _gctx_meta(f[GCTX_ROW_META]), _gctx_meta(f[GCTX_COL_META])
    gct = _read_gct_text(path)
    return gct.row_meta, gct.col_meta


def merge_info(meta: pd.DataFrame, info_path: str | Path, key: str) -> pd.DataFrame:
    """Add the fields of a GSE92742 side table (``sig_info``: key ``sig_id``; ``gene_info``: key
    ``pr_gene_id``) to metadata indexed by the same ids; the file's own fields win."""
    info = pd.read_csv(info_path, sep="\t", dtype=str, keep_default_na=False)
    if key not in info.columns:
        raise SchemaError(f"{info_path}: column '{key}' is missing")
    info = info.drop_duplicates(key).set_index(key)
    extra = info.loc[:, [c for c in info.columns if c not in meta.columns]]
    merged = meta.join(extra.apply(_typed), how="left")
    return merged


# ------------------------------------------------------------------------------------------- TAS
def landmark_rows(gct: Gct, source: str | Path = "<gct>") -> tuple[np.ndarray, list[str]]:
    """Positions and symbols of the landmark rows (all rows if ``pr_is_lmark`` is absent)."""
    meta = gct.row_meta
    if SYMBOL_FIELD not in meta.columns:
        raise SchemaError(f"{source}: row field '{SYMBOL_FIELD}' is missing (merge gene_info)")
    if LANDMARK_FIELD in meta.columns:
        flag = meta[LANDMARK_FIELD].astype(str).str.lower().isin(("1", "1.0", "true"))
        rows = np.flatnonzero(flag.to_numpy())
    else:
        rows = np.arange(len(meta))
    return rows, meta[SYMBOL_FIELD].iloc[rows].astype(str).tolist()


def transcriptional_activity(
    z: np.ndarray,
    col_meta: pd.DataFrame | None = None,
    method: str = "mean_abs_z",
    source: str | Path = "<gct>",
) -> np.ndarray:
    """TAS per signature; ``z`` is (signatures, landmarks). See the module docstring."""
    if method == "mean_abs_z":
        return np.abs(z).mean(axis=1)
    if method == "cmap":
        for field in ("distil_ss", "distil_cc_q75"):
            if col_meta is None or field not in col_meta.columns:
                raise SchemaError(f"{source}: column field '{field}' is missing (TAS 'cmap')")
        ss = col_meta["distil_ss"].to_numpy(float)
        cc = np.maximum(col_meta["distil_cc_q75"].to_numpy(float), 0.0)
        return np.sqrt(ss * cc / z.shape[1])
    raise ValueError(f"unknown TAS method '{method}' (known: {', '.join(TAS_METHODS)})")


# ----------------------------------------------------------------------------------------- views
@dataclass
class L1000Views:
    """Expression views: one row of ``x`` per kept signature, grouped by drug."""

    x: np.ndarray  # (views, landmarks) float32 clipped z-scores
    drug: np.ndarray  # (views,) drug name (the drug table's spelling)
    tas: np.ndarray  # (views,) TAS rescaled to (0, 1]
    meta: pd.DataFrame  # per view: id, drug, cell_id, pert_dose, tas (raw)
    landmarks: list[str]  # symbols of the columns of x

    def subset(self, keep: np.ndarray) -> L1000Views:
        return L1000Views(
            self.x[keep],
            self.drug[keep],
            self.tas[keep],
            self.meta.iloc[np.flatnonzero(keep)],
            self.landmarks,
        )


def _drug_lookup(drugs: Sequence[str]) -> dict[str, str]:
    return {str(d).lower(): str(d) for d in drugs}


def signature_drugs(
    col_meta: pd.DataFrame, drugs: Sequence[str], source: str | Path = "<gct>"
) -> pd.Series:
    """Drug-table name of each compound signature (NaN for controls and unknown compounds)."""
    fields = [f for f in DRUG_FIELDS if f in col_meta.columns]
    if not fields:
        raise SchemaError(f"{source}: column field 'pert_iname' is missing")
    lookup = _drug_lookup(drugs)
    matched = pd.Series(np.nan, index=col_meta.index, dtype=object)
    for field in reversed(fields):  # pert_iname wins over pert_id
        names = col_meta[field].astype(str).str.lower().map(lookup)
        matched = names.where(names.notna(), matched)
    if "pert_type" in col_meta.columns:
        matched[col_meta["pert_type"].astype(str).str.startswith("ctl")] = np.nan
    return matched


def _top_views(order: list[int], cells: np.ndarray, k: int) -> list[int]:
    first, rest, seen = [], [], set()
    for i in order:
        (rest if cells[i] in seen else first).append(i)
        seen.add(cells[i])
    return (first + rest)[:k]


def select_views(
    gct: Gct,
    drugs: Sequence[str],
    k: int = 3,
    tas: str = "mean_abs_z",
    clip_z: float = 10.0,
    source: str | Path = "<gct>",
) -> L1000Views:
    """Up to ``k`` highest-TAS signatures per drug of ``drugs`` (see the module docstring)."""
    rows, symbols = landmark_rows(gct, source)
    matched = signature_drugs(gct.col_meta, drugs, source)
    keep = matched.notna().to_numpy()
    z = gct.data.to_numpy(np.float32)[rows][:, keep].T
    meta = gct.col_meta.loc[keep]
    if not np.isfinite(z).all():
        raise SchemaError(f"{source}: signature values have NaN/inf")
    activity = transcriptional_activity(z, meta, tas, source)
    drug = matched.to_numpy()[keep].astype(str)
    cells = (
        meta["cell_id"].astype(str).to_numpy()
        if "cell_id" in meta.columns
        else np.array([""] * len(meta))
    )
    chosen = []
    for name in dict.fromkeys(drug):
        idx = np.flatnonzero(drug == name)
        finite = idx[np.isfinite(activity[idx])]
        order = finite[np.argsort(-activity[finite], kind="stable")].tolist()
        chosen += _top_views(order, cells, k)
    chosen = np.asarray(chosen, dtype=np.int64)
    raw = activity[chosen]
    scale = raw.max() if len(raw) and raw.max() > 0 else 1.0
    table = pd.DataFrame(
        {
            "id": meta.index[chosen].to_numpy(),
            "drug": drug[chosen],
            "cell_id": cells[chosen],
            "pert_dose": meta["pert_dose"].to_numpy()[chosen]
            if "pert_dose" in meta.columns
            else np.nan,
            "tas": raw,
        }
    )
    return L1000Views(
        np.clip(z[chosen], -clip_z, clip_z),
        drug[chosen],
        (raw / scale).astype(np.float32),
        table,
        symbols,
    )
