"""Rule train: fit the configured method on one split (scpert.pipeline.run_train)."""

from scpert import pipeline, runtime

runtime.run_step(
    snakemake.log[0],
    pipeline.run_train,
    dict(snakemake.input),
    snakemake.output.model,
    snakemake.params.method,
    snakemake.params.control,
    snakemake.params.seed,
    snakemake.params.device,
)
