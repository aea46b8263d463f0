"""The differential-expression engine shared by every metric protocol (DESIGN §9).

All tests run on all genes at once (vectorised numpy/scipy; genes are only chunked for memory).

- :func:`ttest_scores` reproduces ``scanpy.tl.rank_genes_groups(method="t-test", reference=...)``
  scores: per-gene mean and variance as scanpy's ``_get_mean_var`` computes them (float64
  accumulation, squares taken in the input dtype, ``var = E[x^2] - E[x]^2`` rescaled by
  ``n / (n - 1)`` unless ``n == 1``), Welch's t as ``scipy.stats.ttest_ind_from_stats`` forms it
  (``std = sqrt(var)``, ``t = (m1 - m2) / sqrt(std1^2/n1 + std2^2/n2)``), and scanpy's NaN rule
  (NaN scores, e.g. equal constant genes or a slightly negative variance, become 0). Constant genes
  with different means give ``+-inf``, as in scanpy.
- :func:`rank_degs` / :func:`top_by_abs`: scPerturBench sorts genes by ``|score|`` descending
  (StateXDiff App. B.1). Tie rule (ours; theirs is pandas' unstable sort): equal ``|score|`` keeps
  gene (var) order, i.e. a stable sort, for the ground truth; a prediction's ranking breaks ties
  in a seeded random order (``rng``), so that a prediction identical to the controls (every score
  0) scores at chance whatever the var order (docs/decisions.md, "Common-DEGs at chance").
- :func:`mannwhitney_u`: two-sided Mann-Whitney U with tie and continuity correction and the normal
  approximation, as ``scipy.stats.mannwhitneyu(x, y, method="asymptotic")`` (cell-eval / pdex).
  Values that are exactly float32 (log-normalised data) are ranked by sorting integer keys that
  carry the group membership in their lowest bit (a plain SIMD sort, no argsort); other data fall
  back to a stable argsort. Both give the same average ranks. :class:`MannWhitneyReference`
  prepares one reference group (a cell line's controls) for many tests; for non-negative float32
  data with few distinct values per gene (zeros, counts) it keeps the reference's runs of ties, so
  a test sorts only the group's cells and places each of the group's runs among them by a binary
  search (docs/decisions.md, "Metrics pass against cell-eval").
- :func:`bh_fdr`: Benjamini-Hochberg, as ``statsmodels.stats.multitest.multipletests(p,
  method="fdr_bh")``.
- :func:`log2fc_expm1_means` (cell-eval / pdex) and :func:`log2fc_pseudocount` (scPPDM App. C.2).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import special

#: genes ranked per chunk in :func:`mannwhitney_u` are limited to this many matrix entries.
_MWU_CHUNK_ENTRIES = 4_000_000


def _as_dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def column_mean(x) -> np.ndarray:
    """Per-gene mean of a dense cells x genes matrix accumulated in float64 (the mean of
    :func:`mean_var`)."""
    return np.asarray(x).mean(axis=0, dtype=np.float64)


def mean_var(x, mean: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and unbiased variance of a cells x genes matrix (dense or CSR), scanpy-style.

    Follows ``scanpy.preprocessing._utils._get_mean_var``: float64 sums, squares in the input
    dtype, ``var = (E[x^2] - E[x]^2) * n / (n - 1)`` (no rescaling for a single cell). The variance
    can come out slightly negative for a constant gene; :func:`ttest_scores` handles that as scanpy.
    mean: :func:`column_mean` of a dense ``x`` when already computed (the same values).
    """
    n = x.shape[0]
    if n == 0:
        raise ValueError("mean_var: the matrix has no cells")
    if sp.issparse(x):
        x = sp.csr_matrix(x)
        n_genes = x.shape[1]
        values = x.data.astype(np.float64)
        squares = (x.data * x.data).astype(np.float64)
        mean = np.bincount(x.indices, weights=values, minlength=n_genes) / n
        mean_sq = np.bincount(x.indices, weights=squares, minlength=n_genes) / n
    else:
        x = np.asarray(x)
        mean = column_mean(x) if mean is None else mean
        mean_sq = (x * x).mean(axis=0, dtype=np.float64)
    var = mean_sq - mean**2
    if n != 1:
        var *= n / (n - 1)
    return mean, var


