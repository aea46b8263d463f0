"""Rule preprocess: raw counts -> processed.h5ad (scpert.steps.preprocess)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.preprocess,
    snakemake.input.counts,
    snakemake.output.h5ad,
    snakemake.params.preprocess,
    snakemake.params.control,
    drugs_path=snakemake.input.drugs,
    input_form=snakemake.params.input_form,
    perturbation_type=snakemake.params.perturbation_type,
    where=f"datasets.{snakemake.wildcards.dataset}",
)
