"""Rule diversity_dataset: a balanced training subset of K identities (scpert.steps.diversity_dataset)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.diversity_dataset,
    snakemake.input.h5ad,
    snakemake.input.split,
    snakemake.output.h5ad,
    snakemake.output.split,
    snakemake.wildcards.axis,
    int(snakemake.wildcards.level),
    snakemake.params.levels,
    snakemake.params.budget_fraction,
    snakemake.params.seed,
    snakemake.params.control,
)
