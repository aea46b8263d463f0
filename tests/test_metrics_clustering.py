"""cell-eval's clustering agreement without scanpy/umap (scpert.metrics.clustering) against the
scanpy + umap path that cell-eval runs: identical connectivities, Leiden labels and AMI."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest

from scpert.metrics import clustering

RESOLUTIONS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0)


def centroid_sets():
    """Condition-centroid matrices of the kinds evaluation meets: continuous, coarse (ties),
    blocks of identical rows (a baseline predicting one profile for several conditions, more
    duplicates than neighbours included), all rows identical, and tiny sets."""
    rng = np.random.default_rng(0)
    sets = []
    for i in range(30):
        n = int(rng.integers(3, 70))
        g = int(rng.choice([5, 50, 800]))
        kind = i % 5
        x = rng.normal(size=(n, g))
        if kind == 1:
            x = np.round(x, 1)
        elif kind == 2:
            x[: max(2, n // 2)] = x[0]
        elif kind == 3:
            base = np.log1p(rng.poisson(rng.gamma(0.6, 1.5, g), (n, g))).mean(0)
            x = base + 0.05 * rng.normal(size=(n, g))
        elif kind == 4 and i % 10 == 4:  # i = 4, 14, 24
            x[:] = x[0]
        sets.append(x)
    return sets


def scanpy_graph(x: np.ndarray) -> ad.AnnData:
    """cell-eval's ``ClusteringAgreement._cluster_leiden`` neighbours."""
    import scanpy as sc

    adata = ad.AnnData(np.asarray(x, dtype=np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.neighbors(adata, n_neighbors=min(15, adata.n_obs - 1), use_rep="X")
    return adata


def scanpy_leiden(adata: ad.AnnData, resolution: float) -> np.ndarray:
    import scanpy as sc

    sc.tl.leiden(adata, resolution=resolution, key_added="l", flavor="igraph", n_iterations=2)
    return adata.obs["l"].astype(int).to_numpy()


@pytest.fixture(scope="module")
def graphs():
    pytest.importorskip("scanpy")
    return [(x, scanpy_graph(x)) for x in centroid_sets()]


def test_connectivities_equal_scanpys(graphs):
    for x, reference in graphs:
        indices, distances = clustering.knn(x, min(15, x.shape[0] - 1))
        ours = clustering.fuzzy_connectivities(indices, distances)
        ref = reference.obsp["connectivities"]
        assert ours.dtype == ref.dtype == np.float32
        assert ours.shape == ref.shape
        np.testing.assert_array_equal(ours.indptr, ref.indptr)
        np.testing.assert_array_equal(ours.indices, ref.indices)
        np.testing.assert_array_equal(ours.data, ref.data)  # bit for bit


def test_leiden_labels_equal_scanpys(graphs):
    compared = 0
    for _, reference in graphs:
        ours = clustering.leiden_labels(reference.obsp["connectivities"], RESOLUTIONS)
        for resolution, labels in zip(RESOLUTIONS, ours):
            np.testing.assert_array_equal(labels, scanpy_leiden(reference, resolution))
            compared += 1
    assert compared == 7 * len(graphs)


def test_leiden_keeps_pythons_random_state_and_restores_igraphs_generator():
    """scanpy seeds igraph with its own generator so that Python's ``random`` is left alone; ours
    too, and afterwards igraph draws from ``random`` again."""
    import random

    import igraph

    random.seed(1)
    state = random.getstate()
    first = clustering.cluster_centroids(centroid_sets()[0], RESOLUTIONS)
    assert random.getstate() == state
    igraph.Graph.Erdos_Renyi(20, 0.3)
    assert random.getstate() != state
    again = clustering.cluster_centroids(centroid_sets()[0], RESOLUTIONS)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_smooth_knn_dist_and_strengths_equal_umaps(graphs):
    from umap.umap_ import compute_membership_strengths
    from umap.umap_ import smooth_knn_dist as umap_smooth_knn_dist

    rows_checked = 0
    for x, _ in graphs:
        k = min(15, x.shape[0] - 1)
        indices, distances = clustering.knn(x, k)
        d32 = distances.astype(np.float32)
        sigma_ref, rho_ref = umap_smooth_knn_dist(d32, float(k), local_connectivity=1.0)
        sigma, rho = clustering.smooth_knn_dist(distances, float(k))
        np.testing.assert_array_equal(rho, rho_ref)
        # rows whose distances are all 0 (rho = 0) take a floor from a threaded reduction whose
        # order depends on numba's thread count; their strengths are all 1 whatever sigma is
        defined = rho > 0
        np.testing.assert_array_equal(sigma[defined], sigma_ref[defined])
        rows_checked += int(defined.sum())
        _, _, values, _ = compute_membership_strengths(indices, d32, sigma_ref, rho_ref, False)
        ours = clustering.membership_strengths(indices, distances, sigma, rho)
        np.testing.assert_array_equal(ours.ravel(), values)
    assert rows_checked > 500


def test_smooth_knn_dist_by_hand():
    """Distances 0 (self), 1, 2: rho = 1 and sigma solves 1 + exp(-1 / sigma) = log2(3)."""
    sigma, rho = clustering.smooth_knn_dist(np.array([[0.0, 1.0, 2.0]]), 3.0)
    assert rho[0] == 1.0
    assert sigma[0] == pytest.approx(-1.0 / np.log(np.log2(3.0) - 1.0), rel=1e-4)
    strengths = clustering.membership_strengths(
        np.array([[0, 1, 2]]), [[0.0, 1.0, 2.0]], sigma, rho
    )
    np.testing.assert_allclose(strengths[0], [0.0, 1.0, np.log2(3.0) - 1.0], rtol=1e-4)


def test_clustering_agreement_equals_cell_evals():
    """cell-eval's own ClusteringAgreement, fed one cell per condition (so its centroids are ours)."""
    cell_eval_types = pytest.importorskip("cell_eval._types")
    from cell_eval.metrics._anndata import ClusteringAgreement

    def adata(centroids):
        n, g = centroids.shape
        x = np.vstack([centroids, np.zeros((1, g))])
        obs = {"pert": [f"p{i:02d}" for i in range(n)] + ["control"]}
        return ad.AnnData(x, obs=obs, var={"gene": [f"g{j}" for j in range(g)]})

    rng = np.random.default_rng(3)
    values = []
    for trial in range(12):
        n, g = int(rng.integers(3, 40)), 60
        truth = rng.normal(size=(n, g)) * rng.uniform(0.5, 2.0, g)
        pred = truth + rng.normal(scale=float(rng.choice([0.1, 0.5, 2.0])), size=(n, g))
        if trial % 4 == 3:
            pred[:] = pred[0]  # one profile for every condition
        pair = cell_eval_types.PerturbationAnndataPair(
            real=adata(truth), pred=adata(pred), pert_col="pert", control_pert="control"
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = ClusteringAgreement()(pair)
        ours = clustering.clustering_agreement(truth, pred)
        assert ours == pytest.approx(expected, abs=1e-12), trial
        values.append(ours)
    assert len(set(np.round(values, 6))) > 3  # the cases differ from each other
