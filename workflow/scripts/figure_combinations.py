"""Rule figure_combinations (scpert.plots.combinations)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.figure_combinations,
    snakemake.input.summary,
    dict(snakemake.output),
    snakemake.params.dataset,
    *snakemake.params.extra,
)
