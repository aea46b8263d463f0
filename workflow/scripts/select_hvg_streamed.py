"""Rule select_hvg_streamed: a split's HVGs and gene ranking from group statistics (scpert.steps.select_hvg_streamed)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.select_hvg_streamed,
    snakemake.input.stats,
    snakemake.input.split,
    snakemake.output.tsv,
    snakemake.params.hvg,
    snakemake.params.control,
    snakemake.params.key,
    ranking_path=snakemake.output.ranking,
)
