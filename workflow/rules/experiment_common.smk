# Helpers of the experiment overlays (rules in experiments.smk, docs/experiments.md): the
# configured experiments, their variants, methods and file paths.
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


def experiment_figure(name):
    """The figure files of experiment ``name`` (its overlay's target)."""
    dataset = EXPERIMENTS[name]["dataset"]
    return expand(
        f"results/figures/{name}_{dataset}.{{ext}}", ext=["pdf", "png", "tsv"]
    )


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


def screening_methods():
    """The screening overlay's methods, checked: configured and run on its split."""
    exp = EXPERIMENTS["screening"]
    run_on = {
        m for ds, sp, m in RUN.jobs if ds == exp["dataset"] and sp == exp["split"]
    }
    for method in exp["methods"]:
        if method not in run_on:
            raise WorkflowError(
                f"config: experiments.screening.methods: '{method}' is not a configured method "
                f"run on {exp['dataset']}/{exp['split']} (run there: {', '.join(sorted(run_on))})"
            )
    return exp["methods"]


def screening_inputs(wildcards):
    exp = EXPERIMENTS["screening"]
    ds, split = wildcards.dataset, exp["split"]
    gmt = prior_file(ds, "gene_sets")
    if gmt is None:
        raise WorkflowError(
            f"config: priors.files.gene_sets is required for experiments.screening on '{ds}' "
            "(only simulated datasets bring their own GMT)"
        )
    return {
        "h5ad": f"results/{ds}/processed.h5ad",
        "split": f"results/{ds}/splits/{split}.tsv",
        "genes": f"results/{ds}/{split}/genes.tsv",
        "gmt": gmt,
        "drugs": raw_drugs(wildcards),
        "l1000": prior_file(ds, "l1000"),
        "preds": [
            f"{EXPERIMENT_DIR}/screening/{ds}/{m}/pred.h5ad"
            for m in screening_methods()
        ],
    }


def screening_sample_inputs(wildcards):
    """A trained model of the screening split (the default run's), the data it predicts and the
    prior folders the method needs (keys ``prior_<name>``, as in train_inputs)."""
    split = EXPERIMENTS["screening"]["split"]
    ds = wildcards.dataset
    inputs = {
        "model": f"results/{ds}/{split}/{wildcards.method}/model",
        "h5ad": f"results/{ds}/processed.h5ad",
        "split": f"results/{ds}/splits/{split}.tsv",
        "genes": f"results/{ds}/{split}/genes.tsv",
        "drugs": raw_drugs(wildcards),
    }
    for name in RUN.methods[wildcards.method].priors:
        inputs[f"prior_{name}"] = layout.prior_dir(name, ds, split)
    return inputs
