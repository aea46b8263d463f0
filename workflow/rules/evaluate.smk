# Metrics per test condition (all configured protocols in one pass), then tidy tables.


# Score one method's predictions on one split against the held-out ground truth.
rule evaluate:
    input:
        pred="results/{dataset}/{split}/{method}/pred.h5ad",
        h5ad="results/{dataset}/processed.h5ad",
        split="results/{dataset}/splits/{split}.tsv",
        genes="results/{dataset}/{split}/genes.tsv",
    output:
        tsv="results/{dataset}/{split}/{method}/metrics.tsv",
    log:
        "results/logs/evaluate/{dataset}/{split}/{method}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{split}/{method}.tsv"
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        control=CONTROL,
        evaluation=config["evaluation"],
    script:
        "../scripts/evaluate.py"


# Long table of every metric, per-method summaries, and the paper-layout tables.
rule aggregate:
    input:
        metrics=metric_files(),
    output:
        long=report(
            "results/tables/metrics_long.tsv",
            caption="../report/metrics_long.rst",
            category="Tables",
        ),
        summary=report(
            "results/tables/summary.tsv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        tables=paper_table_files(),
    log:
        "results/logs/aggregate.log",
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        split_types=split_types(),
    script:
        "../scripts/aggregate.py"
