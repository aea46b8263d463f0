"""Rule preprocess: raw counts -> processed.h5ad (scpert.pipeline.run_preprocess)."""

from scpert import pipeline, runtime

runtime.run_step(
    snakemake.log[0],
    pipeline.run_preprocess,
    snakemake.input.counts,
    snakemake.output.h5ad,
    snakemake.params.preprocess,
    snakemake.params.control,
)
