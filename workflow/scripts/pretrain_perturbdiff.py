"""Rule pretrain_perturbdiff: PerturbDiff's marginal prior of one split
(scpert.steps.pretrain_perturbdiff)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.pretrain_perturbdiff,
    dict(snakemake.input),
    snakemake.output.prior,
    snakemake.params.settings,
    snakemake.params.control,
    snakemake.params.seed,
    snakemake.params.device,
    threads=snakemake.threads,
)
