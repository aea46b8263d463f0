# Reference rows of every table (scpert.metrics.reference): the oracle of a simulated dataset.
# The data ceiling needs no rule of its own: each split's evaluate job computes it from the truth.


ruleorder: oracle > sample


# The world's truth sampled with its own noise for every test condition and plate of a split,
# scored by the evaluate job like a method's prediction.
rule oracle:
    input:
        world=lambda wc: f"{raw_dir(wc.dataset)}/{WORLD_FILES['ground_truth']}",
        h5ad="results/{dataset}/processed.h5ad",
        split="results/{dataset}/splits/{split}.tsv",
        genes="results/{dataset}/{split}/genes.tsv",
    output:
        h5ad=f"results/{{dataset}}/{{split}}/{ORACLE}/pred.h5ad",
    log:
        f"results/logs/{ORACLE}/{{dataset}}/{{split}}.log",
    benchmark:
        f"results/benchmarks/{ORACLE}/{{dataset}}/{{split}}.tsv"
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        control=CONTROL,
        seed=config["seed"],
        max_cells=config["evaluation"]["max_pred_cells"],
    script:
        "../scripts/oracle.py"
