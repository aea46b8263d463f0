"""Rule download: one configured file, resumable and verified (scpert.steps.download)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.download,
    snakemake.params.job,
    snakemake.output.file,
    snakemake.input.get("checksum_list"),
)
