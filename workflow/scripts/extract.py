"""Rule extract: a tar / zip download extracted into a folder (scpert.steps.extract)."""

from scpert import runtime, steps

runtime.run_step(snakemake.log[0], steps.extract, snakemake.input.archive, snakemake.output.folder)
