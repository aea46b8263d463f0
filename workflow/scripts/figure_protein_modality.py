"""Rule figure_protein_modality (scpert.plots.protein_modality)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.figure_protein_modality,
    snakemake.input.summary,
    dict(snakemake.output),
    snakemake.params.dataset,
    *snakemake.params.extra,
)
