"""Rule aggregate: long metric table, summary, paper-layout tables, aggregate
score, tables across seeds (scpert.tables)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.aggregate,
    list(snakemake.input.metrics),
    snakemake.output.long,
    snakemake.output.summary,
    list(snakemake.output.tables),
    snakemake.params.split_types,
    snakemake.output.score,
    list(snakemake.output.multiseed),
    snakemake.params.first_seed,
)
