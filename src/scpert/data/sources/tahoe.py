"""Tahoe-100M (Zhang et al. 2025; scPPDM §4.1, StateXDiff arXiv:2605.16104 §4, PerturbDiff
arXiv:2602.19685 App. A.2): ``https://huggingface.co/datasets/tahoebio/Tahoe-100M``, CC0.

Expression shards ``data/train-XXXXX-of-03388.parquet``: one row per cell with ``genes`` (a list
of token ids) and ``expressions`` (the counts of those tokens), ``drug``, ``sample``,
``cell_line_id`` (Cellosaurus id), ``plate``, ``BARCODE_SUB_LIB_ID`` (the cell barcode),
``canonical_smiles``, ``moa-fine``. Metadata ``metadata/gene_metadata.parquet`` maps
``token_id`` to ``gene_symbol`` (and ``ensembl_id``); ``metadata/sample_metadata.parquet``
gives every ``sample`` its ``drugname_drugconc``, a list of ``(drug, concentration, unit)``
tuples written as text, e.g. ``"[('Dabrafenib', 0.05, 'uM')]"``; ``drug_metadata.parquet``
gives ``canonical_smiles``, ``moa-fine`` and ``targets`` per ``drug``;
``cell_line_metadata.parquet`` names the Cellosaurus ids (``Cell_ID_Cellosaur``, ``cell_name``).

Mapping onto the data contract (:func:`read_shard`):

- the first entry of every cell's ``genes`` / ``expressions`` is a marker (token id 1 with value
  -2 in the released shards), not a gene: it is dropped; the remaining tokens are looked up in
  the gene metadata (a token it does not list is an error naming the shard);
- ``drug`` ``DMSO_TF`` (the vehicle) is the control, dose 0; other doses come from
  ``drugname_drugconc`` of the cell's ``sample``, converted to uM;
- ``cell_line`` is ``cell_line_id`` (or its ``cell_name`` when the cell-line metadata is given),
  ``plate`` is ``plate``.

Shards are read in row batches (``batch_rows``) with pyarrow, so a reader never holds more than
one shard; whole-dataset preprocessing streams shards (:mod:`scpert.data.out_of_core`).
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scpert.data import schema
from scpert.data.schema import SchemaError
from scpert.data.sources import Loaded, check_options
from scpert.data.sources.obs_map import UNIT_TO_UM, perturbation_table

log = logging.getLogger(__name__)

OPTIONS = ("control_drug", "cell_line_names", "batch_rows")
CONTROL_DRUG = "DMSO_TF"
SHARD_COLUMNS = ("genes", "expressions", "drug", "sample", "cell_line_id", "plate")
BARCODE = "BARCODE_SUB_LIB_ID"


@dataclass(frozen=True)
class TahoeGenes:
    """Token id -> column: ``lookup[token]`` is the gene's column (-1 for unknown tokens)."""

    symbols: pd.Index
    lookup: np.ndarray

    @classmethod
    def read(cls, path: str | Path) -> TahoeGenes:
        table = pd.read_parquet(path)
        for col in ("token_id", "gene_symbol"):
            if col not in table.columns:
                raise SchemaError(f"{path}: column '{col}' is missing (Tahoe gene_metadata)")
        tokens = table["token_id"].to_numpy(np.int64)
        if (tokens < 0).any() or pd.Index(tokens).duplicated().any():
            raise SchemaError(f"{path}: column 'token_id' has negative or duplicated ids")
        symbols = table["gene_symbol"].astype(str).to_numpy()
        lookup = np.full(int(tokens.max()) + 1, -1, dtype=np.int64)
        lookup[tokens] = np.arange(len(tokens))
        return cls(pd.Index(ad.utils.make_index_unique(pd.Index(symbols))), lookup)


def parse_drugconc(text: str, where: str) -> list[tuple[str, float]]:
    """``"[('Drug', 0.05, 'uM')]"`` -> ``[("Drug", 0.05)]`` in uM (several tuples: a combination)."""
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        raise SchemaError(
            f"{where}: drugname_drugconc '{text}' is not a list of (drug, conc, unit)"
        ) from None
    if isinstance(value, tuple):
        value = [value]
    out = []
    for item in value if isinstance(value, list) else [None]:
        if not (isinstance(item, tuple) and len(item) == 3):
            raise SchemaError(
                f"{where}: drugname_drugconc '{text}' is not a list of (drug, conc, unit)"
            )
        drug, conc, unit = item
        factor = UNIT_TO_UM.get(str(unit).strip().lower())
        if factor is None:
            raise SchemaError(
                f"{where}: drugname_drugconc '{text}' has unit '{unit}' (known: {', '.join(UNIT_TO_UM)})"
            )
        out.append((str(drug), float(conc) * factor))
    return out


