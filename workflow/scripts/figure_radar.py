"""Rule figure_radar (scpert.plots.radar)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.figure_radar,
    snakemake.input.summary,
    dict(snakemake.output),
    snakemake.params.dataset,
    *snakemake.params.extra,
)
