"""Rules figure_robustness, figure_diversity (scpert.steps.figure_<experiment>)."""

from scpert import runtime, steps

step = getattr(steps, f"figure_{snakemake.params.experiment}")
runtime.run_step(snakemake.log[0], step, snakemake.input.table, dict(snakemake.output))
