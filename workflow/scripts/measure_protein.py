"""Rule measure_protein: the measured-ADT protein prior of the split's untreated cells
(scpert.steps.measure_protein)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.measure_protein,
    dict(snakemake.input),
    snakemake.output.prior,
    snakemake.params.settings,
    snakemake.params.control,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
