"""Rule evaluate: every configured metric protocol on every method of one split (one pass)."""

from scpert import runtime, steps

methods = snakemake.params.methods
runtime.run_step(
    snakemake.log[0],
    steps.evaluate,
    dict(snakemake.input),
    dict(zip(methods, snakemake.input.preds)),
    dict(zip(methods, snakemake.output.tsv)),
    snakemake.params.evaluation,
    snakemake.params.control,
    {"dataset": snakemake.params.dataset, "split": snakemake.params.split},
    snakemake.output.ceiling[0] if snakemake.output.ceiling else None,
)
