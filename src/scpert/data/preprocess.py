"""Preprocessing (rules ``preprocess`` and ``select_hvg``, docs/architecture.md "Rules").

``preprocess_counts``: QC (cells with too few genes, genes in too few cells, conditions with too
few cells), ``normalize_total(target_sum)`` + ``log1p`` into ``X``, raw counts in
``layers["counts"]``, the ``condition`` key. This is scPerturBench's preprocessing of its released
data (min_genes / min_cells / normalize_total 1e4 / log1p), without the mitochondrial filter,
which needs ``MT-`` genes the synthetic world does not have (``max_pct_mito`` applies it when set).

``hvg_ranking`` / ``select_hvg``: genes ranked by variability on the TRAIN cells of one split only
(controls included, test and validation cells excluded) so that gene selection cannot leak test
conditions; the split's evaluated genes are the top ``n_top_genes`` (``genes.tsv``), and a method
may train on more of the ranking (``training_genes``; the ``train_genes`` method parameter,
``docs/architecture.md`` "Gene spaces").
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scpert.data import schema

log = logging.getLogger(__name__)


def preprocess_counts(
    raw: ad.AnnData,
    *,
    min_genes: int = 0,
    min_cells: int = 0,
    min_cells_per_condition: int = 1,
    target_sum: float = 1e4,
    max_pct_mito: float | None = None,
    control: str = schema.DEFAULT_CONTROL,
    source: str = "<raw>",
) -> ad.AnnData:
    """QC, normalise and log-transform a raw-count AnnData that follows the data contract.

    Each QC step logs how many cells (genes) it removed. QC that leaves no cell or no gene, or
    that removes every control cell of a cell line, raises :class:`~scpert.data.schema.SchemaError`
    naming ``source`` and the setting responsible (``preprocess.<setting>``), with the count of
    every step.
    """
    schema.validate(raw, source, control=control, kind="raw")
    import scanpy as sc

    adata = raw.copy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.obs[schema.DOSE] = adata.obs[schema.DOSE].map(schema.format_dose).astype(str)
    adata.obs[schema.DRUG] = adata.obs[schema.DRUG].astype(str)
    adata.obs[schema.CELL_LINE] = adata.obs[schema.CELL_LINE].astype(str)
    adata.obs[schema.PLATE] = adata.obs[schema.PLATE].astype(str)
    n0 = adata.shape
    qc = QcLog(source, *n0)
    if max_pct_mito is not None:
        mito = adata.var_names.str.upper().str.startswith("MT-")
        pct = np.asarray(adata.X[:, mito].sum(1)).ravel() / np.maximum(
            np.asarray(adata.X.sum(1)).ravel(), 1
        )
        before = adata.shape
        adata = adata[pct * 100 < max_pct_mito].copy()
        qc.step(f"max_pct_mito={max_pct_mito:g}", before, adata.shape)
    if min_genes > 0:
        before = adata.shape
        sc.pp.filter_cells(adata, min_genes=min_genes)
        qc.step(f"min_genes={min_genes}", before, adata.shape)
    if min_cells > 0:
        before = adata.shape
        sc.pp.filter_genes(adata, min_cells=min_cells)
        qc.step(f"min_cells={min_cells}", before, adata.shape)
    adata.obs[schema.CONDITION] = schema.add_condition(adata.obs)
    sizes = adata.obs[schema.CONDITION].value_counts()
    small = sizes.index[sizes < min_cells_per_condition]
    if len(small):
        log.info("dropping %d conditions with < %d cells", len(small), min_cells_per_condition)
        before = adata.shape
        adata = adata[~adata.obs[schema.CONDITION].isin(small)].copy()
        qc.step(f"min_cells_per_condition={min_cells_per_condition}", before, adata.shape)
    log.info("QC: %s -> %s (cells x genes)", n0, adata.shape)
    without = schema.lines_without_controls(adata.obs, control)
    if without:
        raise schema.SchemaError(
            f"{source}: after QC, {schema.missing_controls_message(without, control)} "
            f"({qc.summary()})"
        )
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.obs = adata.obs[[c for c in adata.obs.columns if c not in ("n_genes",)]]
    for key in (schema.CELL_LINE, schema.DRUG, schema.DOSE, schema.PLATE, schema.CONDITION):
        adata.obs[key] = pd.Categorical(adata.obs[key].astype(str))
    adata.uns["preprocess"] = {
        "target_sum": float(target_sum),
        "min_genes": int(min_genes),
        "min_cells": int(min_cells),
        "control": control,
    }
    schema.validate(adata, source, control=control, kind="processed")
    return adata


class QcLog:
    """Cells and genes each QC step removed; one SchemaError line when a step leaves none."""

    def __init__(self, source: str, n_cells: int, n_genes: int):
        self.source = source
        self.n_cells, self.n_genes = n_cells, n_genes
        self.steps: list[tuple[str, int, int]] = []  # (setting, cells removed, genes removed)

    def step(self, setting: str, before: tuple[int, int], after: tuple[int, int]) -> None:
        """Record that ``preprocess.<setting>`` took the data from shape ``before`` to ``after``."""
        cells, genes = before[0] - after[0], before[1] - after[1]
        self.steps.append((setting, cells, genes))
        log.info("QC preprocess.%s removed %d cells and %d genes", setting, cells, genes)
        for what, left, removed, total in (
            ("cell", after[0], cells, before[0]),
            ("gene", after[1], genes, before[1]),
        ):
            if left == 0:
                raise schema.SchemaError(
                    f"{self.source}: QC removed every {what}: preprocess.{setting} removed the "
                    f"last {removed} of {total} {what}s ({self.summary()})"
                )

    def summary(self) -> str:
        """Per step, of the input's cells x genes: ``<setting> removed C cells and G genes``."""
        steps = "; ".join(f"{s} removed {c} cells and {g} genes" for s, c, g in self.steps)
        return f"of {self.n_cells} cells x {self.n_genes} genes, {steps or 'no QC step ran'}"


