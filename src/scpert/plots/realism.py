"""World vs real (rule ``world_vs_real``): the ratio of every statistic and the distributions
behind them, the synthetic world beside the real references (``scpert.data.realism``)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scpert.data import realism  # noqa: E402

WORLD, REAL = "#1f77b4", "#d62728"


def _hist(ax, world, real, title, xlabel, bins):
    for values, colour, label in ((world, WORLD, "world"), (real, REAL, "real")):
        ax.hist(values, bins=bins, density=True, histtype="step", lw=1.5, color=colour, label=label)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)


def _ecdf(ax, world, real, title, xlabel):
    for values, colour, label in ((world, WORLD, "world"), (real, REAL, "real")):
        x = np.sort(values)
        ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", color=colour, label=label)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("fraction of signatures", fontsize=8)


def _scatter(ax, x, y, colour, label):
    ax.scatter(x, y, s=3, alpha=0.35, color=colour, label=label, rasterized=True)


def world_vs_real(comparison: realism.Comparison, title: str = ""):
    """Eight panels: ratios world / real with the tolerance band, then per statistic the world's
    and the real reference's distributions. Returns the matplotlib figure."""
    table = comparison.table
    (w_l1000, w_counts), (r_l1000, r_counts) = comparison.world, comparison.real
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), constrained_layout=True)
    ax = axes[0, 0]
    y = np.arange(len(table))[::-1]
    ok = table["within_tolerance"].to_numpy()
    ax.axvspan(1 - realism.TOLERANCE, 1 + realism.TOLERANCE, color="0.9")
    ax.axvline(1.0, color="0.5", lw=0.8)
    ax.scatter(table["ratio"], y, c=np.where(ok, "#2ca02c", "#d62728"), zorder=3)
    ax.set_yticks(y, table["statistic"], fontsize=7)
    ax.set_xscale("log")
    ratios = table["ratio"].to_numpy(dtype=float)
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    lo = min(0.5, ratios.min() / 1.1) if len(ratios) else 0.5
    hi = max(2.0, ratios.max() * 1.1) if len(ratios) else 2.0
    ax.set_xlim(lo, hi)
    ticks = [0.5, 1 - realism.TOLERANCE, 1.0, 1 + realism.TOLERANCE, 2.0]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("world / real", fontsize=8)
    ax.set_title(f"ratio (band: ±{realism.TOLERANCE:.0%})", fontsize=9)

    bins = np.linspace(-0.4, 1.0, 36)
    _hist(
        axes[0, 1],
        w_l1000.corr_with_mean,
        r_l1000.corr_with_mean,
        "response vs mean of other drugs",
        "Pearson r",
        bins,
    )
    _hist(
        axes[0, 2],
        w_l1000.corr_between,
        r_l1000.corr_between,
        "between two drugs",
        "Pearson r",
        bins,
    )
    _ecdf(
        axes[0, 3],
        w_l1000.frac_abs_z_ge_2,
        r_l1000.frac_abs_z_ge_2,
        "landmarks with |z| >= 2",
        "fraction per signature",
    )
    _ecdf(
        axes[1, 0],
        w_l1000.frac_de,
        r_l1000.frac_de,
        f"landmarks DE vs controls (BH {realism.DE_FDR})",
        "fraction per signature",
    )
    ax = axes[1, 1]
    for m, colour, label in ((w_counts, WORLD, "world"), (r_counts, REAL, "real")):
        keep = m.gene_var > 0
        _scatter(ax, np.log10(m.gene_mean[keep]), np.log10(m.gene_var[keep]), colour, label)
    lo = min(np.log10(w_counts.gene_mean).min(), np.log10(r_counts.gene_mean).min())
    hi = max(np.log10(w_counts.gene_mean).max(), np.log10(r_counts.gene_mean).max())
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--", label="Poisson")
    ax.set_title("mean–variance, control cells", fontsize=9)
    ax.set_xlabel("log10 mean count", fontsize=8)
    ax.set_ylabel("log10 variance", fontsize=8)
    ax = axes[1, 2]
    for m, colour, label in ((w_counts, WORLD, "world"), (r_counts, REAL, "real")):
        _scatter(ax, np.log10(m.gene_mean), m.gene_zero_fraction, colour, label)
    ax.set_title("zero fraction per gene, control cells", fontsize=9)
    ax.set_xlabel("log10 mean count", fontsize=8)
    ax.set_ylabel("fraction of cells with 0", fontsize=8)
    _hist(
        axes[1, 3],
        w_counts.centred_log_library,
        r_counts.centred_log_library,
        "library size, control cells",
        "ln total counts - median of its context",
        np.linspace(-3, 3, 41),
    )
    for ax in axes.flat[1:]:
        ax.legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
