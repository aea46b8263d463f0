"""scDFM's gene-gene co-expression graph (arXiv:2602.07103 §3.3 eq. 7, App. A.4.3), built from the
TRAINING cells only.

``w_ij = |Pearson(x_i, x_j)|`` over the cells of ``PerturbData.adata`` (the split's training
conditions and controls; never a validation or test cell), on log1p values z-scored per gene
(z-scoring does not change a Pearson correlation; it is what the code feeds to ``np.corrcoef``);
each gene keeps its ``k`` (30) most strongly correlated other genes, positive or negative; the
adjacency is symmetrised (``A or A^T``) and every gene is its own neighbour, so that every row of
the attention mask admits at least one key. Genes constant on the training cells correlate with
nothing (``r = 0``) and are ranked last.

scDFM's released code computes the graph on all HVGs chosen on all cells (REFERENCE_CODE: "HVGs
on all data"), a leak this project does not reproduce: the split's genes are chosen on training
cells (``select_hvg``) and the graph sees training cells only.

Datasets with many cells: the correlation uses at most ``max_cells`` training cells, a seeded
random subset (``max_cells: 0`` = all).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def correlation(X, max_cells: int = 0, seed: int = 0) -> np.ndarray:
    """(G, G) Pearson correlation between the columns of ``X`` (cells x genes, dense or sparse),
    0 where a gene is constant; float64."""
    n = X.shape[0]
    if max_cells and n > max_cells:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=max_cells, replace=False))
        X = X[rows]
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = X.astype(np.float64)
    z = X - X.mean(axis=0)
    sd = np.sqrt((z * z).mean(axis=0))
    z = np.divide(z, sd, out=np.zeros_like(z), where=sd > 0)
    return (z.T @ z) / len(z)


def knn_graph(weights: np.ndarray, k: int) -> np.ndarray:
    """Boolean (G, G) adjacency: each gene's ``k`` largest off-diagonal ``weights`` (ties broken
    by gene order), symmetrised, plus the diagonal."""
    G = len(weights)
    w = np.array(weights, dtype=np.float64)
    np.fill_diagonal(w, -np.inf)
    k = min(int(k), G - 1)
    adjacency = np.eye(G, dtype=bool)
    if k > 0:
        # stable sort of -w: the largest weights first, lower gene index first among ties
        neighbours = np.argsort(-w, axis=1, kind="stable")[:, :k]
        adjacency[np.repeat(np.arange(G), k), neighbours.ravel()] = True
    return adjacency | adjacency.T


def coexpression_graph(X, k: int = 30, max_cells: int = 0, seed: int = 0) -> np.ndarray:
    """The scDFM gene graph of training cells ``X`` (module docstring): boolean (G, G)."""
    return knn_graph(np.abs(correlation(X, max_cells, seed)), k)


def principal_loadings(corr: np.ndarray, k: int) -> np.ndarray:
    """(G, k) gene loadings of the ``k`` leading principal components of the z-scored training
    cells: eigenvectors of their correlation matrix ``corr`` times the square roots of the
    eigenvalues (largest first; each column's sign fixed so that its largest entry is positive),
    rescaled to unit root-mean-square over all entries (the scale of ``nn.Embedding``'s N(0, 1)
    initialisation). Columns beyond the rank of ``corr`` are 0. The tiny preset's
    ``gene_init: pca`` (:mod:`scpert.methods.scdfm`)."""
    G = len(corr)
    values, vectors = np.linalg.eigh(np.asarray(corr, dtype=np.float64))
    order = np.argsort(values)[::-1][: min(k, G)]
    loadings = vectors[:, order] * np.sqrt(np.clip(values[order], 0.0, None))
    signs = np.sign(loadings[np.abs(loadings).argmax(axis=0), np.arange(loadings.shape[1])])
    loadings = loadings * np.where(signs == 0, 1.0, signs)
    out = np.zeros((G, k))
    out[:, : loadings.shape[1]] = loadings
    rms = np.sqrt((out**2).mean())
    return out / rms if rms > 0 else out


def to_edges(adjacency: np.ndarray) -> np.ndarray:
    """(E, 2) int32 edges ``(i, j)`` of a boolean adjacency (for saving)."""
    return np.argwhere(adjacency).astype(np.int32)


def from_edges(edges: np.ndarray, n_genes: int) -> np.ndarray:
    adjacency = np.zeros((n_genes, n_genes), dtype=bool)
    adjacency[edges[:, 0], edges[:, 1]] = True
    return adjacency
