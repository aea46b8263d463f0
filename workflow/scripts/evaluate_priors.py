"""Rule evaluate_priors: MoA retrieval and DTI AUROC of the priors (scpert.steps.evaluate_priors)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.evaluate_priors,
    snakemake.input.drugs,
    snakemake.input.mdt,
    snakemake.input.graph,
    snakemake.output.tsv,
    snakemake.wildcards.dataset,
    snakemake.wildcards.split,
    extra_drugs_path=snakemake.input.get("extra_drugs"),
)
