"""Rule infer_protein: p_hat, g_p and PQM q of the split's untreated cells
(scpert.steps.infer_protein)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.infer_protein,
    dict(snakemake.input),
    snakemake.output.prior,
    snakemake.params.settings,
    snakemake.params.control,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
