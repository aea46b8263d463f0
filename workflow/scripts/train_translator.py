"""Rule train_translator: the dataset's RNA -> protein translator (scpert.steps.train_translator)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.train_translator,
    snakemake.input.citeseq,
    snakemake.input.h5ad,
    snakemake.output.prior,
    snakemake.params.settings,
    snakemake.params.control,
    checkpoint=snakemake.input.get("checkpoint"),
    device=snakemake.params.device,
    threads=snakemake.threads,
)
