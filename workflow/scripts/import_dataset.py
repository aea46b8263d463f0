"""Rule import_dataset: a published dataset -> counts.h5ad + drugs.tsv (scpert.steps.import_dataset)."""

from scpert import runtime, steps

files = {
    role: value if isinstance(value, str) else list(value)
    for role, value in snakemake.input.items()
}
runtime.run_step(
    snakemake.log[0],
    steps.import_dataset,
    snakemake.params.source,
    files,
    snakemake.params.members,
    snakemake.params.options,
    snakemake.params.control,
    snakemake.output.counts,
    snakemake.output.drugs,
    snakemake.params.where,
)
