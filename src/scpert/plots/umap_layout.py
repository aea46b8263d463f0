"""UMAP (McInnes et al. 2018, arXiv:1802.03426) in numpy, for figures: umap-learn compiles its
layout optimiser with numba in every process (13.6-15.4 s CPU before the first embedding of 1,500
points; measurement and command in docs/decisions.md, "The UMAP and GSEA figures"), more than a
figure job may spend. The same algorithm, step by step:

1. the fuzzy kNN graph as scanpy builds it: exact Euclidean neighbours, self included
   (:func:`knn`, brute force in numpy: scikit-learn's import alone costs a figure job seconds)
   and :func:`scpert.metrics.clustering.fuzzy_connectivities` (umap's ``smooth_knn_dist`` +
   fuzzy union, checked against umap bit for bit in ``tests/test_metrics_clustering.py``);
2. umap's ``find_ab_params``: ``1 / (1 + a d^(2b))`` fitted to the ``min_dist``/``spread`` curve;
3. umap's spectral initialisation (eigenvectors 1-2 of the symmetric normalised Laplacian, scaled to
   max |x| = 10 plus N(0, 1e-4) noise, then to [0, 10]); a graph with several components starts
   from the first two principal components instead (umap lays components out separately);
4. umap's ``optimize_layout_euclidean``: edges sampled every ``w_max / w`` epochs, attractive
   gradient ``-2ab d^(2(b-1)) / (1 + a d^(2b))`` on both ends, ``negative_sample_rate`` repulsive
   samples per edge sample with gradient ``2b / ((0.001 + d^2)(1 + a d^(2b)))``, each clipped to
   [-4, 4], learning rate ``1 - epoch / n_epochs``. One departure: the edges of an epoch are
   updated together from the epoch's positions (vectorised), where umap updates them one after
   the other. ``tests/test_figures.py`` compares the embedding's trustworthiness with umap-learn's.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

CLIP = 4.0


def find_ab_params(spread: float = 1.0, min_dist: float = 0.1) -> tuple[float, float]:
    """umap's ``find_ab_params``: least-squares fit of ``1 / (1 + a x^(2b))``."""
    from scipy.optimize import curve_fit

    x = np.linspace(0, spread * 3, 300)
    y = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    (a, b), _ = curve_fit(lambda x, a, b: 1.0 / (1.0 + a * x ** (2 * b)), x, y)
    return float(a), float(b)


def _initial(graph: sp.csr_matrix, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n_components, _ = sp.csgraph.connected_components(graph, directed=False)
    if n_components == 1 and graph.shape[0] > 3:
        from scipy.sparse.linalg import eigsh

        degree = np.asarray(graph.sum(axis=1)).ravel()
        scale = sp.diags(1.0 / np.sqrt(degree))
        laplacian = sp.identity(graph.shape[0]) - scale @ graph @ scale
        k = 3
        _, vectors = eigsh(
            laplacian,
            k,
            which="SM",
            ncv=max(2 * k + 1, int(np.sqrt(graph.shape[0]))),
            tol=1e-4,
            v0=np.ones(graph.shape[0]),
            maxiter=graph.shape[0] * 5,
        )
        init = vectors[:, 1:3]
    else:
        centred = x - x.mean(axis=0)
        init = np.linalg.svd(centred, full_matrices=False)[0][:, :2]
    init = init * (10.0 / np.abs(init).max()) + rng.normal(scale=1e-4, size=init.shape)
    low, high = init.min(axis=0), init.max(axis=0)
    return 10.0 * (init - low) / np.where(high > low, high - low, 1.0)


def knn(x: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances of each row's ``n_neighbors`` nearest rows, itself first."""
    sq = (x**2).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    np.fill_diagonal(d2, -1.0)
    indices = np.argpartition(d2, n_neighbors - 1, axis=1)[:, :n_neighbors]
    order = np.argsort(np.take_along_axis(d2, indices, axis=1), axis=1, kind="stable")
    indices = np.take_along_axis(indices, order, axis=1)
    distances = np.sqrt(np.maximum(np.take_along_axis(d2, indices, axis=1), 0.0))
    return indices, distances


def _scatter(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Sum of ``values`` (k x 2) per row index, as an n x 2 array."""
    return np.stack([np.bincount(rows, values[:, c], minlength=n) for c in range(2)], axis=1)


def umap_embedding(
    x: np.ndarray,
    n_neighbors: int = 15,
    n_epochs: int = 200,
    min_dist: float = 0.1,
    spread: float = 1.0,
    negative_sample_rate: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """2-D UMAP embedding of the rows of ``x`` (module docstring)."""
    from scpert.metrics.clustering import fuzzy_connectivities

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if n < 3:
        return np.zeros((n, 2))
    rng = np.random.default_rng(seed)
    indices, distances = knn(x, min(n_neighbors, n - 1))
    graph = fuzzy_connectivities(indices, distances).tocoo()
    keep = graph.data >= graph.data.max() / n_epochs
    head, tail, weight = graph.row[keep], graph.col[keep], graph.data[keep]
    a, b = find_ab_params(spread, min_dist)
    y = _initial(graph.tocsr(), x, rng)

    epochs_per_sample = weight.max() / weight
    epochs_per_negative = epochs_per_sample / negative_sample_rate
    next_sample = epochs_per_sample.copy()
    next_negative = epochs_per_negative.copy()
    for epoch in range(n_epochs):
        alpha = 1.0 - epoch / n_epochs
        active = np.flatnonzero(next_sample <= epoch)
        if active.size == 0:
            continue
        i, j = head[active], tail[active]
        diff = y[i] - y[j]
        d2 = (diff**2).sum(axis=1)
        coef = np.where(d2 > 0, -2.0 * a * b * d2 ** (b - 1.0) / (a * d2**b + 1.0), 0.0)
        grad = np.clip(coef[:, None] * diff, -CLIP, CLIP) * alpha
        step = _scatter(i, grad, n) - _scatter(j, grad, n)
        next_sample[active] += epochs_per_sample[active]

        n_neg = ((epoch - next_negative[active]) / epochs_per_negative[active]).astype(int)
        n_neg = np.maximum(n_neg, 0)
        next_negative[active] += n_neg * epochs_per_negative[active]
        src = np.repeat(i, n_neg)
        other = rng.integers(0, n, size=src.size)
        diff = y[src] - y[other]
        d2 = (diff**2).sum(axis=1)
        coef = 2.0 * b / ((0.001 + d2) * (a * d2**b + 1.0))
        grad = np.where((d2 > 0)[:, None], np.clip(coef[:, None] * diff, -CLIP, CLIP), CLIP)
        grad[src == other] = 0.0
        y += step + _scatter(src, grad * alpha, n)
    return y
