# One generic training rule for every method; dispatch on {method} through the registry.


# Fit a method on the split's training cells (GPU rule on clusters).
rule train:
    input:
        unpack(train_inputs),
    output:
        model=directory("results/{dataset}/{split}/{method}/model"),
    log:
        "results/logs/train/{dataset}/{split}/{method}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{split}/{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: method_threads
    resources:
        mem_mb=method_mem_mb,
        runtime=method_runtime,
        gpu=train_gpus,
    params:
        method=method_entry,
        control=CONTROL,
        seed=method_seed,
        device=config["device"],
    script:
        "../scripts/train.py"
