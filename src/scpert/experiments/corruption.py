"""Noise and sparsity stress tests of a processed dataset (StateXDiff arXiv:2605.16104 App. B.5).

StateXDiff Table 10 derives ten datasets from sciplex3-A549 (sparsity 0.963): five with noise of
intensity 0.1-0.9 at unchanged sparsity, five with sparsity raised to 0.969-0.997. The paper does
not give the corruption model; ours, on the log-normalised ``X`` of ``processed.h5ad``:

- ``noise`` at level ``s``: every non-zero entry is multiplied by ``exp(s * e - s^2 / 2)`` with
  ``e ~ N(0, 1)`` (log-normal, mean-preserving), so zeros stay zeros and the sparsity is unchanged,
  as in Table 10's noise rows;
- ``sparsity`` at level ``p``: every non-zero entry is set to 0 with probability ``p`` (dropout),
  so the sparsity goes from ``s0`` to ``s0 + (1 - s0) p``; from 0.963, levels 0.1, 0.3, 0.5, 0.7,
  0.9 give 0.967, 0.974, 0.982, 0.989, 0.996, close to Table 10's 0.969-0.997.

Dropped entries are dropped from ``layers["counts"]`` too; noise leaves the counts as they are
(the methods train on ``X``). All cells are corrupted, controls and test conditions included: the
data are worse, and methods are scored against the corrupted truth, as in the paper.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

KINDS = ("noise", "sparsity")


def sparsity(x) -> float:
    """Fraction of zero entries of a matrix (dense or sparse)."""
    n = x.shape[0] * x.shape[1]
    nonzero = x.count_nonzero() if sp.issparse(x) else np.count_nonzero(x)
    return 1.0 - nonzero / n


def corrupt(adata: ad.AnnData, kind: str, level: float, seed: int = 0) -> ad.AnnData:
    """A corrupted copy of ``adata`` (``X`` log-normalised CSR or dense; see the module docstring).

    kind: ``noise`` (level = log-normal sigma, > 0) or ``sparsity`` (level = dropout probability
    of a non-zero entry, in (0, 1)).
    """
    if kind not in KINDS:
        raise ValueError(f"corruption kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "noise" and not level > 0:
        raise ValueError(f"noise level must be > 0, got {level}")
    if kind == "sparsity" and not 0 < level < 1:
        raise ValueError(f"sparsity level must be in (0, 1), got {level}")
    rng = np.random.default_rng([seed, KINDS.index(kind), int(round(level * 1000))])
    out = adata.copy()
    x = sp.csr_matrix(out.X, dtype=np.float32, copy=True)
    x.eliminate_zeros()
    if kind == "noise":
        e = rng.standard_normal(x.data.size)
        x.data = (x.data * np.exp(level * e - level**2 / 2)).astype(np.float32)
    else:
        x.data[rng.random(x.data.size) < level] = 0.0
        x.eliminate_zeros()
        if "counts" in out.layers:  # a dropped entry is a zero count
            kept = sp.csr_matrix((np.ones(x.nnz, dtype=np.float32), x.indices, x.indptr), x.shape)
            counts = sp.csr_matrix(out.layers["counts"]).multiply(kept)
            out.layers["counts"] = sp.csr_matrix(counts, dtype=out.layers["counts"].dtype)
    out.X = x
    out.uns["corruption"] = {"kind": kind, "level": float(level), "seed": int(seed)}
    return out
