"""Rule figure_padj_density (scpert.plots.padj_density)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.figure_padj_density,
    {
        "h5ad": snakemake.input.h5ad,
        "split": list(snakemake.input.split),
        "genes": list(snakemake.input.genes),
        "preds": list(snakemake.input.preds),
    },
    dict(snakemake.output),
    snakemake.params.dataset,
    snakemake.params.splits,
    snakemake.params.methods,
    snakemake.params.control,
)
