# Raw inputs: the synthetic world (real-data download rules join here in a later step); its files
# are declared once, in scpert.layout.WORLD_FILES (WORLD_FILES of common.smk: stem -> name).


# Simulate the synthetic perturbation world (scpert.data.simulate): every raw artifact the real
# pipeline consumes, with the same schemas, plus the ground truth.
rule simulate_world:
    input:
        drug_panel=REPO / "resources/drugs/drug_panel.tsv",
        landmarks=REPO / "resources/genes/l1000_landmarks.tsv",
        gene_order=REPO / "resources/genes/scimilarity_gene_order.tsv",
    output:
        **{
            key: f"resources/raw/{{dataset}}/{name}"
            for key, name in WORLD_FILES.items()
        },
    log:
        "results/logs/simulate_world/{dataset}.log",
    benchmark:
        "results/benchmarks/simulate_world/{dataset}.tsv"
    conda:
        "../../envs/scpert.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    params:
        simulate=lambda wc: config["datasets"][wc.dataset]["simulate"],
        resources=REPO / "resources",
    script:
        "../scripts/simulate_world.py"
