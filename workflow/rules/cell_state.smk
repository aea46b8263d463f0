# StateXDiff's cell-state priors (arXiv:2605.16104 §3.2, App. A.1.2, A.2): the dataset-level RNA ->
# protein "translator" (on CITE-seq cells), the split-level "protein" prior (p_hat, g_p and the
# PQM reliability q of every untreated cell) and the split-level "vmcs" prior (VMCS on untreated
# training cells), plus the App. A.2.3 validation of q. Files: scpert.priors.protein, .vmcs.
# They enter the DAG through the methods that need them (MethodSpec.priors, train_inputs).


# RNA -> protein translator standing in for scLinguist (or a configured checkpoint folder).
rule train_translator:
    input:
        unpack(translator_inputs),
        h5ad="results/{dataset}/processed.h5ad",
    output:
        prior=directory(layout.prior_dir("translator")),
    log:
        "results/logs/train_translator/{dataset}.log",
    benchmark:
        "results/benchmarks/train_translator/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
        gpu=1,
    params:
        settings=PRIORS.get("translator", {}),
        control=CONTROL,
        device=config["device"],
    script:
        "../scripts/train_translator.py"


# p_hat, g_p (translator) and PQM q (s_rc, s_cx, s_nb) of every untreated cell of the split.
rule infer_protein:
    input:
        unpack(complexes_input),
        h5ad="results/{dataset}/processed.h5ad",
        split="results/{dataset}/splits/{split}.tsv",
        genes="results/{dataset}/{split}/genes.tsv",
        translator=layout.prior_dir("translator"),
        latent=layout.prior_dir("latent"),
    output:
        prior=directory(layout.prior_dir("protein")),
    log:
        "results/logs/infer_protein/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/infer_protein/{dataset}/{split}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        settings=PRIORS.get("protein", {}),
        control=CONTROL,
        device=config["device"],
    script:
        "../scripts/infer_protein.py"


# VMCS: Cayley rotation, sharedness weights, MMD alignment, complementary masking (GPU rule).
rule train_vmcs:
    input:
        h5ad="results/{dataset}/processed.h5ad",
        split="results/{dataset}/splits/{split}.tsv",
        genes="results/{dataset}/{split}/genes.tsv",
        protein=layout.prior_dir("protein"),
        latent=layout.prior_dir("latent"),
    output:
        prior=directory(layout.prior_dir("vmcs")),
    log:
        "results/logs/train_vmcs/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/train_vmcs/{dataset}/{split}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
        gpu=1,
    params:
        settings=PRIORS.get("vmcs", {}),
        control=CONTROL,
        device=config["device"],
    script:
        "../scripts/train_vmcs.py"


# App. A.2.3: q from true vs predicted protein, matched / cross-type / shuffled pairings.
rule validate_pqm:
    input:
        unpack(translator_inputs),
        unpack(complexes_input),
        translator=layout.prior_dir("translator"),
    output:
        table=report(
            "results/tables/pqm_validation_{dataset}.tsv",
            caption="../report/pqm_validation_table.rst",
            category="Cell-state priors",
        ),
        pdf="results/figures/pqm_validation_{dataset}.pdf",
        png=report(
            "results/figures/pqm_validation_{dataset}.png",
            caption="../report/pqm_validation.rst",
            category="Cell-state priors",
        ),
    log:
        "results/logs/validate_pqm/{dataset}.log",
    benchmark:
        "results/benchmarks/validate_pqm/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        settings=PRIORS.get("protein", {}),
        control=CONTROL,
        device=config["device"],
    script:
        "../scripts/validate_pqm.py"


# -- StateXDiff Fig. 3c's protein sources (scpert.priors.protein_sources): TrueProt takes g_p from
# the measured ADT, TrueProt-FT from the translator fine-tuned on the split's training cells; each
# source has its own protein and VMCS priors (method param protein_source). The ADT counts are
# those of the dataset's own cells: the CITE-seq h5ad of train_translator (translator_inputs).
# TrueProt: p_hat = g_p = measured ADT levels of every untreated cell of the split, q = 1.
rule measure_protein:
    input:
        citeseq=lambda wc: translator_inputs(wc)["citeseq"],
        h5ad="results/{dataset}/processed.h5ad",
        split="results/{dataset}/splits/{split}.tsv",
    output:
        prior=directory(layout.prior_dir("protein_measured")),
    log:
        "results/logs/measure_protein/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/measure_protein/{dataset}/{split}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        settings={},
        control=CONTROL,
        device=config["device"],
    script:
        "../scripts/measure_protein.py"


# TrueProt-FT: the dataset's translator trained further on the split's CITE-seq training cells.
rule finetune_translator:
    input:
        citeseq=lambda wc: translator_inputs(wc)["citeseq"],
        h5ad="results/{dataset}/processed.h5ad",
        split="results/{dataset}/splits/{split}.tsv",
        translator=layout.prior_dir("translator"),
    output:
        prior=directory(layout.prior_dir("translator_finetuned")),
    log:
        "results/logs/finetune_translator/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/finetune_translator/{dataset}/{split}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
        gpu=1,
    params:
        settings=PRIORS.get("translator_finetune", {}),
        control=CONTROL,
        device=config["device"],
    script:
        "../scripts/finetune_translator.py"


# TrueProt-FT: p_hat, g_p and PQM q from the fine-tuned translator (infer_protein's body).
use rule infer_protein as infer_protein_finetuned with:
    input:
        unpack(complexes_input),
        h5ad="results/{dataset}/processed.h5ad",
        split="results/{dataset}/splits/{split}.tsv",
        genes="results/{dataset}/{split}/genes.tsv",
        translator=layout.prior_dir("translator_finetuned"),
        latent=layout.prior_dir("latent"),
    output:
        prior=directory(layout.prior_dir("protein_finetuned")),
    log:
        "results/logs/infer_protein_finetuned/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/infer_protein_finetuned/{dataset}/{split}.tsv"


# VMCS on the measured proteins (train_vmcs's body).
use rule train_vmcs as train_vmcs_measured with:
    input:
        h5ad="results/{dataset}/processed.h5ad",
        split="results/{dataset}/splits/{split}.tsv",
        genes="results/{dataset}/{split}/genes.tsv",
        protein=layout.prior_dir("protein_measured"),
        latent=layout.prior_dir("latent"),
    output:
        prior=directory(layout.prior_dir("vmcs_measured")),
    log:
        "results/logs/train_vmcs_measured/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/train_vmcs_measured/{dataset}/{split}.tsv"


# VMCS on the fine-tuned translator's proteins (train_vmcs's body).
use rule train_vmcs as train_vmcs_finetuned with:
    input:
        h5ad="results/{dataset}/processed.h5ad",
        split="results/{dataset}/splits/{split}.tsv",
        genes="results/{dataset}/{split}/genes.tsv",
        protein=layout.prior_dir("protein_finetuned"),
        latent=layout.prior_dir("latent"),
    output:
        prior=directory(layout.prior_dir("vmcs_finetuned")),
    log:
        "results/logs/train_vmcs_finetuned/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/train_vmcs_finetuned/{dataset}/{split}.tsv"
