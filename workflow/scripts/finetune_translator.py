"""Rule finetune_translator: the translator fine-tuned on the split's CITE-seq training cells
(scpert.steps.finetune_translator)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.finetune_translator,
    dict(snakemake.input),
    snakemake.output.prior,
    snakemake.params.settings,
    snakemake.params.control,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
