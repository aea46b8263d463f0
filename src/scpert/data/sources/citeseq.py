"""CITE-seq (paired RNA + surface protein) for StateXDiff's protein modality (arXiv:2605.16104
§3.2, App. B.4: GSE152469, PBMCs of a CLL patient before and under ibrutinib, M0 / M3 / M27).

Reads 10x Genomics feature-barcode matrices, the layout Cell Ranger writes for CITE-seq and GEO
series carry as supplementary files: per sample a Matrix Market triple ``matrix.mtx(.gz)``
(features x barcodes), ``features.tsv(.gz)`` (``id, name, feature_type``) and
``barcodes.tsv(.gz)``, named ``<sample prefix>matrix.mtx.gz`` etc. inside a folder or a tar
archive (GEO's ``<series>_RAW.tar``), or a 10x HDF5 ``*.h5`` (group ``matrix``). Features of
type ``Gene Expression`` become the RNA counts, ``Antibody Capture`` the ADT counts.

The result follows the synthetic world's ``citeseq.h5ad``: raw RNA counts in ``X`` (var = gene
symbols), ``obsm["protein"]`` a DataFrame of ADT counts (columns = antibody names), obs
``sample`` (the file prefix, renamed by option ``samples``) and ``cell_line`` (the context: the
sample label, or a cell-type column of an ``annotation`` table keyed by barcode).
"""

from __future__ import annotations

import io
import logging
import re
import tarfile
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from scpert.data import schema
from scpert.data.schema import SchemaError

log = logging.getLogger(__name__)

RNA, ADT = "Gene Expression", "Antibody Capture"
TRIPLE = re.compile(
    r"^(?P<prefix>.*?)(?P<part>matrix\.mtx|features\.tsv|genes\.tsv|barcodes\.tsv)(\.gz)?$"
)


def _members(path: Path) -> dict[str, bytes]:
    """name -> bytes of the 10x files in a folder or tar archive (basename keys)."""
    found = {}
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and (TRIPLE.match(p.name) or p.suffix == ".h5"):
                found[p.name] = p.read_bytes()
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                name = Path(m.name).name
                if m.isfile() and (TRIPLE.match(name) or name.endswith(".h5")):
                    found[name] = tar.extractfile(m).read()
    elif path.suffix == ".h5":
        found[path.name] = path.read_bytes()
    else:
        raise SchemaError(f"{path}: not a folder, tar archive or 10x .h5 file of CITE-seq matrices")
    return found


def _open(data: bytes, name: str):
    import gzip

    return io.BytesIO(gzip.decompress(data) if name.endswith(".gz") else data)


def _read_triple(files: dict[str, bytes], source) -> tuple[sp.csr_matrix, pd.DataFrame, np.ndarray]:
    names = {TRIPLE.match(n).group("part"): n for n in files}
    feat_name = names.get("features.tsv") or names.get("genes.tsv")
    if "matrix.mtx" not in names or feat_name is None or "barcodes.tsv" not in names:
        raise SchemaError(
            f"{source}: a sample needs matrix.mtx, features.tsv and barcodes.tsv, got {sorted(files)}"
        )
    matrix = scipy.io.mmread(_open(files[names["matrix.mtx"]], names["matrix.mtx"]))
    features = pd.read_csv(_open(files[feat_name], feat_name), sep="\t", header=None, dtype=str)
    if features.shape[1] < 3:
        features[2] = RNA  # 10x v2 genes.tsv: expression only
    barcodes = pd.read_csv(
        _open(files[names["barcodes.tsv"]], names["barcodes.tsv"]), sep="\t", header=None, dtype=str
    )[0]
    if matrix.shape != (len(features), len(barcodes)):
        raise SchemaError(
            f"{source}: matrix.mtx is {matrix.shape}, features.tsv has {len(features)} rows and "
            f"barcodes.tsv {len(barcodes)}"
        )
    feats = pd.DataFrame({"id": features[0], "name": features[1], "type": features[2]})
    return sp.csr_matrix(matrix.T, dtype=np.float32), feats, barcodes.to_numpy()


