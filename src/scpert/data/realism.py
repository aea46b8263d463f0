"""The synthetic world measured against real data, statistic by statistic (rule ``world_vs_real``).

Every statistic is computed by ONE function on a world artifact and on the real reference of the
same kind shipped in ``resources/realism/`` (provenance and the command that derives them:
``resources/README.md``); the table gives world value, real value, their ratio and whether the
ratio lies within ``1 ± TOLERANCE``.

L1000 signatures (world ``l1000.gctx``; real: 978 landmarks x 377 wells of one A375 24 h plate,
level 4, 59 compounds at 6 doses and 26 DMSO wells, ``resources/realism/l1000_a375_24h.gctx``)
    Signatures are the compound columns (``pert_type`` not ``ctl_*``) at the file's doses nearest
    (in log10) to the world's doses (:func:`nearest_doses`: 0.12, 1.11 and 10 µM of the real plate
    for the default 0.1, 1 and 10 µM). A drug's *response* in a cell line is the mean of its
    signatures over those doses.

    - ``corr_with_mean_response``: median over (line, drug) of the Pearson correlation of the
      drug's response with the mean response of the line's OTHER drugs (leave-one-out, so the
      value does not depend on the number of drugs through the drug's own share of the mean).
    - ``corr_between_drugs``: mean over pairs of drugs of one line of the Pearson correlation of
      their responses.
    - ``frac_abs_z_ge_2``: median over signatures of the fraction of landmarks with ``|z| >= 2``
      (CMap's signature strength ``distil_ss`` divided by the number of landmarks).
    - ``frac_de_vs_controls``: median over signatures of the fraction of landmarks that differ
      from the same line's control signatures (``pert_type`` ``ctl_vehicle``): for a signature
      ``x`` and ``n`` controls with mean ``m`` and sd ``s`` per landmark, ``t = (x - m) / (s
      sqrt(1 + 1/n))`` (the test of one new observation against a sample), two-sided p-values
      from Student's t with ``n - 1`` degrees of freedom, Benjamini–Hochberg over the landmarks,
      adjusted p < ``DE_FDR``. This is the number of DE genes per condition against its controls,
      for the one real data set here that has treated conditions and their controls.

Control-cell counts (world ``counts.h5ad`` control cells, per cell line; real: 1,000 cells x 1,000
genes of the SCimilarity test data, one sample, ``resources/realism/scimilarity_counts.h5ad``)
    Per context (cell line; the real file is one), raw counts:

    - ``gene_zero_fraction``: median over genes detected in the context (>= 1 count) of the
      fraction of cells with zero counts.
    - ``overdispersion``: median over genes with mean >= ``MIN_MEAN_FOR_DISPERSION`` counts of the
      method-of-moments negative-binomial overdispersion ``phi = (var - mean) / mean^2`` (the
      mean–variance relation ``var = mean + phi mean^2``).
    - ``library_size_sd``: standard deviation of ln(total counts per cell).

    Gene and cell values are pooled over contexts before the median; ``library_size_sd`` is the
    median over contexts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from scpert.data import schema
from scpert.errors import InputError
from scpert.priors.l1000 import Gct, landmark_rows, read_gct

TOLERANCE = 0.25
DE_FDR = 0.05
Z_STRONG = 2.0
MIN_MEAN_FOR_DISPERSION = 0.1

#: statistic -> (family, description); the table's row order
STATISTICS = {
    "corr_with_mean_response": (
        "l1000",
        "median Pearson r of a drug's response with the mean response of the other drugs",
    ),
    "corr_between_drugs": ("l1000", "mean Pearson r between the responses of two drugs"),
    "frac_abs_z_ge_2": ("l1000", "median fraction of landmarks with |z| >= 2 per signature"),
    "frac_de_vs_controls": (
        "l1000",
        "median fraction of landmarks DE against the controls per signature (BH 0.05)",
    ),
    "gene_zero_fraction": ("counts", "median zero fraction per detected gene, control cells"),
    "overdispersion": ("counts", "median NB overdispersion phi (var = mu + phi mu^2), controls"),
    "library_size_sd": ("counts", "sd of ln library size of control cells"),
}

WORLD_SOURCES = {"l1000": "l1000.gctx", "counts": "counts.h5ad (control cells)"}


# ------------------------------------------------------------------------------------ L1000
@dataclass
class L1000Measures:
    """Per-item values behind the L1000 statistics (for the table and the figure)."""

    corr_with_mean: np.ndarray  # (line-drug,)
    corr_between: np.ndarray  # (pairs,)
    frac_abs_z_ge_2: np.ndarray  # (signatures,)
    frac_de: np.ndarray  # (signatures,)
    doses: list[float]  # the doses used


def nearest_doses(available, wanted) -> list[float]:
    """For each wanted dose, the available dose nearest in log10 (sorted, distinct)."""
    available = np.asarray(sorted({float(d) for d in available if float(d) > 0}))
    if not len(available):
        raise ValueError("no positive doses to choose from")
    picked = {
        float(available[np.argmin(np.abs(np.log10(available) - np.log10(float(w))))])
        for w in wanted
    }
    return sorted(picked)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b``."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def _bh_reject(p: np.ndarray, fdr: float) -> np.ndarray:
    """Benjamini–Hochberg along the last axis: True where the adjusted p-value < ``fdr``."""
    m = p.shape[-1]
    order = np.argsort(p, axis=-1)
    ranked = np.take_along_axis(p, order, axis=-1) * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[..., ::-1], axis=-1)[..., ::-1]
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, np.minimum(adjusted, 1.0), axis=-1)
    return out < fdr


def de_against_controls(signatures: np.ndarray, controls: np.ndarray, fdr: float = DE_FDR):
    """(S, G) signatures vs (n, G) control signatures of the same line -> (S, G) DE mask."""
    n = len(controls)
    if n < 3:
        raise ValueError(f"{n} control signatures; the DE test needs at least 3")
    mean, sd = controls.mean(axis=0), controls.std(axis=0, ddof=1)
    t = (signatures - mean) / (np.maximum(sd, 1e-8) * np.sqrt(1.0 + 1.0 / n))
    p = 2.0 * stats.t.sf(np.abs(t), df=n - 1)
    return _bh_reject(p, fdr)


def l1000_measures(gct: Gct, doses, source: str | Path = "<gct>") -> L1000Measures:
    """The L1000 measures of a signature file at the doses nearest to ``doses`` (module doc)."""
    meta = gct.col_meta
    for field in ("pert_type", "pert_iname", "pert_dose", "cell_id"):
        if field not in meta.columns:
            raise InputError(f"{source}: column field '{field}' is missing")
    rows, _ = landmark_rows(gct, source)
    z = gct.data.to_numpy(dtype=np.float64)[rows].T  # (columns, landmarks)
    is_control = meta["pert_type"].astype(str).str.startswith("ctl").to_numpy()
    dose = pd.to_numeric(meta["pert_dose"], errors="coerce").to_numpy()
    used = nearest_doses(dose[~is_control & (dose > 0)], doses)
    sig = ~is_control & np.isin(dose, used)
    line = meta["cell_id"].astype(str).to_numpy()
    drug = meta["pert_iname"].astype(str).to_numpy()
    corr_mean, corr_pairs, frac_de = [], [], []
    for cell in sorted(set(line[sig])):
        here = sig & (line == cell)
        controls = z[is_control & (line == cell)]
        if len(controls) < 3:
            raise InputError(
                f"{source}: cell line {cell} has {len(controls)} control signatures "
                "(pert_type ctl_*); the DE statistic needs at least 3"
            )
        frac_de.append(de_against_controls(z[here], controls).mean(axis=1))
        names = sorted(set(drug[here]))
        if len(names) < 3:
            continue
        response = np.stack([z[here & (drug == d)].mean(axis=0) for d in names])
        others = (response.sum(axis=0) - response) / (len(names) - 1)
        corr_mean.append(_pearson_rows(response, others))
        corr = np.corrcoef(response)
        corr_pairs.append(corr[np.triu_indices(len(names), k=1)])
    if not corr_mean:
        raise InputError(f"{source}: no cell line has 3 or more drugs at doses {used}")
    return L1000Measures(
        corr_with_mean=np.concatenate(corr_mean),
        corr_between=np.concatenate(corr_pairs),
        frac_abs_z_ge_2=(np.abs(z[sig]) >= Z_STRONG).mean(axis=1),
        frac_de=np.concatenate(frac_de),
        doses=used,
    )


# ----------------------------------------------------------------------------------- counts
@dataclass
class CountMeasures:
    """Per-gene and per-cell values behind the control-cell statistics, pooled over contexts."""

    gene_mean: np.ndarray  # (context-gene,) detected genes only
    gene_var: np.ndarray
    gene_zero_fraction: np.ndarray
    centred_log_library: np.ndarray  # (cells,) ln total counts minus its context's median
    library_sd: np.ndarray  # (contexts,)


def count_measures(counts, contexts) -> CountMeasures:
    """Measures of raw counts (cells x genes) per context label (one per cell)."""
    counts = sp.csr_matrix(counts, dtype=np.float64)
    contexts = np.asarray(contexts)
    means, variances, zeros, log_lib, lib_sd = [], [], [], [], []
    for context in pd.unique(contexts):
        X = counts[contexts == context]
        n = X.shape[0]
        if n < 2:
            continue
        mean = np.asarray(X.mean(axis=0)).ravel()
        second = np.asarray(X.multiply(X).mean(axis=0)).ravel()
        var = (second - mean**2) * n / (n - 1)
        detected = mean > 0
        nonzero = np.diff(X.tocsc().indptr)
        means.append(mean[detected])
        variances.append(var[detected])
        zeros.append(1.0 - nonzero[detected] / n)
        library = np.asarray(X.sum(axis=1)).ravel()
        library = np.log(library[library > 0])
        log_lib.append(library - np.median(library))
        lib_sd.append(library.std(ddof=1))
    if not means:
        raise ValueError("no context has 2 or more cells")
    return CountMeasures(
        np.concatenate(means),
        np.concatenate(variances),
        np.concatenate(zeros),
        np.concatenate(log_lib),
        np.asarray(lib_sd),
    )


def overdispersion(mean: np.ndarray, var: np.ndarray, min_mean: float = MIN_MEAN_FOR_DISPERSION):
    """Method-of-moments NB overdispersion ``(var - mean) / mean^2`` of genes with mean >= min."""
    keep = mean >= min_mean
    return (var[keep] - mean[keep]) / mean[keep] ** 2


# ------------------------------------------------------------------------------------ table
def summarize(l1000: L1000Measures, counts: CountMeasures) -> dict[str, float]:
    """Statistic name -> value (module docstring)."""
    return {
        "corr_with_mean_response": float(np.median(l1000.corr_with_mean)),
        "corr_between_drugs": float(np.mean(l1000.corr_between)),
        "frac_abs_z_ge_2": float(np.median(l1000.frac_abs_z_ge_2)),
        "frac_de_vs_controls": float(np.median(l1000.frac_de)),
        "gene_zero_fraction": float(np.median(counts.gene_zero_fraction)),
        "overdispersion": float(np.median(overdispersion(counts.gene_mean, counts.gene_var))),
        "library_size_sd": float(np.median(counts.library_sd)),
    }


def comparison_table(
    world: dict[str, float], real: dict[str, float], real_sources: dict[str, str]
) -> pd.DataFrame:
    """Tidy table: one row per statistic with world, real, ratio and ``within_tolerance``."""
    rows = []
    for name, (family, description) in STATISTICS.items():
        w, r = world[name], real[name]
        ratio = w / r if r else float("nan")
        rows.append(
            {
                "statistic": name,
                "family": family,
                "world": w,
                "real": r,
                "ratio": ratio,
                "within_tolerance": bool(abs(ratio - 1.0) <= TOLERANCE),
                "world_source": WORLD_SOURCES[family],
                "real_source": real_sources[family],
                "description": description,
            }
        )
    return pd.DataFrame(rows)


@dataclass
class Comparison:
    """The table and, for the figure, the measures of each side (L1000, counts)."""

    table: pd.DataFrame
    world: tuple[L1000Measures, CountMeasures]
    real: tuple[L1000Measures, CountMeasures]


def world_controls(counts_path: str | Path, control: str) -> tuple[sp.csr_matrix, np.ndarray]:
    """Raw counts and cell lines of the control cells of a world's ``counts.h5ad``."""
    adata = ad.read_h5ad(counts_path)
    schema.validate(adata, counts_path, kind="raw", control=control)  # names missing controls
    keep = (adata.obs[schema.DRUG].astype(str) == control).to_numpy()
    return sp.csr_matrix(adata.X[keep]), adata.obs[schema.CELL_LINE].astype(str).to_numpy()[keep]


