"""Rule gather_shards: group statistics + the subsample's processed.h5ad (scpert.steps.gather_shards)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.gather_shards,
    list(snakemake.input.shards),
    snakemake.input.plan,
    snakemake.params.control,
    snakemake.output.h5ad,
    snakemake.output.stats,
    memory_mb=snakemake.params.memory_mb,
)
