"""Expression input for SCimilarity-layout encoders: log-normalisation and gene alignment.

:func:`lognorm` is ``log1p(counts / total * 1e4)`` per cell (SCimilarity ``lognorm_counts``;
scanpy ``normalize_total(1e4)`` + ``log1p``; the project's processed ``X``). :func:`align_to_genes`
reorders columns to a model's gene order: genes outside the order are dropped, genes of the order
that the data lacks are zero (SCimilarity ``align_dataset``).

Order of the two steps: this module log-normalises first, then aligns, so library sizes count
every measured gene and the values equal the processed ``X`` of the dataset. SCimilarity's own
tutorials align the counts first and then normalise, so their library sizes count only genes of
its order. The two agree exactly when every measured gene is in the order and otherwise differ by
a per-cell factor (the measured counts outside the order), which the fine-tuning on the split's
cells absorbs; how many genes of the default world fall outside: docs/decisions.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def lognorm(counts, target_sum: float = 1e4) -> sp.csr_matrix:
    """``log1p(target_sum * counts / row total)`` as float32 CSR; all-zero rows stay zero."""
    counts = sp.csr_matrix(counts, dtype=np.float64)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    normed = sp.diags(scale) @ counts
    normed.data = np.log1p(normed.data)
    return sp.csr_matrix(normed, dtype=np.float32)


def align_to_genes(X, genes: Sequence[str], gene_order: Sequence[str]) -> sp.csr_matrix:
    """Columns of ``X`` (named ``genes``) placed at their position in ``gene_order``; zero fill."""
    if X.shape[1] != len(genes):
        raise ValueError(f"align_to_genes: X has {X.shape[1]} columns but {len(genes)} gene names")
    position = {g: i for i, g in enumerate(gene_order)}
    source = np.array([i for i, g in enumerate(genes) if g in position], dtype=np.int64)
    target = np.array([position[genes[i]] for i in source], dtype=np.int64)
    mover = sp.csr_matrix(
        (np.ones(len(source), dtype=np.float32), (source, target)),
        shape=(len(genes), len(gene_order)),
    )
    return sp.csr_matrix(sp.csr_matrix(X, dtype=np.float32) @ mover)


def scimilarity_input(
    counts, genes: Sequence[str], gene_order: Sequence[str], target_sum: float = 1e4
) -> sp.csr_matrix:
    """Raw counts over ``genes`` -> log-normalised expression in ``gene_order`` (lognorm, align)."""
    return align_to_genes(lognorm(counts, target_sum), list(map(str, genes)), list(gene_order))
