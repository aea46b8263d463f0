"""Rule figure_ablations (scpert.plots.ablations)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.figure_ablations,
    snakemake.input.summary,
    dict(snakemake.output),
    snakemake.params.dataset,
    *snakemake.params.extra,
)
