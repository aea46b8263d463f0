"""Rule train_vmcs: the split's virtual multimodal cell state (scpert.steps.train_vmcs)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.train_vmcs,
    dict(snakemake.input),
    snakemake.output.prior,
    snakemake.params.settings,
    snakemake.params.control,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
