"""Rule figure_diversity (scpert.steps.figure_diversity)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0], steps.figure_diversity, snakemake.input.table, dict(snakemake.output)
)
