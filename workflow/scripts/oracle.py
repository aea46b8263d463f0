"""Rule oracle: the synthetic world's truth sampled with its own noise (scpert.metrics.reference)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.oracle,
    dict(snakemake.input),
    snakemake.output.h5ad,
    snakemake.params.control,
    snakemake.params.seed,
    snakemake.params.max_cells,
)
