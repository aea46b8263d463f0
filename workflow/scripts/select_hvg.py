"""Rule select_hvg: genes and gene ranking of one split, fitted on its training cells."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.select_hvg,
    snakemake.input.h5ad,
    snakemake.input.split,
    snakemake.output.tsv,
    snakemake.params.hvg,
    snakemake.params.control,
    ranking_path=snakemake.output.ranking,
)