def train_cells_mask(obs: pd.DataFrame, split_table: pd.DataFrame, control: str) -> np.ndarray:
    """Cells that a model of this split may see: its train conditions plus all control cells."""
    train_conditions = set(split_table.loc[split_table["split"] == "train", "condition"])
    cond = obs[schema.CONDITION].astype(str)
    return (cond.isin(train_conditions) | (obs[schema.DRUG].astype(str) == control)).to_numpy()


def hvg_ranking(
    adata: ad.AnnData,
    split_table: pd.DataFrame,
    *,
    n_top_genes: int,
    flavor: str = "seurat_v3",
    control: str = schema.DEFAULT_CONTROL,
) -> pd.DataFrame:
    """Rank every gene by variability on the split's training cells (``hvg_ranking.tsv``).

    ``seurat_v3`` works on raw counts (``layers["counts"]``); ``seurat``/``cell_ranger`` on log X.
    Returns ``gene, rank, dispersion`` for every gene in the dataset's gene order; rank 1 is the
    most variable (ties by gene order). When ``n_top_genes >= n_genes`` no ranking is fitted (every
    gene is kept anyway): ranks follow the gene order and ``dispersion`` is NaN.
    """
    train = adata[train_cells_mask(adata.obs, split_table, control)]
    if n_top_genes >= adata.n_vars:
        ranks = np.arange(adata.n_vars)
        score = np.full(adata.n_vars, np.nan)
    else:
        if flavor == "seurat_v3":
            score = seurat_v3_variances(train.layers["counts"])
        else:
            import scanpy as sc

            sub = ad.AnnData(X=train.X, var=pd.DataFrame(index=train.var_names))
            res = sc.pp.highly_variable_genes(
                sub, n_top_genes=n_top_genes, flavor=flavor, inplace=False
            )
            score = res["dispersions_norm"].to_numpy()
        order = np.lexsort((np.arange(len(score)), -np.nan_to_num(score, nan=-np.inf)))
        ranks = np.empty_like(order)
        ranks[order] = np.arange(len(order))
    return pd.DataFrame({"gene": adata.var_names, "rank": ranks + 1, "dispersion": score})


