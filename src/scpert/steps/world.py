"""Rule step of the synthetic world's realism check: world_vs_real (scpert.data.realism)."""

from __future__ import annotations

import logging

from scpert import runtime

log = logging.getLogger(__name__)


def world_vs_real(
    world_l1000,
    world_counts,
    real_l1000,
    real_counts,
    table_path,
    pdf_path,
    png_path,
    simulate_params: dict,
    control: str,
    title: str = "",
) -> None:
    """Rule world_vs_real: the world's statistics against the shipped real references, as a
    tidy table (one row per statistic) and a figure (PDF + PNG)."""
    import matplotlib.pyplot as plt

    from scpert.data.realism import compare
    from scpert.data.simulate import resolve_params
    from scpert.plots.realism import world_vs_real as draw

    doses = resolve_params(simulate_params)["doses"]
    comparison = compare(world_l1000, world_counts, real_l1000, real_counts, doses, control)
    table = comparison.table
    for row in table.itertuples():
        log.info(
            "%-24s world %.4g real %.4g ratio %.3f%s",
            row.statistic,
            row.world,
            row.real,
            row.ratio,
            "" if row.within_tolerance else "  OUTSIDE the tolerance",
        )
    fig = draw(comparison, title)
    runtime.write_tsv(table, table_path, float_format="%.6g")
    runtime.write_atomic(
        pdf_path, lambda p: fig.savefig(p, format="pdf", metadata={"CreationDate": None})
    )
    runtime.write_atomic(png_path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
