"""Out-of-core preprocessing for datasets that do not fit in memory (Tahoe-100M: 100M cells).

The in-memory rule ``preprocess`` (:func:`scpert.data.preprocess.preprocess_counts`) and
``select_hvg`` are reproduced exactly from per-shard statistics, with one job per shard (on SLURM
the shards spread over the cluster) and no job ever holding more than one batch of one shard:

pass A, rule ``qc_shard`` (:func:`qc_shard`)
    per shard: the cell QC of ``preprocess_counts`` (``max_pct_mito``, then ``min_genes``), the
    number of passing cells detecting each gene, the passing cells per group (a group is a
    ``condition`` on one ``plate``), and per group the ``max_cells_per_group`` smallest cell
    hashes (a 64-bit hash of the cell's name and ``seed``).
gather A, rule ``plan_shards`` (:func:`plan_shards`)
    the genes kept by ``min_cells``, the conditions kept by ``min_cells_per_condition``, the group
    table, and per group the hash threshold that selects its ``max_cells_per_group`` cells.
pass B, rule ``preprocess_shard`` (:func:`preprocess_shard`)
    per shard, batch by batch: ``normalize_total(target_sum)`` + ``log1p`` over the kept genes
    (the same scanpy calls as in memory, so every cell's values are bit-identical), per-group sums
    of ``X`` (the pseudobulk) and of its square, of ``expm1(X)`` and of its square (the moments
    the ``cell_ranger`` and ``seurat`` flavours rank), and the raw counts of the subsampled cells.
gather B, rule ``gather_shards`` (:func:`gather_shards`)
    the group statistics summed over shards in blocks of groups (``group_stats.h5``: groups x genes
    float64 ``sum_x``, ``sumsq_x``, ``sum_norm``, ``sumsq_norm``; ``n_cells`` and the group
    table), and ``processed.h5ad`` -- the capped cell subsample in the data contract -- written
    chunk by chunk into an HDF5 file readable with ``anndata.read_h5ad(..., backed="r")``.

The subsample is independent of how the data are sharded: a group keeps its cells with the
``max_cells_per_group`` smallest hashes. HVGs of a split (:func:`select_hvg_from_stats`, rule
``select_hvg_streamed``) sum the statistics of the split's training groups and controls and apply
scanpy's ``seurat`` / ``cell_ranger`` dispersion normalisation (scanpy 1.11
``_highly_variable_genes_single_batch``) to the resulting means and variances: the same genes as
``select_hvg`` on the whole data in memory. ``seurat_v3`` needs a second pass over the cells per
split (its clipped variances depend on the split's loess fit) and is refused with the key named.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scpert.data import schema
from scpert.data.schema import SchemaError
from scpert.data.shard_settings import ONE_PASS_FLAVORS, Settings  # noqa: F401 (re-exported)
from scpert.errors import ConfigError

log = logging.getLogger(__name__)

GROUP_FIELDS = (schema.CONDITION, schema.CELL_LINE, schema.DRUG, schema.DOSE, schema.PLATE)
STATS = ("sum_x", "sumsq_x", "sum_norm", "sumsq_norm")
#: the sums giving the moments each HVG flavour ranks: expm1(X) for seurat, X for cell_ranger
FLAVOR_SUMS = {"seurat": ("sum_norm", "sumsq_norm"), "cell_ranger": ("sum_x", "sumsq_x")}
NO_THRESHOLD = np.iinfo(np.uint64).max
#: a normal variable's 75% quantile: statsmodels' ``mad`` divides by it (scanpy cell_ranger)
NORMAL_Q75 = 0.6744897501960817
CHUNK_ROWS = 1 << 16


# --------------------------------------------------------------------------------------- cells
def cell_hashes(names: pd.Index, seed: int) -> np.ndarray:
    """A 64-bit hash per cell name (siphash with a key from ``seed``): the subsample order."""
    key = f"{int(seed) & 0xFFFFFFFF:016x}"[-16:]
    return pd.util.hash_pandas_object(
        pd.Series(np.asarray(names, dtype=object)), index=False, hash_key=key
    ).to_numpy(np.uint64)


def passing_cells(counts: sp.csr_matrix, var_names: pd.Index, settings: Settings) -> np.ndarray:
    """The cells ``preprocess_counts`` keeps: below ``max_pct_mito`` (``MT-`` genes), then at
    least ``min_genes`` detected genes (computed as there, row by row)."""
    keep = np.ones(counts.shape[0], dtype=bool)
    if settings.max_pct_mito is not None:
        mito = var_names.str.upper().str.startswith("MT-")
        pct = np.asarray(counts[:, mito].sum(1)).ravel() / np.maximum(
            np.asarray(counts.sum(1)).ravel(), 1
        )
        keep &= pct * 100 < settings.max_pct_mito
    if settings.min_genes > 0:
        keep &= np.asarray((counts > 0).sum(1)).ravel() >= settings.min_genes
    return keep


def group_frame(obs: pd.DataFrame) -> pd.DataFrame:
    """The group fields of each cell: ``condition`` and its parts, and ``plate`` (canonical text)."""
    out = pd.DataFrame(
        {
            schema.CELL_LINE: obs[schema.CELL_LINE].astype(str).to_numpy(),
            schema.DRUG: obs[schema.DRUG].astype(str).to_numpy(),
            schema.DOSE: obs[schema.DOSE].map(schema.format_dose).astype(str).to_numpy(),
            schema.PLATE: obs[schema.PLATE].astype(str).to_numpy(),
        },
        index=obs.index,
    )
    out.insert(0, schema.CONDITION, schema.add_condition(out).to_numpy())
    return out


def normalise(counts: sp.csr_matrix, target_sum: float) -> sp.csr_matrix:
    """``normalize_total(target_sum)`` + ``log1p`` exactly as ``preprocess_counts`` calls them."""
    import scanpy as sc

    batch = ad.AnnData(X=sp.csr_matrix(counts, dtype=np.float32))
    sc.pp.normalize_total(batch, target_sum=target_sum)
    sc.pp.log1p(batch)
    return sp.csr_matrix(batch.X, dtype=np.float32)


# ---------------------------------------------------------------------------------- HDF5 tables
UTF8 = h5py.string_dtype("utf-8")


def _write_strings(group: h5py.Group, name: str, values) -> None:
    """Text as variable-length UTF-8 (cell barcodes, drug and gene names may be any text)."""
    group.create_dataset(
        name, data=np.asarray(values, dtype=object).astype(str).astype(object), dtype=UTF8
    )


def _read_strings(dataset: h5py.Dataset) -> np.ndarray:
    return dataset.asstr()[()].astype(object)


def _write_table(group: h5py.Group, table: pd.DataFrame) -> None:
    for col in table.columns:
        values = table[col].to_numpy()
        if values.dtype == object:
            _write_strings(group, col, values)
        else:
            group.create_dataset(col, data=values)


def _read_table(group: h5py.Group) -> pd.DataFrame:
    data = {}
    for name, ds in group.items():
        data[name] = _read_strings(ds) if h5py.check_string_dtype(ds.dtype) else ds[()]
    return pd.DataFrame(data)


def _write_csr(group: h5py.Group, matrix: sp.csr_matrix, **kwargs) -> None:
    matrix = sp.csr_matrix(matrix)
    group.attrs["shape"] = matrix.shape
    for name in ("data", "indices", "indptr"):
        group.create_dataset(name, data=getattr(matrix, name), **kwargs)


def _read_csr(group: h5py.Group, rows: slice | None = None) -> sp.csr_matrix:
    shape = tuple(group.attrs["shape"])
    if rows is None:
        return sp.csr_matrix(
            (group["data"][()], group["indices"][()], group["indptr"][()]), shape=shape
        )
    indptr = group["indptr"][rows.start : rows.stop + 1]
    lo, hi = int(indptr[0]), int(indptr[-1])
    return sp.csr_matrix(
        (group["data"][lo:hi], group["indices"][lo:hi], indptr - lo),
        shape=(rows.stop - rows.start, shape[1]),
    )


# -------------------------------------------------------------------------------------- pass A
def qc_shard(batches: Iterable[ad.AnnData], settings: Settings, out_path) -> dict:
    """Pass A over one shard (see the module docstring); writes ``out_path`` (HDF5)."""
    start, cpu = time.monotonic(), time.process_time()
    gene_cells = None
    var_names = None
    keys, hashes, n_total, n_pass = [], [], 0, 0
    for batch in batches:
        counts = sp.csr_matrix(batch.X, dtype=np.float32)
        if var_names is None:
            var_names = batch.var_names
            gene_cells = np.zeros(batch.n_vars, dtype=np.int64)
        elif not batch.var_names.equals(var_names):
            raise SchemaError(f"{out_path}: batches of one shard have different genes")
        keep = passing_cells(counts, var_names, settings)
        gene_cells += np.asarray((counts[keep] > 0).sum(0)).ravel().astype(np.int64)
        groups = group_frame(batch.obs.iloc[np.flatnonzero(keep)])
        keys.append(groups)
        hashes.append(cell_hashes(groups.index, settings.seed))
        n_total += batch.n_obs
        n_pass += int(keep.sum())
    if var_names is None:
        raise SchemaError(f"{out_path}: the shard has no cells")
    cells = pd.concat(keys) if keys else pd.DataFrame(columns=GROUP_FIELDS)
    cells["hash"] = np.concatenate(hashes)
    table = (
        cells.groupby(list(GROUP_FIELDS), sort=True, observed=True)
        .size()
        .rename("n_cells")
        .reset_index()
    )
    # per group the K smallest hashes: enough to find every group's global threshold
    cells = cells.sort_values([schema.CONDITION, schema.PLATE, "hash"], kind="stable")
    rank = (
        cells.groupby([schema.CONDITION, schema.PLATE], sort=False, observed=True)
        .cumcount()
        .to_numpy()
    )
    candidates = cells[rank < settings.max_cells_per_group]
    with h5py.File(out_path, "w") as f:
        _write_strings(f, "genes", var_names)
        f.create_dataset("gene_cells", data=gene_cells)
        _write_table(f.create_group("groups"), table)
        _write_table(
            f.create_group("candidates"),
            pd.DataFrame(
                {
                    schema.CONDITION: candidates[schema.CONDITION].to_numpy(),
                    schema.PLATE: candidates[schema.PLATE].to_numpy(),
                    "hash": candidates["hash"].to_numpy(np.uint64),
                }
            ),
        )
        f.attrs.update(n_cells=n_total, n_passing=n_pass)
    log.info(
        "qc: %d cells, %d pass QC, %d groups (%.1f s, %.1f CPU s)",
        n_total,
        n_pass,
        len(table),
        time.monotonic() - start,
        time.process_time() - cpu,
    )
    return {"n_cells": n_total, "n_passing": n_pass, "n_groups": len(table)}


# ------------------------------------------------------------------------------------- gather A
@dataclass
class Plan:
    """Genes (all, in shard order) and which are kept; the kept groups with their thresholds."""

    genes: pd.Index
    keep_genes: np.ndarray
    groups: pd.DataFrame  # GROUP_FIELDS, n_cells, threshold (uint64); row = group id
    settings: Settings

    def group_ids(self, frame: pd.DataFrame) -> np.ndarray:
        """Group id per cell (-1: its condition was dropped)."""
        index = pd.MultiIndex.from_frame(self.groups[[schema.CONDITION, schema.PLATE]])
        cells = pd.MultiIndex.from_frame(frame[[schema.CONDITION, schema.PLATE]])
        return index.get_indexer(cells)

    def write(self, path) -> None:
        with h5py.File(path, "w") as f:
            _write_strings(f, "genes", self.genes)
            f.create_dataset("keep_genes", data=self.keep_genes)
            _write_table(f.create_group("groups"), self.groups)
            for key, value in asdict(self.settings).items():
                f.attrs[key] = "null" if value is None else value

    @classmethod
    def read(cls, path) -> Plan:
        with h5py.File(path, "r") as f:
            genes = pd.Index(_read_strings(f["genes"]))
            keep = f["keep_genes"][()].astype(bool)
            groups = _read_table(f["groups"])
            values = {
                k: (None if isinstance(v, str) and v == "null" else v) for k, v in f.attrs.items()
            }
        fields = Settings.__dataclass_fields__
        settings = Settings(
            **{k: (v.item() if hasattr(v, "item") else v) for k, v in values.items() if k in fields}
        )
        groups = groups[[*GROUP_FIELDS, "n_cells", "threshold"]]
        groups["threshold"] = groups["threshold"].astype(np.uint64)
        return cls(genes, keep, groups, settings)


def plan_shards(
    qc_paths: list, settings: Settings, control: str, source: str = "<dataset>"
) -> Plan:
    """Gather A: merge the shards' QC into the genes, groups and thresholds of pass B."""
    genes, gene_cells, tables, candidates = None, None, [], []
    for path in qc_paths:
        with h5py.File(path, "r") as f:
            names = pd.Index(_read_strings(f["genes"]))
            if genes is None:
                genes, gene_cells = names, np.zeros(len(names), dtype=np.int64)
            elif not names.equals(genes):
                raise SchemaError(f"{path}: the shard's genes differ from those of {qc_paths[0]}")
            gene_cells += f["gene_cells"][()]
            tables.append(_read_table(f["groups"]))
            candidates.append(_read_table(f["candidates"]))
    if genes is None:
        raise SchemaError(f"{source}: no shards")
    groups = (
        pd.concat(tables)
        .groupby(list(GROUP_FIELDS), sort=True, observed=True)["n_cells"]
        .sum()
        .reset_index()
    )
    if groups.empty:
        raise SchemaError(f"{source}: no cell passes QC (min_genes, max_pct_mito)")
    sizes = groups.groupby(schema.CONDITION)["n_cells"].transform("sum")
    small = groups[sizes < settings.min_cells_per_condition][schema.CONDITION].unique()
    if len(small):
        log.info(
            "dropping %d conditions with < %d cells", len(small), settings.min_cells_per_condition
        )
    groups = groups[sizes >= settings.min_cells_per_condition].reset_index(drop=True)
    if not (groups[schema.DRUG] == control).any():
        raise SchemaError(
            f"{source}: obs['{schema.DRUG}'] has no control cells labelled '{control}' after QC"
        )
    cand = pd.concat(candidates).sort_values(
        [schema.CONDITION, schema.PLATE, "hash"], kind="stable"
    )
    cand["hash"] = cand["hash"].astype(np.uint64)
    rank = cand.groupby([schema.CONDITION, schema.PLATE], sort=False).cumcount().to_numpy()
    kth = cand[rank == settings.max_cells_per_group - 1].set_index(
        [schema.CONDITION, schema.PLATE]
    )["hash"]
    index = pd.MultiIndex.from_frame(groups[[schema.CONDITION, schema.PLATE]])
    # uint64 throughout (a float would round the hashes); groups below the cap keep every cell
    threshold = np.full(len(groups), NO_THRESHOLD, dtype=np.uint64)
    pos = index.get_indexer(kth.index)
    threshold[pos[pos >= 0]] = kth.to_numpy(np.uint64)[pos >= 0]
    groups["threshold"] = threshold
    keep_genes = (
        gene_cells >= settings.min_cells
        if settings.min_cells > 0
        else np.ones(len(genes), dtype=bool)
    )
    log.info(
        "plan: %d of %d genes kept (min_cells %d), %d groups, %d cells pass QC, subsample <= %d per group",
        keep_genes.sum(),
        len(genes),
        settings.min_cells,
        len(groups),
        groups["n_cells"].sum(),
        settings.max_cells_per_group,
    )
    return Plan(genes, keep_genes, groups, settings)


