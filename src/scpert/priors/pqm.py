"""PQM: the per-cell pseudo-protein reliability q_i of StateXDiff (arXiv:2605.16104 §3.2 eq. 1,
App. A.2.1 eqs. 14-17). No learnable parameters; numpy only (gradients are stopped by
construction: q is data, not a tensor of the graph).

Reference genes A (App. A.2.1)
    Of the proteins whose gene is in the RNA, those whose population Spearman correlation (over
    cells) between the gene's RNA and the predicted protein exceeds ``threshold`` (0.3): the paper
    finds ~80 on Tahoe-100M (Table 3, :data:`TABLE3_GENES`); the synthetic world's A is found the
    same way. ``reference: table3`` uses Table 3's list instead (intersected with the panel). When
    fewer than ``min_reference`` (3: a per-cell Spearman needs three points) pass, the
    ``min_reference`` best-correlated are used and the log says so (a departure for tiny panels).
Sub-scores
    - ``s_rc`` (eq. 14): per cell, Spearman over A between RNA ``x_g`` and ``p_hat_g`` (average
      ranks for ties; 0 for a constant row);
    - ``s_cx`` (eq. 15): ``1 - mean_m min(std_m / (mean_m + eps), 1)`` over the complexes with
      >= 3 subunits on the panel (std with ddof 0), from ``p_hat`` (non-negative levels);
    - ``s_nb`` (eq. 16): cosine of ``g_p`` to the centroid of the ``g_p`` of the cell's k = 50
      nearest neighbours (Euclidean, itself excluded) in the transcriptome latent space.
Aggregation (eq. 17)
    ``q = sigmoid(mean(z(s_rc), z(s_cx), z(s_nb)))`` with ``z(s) = (s - mu) / (sd + eps)``; the
    statistics are the population's own, or a reference population's (``stats``: the A.2.3
    negative controls are scored with the matched cells' statistics). A panel without any complex
    of >= 3 subunits averages the other two sub-scores (logged).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import rankdata

log = logging.getLogger(__name__)

SCORES = ("s_rc", "s_cx", "s_nb")
DEFAULTS = {
    "threshold": 0.3,  # population Spearman for A (App. A.2.1)
    "reference": "threshold",  # or "table3"
    "min_reference": 3,
    "min_subunits": 3,  # complexes with >= 3 subunits on the panel (eq. 15)
    "k": 50,  # neighbours of s_nb (eq. 16)
    "eps": 1e-6,
}
REFERENCES = ("threshold", "table3")

#: App. A.2.1 Table 3: the paper's reference genes A on Tahoe-100M, by functional category
TABLE3_GENES = {
    "Ribosomal (large)": "RPL3 RPL4 RPL5 RPL6 RPL7 RPL8 RPL9 RPL10A RPL11 RPL12 RPL13 RPL14 RPL15 "
    "RPL18 RPL23A RPL24 RPL27A",
    "Ribosomal (small)": "RPS2 RPS3 RPS4X RPS5 RPS6 RPS7 RPS8 RPS9 RPS10 RPS11 RPS12 RPS13 RPS14 "
    "RPS15 RPS16 RPS17 RPS18 RPS19 RPS20 RPSA",
    "Glycolysis": "GAPDH LDHA LDHB PKM ENO1 ALDOA PGK1 TPI1",
    "Chaperones": "HSP90AA1 HSP90AB1 HSPA8 HSPD1 CALR CANX",
    "Translation initiation": "EIF3A EIF3B EIF3C EIF3D EIF3E EIF3F EIF3G EIF3H EIF3I EIF4A1 EIF4G1",
    "Cytoskeletal": "ACTB ACTG1 VIM TUBA1B TUBB B2M",
}


def resolve_params(overrides: dict | None) -> dict:
    from scpert.errors import InputError

    unknown = sorted(set(overrides or {}) - set(DEFAULTS))
    if unknown:
        raise InputError(f"config priors.protein.params: unknown key(s) {unknown}")
    params = {**DEFAULTS, **(overrides or {})}
    if params["reference"] not in REFERENCES:
        raise InputError(f"config priors.protein.params.reference: one of {REFERENCES}")
    return params


def table3_genes() -> list[str]:
    return [g for genes in TABLE3_GENES.values() for g in genes.split()]


# ------------------------------------------------------------------------------- sub-scores
def _row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b`` (0 if constant)."""
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(1) / den, 0.0)


