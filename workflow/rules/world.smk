# The synthetic world measured against real data (scpert.data.realism): statistic by statistic,
# world value, real value and their ratio, against the real references in resources/realism/.


# World vs real: L1000 response structure and strength, control-cell count statistics.
rule world_vs_real:
    input:
        l1000=f"resources/raw/{{dataset}}/{WORLD_FILES['l1000']}",
        counts=f"resources/raw/{{dataset}}/{WORLD_FILES['counts']}",
        real_l1000=REPO / "resources/realism/l1000_a375_24h.gctx",
        real_counts=REPO / "resources/realism/scimilarity_counts.h5ad",
    output:
        table=report(
            "results/tables/world_vs_real_{dataset}.tsv",
            caption="../report/world_vs_real_table.rst",
            category="World vs real",
        ),
        pdf="results/figures/world_vs_real_{dataset}.pdf",
        png=report(
            "results/figures/world_vs_real_{dataset}.png",
            caption="../report/world_vs_real.rst",
            category="World vs real",
        ),
    log:
        "results/logs/world_vs_real/{dataset}.log",
    benchmark:
        "results/benchmarks/world_vs_real/{dataset}.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        simulate=lambda wc: config["datasets"][wc.dataset]["simulate"],
        control=CONTROL,
    script:
        "../scripts/world_vs_real.py"