# -------------------------------------------------------------------------------------- pass B
def preprocess_shard(batches: Iterable[ad.AnnData], plan: Plan, out_path) -> dict:
    """Pass B over one shard (see the module docstring); writes ``out_path`` (HDF5)."""
    start, cpu = time.monotonic(), time.process_time()
    settings = plan.settings
    n_groups, n_genes = len(plan.groups), int(plan.keep_genes.sum())
    sums = {name: sp.csr_matrix((n_groups, n_genes), dtype=np.float64) for name in STATS}
    n_cells = np.zeros(n_groups, dtype=np.int64)
    picked_counts, picked_obs, n_seen = [], [], 0
    thresholds = plan.groups["threshold"].to_numpy(np.uint64)
    for batch in batches:
        if not batch.var_names.equals(plan.genes):
            raise SchemaError(f"{out_path}: the shard's genes differ from the plan's")
        counts = sp.csr_matrix(batch.X, dtype=np.float32)
        keep = passing_cells(counts, plan.genes, settings)
        groups = group_frame(batch.obs)
        gid = np.where(keep, plan.group_ids(groups), -1)
        rows = np.flatnonzero(gid >= 0)
        n_seen += batch.n_obs
        if not len(rows):
            continue
        gid = gid[rows]
        kept = counts[rows][:, plan.keep_genes]
        x = normalise(kept, settings.target_sum)
        norm = x.copy()
        norm.data = np.expm1(norm.data)  # float32, as scanpy's seurat flavour computes it
        indicator = sp.csr_matrix(
            (np.ones(len(rows)), (gid, np.arange(len(rows)))), shape=(n_groups, len(rows))
        )
        for name, matrix in (
            ("sum_x", x),
            ("sumsq_x", _square(x)),
            ("sum_norm", norm),
            ("sumsq_norm", _square(norm)),
        ):
            sums[name] = sums[name] + indicator @ sp.csr_matrix(matrix, dtype=np.float64)
        n_cells += np.bincount(gid, minlength=n_groups)
        hashes = cell_hashes(groups.index[rows], settings.seed)
        pick = hashes <= thresholds[gid]
        picked_counts.append(kept[pick])
        obs = groups.iloc[rows[pick]].copy()
        obs["group"] = gid[pick]
        picked_obs.append(obs)
    obs = pd.concat(picked_obs) if picked_obs else pd.DataFrame(columns=[*GROUP_FIELDS, "group"])
    with h5py.File(out_path, "w") as f:
        for name in STATS:
            _write_csr(f.create_group(f"stats/{name}"), sums[name].tocsr())
        f.create_dataset("stats/n_cells", data=n_cells)
        cells = f.create_group("cells")
        _write_csr(
            cells.create_group("counts"),
            sp.vstack(picked_counts, format="csr")
            if picked_counts
            else sp.csr_matrix((0, n_genes), dtype=np.float32),
        )
        _write_strings(cells, "names", obs.index)
        _write_table(
            cells.create_group("obs"), obs.reset_index(drop=True).astype({"group": np.int64})
        )
        f.attrs.update(n_cells=n_seen, n_kept=int(n_cells.sum()), n_subsample=len(obs))
    log.info(
        "preprocess: %d cells, %d kept in %d groups, %d subsampled (%.1f s, %.1f CPU s)",
        n_seen,
        n_cells.sum(),
        (n_cells > 0).sum(),
        len(obs),
        time.monotonic() - start,
        time.process_time() - cpu,
    )
    return {"n_cells": n_seen, "n_kept": int(n_cells.sum()), "n_subsample": len(obs)}