def _read_h5(data: bytes, source) -> tuple[sp.csr_matrix, pd.DataFrame, np.ndarray]:
    with h5py.File(io.BytesIO(data), "r") as f:
        if "matrix" not in f:
            raise SchemaError(
                f"{source}: group 'matrix' is missing (10x HDF5 feature-barcode matrix)"
            )
        g = f["matrix"]
        shape = tuple(g["shape"][()])
        m = sp.csc_matrix((g["data"][()], g["indices"][()], g["indptr"][()]), shape=shape)
        dec = lambda a: np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a])  # noqa: E731
        feats = pd.DataFrame(
            {
                "id": dec(g["features/id"][()]),
                "name": dec(g["features/name"][()]),
                "type": dec(g["features/feature_type"][()]),
            }
        )
        barcodes = dec(g["barcodes"][()])
    return sp.csr_matrix(m.T, dtype=np.float32), feats, barcodes


def read_citeseq(
    path: str | Path,
    *,
    samples: dict[str, str] | None = None,
    annotation: str | Path | None = None,
    annotation_column: str = "cell_type",
) -> ad.AnnData:
    """All samples of ``path`` (folder, tar or .h5) -> the CITE-seq AnnData described above."""
    path = Path(path)
    files = _members(path)
    groups: dict[str, dict[str, bytes]] = {}
    for name, data in files.items():
        match = TRIPLE.match(name)
        prefix = match.group("prefix") if match else name[: -len(".h5")]
        groups.setdefault(prefix, {})[name] = data
    if not groups:
        raise SchemaError(
            f"{path}: no 10x matrices (matrix.mtx/features.tsv/barcodes.tsv or .h5) found"
        )
    parts = []
    for prefix, members in sorted(groups.items()):
        where = f"{path}:{prefix or '<sample>'}"
        if len(members) == 1 and next(iter(members)).endswith(".h5"):
            counts, feats, barcodes = _read_h5(next(iter(members.values())), where)
        else:
            counts, feats, barcodes = _read_triple(members, where)
        rna, adt = (feats["type"] == RNA).to_numpy(), (feats["type"] == ADT).to_numpy()
        if not adt.any():
            raise SchemaError(f"{where}: no '{ADT}' features (ADT) in features.tsv")
        label = (samples or {}).get(prefix.rstrip("_-."), prefix.rstrip("_-.") or "sample")
        obs = pd.DataFrame({"sample": label}, index=[f"{label}:{b}" for b in barcodes])
        part = ad.AnnData(
            X=counts[:, rna],
            obs=obs,
            var=pd.DataFrame(index=ad.utils.make_index_unique(pd.Index(feats["name"][rna]))),
        )
        part.obsm["protein"] = pd.DataFrame(
            counts[:, adt].toarray().astype(np.int64),
            index=obs.index,
            columns=feats["name"][adt].to_numpy(),
        )
        parts.append(part)
    genes = parts[0].var_names
    proteins = parts[0].obsm["protein"].columns
    for part in parts[1:]:
        if not part.var_names.equals(genes) or not part.obsm["protein"].columns.equals(proteins):
            raise SchemaError(f"{path}: samples have different gene or antibody panels")
    adata = ad.concat(parts, merge="same")
    adata.obsm["protein"] = pd.concat([p.obsm["protein"] for p in parts])
    adata.obs[schema.CELL_LINE] = adata.obs["sample"].astype(str)
    if annotation:
        table = pd.read_csv(annotation, sep=None, engine="python", dtype=str, index_col=0)
        if annotation_column not in table.columns:
            raise SchemaError(f"{annotation}: column '{annotation_column}' is missing")
        label = table[annotation_column].reindex(adata.obs_names)
        n = int(label.isna().sum())
        if n:
            log.info("%s: %d cells without a '%s'; dropped", annotation, n, annotation_column)
        adata = adata[label.notna().to_numpy()].copy()
        adata.obs[schema.CELL_LINE] = label.dropna().to_numpy()
    for col in ("sample", schema.CELL_LINE):
        adata.obs[col] = pd.Categorical(adata.obs[col].astype(str))
    log.info(
        "%s: %d cells, %d genes, %d antibodies, samples %s",
        path,
        adata.n_obs,
        adata.n_vars,
        len(proteins),
        sorted(set(adata.obs["sample"])),
    )
    return adata
