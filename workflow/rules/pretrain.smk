# PerturbDiff's marginal pretraining (arXiv:2602.19685 §4.6): the split-level prior
# "perturbdiff_marginal" that the variant perturbdiff_ft fine-tunes (scpert.steps.pretrain).

PERTURBDIFF_PRETRAIN = config.get("perturbdiff_pretrain", {})
PERTURBDIFF_PRETRAIN_PRESET = PERTURBDIFF_PRETRAIN.get("preset", "tiny")


def _pretrain_params():
    """The resolved pretraining parameters (a perturbdiff preset); errors name the config key."""
    from scpert.methods import get_spec

    try:
        return get_spec("perturbdiff").resolve(
            PERTURBDIFF_PRETRAIN_PRESET,
            PERTURBDIFF_PRETRAIN.get("params"),
            key="perturbdiff_pretrain",
        )
    except ConfigError as err:
        raise WorkflowError(f"config: {err}") from None


PERTURBDIFF_PRETRAIN_PARAMS = _pretrain_params()


def pretrain_perturbdiff_inputs(wildcards):
    """Split data, the drug table, the MDT templates when the network uses them, atlas files."""
    split_dir = f"results/{wildcards.dataset}/{wildcards.split}"
    inputs = {
        "h5ad": f"results/{wildcards.dataset}/processed.h5ad",
        "split": f"results/{wildcards.dataset}/splits/{wildcards.split}.tsv",
        "genes": f"{split_dir}/genes.tsv",
        "drugs": raw_drugs(wildcards),
    }
    if PERTURBDIFF_PRETRAIN_PARAMS["drug_features"] == "morgan_mdt":
        inputs["prior_mdt"] = layout.prior_dir(
            "mdt", wildcards.dataset, wildcards.split
        )
    for i, path in enumerate(PERTURBDIFF_PRETRAIN.get("atlas", [])):
        inputs[f"atlas_{i}"] = path
    return inputs


def pretrain_perturbdiff_size(key):
    def size(wildcards, attempt):
        return preset_size(PERTURBDIFF_PRETRAIN_PRESET, key) * attempt

    return size


# The marginal model of unperturbed cells per context: the split's control cells plus any
# configured atlas, control stream zeroed, context-only conditioning (GPU rule on clusters).
rule pretrain_perturbdiff:
    input:
        unpack(pretrain_perturbdiff_inputs),
    output:
        prior=directory(layout.prior_dir("perturbdiff_marginal")),
    log:
        "results/logs/pretrain_perturbdiff/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/pretrain_perturbdiff/{dataset}/{split}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: preset_size(PERTURBDIFF_PRETRAIN_PRESET, "gpu_threads")
    resources:
        mem_mb=pretrain_perturbdiff_size("train_mem_mb"),
        runtime=pretrain_perturbdiff_size("train_runtime"),
        gpu=1,
    params:
        # the resolved parameters, so that editing the preset reruns the pretraining
        settings={**PERTURBDIFF_PRETRAIN, "params": PERTURBDIFF_PRETRAIN_PARAMS},
        control=CONTROL,
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/pretrain_perturbdiff.py"
