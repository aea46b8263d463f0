# From raw counts to a processed AnnData, OOD splits, and per-split gene spaces.


# QC, normalize_total + log1p, counts layer, condition key; validates the data contract, that the
# perturbation table has a row for every perturbation of the counts, their declared type and every
# chemical's SMILES. A log-normalised input (datasets.<name>.input: lognorm) has its counts
# recovered first.
rule preprocess:
    input:
        counts=raw_counts,
        drugs=raw_drugs,
    output:
        h5ad="results/{dataset}/processed.h5ad",
    log:
        "results/logs/preprocess/{dataset}.log",
    benchmark:
        "results/benchmarks/preprocess/{dataset}.tsv"
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        preprocess=lambda wc: config["datasets"][wc.dataset]["preprocess"],
        input_form=lambda wc: preprocess_input(wc.dataset),
        perturbation_type=lambda wc: config["datasets"][wc.dataset]["perturbation_type"],
        control=CONTROL,
    script:
        "../scripts/preprocess.py"


# Assign every condition to train / val / test / exclude for one OOD scenario.
rule make_split:
    input:
        h5ad="results/{dataset}/processed.h5ad",
        drugs=raw_drugs,
    output:
        tsv="results/{dataset}/splits/{split}.tsv",
    log:
        "results/logs/make_split/{dataset}/{split}.log",
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        split=lambda wc: config["splits"][wc.split],
        control=CONTROL,
    script:
        "../scripts/make_split.py"


# Highly variable genes fitted on the split's TRAIN cells only (no test leakage): the evaluated
# genes, and every gene's rank (methods may train on more of them: parameter train_genes).
rule select_hvg:
    input:
        h5ad="results/{dataset}/processed.h5ad",
        split="results/{dataset}/splits/{split}.tsv",
    output:
        tsv="results/{dataset}/{split}/genes.tsv",
        ranking="results/{dataset}/{split}/hvg_ranking.tsv",
    log:
        "results/logs/select_hvg/{dataset}/{split}.log",
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        hvg=lambda wc: config["datasets"][wc.dataset]["hvg"],
        control=CONTROL,
    script:
        "../scripts/select_hvg.py"
