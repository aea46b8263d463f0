"""Rule validate_pqm: StateXDiff App. A.2.3 validation of q (scpert.steps.validate_pqm)."""

from scpert import runtime, steps

runtime.run_step(
    snakemake.log[0],
    steps.validate_pqm,
    snakemake.input.citeseq,
    snakemake.input.translator,
    snakemake.output.table,
    snakemake.output.pdf,
    snakemake.output.png,
    snakemake.params.settings,
    snakemake.params.control,
    complexes_path=snakemake.input.get("complexes"),
    title=f"PQM validation ({snakemake.wildcards.dataset})",
    device=snakemake.params.device,
    threads=snakemake.threads,
)
