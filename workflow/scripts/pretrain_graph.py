"""Rule pretrain_graph: graph prior z_b (scpert.steps.pretrain_graph)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.pretrain_graph,
    snakemake.input.drugs,
    snakemake.input.dti,
    snakemake.input.ppi,
    snakemake.output.prior,
    snakemake.params.settings,
    complexes_path=snakemake.input.get("complexes"),
    gene_sets_path=snakemake.input.get("gene_sets"),
    string_info_path=snakemake.input.get("string_info"),
    extra_drugs_path=snakemake.input.get("extra_drugs"),
    device=snakemake.params.device,
    threads=snakemake.threads,
)
