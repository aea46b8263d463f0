"""Rule import_citeseq: 10x RNA + ADT matrices -> citeseq.h5ad (scpert.steps.import_citeseq)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.import_citeseq,
    snakemake.input.matrices,
    snakemake.output.h5ad,
    annotation=snakemake.input.get("annotation"),
    annotation_column=snakemake.params.annotation_column,
    samples=snakemake.params.samples,
)
