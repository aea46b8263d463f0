"""Rule plan_shards: gather A of the out-of-core preprocessing (scpert.steps.plan_shards)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.plan_shards,
    list(snakemake.input.qc),
    snakemake.params.settings,
    snakemake.params.control,
    snakemake.output.plan,
    snakemake.params.where,
)
