# Experiment overlays (docs/experiments.md): robustness to noise and sparsity (StateXDiff
# App. B.5, Fig. 8) and diversity scaling at a fixed sample budget (App. B.6, Fig. 9). Each is
# configured under `experiments:` by its overlay (config/robustness.yaml, config/diversity.yaml),
# runs by its own target (`snakemake robustness`, `snakemake diversity`) and trains, samples and
# scores its configured methods (scpert.steps.train / sample / evaluate) on its variants of one
# split: results/experiments/<experiment>/<dataset>/<variant>/<split>/<method>/.
EXPERIMENTS = config["experiments"]
EXPERIMENT_DIR = "results/experiments"
# priors built from knowledge inputs only (L1000, DTI, PPI), not from the expression data: a
# variant reuses the split's own (the others are fitted on cells and would need rebuilding)
KNOWLEDGE_PRIORS = ("graph", "mdt")


def experiment_methods(name):
    """The configured methods of an experiment, checked: configured, and needing no prior fitted
    on cells (those are built on the clean data of a split, so a variant would need its own).
    """
    methods = EXPERIMENTS[name]["methods"]
    for method in methods:
        key = f"config: experiments.{name}.methods"
        if method not in RUN.methods:
            raise WorkflowError(
                f"{key}: '{method}' is not a configured method "
                f"(methods: {', '.join(RUN.methods)})"
            )
        fitted = [p for p in RUN.methods[method].priors if p not in KNOWLEDGE_PRIORS]
        if fitted:
            raise WorkflowError(
                f"{key}: '{method}' needs priors fitted on cells ({', '.join(fitted)}), which "
                "the experiment does not rebuild per variant; choose methods without them "
                f"(allowed priors: {', '.join(KNOWLEDGE_PRIORS)})"
            )
    return methods


def experiment_variants(name):
    """Experiment ``name`` -> list of (variant, split, axis, level)."""
    exp = EXPERIMENTS[name]
    dataset = exp["dataset"]
    if dataset not in config["datasets"]:
        raise WorkflowError(
            f"config: experiments.{name}.dataset: '{dataset}' is not a configured dataset"
        )
    if name == "robustness":
        variants = [
            ("clean", exp["split"], axis, 0.0) for axis in ("noise", "sparsity")
        ]
        variants += [(f"noise{v:g}", exp["split"], "noise", v) for v in exp["noise"]]
        variants += [
            (f"sparsity{v:g}", exp["split"], "sparsity", v) for v in exp["sparsity"]
        ]
    else:
        variants = [
            (f"{axis}{k}", exp[axis]["split"], axis, k)
            for axis in ("drug", "cell_line")
            if axis in exp
            for k in exp[axis]["levels"]
        ]
        if not variants:
            raise WorkflowError(
                f"config: experiments.{name}: give 'drug' and/or 'cell_line' levels"
            )
    for _, split, axis, _ in variants:
        if split not in config["datasets"][dataset]["splits"]:
            raise WorkflowError(
                f"config: experiments.{name}: split '{split}' ({axis}) is not a split of "
                f"dataset '{dataset}'"
            )
    return variants


def experiment_path(name, variant, split, method, leaf):
    """A method's model/pred/metrics of one variant; robustness' clean variant is the main
    workflow's model and prediction of the split."""
    dataset = EXPERIMENTS[name]["dataset"]
    if name == "robustness" and variant == "clean" and leaf in ("model", "pred.h5ad"):
        return f"results/{dataset}/{split}/{method}/{leaf}"
    return f"{EXPERIMENT_DIR}/{name}/{dataset}/{variant}/{split}/{method}/{leaf}"


def variant_data(name, dataset, variant, split):
    """processed.h5ad and split table of a variant."""
    if name == "robustness":
        h5ad = (
            f"results/{dataset}/processed.h5ad"
            if variant == "clean"
            else f"{EXPERIMENT_DIR}/{name}/{dataset}/{variant}/processed.h5ad"
        )
        return {"h5ad": h5ad, "split": f"results/{dataset}/splits/{split}.tsv"}
    prefix = f"{EXPERIMENT_DIR}/{name}/{dataset}/{variant}/{split}"
    return {"h5ad": f"{prefix}/processed.h5ad", "split": f"{prefix}/split.tsv"}


def experiment_targets():
    """Figures and tables of the configured experiments (none by default)."""
    return [
        f"results/figures/{name}_{EXPERIMENTS[name]['dataset']}.{ext}"
        for name in EXPERIMENTS
        for ext in ("pdf", "png", "tsv")
    ]


def experiment_data_inputs(wildcards):
    split_dir = f"results/{wildcards.dataset}/{wildcards.split}"
    inputs = {
        **variant_data(
            wildcards.experiment, wildcards.dataset, wildcards.variant, wildcards.split
        ),
        "genes": f"{split_dir}/genes.tsv",
        "ranking": f"{split_dir}/hvg_ranking.tsv",
        "drugs": raw_drugs(wildcards),
    }
    for name in RUN.methods[wildcards.method].priors:  # KNOWLEDGE_PRIORS of the split
        inputs[f"prior_{name}"] = layout.prior_dir(
            name, wildcards.dataset, wildcards.split
        )
    return inputs


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


# Per experiment: one evaluate job per variant (scPerturBench protocol, all methods at once),
# the experiment's tidy table and its figure.
for _name in EXPERIMENTS:
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
        script:
            f"../scripts/figure_{_name}.py"

    # the documented target of the overlay: snakemake <experiment>
    rule:
        name:
            _name
        input:
            expand(
                f"results/figures/{_name}_{_dataset}.{{ext}}",
                ext=["pdf", "png", "tsv"],
            ),
