"""Rule experiment_table_<experiment>: its tidy table (scpert.steps.experiment_table)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.experiment_table,
    snakemake.params.experiment,
    list(snakemake.input.metrics),
    snakemake.params.variants,
    snakemake.output.tsv,
)
