# One generic sampling rule: predicted cells for every test condition of a split.


# Predict test conditions from the target contexts' control cells (GPU rule on clusters).
rule sample:
    input:
        model="results/{dataset}/{split}/{method}/model",
        h5ad="results/{dataset}/processed.h5ad",
        split="results/{dataset}/splits/{split}.tsv",
        genes="results/{dataset}/{split}/genes.tsv",
    output:
        h5ad="results/{dataset}/{split}/{method}/pred.h5ad",
    log:
        "results/logs/sample/{dataset}/{split}/{method}.log",
    benchmark:
        "results/benchmarks/sample/{dataset}/{split}/{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: method_threads
    resources:
        mem_mb=method_mem_mb,
        runtime=method_runtime,
        gpu=method_gpus,
    params:
        control=CONTROL,
        seed=method_seed,
        device=config["device"],
        max_cells=config["evaluation"]["max_pred_cells"],
    script:
        "../scripts/sample.py"
