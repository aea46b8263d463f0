# Loaders of the published datasets and resources (scpert.data.sources): each maps a source's
# files onto the data contract; `load.files` names downloads (download.smk) or paths.


ruleorder: import_dataset > simulate_world


# Map a published dataset onto the contract: raw counts (counts.h5ad) and the perturbation table
# (drugs.tsv with a `type` column: chemical / genetic / protein).
rule import_dataset:
    input:
        unpack(lambda wc: load_files(wc.dataset)[0]),
    output:
        counts="resources/raw/{dataset}/counts.h5ad",
        drugs="resources/raw/{dataset}/drugs.tsv",
    log:
        "results/logs/import_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/import_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_regex(LOADED),
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        source=lambda wc: config["datasets"][wc.dataset]["source"],
        members=lambda wc: load_files(wc.dataset)[1],
        options=lambda wc: loader_options(wc.dataset),
        control=CONTROL,
        where=lambda wc: f"datasets.{wc.dataset}.load",
    script:
        "../scripts/import_dataset.py"


# CITE-seq (RNA + ADT) from 10x feature-barcode matrices: the protein modality's real data.
rule import_citeseq:
    input:
        unpack(citeseq_inputs),
    output:
        h5ad="resources/raw/citeseq/{name}/citeseq.h5ad",
    log:
        "results/logs/import_citeseq/{name}.log",
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        annotation_column=lambda wc: config["citeseq"][wc.name].get(
            "annotation_column", "cell_type"
        ),
        samples=lambda wc: config["citeseq"][wc.name].get("samples", {}),
    script:
        "../scripts/import_citeseq.py"


# L1000 level 5 -> the landmark rows x the chosen signature types, side tables merged (MDT input).
rule prepare_l1000:
    input:
        unpack(lincs_inputs),
    output:
        gctx="resources/raw/lincs/{name}.gctx",
    log:
        "results/logs/prepare_l1000/{name}.log",
    benchmark:
        "results/benchmarks/prepare_l1000/{name}.tsv"
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"] * 4,
    params:
        landmarks_only=lambda wc: config["lincs"][wc.name].get("landmarks_only", True),
        pert_types=lambda wc: config["lincs"][wc.name].get("pert_types", ["trt_cp"]),
    script:
        "../scripts/prepare_l1000.py"