def _square(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Element-wise square in float32: scanpy's mean/variance kernel squares float32 values."""
    out = matrix.copy()
    out.data = matrix.data * matrix.data
    return out


# ------------------------------------------------------------------------------------- gather B
def gather_shards(
    shard_paths: list,
    plan: Plan,
    out_processed,
    out_stats,
    control: str,
    *,
    block_groups: int | None = None,
    memory_mb: float = 512.0,
) -> dict:
    """Gather B: ``group_stats.h5`` (summed in blocks of groups) and the subsample's
    ``processed.h5ad`` (written chunk by chunk). Callers make both writes atomic."""
    start, cpu = time.monotonic(), time.process_time()
    genes = plan.genes[plan.keep_genes]
    n_groups, n_genes = len(plan.groups), len(genes)
    if block_groups is None:  # the float64 blocks of groups x genes within memory_mb
        block_groups = max(1, int(memory_mb * 2**20 / (len(STATS) * 8 * max(n_genes, 1))))
    with h5py.File(out_stats, "w") as out:
        chunk = (min(block_groups, n_groups, 256), n_genes)
        datasets = {
            name: out.create_dataset(
                name, shape=(n_groups, n_genes), dtype=np.float64, chunks=chunk
            )
            for name in STATS
        }
        n_cells = np.zeros(n_groups, dtype=np.int64)
        for lo in range(0, n_groups, block_groups):
            hi = min(lo + block_groups, n_groups)
            block = {name: np.zeros((hi - lo, n_genes)) for name in STATS}
            for path in shard_paths:
                with h5py.File(path, "r") as f:
                    for name in STATS:
                        part = _read_csr(f[f"stats/{name}"], slice(lo, hi))
                        if part.nnz:
                            block[name] += part.toarray()
                    if lo == 0:
                        n_cells += f["stats/n_cells"][()]
            for name in STATS:
                datasets[name][lo:hi] = block[name]
        out.create_dataset("n_cells", data=n_cells)
        _write_strings(out, "genes", genes)
        _write_table(out.create_group("groups"), plan.groups.drop(columns=["threshold"]))
    expected = plan.groups["n_cells"].to_numpy()
    if not np.array_equal(n_cells, expected):
        bad = int(np.flatnonzero(n_cells != expected)[0])
        raise SchemaError(
            f"{out_stats}: group {plan.groups.iloc[bad][schema.CONDITION]} has {n_cells[bad]} cells "
            f"in pass B but {expected[bad]} in pass A (were the shards changed in between?)"
        )
    n_sub = _write_subsample(shard_paths, plan, genes, out_processed, control)
    log.info(
        "gather: %d shards, %d groups x %d genes, %d cells -> %d subsampled (%.1f s, %.1f CPU s)",
        len(shard_paths),
        n_groups,
        n_genes,
        n_cells.sum(),
        n_sub,
        time.monotonic() - start,
        time.process_time() - cpu,
    )
    return {
        "n_groups": n_groups,
        "n_genes": n_genes,
        "n_cells": int(n_cells.sum()),
        "n_subsample": n_sub,
    }


def _write_subsample(shard_paths, plan: Plan, genes: pd.Index, out_path, control: str) -> int:
    from anndata.io import sparse_dataset, write_elem

    settings = plan.settings
    obs_parts, names = [], []
    for path in shard_paths:
        with h5py.File(path, "r") as f:
            obs_parts.append(_read_table(f["cells/obs"]))
            names.append(_read_strings(f["cells/names"]))
    obs = pd.concat(obs_parts, ignore_index=True)
    if obs.empty:
        raise SchemaError(f"{out_path}: the subsample is empty")
    obs.index = pd.Index(np.concatenate(names))
    if not obs.index.is_unique:
        raise SchemaError(
            f"{out_path}: cell names repeat across shards, e.g. {obs.index[obs.index.duplicated()][0]}"
        )
    obs = obs[[schema.CELL_LINE, schema.DRUG, schema.DOSE, schema.PLATE, schema.CONDITION]]
    for key in obs.columns:
        obs[key] = pd.Categorical(obs[key].astype(str))
    kwargs = {"compression": "gzip", "chunks": (CHUNK_ROWS,)}
    with h5py.File(out_path, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        write_elem(f, "obs", obs)
        write_elem(f, "var", pd.DataFrame(index=genes))
        for k in ("obsm", "varm", "obsp", "varp", "layers"):
            write_elem(f, k, {})
        started = False
        for path in shard_paths:
            with h5py.File(path, "r") as src:
                counts = _read_csr(src["cells/counts"])
            for lo in range(0, counts.shape[0], CHUNK_ROWS):
                part = counts[lo : lo + CHUNK_ROWS]
                x = normalise(part, settings.target_sum)
                if not started:
                    write_elem(f, "X", x, dataset_kwargs=kwargs)
                    write_elem(
                        f["layers"],
                        "counts",
                        sp.csr_matrix(part, dtype=np.float32),
                        dataset_kwargs=kwargs,
                    )
                    started = True
                else:
                    sparse_dataset(f["X"]).append(x)
                    sparse_dataset(f["layers/counts"]).append(sp.csr_matrix(part, dtype=np.float32))
        write_elem(
            f,
            "uns",
            {
                "preprocess": {
                    "target_sum": float(settings.target_sum),
                    "min_genes": int(settings.min_genes),
                    "min_cells": int(settings.min_cells),
                    "control": control,
                },
                "out_of_core": {
                    "max_cells_per_group": int(settings.max_cells_per_group),
                    "seed": int(settings.seed),
                    "n_cells": int(plan.groups["n_cells"].sum()),
                    "n_groups": len(plan.groups),
                },
            },
        )
    return len(obs)


# -------------------------------------------------------------------------------- HVGs from stats
def dispersion_scores(
    mean: np.ndarray, var: np.ndarray, flavor: str, n_bins: int = 20
) -> np.ndarray:
    """Normalised dispersions of scanpy's ``seurat`` / ``cell_ranger`` flavour from the per-gene
    mean and (unbiased) variance of ``expm1(X)`` resp. ``X`` (scanpy 1.11
    ``_highly_variable_genes_single_batch``, no batch key)."""
    mean = np.array(mean, dtype=np.float64)
    mean[mean == 0] = 1e-12
    dispersion = var / mean
    if flavor == "seurat":
        dispersion[dispersion == 0] = np.nan
        dispersion = np.log(dispersion)
        mean = np.log1p(mean)
        bins = pd.cut(pd.Series(mean), bins=n_bins)
    elif flavor == "cell_ranger":
        bins = pd.cut(
            pd.Series(mean), bins=np.r_[-np.inf, np.percentile(mean, np.arange(10, 105, 5)), np.inf]
        )
    else:
        raise ValueError(f"flavor '{flavor}' is not one of {', '.join(ONE_PASS_FLAVORS)}")
    frame = pd.DataFrame({"dispersions": dispersion, "mean_bin": bins})
    grouped = frame.groupby("mean_bin", observed=True)["dispersions"]
    if flavor == "seurat":
        stats = grouped.agg(avg="mean", dev="std")
        one = stats["dev"].isnull()  # a bin with one gene: its normalised dispersion is 1
        stats.loc[one, "dev"] = stats.loc[one, "avg"]
        stats.loc[one, "avg"] = 0
    else:
        stats = grouped.agg(
            avg="median", dev=lambda a: np.median(np.abs(a - np.median(a))) / NORMAL_Q75
        )
    per_gene = stats.loc[frame["mean_bin"]].set_index(frame.index)
    return ((frame["dispersions"] - per_gene["avg"]) / per_gene["dev"]).to_numpy()


def _summed(stats_path, rows: np.ndarray, names, block: int = 1024):
    """Cells and the per-gene sums ``names`` over the groups ``rows`` (read in blocks)."""
    with h5py.File(stats_path, "r") as f:
        n = int(f["n_cells"][()][rows].sum())
        sums = [np.zeros(f[name].shape[1]) for name in names]
        idx = np.flatnonzero(rows)
        for lo in range(0, len(idx), block):
            sel = idx[lo : lo + block]
            for total, name in zip(sums, names):
                total += f[name][sel].sum(0)
    return n, *sums


def mean_var(n: int, s: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased variance from the count, sum and sum of squares (scanpy's estimator)."""
    mean = s / n
    var = q / n - mean**2
    if n != 1:
        var *= n / (n - 1)
    return mean, var


def select_hvg_from_stats(
    stats_path,
    split_table: pd.DataFrame,
    *,
    n_top_genes: int,
    flavor: str = "seurat",
    control: str = schema.DEFAULT_CONTROL,
    key: str = "hvg.flavor",
) -> pd.DataFrame:
    """The split's genes like :func:`scpert.data.preprocess.select_hvg` on the whole data: fitted
    on the training conditions and all controls; ``gene, rank, dispersion`` in gene order."""
    ranking = hvg_ranking_from_stats(
        stats_path, split_table, n_top_genes=n_top_genes, flavor=flavor, control=control, key=key
    )
    return ranking[ranking["rank"] <= n_top_genes].reset_index(drop=True)


def hvg_ranking_from_stats(
    stats_path,
    split_table: pd.DataFrame,
    *,
    n_top_genes: int,
    flavor: str = "seurat",
    control: str = schema.DEFAULT_CONTROL,
    key: str = "hvg.flavor",
) -> pd.DataFrame:
    """Every gene ranked like :func:`scpert.data.preprocess.hvg_ranking` (``hvg_ranking.tsv``),
    from the group statistics of the training conditions and all controls."""
    if flavor not in ONE_PASS_FLAVORS:
        raise ConfigError(
            f"{key}: '{flavor}' needs a second pass over the cells of each split; out-of-core "
            f"datasets take {' or '.join(ONE_PASS_FLAVORS)} (seurat: the papers' sc.pp.highly_variable_genes default)"
        )
    with h5py.File(stats_path, "r") as f:
        genes = pd.Index(_read_strings(f["genes"]))
        groups = _read_table(f["groups"])
    train = set(split_table.loc[split_table["split"] == "train", "condition"].astype(str))
    rows = (groups[schema.CONDITION].isin(train) | (groups[schema.DRUG] == control)).to_numpy()
    if n_top_genes >= len(genes):
        ranks, score = np.arange(len(genes)), np.full(len(genes), np.nan)
    else:
        n, first, second = _summed(stats_path, rows, FLAVOR_SUMS[flavor])
        mean, var = mean_var(n, first, second)
        score = dispersion_scores(mean, var, flavor)
        order = np.lexsort((np.arange(len(score)), -np.nan_to_num(score, nan=-np.inf)))
        ranks = np.empty_like(order)
        ranks[order] = np.arange(len(order))
    return pd.DataFrame({"gene": genes, "rank": ranks + 1, "dispersion": score})


# ---------------------------------------------------------------------------------- shard readers
def h5ad_shard(path: str, batch_rows: int = CHUNK_ROWS) -> Iterator[ad.AnnData]:
    """A contract raw-count h5ad read in row batches (backed), for sharded h5ad datasets."""
    backed = ad.read_h5ad(path, backed="r")
    for lo in range(0, backed.n_obs, batch_rows):
        yield backed[lo : lo + batch_rows].to_memory()
    backed.file.close()
