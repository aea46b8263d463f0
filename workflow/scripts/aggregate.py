"""Rule aggregate: long metric table, summary, paper-layout tables (scpert.tables)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.aggregate,
    list(snakemake.input.metrics),
    snakemake.output.long,
    snakemake.output.summary,
    list(snakemake.output.tables),
    snakemake.params.split_types,
)
