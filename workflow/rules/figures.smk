# Figures (PDF + PNG); each PNG appears in the Snakemake report with its caption.


# Methods x metrics heatmap of the scPerturBench summary, one panel per dataset and split.
rule heatmap:
    input:
        summary="results/tables/summary.tsv",
    output:
        pdf="results/figures/heatmap_scperturbench.pdf",
        png=report(
            "results/figures/heatmap_scperturbench.png",
            caption="../report/heatmap.rst",
            category="Figures",
        ),
    log:
        "results/logs/figures/heatmap_scperturbench.log",
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        protocol="scperturbench",
    script:
        "../scripts/heatmap.py"