def population_spearman(rna: np.ndarray, p_hat: np.ndarray) -> np.ndarray:
    """Per protein (column), Spearman over cells between its gene's RNA and ``p_hat``."""
    return _row_spearman(np.asarray(rna, float).T, np.asarray(p_hat, float).T)


def reference_genes(
    rna: np.ndarray, p_hat: np.ndarray, proteins: Sequence[str], params: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of A and the population Spearman of every column (NaN RNA = not in RNA)."""
    present = ~np.isnan(rna).any(axis=0)
    rho = np.full(len(proteins), np.nan)
    if present.any():
        rho[present] = population_spearman(rna[:, present], p_hat[:, present])
    if params["reference"] == "table3":
        wanted = set(table3_genes())
        chosen = np.flatnonzero(present & np.isin(np.asarray(proteins), list(wanted)))
    else:
        chosen = np.flatnonzero(present & (rho > params["threshold"]))
    if len(chosen) < params["min_reference"]:
        order = np.argsort(-np.nan_to_num(rho, nan=-np.inf), kind="stable")
        best = [i for i in order if present[i]][: params["min_reference"]]
        log.warning(
            "PQM: %d reference gene(s) pass (%s); using the %d best-correlated instead",
            len(chosen),
            params["reference"],
            len(best),
        )
        chosen = np.sort(np.asarray(best, dtype=int))
    if len(chosen) < 3:
        from scpert.errors import InputError

        raise InputError(
            f"PQM: {len(chosen)} proteins with their gene in the RNA; s_rc needs at least 3"
        )
    return chosen, rho


def rank_consistency(rna_a: np.ndarray, p_hat_a: np.ndarray) -> np.ndarray:
    """``s_rc`` (eq. 14): per-cell Spearman over A between RNA and predicted protein."""
    return _row_spearman(np.asarray(rna_a, float), np.asarray(p_hat_a, float))


def complexes_on_panel(
    complexes: Sequence[Sequence[str]], proteins: Sequence[str], min_subunits: int = 3
) -> list[np.ndarray]:
    """Column indices of each complex's subunits on the panel, complexes with >= ``min_subunits``
    subunits there (a complex appearing twice is kept once)."""
    pos = {p: i for i, p in enumerate(proteins)}
    found, seen = [], set()
    for members in complexes:
        cols = tuple(sorted({pos[g] for g in members if g in pos}))
        if len(cols) >= min_subunits and cols not in seen:
            seen.add(cols)
            found.append(np.asarray(cols, dtype=int))
    return found


def complex_coherence(p_hat: np.ndarray, complexes: list[np.ndarray], eps: float) -> np.ndarray:
    """``s_cx`` (eq. 15): ``1 - mean_m min(std / (mean + eps), 1)`` over complexes ``m``."""
    p_hat = np.asarray(p_hat, float)
    cv = np.stack(
        [
            np.minimum(p_hat[:, c].std(axis=1) / (p_hat[:, c].mean(axis=1) + eps), 1.0)
            for c in complexes
        ],
        axis=1,
    )
    return 1.0 - cv.mean(axis=1)


def neighbours(latent: np.ndarray, k: int) -> np.ndarray:
    """(n, k') indices of each row's k' = min(k, n - 1) nearest other rows (Euclidean)."""
    from sklearn.neighbors import NearestNeighbors

    n = len(latent)
    k = min(k, n - 1)
    if k < 1:
        raise ValueError("neighbour consistency needs at least 2 cells")
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(latent).kneighbors(latent)
    out = np.empty((n, k), dtype=np.int64)
    for i, row in enumerate(idx):  # drop the cell itself (not always first when duplicated)
        row = row[row != i]
        out[i] = row[:k]
    return out


def neighbour_consistency(g_p: np.ndarray, latent: np.ndarray, k: int) -> np.ndarray:
    """``s_nb`` (eq. 16): cosine of ``g_p`` to the mean ``g_p`` of its k latent neighbours."""
    g_p = np.asarray(g_p, float)
    centroid = g_p[neighbours(np.asarray(latent, float), k)].mean(axis=1)
    den = np.linalg.norm(g_p, axis=1) * np.linalg.norm(centroid, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (g_p * centroid).sum(1) / den, 0.0)


# ------------------------------------------------------------------------------ aggregation
def reliability(
    scores: pd.DataFrame, stats: dict | None = None, eps: float = 1e-6
) -> tuple[np.ndarray, dict]:
    """``q`` (eq. 17) from the sub-score columns of ``scores`` that are not all NaN, z-normalised
    with ``stats`` (``{score: (mu, sd)}``) or the population's own; returns ``(q, stats)``."""
    used = [s for s in SCORES if s in scores and not scores[s].isna().all()]
    if stats is None:
        stats = {s: (float(scores[s].mean()), float(scores[s].std(ddof=0))) for s in used}
    z = np.stack([(scores[s].to_numpy(float) - stats[s][0]) / (stats[s][1] + eps) for s in used])
    return expit(z.mean(axis=0)), stats


@dataclass
class PQMResult:
    scores: pd.DataFrame  # s_rc, s_cx, s_nb, q per cell
    reference: list[str]  # proteins of A
    complexes: list[list[str]]  # subunits on the panel of each complex used
    stats: dict  # z-normalisation statistics {score: (mu, sd)}
    population_rho: dict = field(default_factory=dict)  # protein -> population Spearman

    @property
    def q(self) -> np.ndarray:
        return self.scores["q"].to_numpy(np.float32)


def compute_pqm(
    rna: np.ndarray,
    p_hat: np.ndarray,
    g_p: np.ndarray,
    latent: np.ndarray,
    proteins: Sequence[str],
    complexes: Sequence[Sequence[str]],
    params: dict,
    *,
    index=None,
    reference: np.ndarray | None = None,
    stats: dict | None = None,
) -> PQMResult:
    """PQM of ``n`` cells.

    rna: (n, P) log-normalised RNA of each protein's gene (NaN columns: gene not in the RNA);
    p_hat: (n, P) protein levels; g_p: (n, E) protein embeddings; latent: (n, d) transcriptome
    latent (neighbours of s_nb); complexes: subunit lists (e.g. complexes.tsv); reference,
    stats: A and the z-statistics of a reference population (else found here).
    """
    proteins = [str(p) for p in proteins]
    if reference is None:
        reference, rho = reference_genes(rna, p_hat, proteins, params)
    else:
        rho = np.full(len(proteins), np.nan)
    used = complexes_on_panel(complexes, proteins, params["min_subunits"])
    s_rc = rank_consistency(rna[:, reference], p_hat[:, reference])
    if used:
        s_cx = complex_coherence(p_hat, used, params["eps"])
    else:
        log.warning(
            "PQM: no complex with >= %d subunits on the panel; q averages s_rc and s_nb",
            params["min_subunits"],
        )
        s_cx = np.full(len(rna), np.nan)
    s_nb = neighbour_consistency(g_p, latent, params["k"])
    scores = pd.DataFrame({"s_rc": s_rc, "s_cx": s_cx, "s_nb": s_nb}, index=index)
    q, stats = reliability(scores, stats, params["eps"])
    scores["q"] = q
    return PQMResult(
        scores,
        [proteins[i] for i in reference],
        [[proteins[i] for i in c] for c in used],
        stats,
        {p: float(r) for p, r in zip(proteins, rho) if np.isfinite(r)},
    )


def rna_of_proteins(X, genes: Sequence[str], proteins: Sequence[str]) -> np.ndarray:
    """(n, P) RNA columns of each protein's gene (NaN where the gene is not in ``genes``)."""
    import scipy.sparse as sp

    pos = {g: i for i, g in enumerate(genes)}
    cols = [pos.get(p, -1) for p in proteins]
    have = [c for c in cols if c >= 0]
    sub = X[:, have]
    sub = sub.toarray() if sp.issparse(sub) else np.asarray(sub)
    out = np.full((X.shape[0], len(proteins)), np.nan)
    out[:, [j for j, c in enumerate(cols) if c >= 0]] = sub
    return out
