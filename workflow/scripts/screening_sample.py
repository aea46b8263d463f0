"""Rule screening_sample: a model's screen of every drug on a held-out line
(scpert.steps.screening_sample)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.screening_sample,
    dict(snakemake.input),
    snakemake.output.h5ad,
    snakemake.wildcards.method,
    snakemake.params.line,
    snakemake.params.dose,
    snakemake.params.cells_per_drug,
    snakemake.params.control,
    snakemake.params.seed,
    snakemake.params.device,
)
