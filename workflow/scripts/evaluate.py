"""Rule evaluate: every configured metric protocol on one prediction (one pass)."""

from scpert import pipeline, runtime

runtime.run_step(
    snakemake.log[0],
    pipeline.run_evaluate,
    dict(snakemake.input),
    snakemake.output.tsv,
    snakemake.params.evaluation,
    snakemake.params.control,
    dict(snakemake.wildcards),
)
