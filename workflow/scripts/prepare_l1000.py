"""Rule prepare_l1000: GSE92742 level 5 -> landmark x signature GCTX (scpert.steps.prepare_l1000)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.prepare_l1000,
    snakemake.input.gctx,
    snakemake.output.gctx,
    sig_info=snakemake.input.get("sig_info"),
    gene_info=snakemake.input.get("gene_info"),
    landmarks_only=snakemake.params.landmarks_only,
    pert_types=snakemake.params.pert_types,
)
