# Figures (PDF + PNG); each PNG appears in the Snakemake report with its caption.


# Methods x metrics heatmap of the scPerturBench summary, one panel per dataset and split.
rule heatmap:
    input:
        summary="results/tables/summary.tsv",
    output:
        pdf="results/figures/heatmap_scperturbench.pdf",
        png=report(
            "results/figures/heatmap_scperturbench.png",
            caption="../report/heatmap.rst",
            category="Figures",
        ),
    log:
        "results/logs/figures/heatmap_scperturbench.log",
    benchmark:
        "results/benchmarks/figures/heatmap_scperturbench.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        protocol="scperturbench",
    script:
        "../scripts/heatmap.py"


# -- figure families (scpert.plots.FIGURES): PDF + PNG + the table each figure shows ------------
# Radar of the key metrics of every method (and reference row) per split (PerturbDiff Fig. 3).
rule figure_radar:
    input:
        summary="results/tables/summary.tsv",
    output:
        **figure_outputs("radar_{dataset}"),
    log:
        "results/logs/figures/radar_{dataset}.log",
    benchmark:
        "results/benchmarks/figures/radar_{dataset}.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        dataset=lambda wc: wc.dataset,
        extra=[],
    script:
        "../scripts/figure_radar.py"


# Per-condition values of each method against a reference method (PerturbDiff Fig. 4).
rule figure_scatter:
    input:
        long="results/tables/metrics_long.tsv",
    output:
        **figure_outputs("scatter_{dataset}"),
    log:
        "results/logs/figures/scatter_{dataset}.log",
    benchmark:
        "results/benchmarks/figures/scatter_{dataset}.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        dataset=lambda wc: wc.dataset,
        baselines=baseline_methods(),
        reference=FIGURES_CONFIG["scatter_reference"],
    script:
        "../scripts/figure_scatter.py"


# The combination splits (0/1/2 components seen) side by side (StateXDiff Fig. 4).
rule figure_combinations:
    input:
        summary="results/tables/summary.tsv",
    output:
        **figure_outputs("combinations_{dataset}"),
    log:
        "results/logs/figures/combinations_{dataset}.log",
    benchmark:
        "results/benchmarks/figures/combinations_{dataset}.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        dataset=lambda wc: wc.dataset,
        extra=[split_types()],
    script:
        "../scripts/figure_combinations.py"


# Response size along the doses of held-out drugs (scPPDM's s_d(dose)).
rule figure_dose_response:
    input:
        unpack(held_out_drug_inputs),
    output:
        **figure_outputs("dose_response_{dataset}"),
    log:
        "results/logs/figures/dose_response_{dataset}.log",
    benchmark:
        "results/benchmarks/figures/dose_response_{dataset}.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        dataset=lambda wc: wc.dataset,
        splits=lambda wc: list(held_out_drug_splits(wc.dataset)),
        methods=lambda wc: list(held_out_drug_splits(wc.dataset).values()),
        control=CONTROL,
    script:
        "../scripts/figure_dose_response.py"


# -log10 FDR densities of predicted DE for truly DE and non-DE genes (PerturbDiff Fig. 5).
rule figure_padj_density:
    input:
        unpack(held_out_drug_inputs),
    output:
        **figure_outputs("padj_density_{dataset}"),
    log:
        "results/logs/figures/padj_density_{dataset}.log",
    benchmark:
        "results/benchmarks/figures/padj_density_{dataset}.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        dataset=lambda wc: wc.dataset,
        splits=lambda wc: list(held_out_drug_splits(wc.dataset)),
        methods=lambda wc: list(held_out_drug_splits(wc.dataset).values()),
        control=CONTROL,
    script:
        "../scripts/figure_padj_density.py"


# UMAP of predicted and true cells by cell line, logFC violins (scPPDM Fig. 3).
rule figure_umap:
    input:
        unpack(generative_drug_inputs),
    output:
        **figure_outputs("umap_{dataset}"),
    log:
        "results/logs/figures/umap_{dataset}.log",
    benchmark:
        "results/benchmarks/figures/umap_{dataset}.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        dataset=lambda wc: wc.dataset,
        splits=lambda wc: list(held_out_drug_splits(wc.dataset, generative=True)),
        methods=lambda wc: list(
            held_out_drug_splits(wc.dataset, generative=True).values()
        ),
        control=CONTROL,
    script:
        "../scripts/figure_umap.py"


# GSEA running ES and hits on predicted vs true logFC rankings (scPPDM Fig. 5, gseapy).
rule figure_gsea:
    input:
        unpack(gsea_inputs),
    output:
        **figure_outputs("gsea_{dataset}"),
    log:
        "results/logs/figures/gsea_{dataset}.log",
    benchmark:
        "results/benchmarks/figures/gsea_{dataset}.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        dataset=lambda wc: wc.dataset,
        splits=lambda wc: list(held_out_drug_splits(wc.dataset, generative=True)),
        methods=lambda wc: list(
            held_out_drug_splits(wc.dataset, generative=True).values()
        ),
        control=CONTROL,
    script:
        "../scripts/figure_gsea.py"


# The variants of each method with two or more of them (StateXDiff Table 2, scPPDM Fig. 4).
rule figure_ablations:
    input:
        summary="results/tables/summary.tsv",
    output:
        **figure_outputs("ablations_{dataset}"),
    log:
        "results/logs/figures/ablations_{dataset}.log",
    benchmark:
        "results/benchmarks/figures/ablations_{dataset}.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        dataset=lambda wc: wc.dataset,
        extra=[method_bases()],
    script:
        "../scripts/figure_ablations.py"


# Forest plot of each method against the best baseline (scpert.stats).
rule figure_comparisons:
    input:
        comparisons="results/tables/comparisons.tsv",
    output:
        **figure_outputs("comparisons"),
    log:
        "results/logs/figures/comparisons.log",
    benchmark:
        "results/benchmarks/figures/comparisons.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    script:
        "../scripts/figure_comparisons.py"


# StateXDiff Fig. 3c: the protein-modality arms (config/statexdiff_protein_modality.yaml).
rule figure_protein_modality:
    input:
        summary="results/tables/summary.tsv",
    output:
        **figure_outputs("protein_modality_{dataset}"),
    log:
        "results/logs/figures/protein_modality_{dataset}.log",
    benchmark:
        "results/benchmarks/figures/protein_modality_{dataset}.tsv"
    conda:
        "../../envs/plots.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        dataset=lambda wc: wc.dataset,
        extra=[],
    script:
        "../scripts/figure_protein_modality.py"
