# Experiment overlays (docs/experiments.md): robustness to noise and sparsity (StateXDiff
# App. B.5, Fig. 8) and diversity scaling at a fixed sample budget (App. B.6, Fig. 9). Each is
# configured under `experiments:` by its overlay (config/robustness.yaml, config/diversity.yaml),
# runs by its own target (`snakemake robustness`, `snakemake diversity`) and trains, samples and
# scores its configured methods (scpert.steps.train / sample / evaluate) on its variants of one
# split: results/experiments/<experiment>/<dataset>/<variant>/<split>/<method>/.
wildcard_constraints:
    experiment="robustness|diversity",
    variant="[a-z_]+[0-9.]+|clean",


# Noise or extra sparsity on a dataset (scpert.experiments.corruption).
rule corrupt_dataset:
    input:
        h5ad="results/{dataset}/processed.h5ad",
    output:
        h5ad=f"{EXPERIMENT_DIR}/robustness/{{dataset}}/{{kind}}{{level}}/processed.h5ad",
    log:
        "results/logs/experiments/robustness/{dataset}/{kind}{level}.log",
    wildcard_constraints:
        kind="noise|sparsity",
        level="[0-9.]+",
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        seed=lambda wc: EXPERIMENTS["robustness"]["seed"],
        control=CONTROL,
    script:
        "../scripts/corrupt_dataset.py"


# An identity-balanced training subset of K drugs or cell lines (scpert.experiments.diversity).
rule diversity_dataset:
    input:
        h5ad="results/{dataset}/processed.h5ad",
        split="results/{dataset}/splits/{split}.tsv",
    output:
        h5ad=f"{EXPERIMENT_DIR}/diversity/{{dataset}}/{{axis}}{{level}}/{{split}}/processed.h5ad",
        split=f"{EXPERIMENT_DIR}/diversity/{{dataset}}/{{axis}}{{level}}/{{split}}/split.tsv",
    log:
        "results/logs/experiments/diversity/{dataset}/{axis}{level}_{split}.log",
    wildcard_constraints:
        axis="drug|cell_line",
        level="[0-9]+",
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        levels=lambda wc: EXPERIMENTS["diversity"][wc.axis]["levels"],
        budget_fraction=lambda wc: EXPERIMENTS["diversity"]["budget_fraction"],
        seed=lambda wc: EXPERIMENTS["diversity"]["seed"],
        control=CONTROL,
    script:
        "../scripts/diversity_dataset.py"


# The generic train and sample steps on a variant (workflow/scripts/train.py, sample.py).
rule experiment_train:
    input:
        unpack(experiment_data_inputs),
    output:
        model=directory(
            f"{EXPERIMENT_DIR}/{{experiment}}/{{dataset}}/{{variant}}/{{split}}/{{method}}/model"
        ),
    log:
        "results/logs/experiments/{experiment}/{dataset}/{variant}/{split}/{method}_train.log",
    benchmark:
        "results/benchmarks/experiments/{experiment}/{dataset}/{variant}/{split}/{method}_train.tsv"
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
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/train.py"


rule experiment_sample:
    input:
        unpack(
            lambda wc: {
                **experiment_data_inputs(wc),
                "model": experiment_path(
                    wc.experiment, wc.variant, wc.split, wc.method, "model"
                ),
            }
        ),
    output:
        h5ad=f"{EXPERIMENT_DIR}/{{experiment}}/{{dataset}}/{{variant}}/{{split}}/{{method}}/pred.h5ad",
    log:
        "results/logs/experiments/{experiment}/{dataset}/{variant}/{split}/{method}_sample.log",
    benchmark:
        "results/benchmarks/experiments/{experiment}/{dataset}/{variant}/{split}/{method}_sample.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: method_threads
    resources:
        mem_mb=method_mem_mb,
        runtime=method_runtime,
        gpu=method_gpus,
    params:
        control=CONTROL,
        seed=config["seed"],
        device=config["device"],
        max_cells=config["evaluation"]["max_pred_cells"],
    script:
        "../scripts/sample.py"


# The screening case study (scpert.experiments.screening): a trained model of the split (the
# default run's) predicts every drug of the drug table on the held-out line ...
rule screening_sample:
    input:
        unpack(screening_sample_inputs),
    output:
        h5ad=f"{EXPERIMENT_DIR}/screening/{{dataset}}/{{method}}/pred.h5ad",
    log:
        "results/logs/experiments/screening/{dataset}/{method}_sample.log",
    benchmark:
        "results/benchmarks/experiments/screening/{dataset}/{method}_sample.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: method_threads
    resources:
        mem_mb=method_mem_mb,
        runtime=method_runtime,
        gpu=method_gpus,
    params:
        line=lambda wc: EXPERIMENTS["screening"]["cell_line"],
        dose=lambda wc: EXPERIMENTS["screening"]["dose"],
        cells_per_drug=lambda wc: EXPERIMENTS["screening"]["cells_per_drug"],
        control=CONTROL,
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/screening_sample.py"


