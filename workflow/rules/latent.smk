# SCimilarity-compatible latent space per split (scpert.latent): initialised from a published
# checkpoint folder when `latent.checkpoint` is set, else from scratch; trained on the split's
# training cells only and frozen by the methods that use it (split-level prior "latent": scPPDM).


# Fine-tune (or pretrain) the encoder/decoder with SCimilarity's loss; writes the SCimilarity
# folder layout over the split's genes (GPU rule on clusters).
rule finetune_latent:
    input:
        unpack(latent_inputs),
    output:
        prior=directory(layout.prior_dir("latent")),
    log:
        "results/logs/finetune_latent/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/finetune_latent/{dataset}/{split}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: preset_size(LATENT_PRESET, "gpu_threads")
    resources:
        mem_mb=latent_mem_mb,
        runtime=latent_runtime,
        gpu=1,
    params:
        latent=LATENT,
        control=CONTROL,
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/finetune_latent.py"
