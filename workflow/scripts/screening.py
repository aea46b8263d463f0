"""Rule screening_screen: the in-silico screen of a held-out line (scpert.steps.screening)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.screening,
    dict(snakemake.input),
    snakemake.params.methods,
    dict(snakemake.output),
    snakemake.params.line,
    snakemake.params.pathway,
    snakemake.params.direction,
    snakemake.params.top_n,
    snakemake.params.control,
    snakemake.params.dose,
)
