"""Rule preprocess_shard: pass B over one shard (scpert.steps.preprocess_shard)."""

from scpert import runtime, steps

files = {k: v for k, v in snakemake.input.items() if k not in ("shard", "plan")}
runtime.run_step(
    snakemake.log[0],
    steps.preprocess_shard,
    snakemake.params.source,
    snakemake.input.shard,
    files,
    snakemake.params.options,
    snakemake.input.plan,
    snakemake.params.control,
    snakemake.output.stats,
    snakemake.params.where,
)
