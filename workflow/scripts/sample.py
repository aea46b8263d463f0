"""Rule sample: predict every test condition of one split (scpert.steps.sample)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.sample,
    dict(snakemake.input),
    snakemake.output.h5ad,
    snakemake.params.control,
    snakemake.params.seed,
    snakemake.params.device,
    snakemake.params.max_cells,
    snakemake.wildcards.method,
    threads=snakemake.threads,
)
