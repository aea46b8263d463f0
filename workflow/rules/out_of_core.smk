# Out-of-core preprocessing of sharded datasets (`out_of_core:` in a dataset; Tahoe-100M):
# pass A (QC) and pass B (normalisation, statistics, subsample) with one job per shard, exact
# gathers, and HVGs from the gathered statistics (scpert.data.out_of_core).


ruleorder: gather_shards > preprocess
ruleorder: select_hvg_streamed > select_hvg
ruleorder: perturbation_table > import_dataset
ruleorder: perturbation_table > simulate_world


# Pass A over one shard: cell QC, genes detected, cells per group, smallest cell hashes per group.
rule qc_shard:
    input:
        unpack(shard_inputs),
    output:
        qc="results/{dataset}/shards/{shard}.qc.h5",
    log:
        "results/logs/qc_shard/{dataset}/{shard}.log",
    benchmark:
        "results/benchmarks/qc_shard/{dataset}/{shard}.tsv"
    wildcard_constraints:
        dataset=OOC_DATASET,
        shard="[0-9]+",
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        source=lambda wc: config["datasets"][wc.dataset]["source"],
        options=shard_options,
        settings=shard_settings,
        control=CONTROL,
        where=lambda wc: f"datasets.{wc.dataset}.load",
    script:
        "../scripts/qc_shard.py"


# Gather A: kept genes (min_cells) and conditions (min_cells_per_condition), groups, thresholds.
rule plan_shards:
    input:
        qc=lambda wc: expand(
            "results/{dataset}/shards/{shard}.qc.h5",
            dataset=wc.dataset,
            shard=shard_ids(wc.dataset),
        ),
    output:
        plan="results/{dataset}/shards/plan.h5",
    log:
        "results/logs/plan_shards/{dataset}.log",
    wildcard_constraints:
        dataset=OOC_DATASET,
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        settings=shard_settings,
        control=CONTROL,
        where=lambda wc: f"datasets.{wc.dataset}",
    script:
        "../scripts/plan_shards.py"


# Pass B over one shard: normalise + log1p, per-group sums (pseudobulk, HVG moments), subsample.
rule preprocess_shard:
    input:
        unpack(shard_inputs),
        plan="results/{dataset}/shards/plan.h5",
    output:
        stats="results/{dataset}/shards/{shard}.stats.h5",
    log:
        "results/logs/preprocess_shard/{dataset}/{shard}.log",
    benchmark:
        "results/benchmarks/preprocess_shard/{dataset}/{shard}.tsv"
    wildcard_constraints:
        dataset=OOC_DATASET,
        shard="[0-9]+",
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        source=lambda wc: config["datasets"][wc.dataset]["source"],
        options=shard_options,
        control=CONTROL,
        where=lambda wc: f"datasets.{wc.dataset}.load",
    script:
        "../scripts/preprocess_shard.py"


# Gather B: group statistics summed in blocks; the capped subsample written chunk by chunk.
rule gather_shards:
    input:
        shards=lambda wc: expand(
            "results/{dataset}/shards/{shard}.stats.h5",
            dataset=wc.dataset,
            shard=shard_ids(wc.dataset),
        ),
        plan="results/{dataset}/shards/plan.h5",
    output:
        h5ad="results/{dataset}/processed.h5ad",
        stats="results/{dataset}/group_stats.h5",
    log:
        "results/logs/gather_shards/{dataset}.log",
    benchmark:
        "results/benchmarks/gather_shards/{dataset}.tsv"
    wildcard_constraints:
        dataset=OOC_DATASET,
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc: max(
            RES["mem_mb"],
            2
            * int(config["datasets"][wc.dataset]["out_of_core"].get("memory_mb", 512)),
        ),
        runtime=RES["runtime"] * 4,
    params:
        control=CONTROL,
        memory_mb=lambda wc: config["datasets"][wc.dataset]["out_of_core"].get(
            "memory_mb", 512
        ),
    script:
        "../scripts/gather_shards.py"


# The split's HVGs from the gathered statistics of its training groups and all controls.
rule select_hvg_streamed:
    input:
        stats="results/{dataset}/group_stats.h5",
        split="results/{dataset}/splits/{split}.tsv",
    output:
        tsv="results/{dataset}/{split}/genes.tsv",
        ranking="results/{dataset}/{split}/hvg_ranking.tsv",
    log:
        "results/logs/select_hvg_streamed/{dataset}/{split}.log",
    wildcard_constraints:
        dataset=OOC_DATASET,
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        hvg=lambda wc: config["datasets"][wc.dataset]["hvg"],
        control=CONTROL,
        key=lambda wc: f"datasets.{wc.dataset}.hvg.flavor",
    script:
        "../scripts/select_hvg_streamed.py"


# drugs.tsv of an out-of-core dataset: the drugs its plan keeps, with SMILES / MoA / targets.
rule perturbation_table:
    input:
        unpack(lambda wc: meta_files(wc.dataset)),
        plan="results/{dataset}/shards/plan.h5",
    output:
        drugs="resources/raw/{dataset}/drugs.tsv",
    log:
        "results/logs/perturbation_table/{dataset}.log",
    wildcard_constraints:
        dataset=OOC_DATASET,
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        source=lambda wc: config["datasets"][wc.dataset]["source"],
        options=shard_options,
        control=CONTROL,
        where=lambda wc: f"datasets.{wc.dataset}.load",
    script:
        "../scripts/perturbation_table.py"
