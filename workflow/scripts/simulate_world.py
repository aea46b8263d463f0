"""Rule simulate_world: write the synthetic world's raw files (scpert.data.simulate)."""

from pathlib import Path

from scpert import runtime
from scpert.data.simulate import simulate_world

runtime.run_step(
    snakemake.log[0],
    simulate_world,
    snakemake.params.simulate,
    Path(snakemake.output.counts).parent,
    Path(snakemake.params.resources),
)
