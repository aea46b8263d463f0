"""Rule heatmap: methods x metrics heatmap of one protocol's summary (scpert.plots)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.heatmap,
    snakemake.input.summary,
    snakemake.output.pdf,
    snakemake.output.png,
    snakemake.params.protocol,
)
