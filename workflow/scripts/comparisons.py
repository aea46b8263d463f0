"""Rule comparisons: each method against the best baseline, per metric (scpert.stats)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.comparisons,
    snakemake.input.long,
    snakemake.output.tsv,
    snakemake.params.baselines,
    snakemake.params.seed,
)
