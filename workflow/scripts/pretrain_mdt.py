"""Rule pretrain_mdt: MDT drug templates of one split (scpert.steps.pretrain_mdt)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.pretrain_mdt,
    snakemake.input.drugs,
    snakemake.input.split,
    snakemake.input.genes,
    snakemake.input.l1000,
    snakemake.input.graph,
    snakemake.output.prior,
    snakemake.params.settings,
    sig_info_path=snakemake.input.get("l1000_sig_info"),
    gene_info_path=snakemake.input.get("l1000_gene_info"),
    extra_drugs_path=snakemake.input.get("extra_drugs"),
    control=snakemake.params.control,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
