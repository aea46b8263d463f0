"""Rule evaluate: every configured metric protocol on one prediction (one pass)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.evaluate,
    dict(snakemake.input),
    snakemake.output.tsv,
    snakemake.params.evaluation,
    snakemake.params.control,
    dict(snakemake.wildcards),
)
