"""cell-eval's clustering agreement (``ClusteringAgreement``, cell-eval 0.8.2) without scanpy/umap.

cell-eval clusters the condition centroids with ``scanpy.pp.neighbors(n_neighbors=min(15, N - 1),
use_rep="X")`` and ``scanpy.tl.leiden(flavor="igraph", n_iterations=2)`` (scanpy 1.11, read from
the installed sources). The same computation, step by step, with the same libraries underneath:

1. :func:`knn`: scikit-learn's brute-force ``KNeighborsTransformer`` (Euclidean), the call scanpy
   makes for fewer than 4096 observations, so neighbours and distances are the same to the bit
   (scikit-learn's rounding included: its distance of a point to itself is not always exactly 0,
   which moves umap's ``rho`` below). Each row keeps the point itself and its ``k - 1`` nearest
   others (scanpy passes ``k`` columns, self included, to umap). scanpy switches to approximate
   pynndescent neighbours from 4096 (8192 for Euclidean) observations; this stays exact.
2. :func:`fuzzy_connectivities`: umap's ``fuzzy_simplicial_set`` (umap-learn 0.5) as scanpy calls it
   (``local_connectivity=1``, ``set_op_mix_ratio=1``): ``smooth_knn_dist`` (per point, the binary
   search for ``sigma`` with ``sum_j exp(-(d_j - rho) / sigma) = log2(k)``) and
   ``compute_membership_strengths`` re-implemented in numpy with the arithmetic numba compiles
   them to (see :func:`smooth_knn_dist`: float64 search, float32 strengths, the C library's
   ``exp``/``expf``, sums in loop order), then umap's own scipy fuzzy union
   ``A + A^T - A o A^T``. umap compiles these two functions with numba (``parallel=True``, no
   ``cache=True``) in every process that calls them; this module needs no compilation.
3. :func:`leiden_labels`: igraph's ``community_leiden(objective_function="modularity",
   weights, resolution, n_iterations=2)`` on the graph scanpy builds (every stored entry of the
   connectivities as one edge, so each undirected edge twice) under scanpy's igraph random
   generator (``numpy.random.RandomState(0)`` behind igraph's interface), re-seeded per call.
4. :func:`clustering_agreement`: the true centroids clustered at resolution 1, the predicted ones
   at 0.2-2; the best ``sklearn.metrics.adjusted_mutual_info_score``, floored at 0.

``tests/test_metrics_clustering.py`` checks each step against scanpy and umap (identical
connectivities and Leiden labels) and the AMI against cell-eval.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import random

import numpy as np
import scipy.sparse as sp

#: cell-eval ClusteringAgreement defaults
N_NEIGHBORS = 15
TRUE_RESOLUTION = 1.0
PRED_RESOLUTIONS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0)
LEIDEN_ITERATIONS = 2
#: umap-learn constants of smooth_knn_dist
SMOOTH_K_TOLERANCE = 1e-5
MIN_K_DIST_SCALE = 1e-3
SMOOTH_K_ITERATIONS = 64
_F32 = np.float32
_FLOAT32_MAX = np.finfo(np.float32).max


def knn(x: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances (rows sorted, the point itself first) of each row's ``n_neighbors``
    nearest rows including itself, as scanpy hands them to umap."""
    from sklearn.neighbors import KNeighborsTransformer

    n = x.shape[0]
    transformer = KNeighborsTransformer(
        algorithm="brute", n_neighbors=min(n - 1, n_neighbors), metric="euclidean"
    )
    graph = transformer.fit_transform(x)
    width = graph.indptr[1] - graph.indptr[0]
    indices = graph.indices.reshape(n, width)
    distances = graph.data.reshape(n, width).copy()
    # scanpy then zeroes the graph's diagonal in place, which its (view) distances share
    distances[indices == np.arange(n)[:, None]] = 0.0
    if not (indices[:, 0] == np.arange(n)).any():  # scanpy's guard for self-less neighbours
        indices = np.hstack([np.arange(n)[:, None], indices])
        distances = np.hstack([np.zeros((n, 1)), distances])
    return indices[:, :n_neighbors], distances[:, :n_neighbors]


def _libm(name: str, ctype):
    """The C library's ``name`` (``exp`` or ``expf``) as a numpy ufunc, or ``None`` where no C
    math library is found. numba compiles ``np.exp`` to calls of these."""
    path = ctypes.util.find_library("m")
    if path is None:
        return None
    function = getattr(ctypes.CDLL(path), name)
    function.restype, function.argtypes = ctype, [ctype]
    return np.frompyfunc(function, 1, 1)


