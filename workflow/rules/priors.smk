# Drug priors of StateXDiff's MDT (arXiv:2605.16104 §3.3, App. A.3): the dataset-level "graph"
# prior z_b, the split-level "mdt" drug templates, and their evaluation. Each prior is one folder
# (scpert.layout.prior_dir); the files inside are described in scpert.priors.outputs.

GRAPH_INPUT_KEYS = (
    "dti",
    "ppi",
    "complexes",
    "gene_sets",
    "string_info",
    "extra_drugs",
)
MDT_INPUT_KEYS = ("l1000", "l1000_sig_info", "l1000_gene_info", "extra_drugs")


# Graph prior z_b: HeteroSAGE on the drug–gene graph (DTI, reverse DTI, PPI, drug similarity),
# DTI InfoNCE + masked-feature (SCE) + edge reconstruction; frozen drug embeddings (GPU rule).
rule pretrain_graph:
    input:
        unpack(prior_inputs(GRAPH_INPUT_KEYS)),
    output:
        prior=directory(layout.prior_dir("graph")),
    log:
        "results/logs/pretrain_graph/{dataset}.log",
    benchmark:
        "results/benchmarks/pretrain_graph/{dataset}.tsv"
    conda:
        "../../envs/priors.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
        gpu=1,
    params:
        settings=PRIORS.get("graph", {}),
        device=config["device"],
    script:
        "../scripts/pretrain_graph.py"


# MDT drug templates: structure + L1000 views, soft-label contrastive loss with distillation of
# z_b; the split's test drugs are excluded; tokens T_d and e_drug for every drug (GPU rule).
rule pretrain_mdt:
    input:
        unpack(prior_inputs(MDT_INPUT_KEYS)),
        split="results/{dataset}/splits/{split}.tsv",
        genes="results/{dataset}/{split}/genes.tsv",
        graph=layout.prior_dir("graph"),
    output:
        prior=directory(layout.prior_dir("mdt")),
    log:
        "results/logs/pretrain_mdt/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/pretrain_mdt/{dataset}/{split}.tsv"
    conda:
        "../../envs/priors.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
        gpu=1,
    params:
        settings=PRIORS.get("mdt", {}),
        control=CONTROL,
        device=config["device"],
    script:
        "../scripts/pretrain_mdt.py"


# Acceptance numbers of the priors on one split: held-out drugs' MoA retrieval (MDT vs Morgan)
# and the graph prior's held-out DTI AUROC.
rule evaluate_priors:
    input:
        unpack(prior_inputs(("extra_drugs",))),
        mdt=layout.prior_dir("mdt"),
        graph=layout.prior_dir("graph"),
    output:
        tsv=report(
            "results/{dataset}/{split}/priors_eval.tsv",
            caption="../report/priors_eval.rst",
            category="Tables",
            subcategory="priors",
        ),
    log:
        "results/logs/evaluate_priors/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/evaluate_priors/{dataset}/{split}.tsv"
    conda:
        "../../envs/priors.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    script:
        "../scripts/evaluate_priors.py"