def real_counts(path: str | Path) -> sp.csr_matrix:
    """Raw counts of a reference AnnData (``layers["counts"]`` if present, else ``X``)."""
    adata = ad.read_h5ad(path)
    X = adata.layers["counts"] if "counts" in adata.layers else adata.X
    X = sp.csr_matrix(X)
    if X.nnz and (X.data.min() < 0 or not np.allclose(X.data, np.round(X.data))):
        raise InputError(f"{path}: counts must be non-negative integers")
    return X


def compare(
    world_l1000: str | Path,
    world_counts: str | Path,
    real_l1000: str | Path,
    real_counts_path: str | Path,
    doses,
    control: str = schema.DEFAULT_CONTROL,
) -> Comparison:
    """World vs real: read both sides, measure them the same way, tabulate (module docstring)."""
    w_l1000 = l1000_measures(read_gct(world_l1000), doses, world_l1000)
    r_l1000 = l1000_measures(read_gct(real_l1000), doses, real_l1000)
    w_counts = count_measures(*world_controls(world_counts, control))
    real = real_counts(real_counts_path)
    r_counts = count_measures(real, np.zeros(real.shape[0], dtype=int))
    sources = {"l1000": Path(real_l1000).name, "counts": Path(real_counts_path).name}
    table = comparison_table(summarize(w_l1000, w_counts), summarize(r_l1000, r_counts), sources)
    return Comparison(table, (w_l1000, w_counts), (r_l1000, r_counts))
