"""The two forms a dataset's expression matrix may come in (``datasets.<name>.input``).

``counts`` (preferred)
    raw integer UMI counts; rule ``preprocess`` normalises them.
``lognorm``
    ``log1p(normalize_total(counts))`` as most published h5ads hold it (scPerturBench's
    ``filter_hvg5000_logNor.h5ad``, GEARS' ``X``), at any target sum. :func:`counts_from_lognorm`
    recovers the counts: ``expm1`` undoes ``log1p``, which leaves ``counts * s`` for one scale ``s``
    per cell. Dividing by a cell's smallest non-zero value gives its counts when some gene was
    seen once (true of almost every cell with more than a few hundred UMIs); otherwise the
    smallest count ``m`` is the first of 2..:data:`MAX_SMALLEST` that makes every value an
    integer. The counts are exact up to the greatest common divisor of a cell's counts (1 in real
    data). Normalisation is invariant to a per-cell scale, so the processed ``X``, the HVGs and
    everything downstream equal those of the raw counts.

:func:`not_counts_message` is the error for a matrix that is not integer counts; for a
log-normalised one it says how to declare it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scpert.data.schema import SchemaError

FORMS = ("counts", "lognorm")
#: largest distance of a recovered count from an integer (float32 log1p values carry ~1e-7
#: relative error, i.e. < 1e-3 at a count of 1,000)
INTEGER_TOLERANCE = 0.02
#: the largest smallest-count of a cell that :func:`counts_from_lognorm` searches for
MAX_SMALLEST = 64


def _csr(matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float64)
    out.eliminate_zeros()
    return out


def looks_lognormalised(matrix) -> bool:
    """Non-integer values whose ``expm1`` is, in every cell, a multiple of its smallest one:
    ``log1p`` of normalised counts (:func:`counts_from_lognorm` succeeds)."""
    data = _csr(matrix).data
    if not data.size or data.min() < 0 or np.array_equal(data, np.round(data)):
        return False
    try:
        counts_from_lognorm(matrix, "")
    except SchemaError:
        return False
    return True


def not_counts_message(matrix, source: str, where: str = "X") -> str:
    """Why ``matrix`` is refused as raw counts; for a log-normalised one, how to declare it."""
    if looks_lognormalised(matrix):
        return (
            f"{source}: {where} is not raw counts but looks log-normalised (log1p of normalised "
            "counts); declare it in the dataset's config entry (datasets.<name>.input: lognorm) "
            "to have the counts recovered, or give raw integer counts"
        )
    return f"{source}: {where} must hold raw integer counts"


def counts_from_lognorm(matrix, source: str, where: str = "X") -> sp.csr_matrix:
    """Integer counts (float32 CSR) of a ``log1p(normalize_total(counts))`` matrix (module
    docstring); raise :class:`SchemaError` naming ``source`` when a cell's values are not a
    scaled count vector (e.g. already scaled or z-scored data)."""
    X = _csr(matrix)
    if X.data.size and X.data.min() < 0:
        raise SchemaError(
            f"{source}: {where} has negative values, so it is not log1p(normalised counts) "
            "(input: lognorm); give raw counts or the log-normalised matrix before scaling"
        )
    X.data = np.expm1(X.data)
    n = X.shape[0]
    lengths = np.diff(X.indptr)
    smallest = np.ones(n)
    nonempty = lengths > 0
    smallest[nonempty] = np.minimum.reduceat(X.data, X.indptr[:-1][nonempty])
    counts = X.data / np.repeat(smallest, lengths)
    # a cell whose smallest count is m > 1: its values are multiples of smallest / m
    off = np.abs(counts - np.round(counts))
    for cell in np.unique(
        np.searchsorted(X.indptr, np.flatnonzero(off > INTEGER_TOLERANCE), "right") - 1
    ):
        lo, hi = X.indptr[cell], X.indptr[cell + 1]
        row = counts[lo:hi]
        for m in range(2, MAX_SMALLEST + 1):
            if np.abs(row * m - np.round(row * m)).max() <= INTEGER_TOLERANCE:
                counts[lo:hi] = row * m
                break
        else:
            raise SchemaError(
                f"{source}: {where} (declared input: lognorm) is not log1p of normalised counts: "
                f"cell {cell}'s expm1 values are not integer multiples of one count (tried a "
                f"smallest count of 1 to {MAX_SMALLEST}); give raw counts, or the log-normalised "
                "matrix as it was written (before scaling or batch correction)"
            )
    rounded = np.round(counts)
    X.data = rounded
    return sp.csr_matrix(X, dtype=np.float32)
