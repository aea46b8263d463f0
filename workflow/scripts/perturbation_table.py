"""Rule perturbation_table: drugs.tsv of an out-of-core dataset (scpert.steps.perturbation_table)."""

from scpert import runtime, steps

files = {k: v for k, v in snakemake.input.items() if k != "plan"}
runtime.run_step(
    snakemake.log[0],
    steps.perturbation_table,
    snakemake.params.source,
    snakemake.input.plan,
    files,
    snakemake.params.options,
    snakemake.params.control,
    snakemake.output.drugs,
    snakemake.params.where,
)
