"""Rule figure_umap (scpert.plots.umap)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.figure_umap,
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
