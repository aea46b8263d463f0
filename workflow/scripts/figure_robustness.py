"""Rule figure_robustness (scpert.steps.figure_robustness)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0], steps.figure_robustness, snakemake.input.table, dict(snakemake.output)
)
