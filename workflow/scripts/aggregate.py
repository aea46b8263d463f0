"""Rule aggregate: long metric table, summary, paper-layout tables (scpert.tables)."""

from scpert import runtime, tables

runtime.run_step(
    snakemake.log[0],
    tables.run_aggregate,
    list(snakemake.input.metrics),
    snakemake.output.long,
    snakemake.output.summary,
    list(snakemake.output.tables),
    snakemake.params.split_types,
)