def seurat_v3_variances(counts, span: float = 0.3) -> np.ndarray:
    """Seurat v3's normalised variance of every gene (one batch), as scanpy's
    ``highly_variable_genes(flavor="seurat_v3")["variances_norm"]`` computes it: a degree-2 loess
    (``span``) of log10 variance on log10 mean over the non-constant genes gives the expected
    standard deviation ``sigma``; counts are clipped at ``mean + sigma * sqrt(n)``, and the
    variance of the clipped counts around the mean is divided by ``sigma**2`` (unbiased, ``n - 1``).

    In numpy and scikit-misc's loess rather than through scanpy, whose import and numba kernels
    cost a ``select_hvg`` job more than the fit; tests/test_preprocess.py checks the values against
    scanpy's."""
    from skmisc.loess import loess

    n = counts.shape[0]
    if sp.issparse(counts):
        X = sp.csr_matrix(counts)
        data = X.data.astype(np.float64)
        cols = X.indices
        n_genes = X.shape[1]
        mean = np.bincount(cols, weights=data, minlength=n_genes) / n
        nonzero = np.bincount(cols, minlength=n_genes)
        # two-pass variance, the zeros' share from their count
        var = np.bincount(cols, weights=(data - mean[cols]) ** 2, minlength=n_genes)
        var = (var + (n - nonzero) * mean**2) / n
    else:
        data = np.asarray(counts, dtype=np.float64)
        mean = data.mean(axis=0)
        var = (data**2).mean(axis=0) - mean**2
    var = var * n / (n - 1) if n > 1 else var
    not_const = var > 0
    fitted = np.zeros(len(mean), dtype=np.float64)
    model = loess(np.log10(mean[not_const]), np.log10(var[not_const]), span=span, degree=2)
    model.fit()
    fitted[not_const] = model.outputs.fitted_values
    sigma = np.sqrt(10**fitted)
    clip = sigma * np.sqrt(n) + mean
    if sp.issparse(counts):
        clipped = np.minimum(data, clip[cols])
        total = np.bincount(cols, weights=clipped, minlength=len(mean))
        squares = np.bincount(cols, weights=clipped**2, minlength=len(mean))
    else:
        clipped = np.minimum(data, clip)
        total, squares = clipped.sum(axis=0), (clipped**2).sum(axis=0)
    return (n * mean**2 + squares - 2 * total * mean) / ((n - 1) * sigma**2)


def top_genes(ranking: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` best-ranked rows of an :func:`hvg_ranking` table, in its (the dataset's) order."""
    return ranking[ranking["rank"] <= n].reset_index(drop=True)


def select_hvg(
    adata: ad.AnnData,
    split_table: pd.DataFrame,
    *,
    n_top_genes: int,
    flavor: str = "seurat_v3",
    control: str = schema.DEFAULT_CONTROL,
) -> pd.DataFrame:
    """The split's genes (``genes.tsv``): the top ``n_top_genes`` of :func:`hvg_ranking`, all genes
    when ``n_top_genes >= n_genes``; columns ``gene, rank, dispersion`` in the dataset's order."""
    ranking = hvg_ranking(
        adata, split_table, n_top_genes=n_top_genes, flavor=flavor, control=control
    )
    return top_genes(ranking, n_top_genes)


def training_genes(ranking: pd.DataFrame, genes: list[str], n: int) -> list[str]:
    """A method's gene space of ``n`` genes: the split's evaluated ``genes`` plus the best-ranked
    others of the split's ``ranking`` (:func:`hvg_ranking`) up to ``n`` in all, in the ranking's
    (the dataset's) order; the evaluated genes alone when ``n <= len(genes)`` (``train_genes: 0``).
    """
    known = set(ranking["gene"])
    missing = [g for g in genes if g not in known]
    if missing:
        raise schema.SchemaError(
            f"hvg ranking: genes of the split are missing from its 'gene' column, e.g. {missing[:3]}"
        )
    if n <= len(genes):
        return list(genes)
    chosen = set(genes)
    others = ranking[~ranking["gene"].isin(chosen)].sort_values("rank", kind="stable")
    chosen.update(others["gene"].iloc[: n - len(genes)])
    return [g for g in ranking["gene"] if g in chosen]
