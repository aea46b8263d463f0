"""Rule qc_shard: pass A over one shard (scpert.steps.qc_shard)."""

from scpert import runtime, steps

files = {k: v for k, v in snakemake.input.items() if k != "shard"}
runtime.run_step(
    snakemake.log[0],
    steps.qc_shard,
    snakemake.params.source,
    snakemake.input.shard,
    files,
    snakemake.params.options,
    snakemake.params.settings,
    snakemake.params.control,
    snakemake.output.qc,
    snakemake.params.where,
)
