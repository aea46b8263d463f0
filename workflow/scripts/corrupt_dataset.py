"""Rule corrupt_dataset: noise or extra sparsity on a dataset (scpert.steps.corrupt_dataset)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.corrupt_dataset,
    snakemake.input.h5ad,
    snakemake.output.h5ad,
    snakemake.wildcards.kind,
    float(snakemake.wildcards.level),
    snakemake.params.seed,
    snakemake.params.control,
)