def welch_t(
    mean_group: np.ndarray,
    var_group: np.ndarray,
    n_group: int,
    mean_ref: np.ndarray,
    var_ref: np.ndarray,
    n_ref: int,
) -> np.ndarray:
    """Welch's t statistic from summary statistics with scanpy's NaN -> 0 rule."""
    with np.errstate(invalid="ignore", divide="ignore"):
        std_group, std_ref = np.sqrt(var_group), np.sqrt(var_ref)
        scores = (mean_group - mean_ref) / np.sqrt(std_group**2 / n_group + std_ref**2 / n_ref)
    scores[np.isnan(scores)] = 0.0
    return scores


def ttest_scores(x_group, x_ref) -> np.ndarray:
    """Scanpy's t-test scores of ``x_group`` against the reference ``x_ref`` (cells x genes)."""
    return welch_t(*mean_var(x_group), x_group.shape[0], *mean_var(x_ref), x_ref.shape[0])


def top_by_abs(
    scores: np.ndarray, n: int | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Indices of the ``n`` largest ``|scores|`` (all if ``None``), descending; ties in index order,
    or in a random order drawn from ``rng`` (the rule of the predictions' rankings: a prediction
    with no change at all has only ties and then ranks genes uniformly at random)."""
    magnitude = -np.abs(np.asarray(scores, dtype=np.float64))
    if rng is None:
        order = np.argsort(magnitude, kind="stable")
    else:
        order = np.lexsort((rng.permutation(magnitude.size), magnitude))
    return order if n is None else order[:n]


def rank_degs(x_group, x_ref, n: int | None) -> np.ndarray:
    """Gene indices of the top-``n`` DEGs by ``|t-test score|`` (scPerturBench, StateXDiff B.1)."""
    return top_by_abs(ttest_scores(x_group, x_ref), n)


def _float32_keys(values: np.ndarray) -> np.ndarray | None:
    """Order-preserving int32 keys of ``values``, or ``None`` when some value is not exactly a float32.

    The float32 bit pattern read as a signed integer, with the magnitude bits of negative numbers
    flipped, orders like the floats; ``+ 0`` first turns ``-0.0`` into ``+0.0`` so they tie.
    """
    v32 = values.astype(np.float32)
    if values.dtype != np.float32 and not np.array_equal(v32, values):
        return None
    v32 += np.float32(0.0)
    bits = v32.view(np.int32)
    bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)
    return bits


#: uint32 view of -0.0; larger uint32 views of float32 are negative numbers
_NEGATIVE_ZERO_BITS = np.uint32(0x80000000)


def _tag_float32(x: np.ndarray, reference: bool, out: np.ndarray) -> bool:
    """Write the tagged uint32 keys of the float32 cells x genes values ``x`` into ``out`` (genes x
    cells): the bit pattern shifted left by one (so ``-0.0`` and ``+0.0`` both become 0) plus 1
    for the reference. Non-negative float32 values order like these integers. Returns False
    (``out`` unusable) when some value is negative."""
    bits = x.view(np.uint32)
    if bits.size and bits.max() > _NEGATIVE_ZERO_BITS:
        return False
    np.left_shift(bits.T, 1, out=out)  # the ufunc reads the transpose, no separate copy
    if reference:
        out |= 1
    return True


def _tag(keys: np.ndarray, dtype, reference: bool, out: np.ndarray | None = None) -> np.ndarray:
    """``keys << 1`` (:func:`_float32_keys`), plus 1 for the reference, in ``dtype`` (int64 when
    some key is negative)."""
    if out is None:
        out = np.empty(keys.shape, dtype=dtype)
    np.copyto(out, keys, casting="unsafe")
    out <<= 1
    if reference:
        out |= 1
    return out


def _rank_sums_tagged(tagged: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row (gene) of genes x cells tagged keys (:func:`_tag`): rank sum of the group and sum
    over ties of t^3 - t.

    One sort per row orders the values and puts, within a run of equal values, the group's cells
    before the reference's (tag 0 before 1). The sorted matrix splits into sub-runs of equal
    (value, tag) pairs, so a run of ties is a group sub-run, a reference sub-run, or a group
    sub-run of ``g`` cells at 0-based position ``a`` followed by a reference sub-run of ``c``
    cells. The group's cells there share the average rank ``a + (g + c + 1) / 2``: a rank sum of
    ``g a + g (g + 1) / 2 + g c / 2``, and the run adds ``(g + c)^3 - (g + c) = g^3 - g + c^3 - c
    + 3 g c (g + c)`` to the tie term. Everything is counted per sub-run, so the cost past the
    sort is one comparison of neighbours and the (few) sub-runs.
    """
    n_genes, n = tagged.shape
    tagged.sort(axis=1)
    start, length, gene = _row_runs(tagged)  # sub-runs of equal (value, tag)
    length = length.astype(np.float64)
    head = tagged.ravel()[start]
    position = (start - gene * n).astype(np.float64)
    group = (head & 1) == 0
    # a group sub-run followed by the reference's sub-run of the same value in the same row
    paired = np.zeros(start.size, dtype=bool)
    np.equal(head[1:], head[:-1] | 1, out=paired[:-1])
    paired[:-1] &= position[1:] != 0
    tied_ref = np.zeros(start.size)
    tied_ref[:-1][paired[:-1]] = length[1:][paired[:-1]]
    rank_w = np.where(group, length * (position + (length + 1.0 + tied_ref) / 2.0), 0.0)
    tie_w = length**3 - length + 3.0 * length * tied_ref * (length + tied_ref)
    rank_sum = np.bincount(gene, weights=rank_w, minlength=n_genes)
    tie_term = np.bincount(gene, weights=tie_w, minlength=n_genes)
    return rank_sum, tie_term


def _row_runs(sorted_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal values in each row of a row-sorted matrix: flat start index, length (int64)
    and row of every run, in row-major order."""
    n = sorted_rows.shape[1]
    flat = sorted_rows.ravel()
    change = np.empty(flat.size, dtype=bool)
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    change[::n] = True
    start = np.flatnonzero(change)
    return start, np.diff(start, append=flat.size), start // n


#: the run-merge path of :class:`MannWhitneyReference` serves while the group and reference
#: together have at most this fraction of runs of ties per cell (else one sort of the pooled cells)
_MAX_RUNS_PER_CELL = 0.125
#: low 33 bits of the key of the run that closes each gene of the reference (above every value)
_RUN_KEY_TOP = np.uint64(2**33 - 1)


def _rank_sums_argsort(xy: np.ndarray, n1: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column of the stacked cells x genes matrix (group rows first): the group's rank sum and
    the sum over ties of t^3 - t, from a stable argsort (any float dtype)."""
    n = xy.shape[0]
    order = np.argsort(xy, axis=0, kind="stable")
    xs = np.take_along_axis(xy, order, axis=0)
    pos = np.broadcast_to(np.arange(n)[:, None], xs.shape)
    starts_run = np.ones(xs.shape, dtype=bool)
    starts_run[1:] = xs[1:] != xs[:-1]
    ends_run = np.ones(xs.shape, dtype=bool)
    ends_run[:-1] = starts_run[1:]
    first = np.maximum.accumulate(np.where(starts_run, pos, 0), axis=0)
    last = np.minimum.accumulate(np.where(ends_run, pos, n - 1)[::-1], axis=0)[::-1]
    avg_rank = (first + last) / 2.0 + 1.0
    rank_sum = np.where(order < n1, avg_rank, 0.0).sum(axis=0)
    run = (last - first + 1).astype(np.float64)
    tie_term = (run**2 - 1.0).sum(axis=0)  # each of the t members of a run adds t^2 - 1
    return rank_sum, tie_term


class MannWhitneyReference:
    """A reference group (cells x genes, dense or CSR) prepared for two-sided Mann-Whitney U tests
    of many groups against it (every condition against the controls of its cell line): its
    genes x cells layout and tagged integer keys are made once, not per test."""

    def __init__(self, x_ref):
        self.x = _as_dense(x_ref)
        self.n, self.n_genes = self.x.shape
        if self.n == 0:
            raise ValueError("mannwhitney_u: both groups need at least one cell")
        self.keys = _float32_keys(np.ascontiguousarray(self.x.T))
        self.tagged_uint32 = None  # the fast path: non-negative float32 values
        if self.keys is not None:
            tagged = np.empty((self.n_genes, self.n), dtype=np.uint32)
            if _tag_float32(self.x.astype(np.float32), reference=True, out=tagged):
                self.tagged_uint32 = tagged
                self._prepare_runs(tagged)

    def _prepare_runs(self, tagged: np.ndarray) -> None:
        """The reference's runs of ties per gene, for the run-merge path of :meth:`_rank_sums`:
        their keys ``gene << 33 | value << 1 | 1`` (sorted), lengths and the count of reference
        cells before each run in its gene, each gene closed by an empty run above every value
        (key ``gene << 33 | 2^33 - 1``, ``n`` cells before it); the first run of each gene and,
        per gene, the sum over its runs of ``c^3 - c``."""
        ordered = np.sort(tagged, axis=1)
        start, length, gene = _row_runs(ordered)
        keys = (gene.astype(np.uint64) << np.uint64(33)) | ordered.ravel()[start]
        below = start - gene * self.n
        # the closing run of gene i goes after the last run of gene i
        closing = np.searchsorted(gene, np.arange(self.n_genes), side="right")
        genes = np.arange(self.n_genes, dtype=np.uint64)
        self.run_keys = np.insert(keys, closing, (genes << np.uint64(33)) | _RUN_KEY_TOP)
        self.run_length = np.insert(length, closing, 0).astype(np.float64)
        self.run_below = np.insert(below, closing, self.n).astype(np.float64)
        self.run_first = np.searchsorted(
            self.run_keys >> np.uint64(33), np.arange(self.n_genes + 1)
        )
        self.run_ties = np.bincount(
            gene, weights=length.astype(np.float64) ** 3 - length, minlength=self.n_genes
        )

    def _rank_sums_merged(
        self, xg: np.ndarray, chunk: slice
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray | None:
        """Rank sums and tie terms of the group (non-negative float32) against the reference from
        runs of ties: the group's cells are sorted per gene alone, and each run of ``g`` equal
        group values at value ``v`` is placed among the reference's runs (prepared once) by one
        binary search of its key: ``L`` reference cells below ``v``, ``c`` equal to it. With the
        ``a`` group cells below, the run's cells have the average rank ``L + a + (g + c + 1) / 2``
        and the run of ties adds ``(g + c)^3 - (g + c) - (c^3 - c) = g^3 - g + 3 g c (g + c)``
        to the reference's own tie term. When the runs are too many for this to pay (continuous
        values): the group's tagged keys (genes x cells) for the pooled sort; ``None`` when some
        value is negative."""
        block = xg[:, chunk]
        n1, n_genes = block.shape
        lo = chunk.start
        ref_first, ref_last = self.run_first[lo], self.run_first[lo + n_genes]
        keys = np.empty((n_genes, n1), dtype=np.uint32)
        if not _tag_float32(block, reference=False, out=keys):
            return None
        if ref_last - ref_first > _MAX_RUNS_PER_CELL * self.n * n_genes:
            return keys
        keys.sort(axis=1)
        start, length, gene = _row_runs(keys)
        if start.size + ref_last - ref_first > _MAX_RUNS_PER_CELL * (n1 + self.n) * n_genes:
            return keys
        run_keys = ((gene + lo).astype(np.uint64) << np.uint64(33)) | keys.ravel()[start]
        # the first reference run at or above each group run's value, in the same gene (each gene
        # ends with a run above every value): its cells before it are the reference's below
        at = ref_first + np.searchsorted(self.run_keys[ref_first:ref_last], run_keys)
        below = self.run_below[at]
        equal = np.where(self.run_keys[at] == run_keys | np.uint64(1), self.run_length[at], 0.0)
        g = length.astype(np.float64)
        a = (start - gene * n1).astype(np.float64)
        rank_w = g * (below + a + (g + 1.0 + equal) / 2.0)
        tie_w = g**3 - g + 3.0 * g * equal * (g + equal)
        rank_sum = np.bincount(gene, weights=rank_w, minlength=n_genes)
        tie_term = np.bincount(gene, weights=tie_w, minlength=n_genes) + self.run_ties[chunk]
        return rank_sum, tie_term

    def _rank_sums(self, xg: np.ndarray, chunk: slice) -> tuple[np.ndarray, np.ndarray]:
        n1 = xg.shape[0]
        block = xg[:, chunk]
        n_genes = block.shape[1]
        if self.tagged_uint32 is not None and block.dtype == np.float32:
            merged = self._rank_sums_merged(xg, chunk)
            if isinstance(merged, tuple):
                return merged
            if merged is not None:  # too many runs: the group's keys join the pooled sort
                tagged = np.empty((n_genes, n1 + self.n), dtype=np.uint32)
                tagged[:, :n1] = merged
                tagged[:, n1:] = self.tagged_uint32[chunk]
                return _rank_sums_tagged(tagged)
        keys_group = None if self.keys is None else _float32_keys(np.ascontiguousarray(block.T))
        if keys_group is not None:
            tagged = np.empty((n_genes, n1 + self.n), dtype=np.int64)
            _tag(keys_group, np.int64, reference=False, out=tagged[:, :n1])
            _tag(self.keys[chunk], np.int64, reference=True, out=tagged[:, n1:])
            return _rank_sums_tagged(tagged)
        block = np.concatenate([xg[:, chunk], self.x[:, chunk]], axis=0)
        return _rank_sums_argsort(block, n1)

    def test(self, x_group) -> tuple[np.ndarray, np.ndarray]:
        """``(U1, p)`` per gene of ``x_group`` against the reference (see :func:`mannwhitney_u`)."""
        xg = _as_dense(x_group)
        n1, n2 = xg.shape[0], self.n
        if n1 == 0:
            raise ValueError("mannwhitney_u: both groups need at least one cell")
        if xg.shape[1] != self.n_genes:
            raise ValueError(f"mannwhitney_u: gene counts differ ({xg.shape[1]} vs {self.n_genes})")
        n = n1 + n2
        rank_sum = np.empty(self.n_genes)
        tie_term = np.empty(self.n_genes)
        step = max(1, _MWU_CHUNK_ENTRIES // n)
        for lo in range(0, self.n_genes, step):
            chunk = slice(lo, lo + step)
            rank_sum[chunk], tie_term[chunk] = self._rank_sums(xg, chunk)
        u1 = rank_sum - n1 * (n1 + 1) / 2
        u = np.maximum(u1, n1 * n2 - u1)
        mu = n1 * n2 / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
            z = (u - mu - 0.5) / sigma
        p = np.clip(2.0 * special.ndtr(-z), 0.0, 1.0)
        return u1, p


def mannwhitney_u(x_group, x_ref) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Mann-Whitney U test per gene (columns), normal approximation.

    Returns ``(U, p)`` with ``U`` the statistic of ``x_group`` (``R1 - n1(n1+1)/2``) as scipy
    reports it. Tie-corrected sigma, continuity correction 0.5, ``p = 2 * sf(z)`` clipped to
    [0, 1], ``z`` from ``max(U1, U2)``. A gene constant across both groups has sigma 0; then
    ``z = -inf`` and ``p = 1`` (scipy gives the same through its clip). Many groups against one
    reference: :class:`MannWhitneyReference`.
    """
    return MannWhitneyReference(x_ref).test(x_group)


def bh_fdr(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (statsmodels ``fdr_bh``), capped at 1.

    NaN p-values stay NaN and are left out of the number of tests (R ``p.adjust`` convention;
    statsmodels has no NaN handling).
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    values = p[ok]
    m = values.size
    if m == 0:
        return q
    # any order of tied p-values gives them the same adjusted value (the running minimum from the
    # end reaches the last of the ties first), so an unstable sort serves
    order = np.argsort(values)
    ranked = values[order] / (np.arange(1, m + 1) / m)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    ranked[ranked > 1] = 1.0
    adjusted = np.empty(m)
    adjusted[order] = ranked
    q[ok] = adjusted
    return q


def log2fc_expm1_means(
    mean_group_log1p, mean_ref_log1p, epsilon: float = 0.0, bulk_dtype=None
) -> np.ndarray:
    """``log2((expm1(m_group) + eps) / (expm1(m_ref) + eps))`` from means of log1p data.

    cell-eval 0.8 / pdex pseudobulk fold change; cell-eval uses ``epsilon = 0`` (one-sided zeros
    give ``+-inf``). As in pdex, ``0/0`` (gene absent from both groups) is defined as 0.
    bulk_dtype: round ``expm1(m)`` to this dtype before the ratio (pdex keeps the pseudobulk in the
    data's dtype, float32 for float32 data); ``None`` keeps float64.
    """
    num = np.expm1(np.asarray(mean_group_log1p, dtype=np.float64))
    den = np.expm1(np.asarray(mean_ref_log1p, dtype=np.float64))
    if bulk_dtype is not None:
        num, den = num.astype(bulk_dtype), den.astype(bulk_dtype)
    num = num.astype(np.float64) + epsilon
    den = den.astype(np.float64) + epsilon
    with np.errstate(divide="ignore", invalid="ignore"):
        lfc = np.log2(num / den)
    lfc[np.isnan(lfc)] = 0.0
    return lfc


def log2fc_pseudocount(mean_group, mean_ref, pseudocount: float) -> np.ndarray:
    """``log2((m_group + eps) / (m_ref + eps))`` with a fixed pseudo-count (scPPDM App. C.2)."""
    if pseudocount <= 0:
        raise ValueError(f"log2fc_pseudocount: pseudocount must be > 0, got {pseudocount}")
    num = np.asarray(mean_group, dtype=np.float64) + pseudocount
    den = np.asarray(mean_ref, dtype=np.float64) + pseudocount
    return np.log2(num / den)
