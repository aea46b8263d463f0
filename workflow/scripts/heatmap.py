"""Rule heatmap: methods x metrics heatmap of one protocol's summary (scpert.plots)."""

from scpert import runtime
from scpert.plots.heatmap import run_heatmap

runtime.run_step(
    snakemake.log[0],
    run_heatmap,
    snakemake.input.summary,
    snakemake.output.pdf,
    snakemake.output.png,
    snakemake.params.protocol,
)