_EXP = _libm("exp", ctypes.c_double)
_EXPF = _libm("expf", ctypes.c_float)


def _exp(x: np.ndarray, dtype) -> np.ndarray:
    """``exp`` as numba computes it in ``dtype`` (float32 or float64): the C library's ``expf`` /
    ``exp``. glibc's are not always correctly rounded, and numpy's SIMD ``exp`` differs from them
    in the last bit for a few percent (float64) to a third (float32) of arguments. Without a C math
    library: numpy's float64 ``exp``, rounded to ``dtype``."""
    x = np.asarray(x, dtype=dtype)
    function = _EXPF if dtype == _F32 else _EXP
    if function is None:
        return np.exp(x.astype(np.float64)).astype(dtype)
    return function(x).astype(dtype)


def _seq_sum32(x: np.ndarray, axis: int) -> np.ndarray:
    """float32 sums accumulated one element after the other (numba's loops), along ``axis``."""
    return np.cumsum(x, axis=axis, dtype=_F32).take(-1, axis=axis)


def smooth_knn_dist(distances: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """umap ``smooth_knn_dist(distances, k, local_connectivity=1.0)``: ``(sigma, rho)`` per row.

    ``rho`` = the first positive distance of the row (0 if none); ``sigma`` = the binary search
    (64 steps at most, tolerance 1e-5) for ``sum_{j >= 1} exp(-max(d_j - rho, 0) / sigma) =
    log2(k)``, floored at ``1e-3`` times the row's mean distance (the mean of all distances when
    ``rho = 0``). Arithmetic as numba compiles umap's parallel loop (checked bit for bit in the
    tests): the search in float64, ``d_j - rho`` in float32, the means as float32 sums divided in
    float64.
    """
    d = np.ascontiguousarray(distances, dtype=_F32)
    n = d.shape[0]
    target = np.log2(k)
    positive = d > 0.0
    has_positive = positive.any(axis=1)
    rho = np.zeros(n, dtype=_F32)
    rho[has_positive] = d[has_positive, positive[has_positive].argmax(axis=1)]
    # umap declares psum, lo, mid and hi float32, but numba's parallel loop body drops those
    # declarations: the search runs in float64 (only d_j - rho is a float32 difference)
    shifted = (d[:, 1:] - rho[:, None]).astype(np.float64)
    lo = np.zeros(n)
    hi = np.full(n, np.float64(_FLOAT32_MAX))
    mid = np.ones(n)
    active = np.ones(n, dtype=bool)
    for _ in range(SMOOTH_K_ITERATIONS):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        s = shifted[rows]
        terms = np.ones_like(s)
        positive = s > 0
        terms[positive] = _exp(-(s / mid[rows, None])[positive], np.float64)
        psum = np.cumsum(terms, axis=1)[:, -1]  # one term after the other, as the loop adds them
        done = np.abs(psum - target) < SMOOTH_K_TOLERANCE
        active[rows[done]] = False
        rows, psum = rows[~done], psum[~done]
        above = psum > target
        up, down = rows[above], rows[~above]
        hi[up] = mid[up]
        mid[up] = (lo[up] + hi[up]) / 2.0
        lo[down] = mid[down]
        unbounded = hi[down] >= _FLOAT32_MAX
        mid[down[unbounded]] *= 2.0
        bounded = down[~unbounded]
        mid[bounded] = (lo[bounded] + hi[bounded]) / 2.0
    sigma = mid.astype(_F32)
    # Inside numba's parallel loop np.mean(row) is a float32 sequential sum divided in float64
    # (not rounded back to float32). np.mean(distances) is a threaded float32 reduction whose
    # order depends on the thread count; it only floors sigma of rows whose distances are all
    # zero (rho = 0), where every membership strength is 1 whatever sigma is.
    row_mean = _seq_sum32(d, axis=1).astype(np.float64) / d.shape[1]
    all_mean = np.float64(_seq_sum32(d.reshape(1, -1), axis=1)[0]) / d.size
    floor = np.where(rho > 0.0, MIN_K_DIST_SCALE * row_mean, MIN_K_DIST_SCALE * all_mean)
    raise_to_floor = sigma < floor
    sigma[raise_to_floor] = floor[raise_to_floor].astype(_F32)
    return sigma, rho


def membership_strengths(
    indices: np.ndarray, distances: np.ndarray, sigma: np.ndarray, rho: np.ndarray
) -> np.ndarray:
    """umap ``compute_membership_strengths``: ``exp(-(d - rho_i) / sigma_i)`` per neighbour pair
    (1 at or within ``rho``, 0 for the point itself), float32, one row per point."""
    d = np.asarray(distances, dtype=_F32)
    excess = d - rho[:, None]
    scale = np.broadcast_to(sigma[:, None], d.shape)
    strengths = np.ones_like(d)
    decays = (excess > 0.0) & (scale != 0.0)
    strengths[decays] = _exp(-(excess[decays] / scale[decays]), _F32)
    strengths[indices == np.arange(indices.shape[0])[:, None]] = 0.0
    return strengths


def fuzzy_connectivities(indices: np.ndarray, distances: np.ndarray) -> sp.csr_matrix:
    """scanpy's umap connectivities (``fuzzy_simplicial_set``) from :func:`knn`'s output."""
    n, k = indices.shape
    sigma, rho = smooth_knn_dist(distances, float(k))
    values = membership_strengths(indices, distances, sigma, rho)
    rows = np.repeat(np.arange(n, dtype=np.int32), k)
    graph = sp.coo_matrix((values.ravel(), (rows, indices.ravel().astype(np.int32))), shape=(n, n))
    graph.eliminate_zeros()
    transpose = graph.transpose()
    product = graph.multiply(transpose)
    graph = 1.0 * (graph + transpose - product) + 0.0 * product  # umap's set_op_mix_ratio = 1
    graph.eliminate_zeros()
    return graph.tocsr()


class _IgraphRandom:
    """scanpy's ``_RNGIgraph``: igraph's random-number interface over a seeded RandomState."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.RandomState(seed)

    def getrandbits(self, k: int) -> int:
        return self._rng.tomaxint() & ((1 << k) - 1)

    def randint(self, a: int, b: int) -> int:
        return self._rng.randint(a, b + 1)

    def random(self) -> float:
        return self._rng.random()

    def gauss(self, mu: float, sigma: float) -> float:
        return self._rng.normal(mu, sigma)


def leiden_labels(connectivities: sp.csr_matrix, resolutions, seed: int = 0) -> list[np.ndarray]:
    """Leiden membership per resolution, as ``scanpy.tl.leiden(flavor="igraph", n_iterations=2)``."""
    import igraph

    sources, targets = connectivities.nonzero()
    weights = np.asarray(connectivities[sources, targets]).ravel()
    graph = igraph.Graph(directed=False)
    graph.add_vertices(connectivities.shape[0])
    graph.add_edges(list(zip(sources.tolist(), targets.tolist())))
    graph.es["weight"] = weights.tolist()
    labels = []
    for resolution in resolutions:
        igraph.set_random_number_generator(_IgraphRandom(seed))
        try:
            partition = graph.community_leiden(
                objective_function="modularity",
                weights="weight",
                resolution=resolution,
                n_iterations=LEIDEN_ITERATIONS,
            )
        finally:
            igraph.set_random_number_generator(random)
        labels.append(np.asarray(partition.membership))
    return labels


def cluster_centroids(centroids: np.ndarray, resolutions) -> list[np.ndarray]:
    """Leiden labels of the rows of ``centroids`` at each resolution (cell-eval's neighbours)."""
    x = np.ascontiguousarray(centroids, dtype=np.float64)
    indices, distances = knn(x, min(N_NEIGHBORS, x.shape[0] - 1))
    return leiden_labels(fuzzy_connectivities(indices, distances), resolutions)


def clustering_agreement(
    centroids_truth: np.ndarray | None,
    centroids_pred: np.ndarray,
    truth_labels: np.ndarray | None = None,
) -> float:
    """Best AMI of the predicted centroids' Leiden clusters (resolutions 0.2-2) against the true
    centroids' clusters at resolution 1, floored at 0. ``truth_labels``: the true clusters when
    already computed (:func:`cluster_centroids` at ``TRUE_RESOLUTION``)."""
    from sklearn.metrics import adjusted_mutual_info_score

    if truth_labels is None:
        (truth_labels,) = cluster_centroids(centroids_truth, (TRUE_RESOLUTION,))
    scores = [
        adjusted_mutual_info_score(truth_labels, labels)
        for labels in cluster_centroids(centroids_pred, PRED_RESOLUTIONS)
    ]
    return float(max(0.0, *scores))
