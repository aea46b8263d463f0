"""Rule train: fit the configured method on one split (scpert.steps.train)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.train,
    dict(snakemake.input),
    snakemake.output.model,
    snakemake.params.method,
    snakemake.params.control,
    snakemake.params.seed,
    snakemake.params.device,
    threads=snakemake.threads,
)
