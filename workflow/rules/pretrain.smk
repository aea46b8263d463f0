# PerturbDiff's marginal pretraining (arXiv:2602.19685 §4.6): the split-level prior
# "perturbdiff_marginal" that the variant perturbdiff_ft fine-tunes (scpert.steps.pretrain).


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
