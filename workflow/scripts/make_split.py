"""Rule make_split: condition -> train/val/test/exclude (scpert.data.splits)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.make_split,
    snakemake.input.h5ad,
    snakemake.input.drugs,
    snakemake.output.tsv,
    snakemake.params.split,
    snakemake.params.control,
)