def read_samples(path: str | Path, control_drug: str = CONTROL_DRUG) -> pd.DataFrame:
    """``sample`` -> contract ``drug`` name and ``dose`` text (sample_metadata.parquet)."""
    table = pd.read_parquet(path)
    for col in ("sample", "drugname_drugconc"):
        if col not in table.columns:
            raise SchemaError(f"{path}: column '{col}' is missing (Tahoe sample_metadata)")
    rows = {}
    for sample, text in zip(table["sample"].astype(str), table["drugname_drugconc"]):
        parts = parse_drugconc(text, f"{path}: sample {sample}")
        names = [d for d, _ in parts]
        if control_drug in names:
            rows[sample] = (control_drug, "0")
        else:
            rows[sample] = (
                schema.COMBO_SEP.join(names),
                schema.COMBO_SEP.join(schema.format_dose(c) for _, c in parts),
            )
    return pd.DataFrame.from_dict(rows, orient="index", columns=["drug", "dose"])


def read_cell_line_names(path: str | Path) -> dict[str, str]:
    table = pd.read_parquet(path)
    for col in ("Cell_ID_Cellosaur", "cell_name"):
        if col not in table.columns:
            raise SchemaError(f"{path}: column '{col}' is missing (Tahoe cell_line_metadata)")
    return dict(zip(table["Cell_ID_Cellosaur"].astype(str), table["cell_name"].astype(str)))


def iter_batches(path: str | Path, batch_rows: int = 65536) -> Iterator:
    """pyarrow record batches of a shard with the columns the loader reads."""
    import pyarrow.parquet as pq

    try:
        shard = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises ArrowInvalid and OSError for non-parquet files
        raise SchemaError(f"{path}: not a readable parquet file ({err})") from None
    names = set(shard.schema_arrow.names)
    missing = [c for c in SHARD_COLUMNS if c not in names]
    if missing:
        raise SchemaError(f"{path}: column '{missing[0]}' is missing (Tahoe expression shard)")
    columns = [*SHARD_COLUMNS, *([BARCODE] if BARCODE in names else [])]
    yield from shard.iter_batches(batch_size=batch_rows, columns=columns)


