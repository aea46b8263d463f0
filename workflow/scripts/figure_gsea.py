"""Rule figure_gsea (scpert.plots.gsea)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.figure_gsea,
    {
        "h5ad": snakemake.input.h5ad,
        "split": list(snakemake.input.split),
        "genes": list(snakemake.input.genes),
        "preds": list(snakemake.input.preds),
        "gmt": snakemake.input.gmt,
    },
    dict(snakemake.output),
    snakemake.params.dataset,
    snakemake.params.splits,
    snakemake.params.methods,
    snakemake.params.control,
)
