"""Rule simulate_world: write the synthetic world's raw files (scpert.steps.simulate_world)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.simulate_world,
    snakemake.params.simulate,
    str(snakemake.output.counts).rsplit("/", 1)[0],
    snakemake.params.resources,
)