def batch_counts(batch, genes: TahoeGenes, source) -> sp.csr_matrix:
    """Token lists of a record batch -> counts CSR (cells x genes), the first marker dropped."""
    tok_col, val_col = batch.column("genes"), batch.column("expressions")
    offsets = np.asarray(tok_col.offsets.to_numpy(), dtype=np.int64)
    offsets = offsets - offsets[0]
    tokens = np.asarray(tok_col.flatten().to_numpy(zero_copy_only=False), dtype=np.int64)
    values = np.asarray(val_col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    val_offsets = np.asarray(val_col.offsets.to_numpy(), dtype=np.int64)
    if not np.array_equal(val_offsets - val_offsets[0], offsets):
        raise SchemaError(f"{source}: 'genes' and 'expressions' lists differ in length")
    lengths = np.diff(offsets)
    keep = np.ones(len(tokens), dtype=bool)
    keep[offsets[:-1][lengths > 0]] = False  # the marker token opening every cell
    tokens, values = tokens[keep], values[keep]
    indptr = np.concatenate([[0], np.cumsum(np.maximum(lengths - 1, 0))])
    inside = tokens < len(genes.lookup)
    cols = np.where(inside, genes.lookup[np.minimum(tokens, len(genes.lookup) - 1)], -1)
    if (cols < 0).any():
        bad = np.unique(tokens[cols < 0])[:3].tolist()
        raise SchemaError(f"{source}: token ids {bad} are not in the gene metadata (token_id)")
    if values.size and (values.min() < 0 or not np.array_equal(values, np.round(values))):
        raise SchemaError(f"{source}: 'expressions' (after the marker token) are not raw counts")
    matrix = sp.csr_matrix((values, cols, indptr), shape=(len(lengths), len(genes.symbols)))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix


def batch_obs(
    batch, samples: pd.DataFrame, control: str, control_drug: str, names, source, offset: int
) -> pd.DataFrame:
    frame = batch.select(
        [c for c in ("drug", "sample", "cell_line_id", "plate", BARCODE) if c in batch.schema.names]
    ).to_pandas()
    sample = frame["sample"].astype(str)
    unknown = sorted(set(sample) - set(samples.index))
    if unknown:
        raise SchemaError(f"{source}: samples {unknown[:3]} are not in the sample metadata")
    drug = samples.loc[sample, "drug"].to_numpy()
    dose = samples.loc[sample, "dose"].to_numpy()
    shard_drug = frame["drug"].astype(str).to_numpy()
    is_control = (shard_drug == control_drug) | (drug == control_drug)
    mismatch = (
        ~is_control
        & (shard_drug != drug)
        & np.array([d not in schema.components(m) for d, m in zip(shard_drug, drug)])
    )
    if mismatch.any():
        i = int(np.flatnonzero(mismatch)[0])
        raise SchemaError(
            f"{source}: cell {offset + i}: drug '{shard_drug[i]}' but its sample "
            f"'{sample.iloc[i]}' gives '{drug[i]}'"
        )
    cell_line = frame["cell_line_id"].astype(str)
    if names:
        cell_line = cell_line.map(lambda c: names.get(c, c))
    if BARCODE in frame.columns:
        index = frame[BARCODE].astype(str).to_numpy()
    else:
        index = np.array([f"{Path(str(source)).stem}:{offset + i}" for i in range(len(frame))])
    return pd.DataFrame(
        {
            schema.CELL_LINE: cell_line.to_numpy(),
            schema.DRUG: np.where(is_control, control, drug),
            schema.DOSE: np.where(is_control, "0", dose),
            schema.PLATE: frame["plate"].astype(str).to_numpy(),
        },
        index=pd.Index(index, name=None),
    )


def iter_shard(
    path: str | Path,
    genes: TahoeGenes,
    samples: pd.DataFrame,
    control: str = schema.DEFAULT_CONTROL,
    *,
    control_drug: str = CONTROL_DRUG,
    cell_line_names: dict[str, str] | None = None,
    batch_rows: int = 65536,
) -> Iterator[ad.AnnData]:
    """One expression shard in batches of ``batch_rows`` cells (raw-count AnnData in the contract)."""
    n = 0
    var = pd.DataFrame(index=genes.symbols)
    for batch in iter_batches(path, batch_rows):
        counts = batch_counts(batch, genes, path)
        obs = batch_obs(batch, samples, control, control_drug, cell_line_names, path, n)
        n += batch.num_rows
        yield ad.AnnData(X=counts, obs=obs, var=var)
    if n == 0:
        raise SchemaError(f"{path}: the shard has no cells")


def shard_reader(files: dict, options: dict, control: str, where: str):
    """A reader ``path -> batches`` of Tahoe shards, with the metadata of ``files`` loaded once."""
    check_options(options, OPTIONS, where)
    control_drug = options.get("control_drug", CONTROL_DRUG)
    genes = TahoeGenes.read(files["genes"])
    samples = read_samples(files["samples"], control_drug)
    names = (
        read_cell_line_names(files["cell_lines"])
        if files.get("cell_lines") and options.get("cell_line_names", True)
        else None
    )
    rows = options.get("batch_rows", 65536)

    def read(path):
        return iter_shard(
            path,
            genes,
            samples,
            control,
            control_drug=control_drug,
            cell_line_names=names,
            batch_rows=rows,
        )

    return read


def read_shard(
    path: str | Path,
    genes: TahoeGenes,
    samples: pd.DataFrame,
    control: str = schema.DEFAULT_CONTROL,
    *,
    control_drug: str = CONTROL_DRUG,
    cell_line_names: dict[str, str] | None = None,
    batch_rows: int = 65536,
) -> ad.AnnData:
    """One expression shard as a raw-count AnnData in the contract."""
    batches = list(
        iter_shard(
            path,
            genes,
            samples,
            control,
            control_drug=control_drug,
            cell_line_names=cell_line_names,
            batch_rows=batch_rows,
        )
    )
    frame = pd.concat([b.obs for b in batches])
    if not frame.index.is_unique:
        frame.index = pd.Index(ad.utils.make_index_unique(frame.index))
    return ad.AnnData(
        X=sp.vstack([b.X for b in batches], format="csr"), obs=frame, var=batches[0].var
    )


def read_drugs(path: str | Path) -> pd.DataFrame:
    """drug_metadata.parquet -> drug -> smiles, moa, targets."""
    table = pd.read_parquet(path)
    cols = set(table.columns)
    if "drug" not in cols:
        raise SchemaError(f"{path}: column 'drug' is missing (Tahoe drug_metadata)")
    smiles = next((c for c in ("canonical_smiles", "smiles") if c in cols), None)
    if smiles is None:
        raise SchemaError(f"{path}: column 'canonical_smiles' is missing (Tahoe drug_metadata)")
    moa = next((c for c in ("moa-fine", "moa-broad", "moa") if c in cols), None)
    out = pd.DataFrame(
        {
            "smiles": table[smiles].astype(str).to_numpy(),
            "moa": table[moa].astype(str).to_numpy() if moa else "",
            "targets": table["targets"].map(_targets).to_numpy() if "targets" in cols else "",
        },
        index=table["drug"].astype(str),
    )
    return out[~out.index.duplicated()]


def _targets(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (list, tuple, np.ndarray)):
        return ";".join(str(v) for v in value)
    return ";".join(p.strip() for p in str(value).replace(",", ";").split(";") if p.strip())


def perturbations(
    drugs_in_data, control: str, files: dict, options: dict, where: str
) -> pd.DataFrame:
    """The perturbation table of the drugs in the data (SMILES, MoA, targets: ``files.drugs``)."""
    return tahoe_perturbations(drugs_in_data, control, files.get("drugs"))


def tahoe_perturbations(drugs_in_data, control: str, drugs_path=None) -> pd.DataFrame:
    meta = read_drugs(drugs_path) if drugs_path else None
    smiles = meta["smiles"].to_dict() if meta is not None else {}
    moa = meta["moa"].to_dict() if meta is not None else {}
    targets = meta["targets"].to_dict() if meta is not None else {}
    return perturbation_table(
        pd.Series(drugs_in_data), control, "chemical", smiles=smiles, moa=moa, targets=targets
    )


def load(files: dict, options: dict, control: str, where: str) -> Loaded:
    """Tahoe shards read in memory (a few shards; the whole atlas goes through the out-of-core
    rules instead, :mod:`scpert.data.out_of_core`)."""
    read = shard_reader(files, options, control, where)
    shards = files["shards"] if isinstance(files["shards"], (list, tuple)) else [files["shards"]]
    batches = [batch for path in shards for batch in read(path)]
    adata = ad.concat(batches, merge="same")
    if not adata.obs_names.is_unique:
        adata.obs_names_make_unique()
    table = tahoe_perturbations(adata.obs[schema.DRUG].unique(), control, files.get("drugs"))
    log.info(
        "%d shards: %d cells x %d genes, %d drugs",
        len(shards),
        adata.n_obs,
        adata.n_vars,
        len(table),
    )
    return Loaded(adata, table)


def write_shard(
    path: str | Path,
    counts: sp.csr_matrix,
    obs: pd.DataFrame,
    token_ids: np.ndarray,
    *,
    marker_token: int = 1,
    marker_value: float = -2.0,
    row_group_rows: int = 16384,
) -> None:
    """Write cells in the released shard layout (the inverse of :func:`read_shard`): ``genes``
    lists of token ids opened by the marker token, ``expressions`` opened by its value, and the
    obs columns as given (``drug``, ``sample``, ``cell_line_id``, ``plate``, ...). Used to make
    fixtures and the benchmark's Tahoe-like data."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    counts = sp.csr_matrix(counts)
    counts.sort_indices()
    n = counts.shape[0]
    lengths = np.diff(counts.indptr) + 1
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.empty(offsets[-1], dtype=np.int64)
    values = np.empty(offsets[-1], dtype=np.float32)
    starts = offsets[:-1]
    tokens[starts], values[starts] = marker_token, marker_value
    body = np.ones(offsets[-1], dtype=bool)
    body[starts] = False
    tokens[body] = np.asarray(token_ids, dtype=np.int64)[counts.indices]
    values[body] = counts.data
    list_offsets = pa.array(offsets.astype(np.int32))  # list<...> with int32 offsets, as released
    columns = {
        "genes": pa.ListArray.from_arrays(list_offsets, pa.array(tokens)),
        "expressions": pa.ListArray.from_arrays(list_offsets, pa.array(values)),
    }
    for col in obs.columns:
        columns[col] = pa.array(obs[col].astype(str).to_numpy())
    if len(obs) != n:
        raise ValueError(f"{len(obs)} obs rows for {n} cells")
    pq.write_table(pa.table(columns), path, row_group_size=row_group_rows)
