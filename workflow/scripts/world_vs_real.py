"""Rule world_vs_real: the synthetic world against real references (scpert.steps.world_vs_real)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.world_vs_real,
    snakemake.input.l1000,
    snakemake.input.counts,
    snakemake.input.real_l1000,
    snakemake.input.real_counts,
    snakemake.output.table,
    snakemake.output.pdf,
    snakemake.output.png,
    snakemake.params.simulate,
    snakemake.params.control,
    title=f"synthetic world '{snakemake.wildcards.dataset}' vs real data",
)
