"""Rule gunzip: a .gz download decompressed (scpert.steps.gunzip)."""

from scpert import runtime, steps

runtime.run_step(snakemake.log[0], steps.gunzip, snakemake.input.gz, snakemake.output.file)