# ... and the screen scores, ranks and enriches those predictions against the observed cells
# and the L1000 signatures.
rule screening_screen:
    input:
        unpack(screening_inputs),
    output:
        **figure_outputs("screening_{dataset}"),
        ranking=report(
            "results/tables/screening_{dataset}.tsv",
            caption="../report/table_screening.rst",
            category="Experiments",
        ),
        enrichment="results/tables/screening_enrichment_{dataset}.tsv",
    log:
        "results/logs/experiments/screening/{dataset}.log",
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        methods=lambda wc: screening_methods(),
        line=lambda wc: EXPERIMENTS["screening"]["cell_line"],
        pathway=lambda wc: EXPERIMENTS["screening"]["pathway"],
        direction=lambda wc: EXPERIMENTS["screening"]["direction"],
        top_n=lambda wc: EXPERIMENTS["screening"]["top_n"],
        control=CONTROL,
        dose=lambda wc: EXPERIMENTS["screening"]["dose"],
    script:
        "../scripts/screening.py"


# Per experiment: one evaluate job per variant (scPerturBench protocol, all methods at once),
# the experiment's tidy table and its figure.
for _name in [n for n in EXPERIMENTS if n != "screening"]:
    _dataset = EXPERIMENTS[_name]["dataset"]
    _methods = experiment_methods(_name)
    _variants = experiment_variants(_name)
    _scored = {(v, s) for v, s, _, _ in _variants}

    for _variant, _split in sorted(_scored):

        rule:
            name:
                f"experiment_evaluate_{_name}_{_variant}_{_split}".replace(".", "_")
            input:
                **variant_data(_name, _dataset, _variant, _split),
                genes=f"results/{_dataset}/{_split}/genes.tsv",
                preds=[
                    experiment_path(_name, _variant, _split, m, "pred.h5ad")
                    for m in _methods
                ],
            output:
                tsv=[
                    experiment_path(_name, _variant, _split, m, "metrics.tsv")
                    for m in _methods
                ],
                ceiling=[],
            log:
                f"results/logs/experiments/{_name}/{_dataset}/{_variant}/{_split}/evaluate.log",
            benchmark:
                f"results/benchmarks/experiments/{_name}/{_dataset}/{_variant}/{_split}/evaluate.tsv"
            conda:
                "../../envs/scpert.yaml"
            threads: 1
            resources:
                mem_mb=RES["mem_mb"],
                runtime=RES["runtime"] * (len(_methods) + 1),
            params:
                dataset=_dataset,
                split=_split,
                methods=_methods,
                control=CONTROL,
                evaluation={**config["evaluation"], "protocols": ["scperturbench"]},
            script:
                "../scripts/evaluate.py"

    rule:
        name:
            f"experiment_table_{_name}"
        input:
            metrics=[
                experiment_path(_name, v, s, m, "metrics.tsv")
                for v, s, _, _ in _variants
                for m in _methods
            ],
        output:
            tsv=report(
                f"results/tables/{_name}_{_dataset}.tsv",
                caption=f"../report/table_{_name}.rst",
                category="Experiments",
            ),
        log:
            f"results/logs/experiments/{_name}/{_dataset}/table.log",
        conda:
            "../../envs/scpert.yaml"
        threads: 1
        resources:
            mem_mb=RES["mem_mb"],
            runtime=RES["runtime"],
        params:
            experiment=_name,
            variants=[
                {"axis": a, "level": lv} for _, _, a, lv in _variants for _ in _methods
            ],
        script:
            "../scripts/experiment_table.py"

    rule:
        name:
            f"figure_{_name}"
        input:
            table=f"results/tables/{_name}_{{dataset}}.tsv",
        output:
            **figure_outputs(f"{_name}_{{dataset}}"),
        log:
            f"results/logs/figures/{_name}_{{dataset}}.log",
        conda:
            "../../envs/plots.yaml"
        threads: 1
        resources:
            mem_mb=RES["mem_mb"],
            runtime=RES["runtime"],
        params:
            experiment=_name,
        script:
            "../scripts/figure_experiment.py"


# the documented targets of the overlays: snakemake robustness | diversity | screening
if "robustness" in EXPERIMENTS:

    rule robustness:
        input:
            experiment_figure("robustness"),


if "diversity" in EXPERIMENTS:

    rule diversity:
        input:
            experiment_figure("diversity"),


if "screening" in EXPERIMENTS:

    rule screening:
        input:
            experiment_figure("screening"),
