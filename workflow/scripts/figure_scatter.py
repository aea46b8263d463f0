"""Rule figure_scatter (scpert.plots.scatter)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.figure_scatter,
    snakemake.input.long,
    dict(snakemake.output),
    snakemake.params.dataset,
    snakemake.params.baselines,
    snakemake.params.reference,
)
