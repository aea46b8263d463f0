"""Rule finetune_latent: the split's latent model (scpert.latent.run_finetune_latent)."""

from scpert import runtime
from scpert.latent import run_finetune_latent

runtime.run_step(
    snakemake.log[0],
    run_finetune_latent,
    dict(snakemake.input),
    snakemake.output.model,
    snakemake.params.latent,
    snakemake.params.control,
    snakemake.params.seed,
    snakemake.params.device,
    threads=snakemake.threads,
)
