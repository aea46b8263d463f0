"""Rule figure_comparisons (scpert.plots.comparisons)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0], steps.figure_comparisons, snakemake.input.comparisons, dict(snakemake.output)
)
