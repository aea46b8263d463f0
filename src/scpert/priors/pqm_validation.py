"""Empirical validation of the PQM reliability q_i (StateXDiff arXiv:2605.16104 App. A.2.3) on
held-out paired RNA + protein (CITE-seq) cells: rule ``validate_pqm``.

Protocol
    (1) q from the TRUE protein vs q from the translator's prediction, per cell: Spearman and
        Pearson (paper, BMMC: 0.81 / 0.83). The true-protein q uses the measured levels in place
        of ``p_hat`` (s_rc, s_cx) and the measured levels standardised per protein (over the
        matched cells) in place of ``g_p`` (s_nb); the predicted q is the prior's q. Both use the
        same reference genes A (found on the predicted population, as ``infer_protein`` does).
    (2) Negative controls with the true protein: each cell's RNA paired with its own protein
        (matched), with the protein of a random cell of another cell type (cross-type), or with
        its own protein vector permuted across proteins (shuffled). All three are z-normalised
        with the matched cells' statistics (otherwise every population would centre at 0.5);
        medians (paper: 0.69 / 0.35 / 0.28) and two-sided Mann-Whitney U p-values.
    The transcriptome space for s_nb's neighbours is the first 50 principal components of the
    cells' log-normalised RNA in the translator's genes (the split's latent space is not defined
    on CITE-seq cells).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, pearsonr, spearmanr

from scpert.priors import pqm

PAPER = {
    "spearman_q_true_vs_pred": 0.81,
    "pearson_q_true_vs_pred": 0.83,
    "median_q_matched": 0.69,
    "median_q_cross_type": 0.35,
    "median_q_shuffled": 0.28,
}
PAIRINGS = ("matched", "cross_type", "shuffled")


def pca(x: np.ndarray, n_components: int = 50) -> np.ndarray:
    """Principal-component scores of the rows of ``x`` (centred SVD)."""
    x = np.asarray(x, float) - np.asarray(x, float).mean(axis=0)
    k = max(1, min(n_components, min(x.shape) - 1))
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, :k] * s[:k]


def pairings(levels: np.ndarray, cell_types: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Protein matrices paired with each cell's RNA: matched, cross-type, shuffled."""
    rng = np.random.default_rng(seed)
    n = len(levels)
    cross = np.empty(n, dtype=np.int64)
    for i, t in enumerate(cell_types):
        others = np.flatnonzero(cell_types != t)
        cross[i] = rng.choice(others) if len(others) else rng.integers(n)
    shuffled = np.stack([row[rng.permutation(len(row))] for row in levels])
    return {"matched": levels, "cross_type": levels[cross], "shuffled": shuffled}


@dataclass
class Validation:
    table: pd.DataFrame  # quantity, value, paper
    cells: pd.DataFrame  # per cell: q_pred, q_true, q_<pairing>, cell_type


def validate(
    rna_panel: np.ndarray,
    p_hat: np.ndarray,
    g_p: np.ndarray,
    true_levels: np.ndarray,
    rna_latent: np.ndarray,
    cell_types: np.ndarray,
    proteins: list[str],
    complexes: list[list[str]],
    params: dict,
    seed: int = 0,
) -> Validation:
    """App. A.2.3 on ``n`` held-out cells (module docstring). ``rna_panel``: RNA of each protein's
    gene; ``true_levels``: measured protein levels (the translator's target scale)."""
    latent = pca(rna_latent)
    pred = pqm.compute_pqm(rna_panel, p_hat, g_p, latent, proteins, complexes, params)
    mu, sd = true_levels.mean(axis=0), true_levels.std(axis=0) + params["eps"]
    reference = np.array([proteins.index(p) for p in pred.reference])
    results, stats = {}, None
    for name, levels in pairings(true_levels, np.asarray(cell_types), seed).items():
        res = pqm.compute_pqm(
            rna_panel,
            levels,
            (levels - mu) / sd,
            latent,
            proteins,
            complexes,
            params,
            reference=reference,
            stats=stats,
        )
        stats = stats or res.stats  # matched first: its statistics score the controls
        results[name] = res.q
    q_pred, q_true = pred.q, results["matched"]
    rows = {
        "n_cells": len(q_pred),
        "n_reference_genes": len(pred.reference),
        "n_complexes": len(pred.complexes),
        "spearman_q_true_vs_pred": spearmanr(q_true, q_pred).statistic,
        "pearson_q_true_vs_pred": pearsonr(q_true, q_pred).statistic,
        **{f"median_q_{k}": float(np.median(v)) for k, v in results.items()},
    }
    for a, b in (("matched", "cross_type"), ("cross_type", "shuffled"), ("matched", "shuffled")):
        rows[f"mannwhitney_p_{a}_vs_{b}"] = mannwhitneyu(results[a], results[b]).pvalue
    table = pd.DataFrame(
        {
            "quantity": list(rows),
            "value": [float(v) for v in rows.values()],
            "paper": [PAPER.get(k, np.nan) for k in rows],
        }
    )
    cells = pd.DataFrame(
        {
            "cell_type": np.asarray(cell_types),
            "q_pred": q_pred,
            "q_true": q_true,
            **{f"q_{k}": v for k, v in results.items()},
        }
    )
    return Validation(table, cells)
