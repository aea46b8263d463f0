"""Rule sample: predict every test condition of one split (scpert.pipeline.run_sample)."""

from scpert import pipeline, runtime

runtime.run_step(
    snakemake.log[0],
    pipeline.run_sample,
    dict(snakemake.input),
    snakemake.output.h5ad,
    snakemake.params.control,
    snakemake.params.seed,
    snakemake.params.device,
    snakemake.params.max_cells,
    snakemake.wildcards.method,
)
