"""Rule finetune_latent: the split's latent model (scpert.steps.finetune_latent)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.finetune_latent,
    dict(snakemake.input),
    snakemake.output.prior,
    snakemake.params.latent,
    snakemake.params.control,
    snakemake.params.seed,
    snakemake.params.device,
    threads=snakemake.threads,
)
