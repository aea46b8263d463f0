# Metrics per test condition (all configured protocols in one pass), then tidy tables.


# Score every method's predictions on one split against the held-out ground truth. One job per
# (dataset, split): the truth is read and its statistics (DE tests, clusters of its centroids) are
# computed once for all of the split's methods, and the imports once per job instead of once per
# method; each method still gets its own metrics file. The rule is defined per split because its
# outputs (one per method of the split) depend on the config. The reference rows are scored here
# too: the oracle's prediction beside the methods', and the data ceiling from the truth alone.
for (dataset, split), methods in evaluations().items():
    scored = methods + oracle_rows(dataset)

    rule:
        name:
            evaluate_rule(dataset, split)
        input:
            h5ad=f"results/{dataset}/processed.h5ad",
            split=f"results/{dataset}/splits/{split}.tsv",
            genes=f"results/{dataset}/{split}/genes.tsv",
            preds=[f"results/{dataset}/{split}/{m}/pred.h5ad" for m in scored],
        output:
            tsv=[f"results/{dataset}/{split}/{m}/metrics.tsv" for m in scored],
            ceiling=ceiling_rows(dataset, split),
        log:
            f"results/logs/evaluate/{dataset}/{split}.log",
        benchmark:
            f"results/benchmarks/evaluate/{dataset}/{split}.tsv"
        conda:
            "../../envs/scpert.yaml"
        threads: 1
        resources:
            mem_mb=RES["mem_mb"],
            runtime=RES["runtime"] * (len(scored) + 1),
        params:
            dataset=dataset,
            split=split,
            methods=scored,
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
        score=report(
            "results/tables/aggregate_score.tsv",
            caption="../report/aggregate_score.rst",
            category="Tables",
        ),
        multiseed=multiseed_files(),
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
        first_seed=(config.get("seeds") or [config["seed"]])[0],
    script:
        "../scripts/aggregate.py"


# Paired statistics: each method against the split's best baseline per metric (scpert.stats).
rule comparisons:
    input:
        long="results/tables/metrics_long.tsv",
    output:
        tsv=report(
            "results/tables/comparisons.tsv",
            caption="../report/comparisons.rst",
            category="Tables",
        ),
    log:
        "results/logs/comparisons.log",
    benchmark:
        "results/benchmarks/comparisons.tsv"
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        baselines=baseline_methods(),
        seed=config["seed"],
    script:
        "../scripts/comparisons.py"
