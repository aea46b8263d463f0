# Helpers shared by the workflow: config resolution, input functions, target lists.
import os
import sys
from pathlib import Path

REPO = Path(workflow.basedir)
SRC = str(REPO / "src")
# scripts (local jobs, SLURM jobs, conda envs) import the package from the repository's src/
sys.path.insert(0, SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [SRC] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
)

from scpert import layout  # noqa: E402
from scpert.workflow_config import (  # noqa: E402
    ConfigError,
    resolve_config,
    schema_error_message,
)
from snakemake.utils import validate  # noqa: E402

# the config against config/schema.yaml (fills defaults); a failure is one line naming the key
try:
    validate(config, str(REPO / "config/schema.yaml"))
except WorkflowError as err:
    message = schema_error_message(err)
    if message is None:
        raise
    raise WorkflowError(f"config: {message}") from None

try:
    RUN = resolve_config(config)
except ConfigError as err:
    raise WorkflowError(f"config: {err}") from None

CONTROL = config["control_label"]
RES = config["resources"]


def drop_benchmarks_unless_configured():
    """Config ``benchmark: false``: the rules keep their ``benchmark:`` declarations but
    Snakemake writes no benchmark file (and runs no psutil sampler in the head process for each
    local job: docs/decisions.md, "Benchmark files"). Called once every rule is defined.
    """
    if config["benchmark"]:
        return
    for declared in workflow.rules:
        # Snakemake 9 has no public switch; its jobs skip a rule whose benchmark is None
        declared._benchmark = None


wildcard_constraints:
    dataset="[A-Za-z0-9][A-Za-z0-9_.-]*",
    split="[A-Za-z0-9][A-Za-z0-9_.-]*",
    method="[A-Za-z0-9][A-Za-z0-9_.-]*",


def raw_dir(dataset):
    return f"resources/raw/{dataset}"


# the synthetic world's raw files by stem (counts, drugs, l1000, ...), declared in scpert.layout
WORLD_FILES = layout.world_files()


def raw_counts(wildcards):
    ds = config["datasets"][wildcards.dataset]
    if ds["source"] == "h5ad":
        return ds["counts"]
    return f"{raw_dir(wildcards.dataset)}/{WORLD_FILES['counts']}"


def preprocess_input(dataset):
    """The form of the matrix that preprocess reads (the declared `input` of a user's h5ad); the
    loaders (import_dataset, out-of-core) recover counts themselves (loader_options)."""
    ds = config["datasets"][dataset]
    return ds["input"] if ds["source"] == "h5ad" else "counts"


def loader_options(dataset):
    """A loader's options, with the dataset's declared input form (`input: lognorm`)."""
    ds = config["datasets"][dataset]
    options = dict(ds["load"].get("options", {}))
    if ds["input"] != "counts":
        options["input"] = ds["input"]
    return options


def raw_drugs(wildcards):
    ds = config["datasets"][wildcards.dataset]
    if ds["source"] == "h5ad":
        return ds["drugs"]
    return f"{raw_dir(wildcards.dataset)}/{WORLD_FILES['drugs']}"


def method_entry(wildcards):
    """The method's name, base, preset and complete params as plain values (recorded by
    Snakemake, so editing a method's preset or params reruns its train job)."""
    return RUN.methods[wildcards.method].recordable()


def train_inputs(wildcards):
    """Data inputs of ``train`` plus the prior folders the method needs (keys ``prior_<name>``;
    the names are checked against scpert.layout.PRIORS when the config is resolved)."""
    split_dir = f"results/{wildcards.dataset}/{wildcards.split}"
    inputs = {
        "h5ad": f"results/{wildcards.dataset}/processed.h5ad",
        "split": f"results/{wildcards.dataset}/splits/{wildcards.split}.tsv",
        "genes": f"{split_dir}/genes.tsv",
        "ranking": f"{split_dir}/hvg_ranking.tsv",
        "drugs": raw_drugs(wildcards),
    }
    for name in RUN.methods[wildcards.method].priors:
        inputs[f"prior_{name}"] = layout.prior_dir(
            name, wildcards.dataset, wildcards.split
        )
    return inputs


def method_seed(wildcards):
    """Seed of the method's train and sample jobs (``seeds``: one per replicate; else ``seed``)."""
    return RUN.methods[wildcards.method].seed


def method_gpus(wildcards):
    """GPUs a sample job of the method needs: 1 for GPU methods, 0 for baselines.

    Counts against ``--resources gpu=N`` (a workstation with N GPUs runs baselines beside GPU
    jobs); profiles/slurm overrides it with one GPU for every sample job, because a rule goes to
    one partition and GPU partitions expect a GPU request.
    """
    return 1 if RUN.methods[wildcards.method].uses_gpu else 0


def train_gpus(wildcards):
    """GPUs a train job needs: the preset's ``gpus`` (data-parallel processes launched with
    torchrun inside the job, scpert.generative.distributed; e.g. scPPDM paper: 4) for GPU
    methods, 0 for baselines. profiles/slurm leaves it to this function (sbatch --gpus=N).
    """
    entry = RUN.methods[wildcards.method]
    return int(entry.params.get("gpus", 1)) if entry.uses_gpu else 0


def preset_size(preset, key):
    """Size ``key`` (train_mem_mb, train_runtime, gpu_threads) of a GPU job at ``preset``.

    From ``resources.presets.<preset>.<key>``, else ``resources.<key>`` (the tiny sizes).
    """
    return RES["presets"].get(preset, {}).get(key, RES[key])


def method_threads(wildcards):
    """Threads (= SLURM CPUs) of a train/sample job, by the method's preset."""
    return preset_size(RUN.methods[wildcards.method].preset, "gpu_threads")


def method_mem_mb(wildcards, attempt):
    """Memory of a train/sample job by preset; a retry (profile `retries`) gets attempt x more."""
    return preset_size(RUN.methods[wildcards.method].preset, "train_mem_mb") * attempt


def method_runtime(wildcards, attempt):
    """Time limit (minutes) of a train/sample job by preset; attempt x more on a retry."""
    return preset_size(RUN.methods[wildcards.method].preset, "train_runtime") * attempt


def all_targets():
    targets = ["results/tables/metrics_long.tsv", "results/tables/summary.tsv"]
    targets += paper_table_files()
    targets += expand("results/figures/heatmap_scperturbench.{ext}", ext=["pdf", "png"])
    targets += ["results/tables/comparisons.tsv", "results/tables/aggregate_score.tsv"]
    targets += multiseed_files()
    targets += figure_targets()
    targets += prior_targets()
    targets += cell_state_targets()
    targets += world_vs_real_targets()
    # experiments.smk: none unless an overlay configures an experiment
    targets += experiment_targets()
    return targets


def metric_files():
    """Metric tables of every configured job, then of the reference rows of every split."""
    files = [
        f"results/{ds}/{split}/{method}/metrics.tsv" for ds, split, method in RUN.jobs
    ]
    for ds, split in evaluations():
        files += [
            f"results/{ds}/{split}/{name}/metrics.tsv" for name in oracle_rows(ds)
        ]
        files += ceiling_rows(ds, split)
    return files


# -- reference rows of the tables (rule oracle in reference.smk; scpert.metrics.reference) -----
ORACLE, CEILING = layout.ORACLE, layout.CEILING
REFERENCE = config["evaluation"]["reference_rows"]


def oracle_rows(dataset):
    """[oracle] for a simulated dataset when configured (its truth is known), else []."""
    simulated = config["datasets"][dataset]["source"] == "simulate"
    return [ORACLE] if simulated and ORACLE in REFERENCE else []


def ceiling_rows(dataset, split):
    """The ceiling's metrics table of a split when configured (a list of 0 or 1 paths)."""
    if CEILING not in REFERENCE:
        return []
    return [f"results/{dataset}/{split}/{CEILING}/metrics.tsv"]


def evaluations():
    """(dataset, split) -> the methods evaluated on it, in config order (one evaluate job each)."""
    found = {}
    for ds, split, method in RUN.jobs:
        found.setdefault((ds, split), []).append(method)
    return found


def evaluate_rule(dataset, split):
    """Name of the evaluate rule of (dataset, split) (evaluate.smk defines one per split)."""
    names = {(ds, sp): f"evaluate_{ds}_{sp}" for ds, sp in evaluations()}
    if list(names.values()).count(names[dataset, split]) > 1:
        raise WorkflowError(
            f"config: datasets/splits {sorted(k for k, v in names.items() if v == names[dataset, split])} "
            f"give the same rule name {names[dataset, split]}; rename one"
        )
    return names[dataset, split]


def split_types():
    """Split name -> split type of the splits that some job evaluates."""
    return {split: config["splits"][split]["type"] for _, split, _ in RUN.jobs}


def paper_table_files():
    """Paper-layout tables (scpert.tables.PAPER_TABLES) the configured protocols and splits fill."""
    from scpert.tables import paper_tables

    names = paper_tables(config["evaluation"]["protocols"], split_types().values())
    files = []
    for name in names:  # the markdown rendering in the report, the LaTeX beside it
        shown = report(
            f"results/tables/{name}.md",
            caption=str(REPO / "workflow/report/paper_tables.rst"),
            category="Tables",
            subcategory="paper layouts",
        )
        files += [shown, f"results/tables/{name}.tex"]
    return files


def multiseed_files():
    """Tables across seeds (rule aggregate) when ``seeds`` names two or more."""
    if len(config.get("seeds") or []) < 2:
        return []
    tsv = "results/tables/multiseed.tsv"
    caption = str(REPO / "workflow/report/multiseed.rst")
    shown = report(tsv, caption=caption, category="Tables")
    stem = "results/tables/multiseed_scperturbench_top100"
    return [shown, f"{stem}.md", f"{stem}.tex"]


# -- drug priors (rules in priors.smk) ----------------------------------------------------------
PRIORS = config.get("priors", {})
# prior-knowledge inputs without which the prior rules cannot run
PRIOR_REQUIRED_KEYS = ("dti", "ppi", "l1000")


def prior_file(dataset, key):
    """Path of prior input `key`: config priors.files, else the simulated world's file."""
    path = PRIORS.get("files", {}).get(key)
    if path:
        return path
    if (
        config["datasets"][dataset]["source"] == "simulate"
        and key in layout.WORLD_PRIOR_INPUTS
    ):
        return f"{raw_dir(dataset)}/{WORLD_FILES[key]}"
    if key in PRIOR_REQUIRED_KEYS:
        raise WorkflowError(
            f"config: priors.files.{key} is required for dataset '{dataset}' "
            "(only simulated datasets bring their own prior files)"
        )
    return None


# a user dataset without the required prior files fails at parse time (in an input function the
# same error would come with a DAG traceback)
if PRIORS.get("enabled", False):
    for _name, _dataset in config["datasets"].items():
        if _dataset["source"] != "simulate":
            for _key in PRIOR_REQUIRED_KEYS:
                prior_file(_name, _key)


def prior_inputs(keys):
    """Input function: the dataset's drug table plus the prior files named by `keys`."""

    def inputs(wildcards):
        found = {"drugs": raw_drugs(wildcards)}
        for key in keys:
            path = prior_file(wildcards.dataset, key)
            if path:
                found[key] = path
        return found

    return inputs


def prior_targets():
    """Evaluation table of the priors per configured (dataset, split) when priors are enabled."""
    if not PRIORS.get("enabled", False):
        return []
    return [
        f"results/{ds}/{split}/priors_eval.tsv"
        for ds, entry in config["datasets"].items()
        for split in entry["splits"]
    ]


# -- the synthetic world against real data (rule in world.smk) ---------------------------------
def world_vs_real_targets():
    """Table and figure of rule world_vs_real for every simulated dataset."""
    return [
        path
        for ds, entry in config["datasets"].items()
        if entry["source"] == "simulate"
        for path in (
            f"results/tables/world_vs_real_{ds}.tsv",
            f"results/figures/world_vs_real_{ds}.pdf",
            f"results/figures/world_vs_real_{ds}.png",
        )
    ]


# -- latent space (rule in latent.smk) ----------------------------------------------------------
LATENT = config.get("latent", {})
LATENT_PRESET = LATENT.get("preset", "tiny")


def latent_mem_mb(wildcards, attempt):
    """Memory of finetune_latent by the latent preset (resources.presets); attempt x on a retry."""
    return preset_size(LATENT_PRESET, "train_mem_mb") * attempt


def latent_runtime(wildcards, attempt):
    """Time limit (minutes) of finetune_latent by the latent preset; attempt x on a retry."""
    return preset_size(LATENT_PRESET, "train_runtime") * attempt


def latent_inputs(wildcards):
    """Split data of finetune_latent, plus the published checkpoint folder when configured."""
    inputs = {
        "h5ad": f"results/{wildcards.dataset}/processed.h5ad",
        "split": f"results/{wildcards.dataset}/splits/{wildcards.split}.tsv",
        "genes": f"results/{wildcards.dataset}/{wildcards.split}/genes.tsv",
    }
    if LATENT.get("checkpoint"):
        inputs["checkpoint"] = LATENT["checkpoint"]
    return inputs


# -- cell-state priors of StateXDiff (rules in cell_state.smk) ----------------------------------
def translator_inputs(wildcards):
    """CITE-seq cells of train_translator / validate_pqm: config priors.files.citeseq, else the
    simulated world's citeseq.h5ad; plus priors.translator.checkpoint when set."""
    path = prior_file(wildcards.dataset, "citeseq")
    if path is None:
        raise WorkflowError(
            f"config: priors.files.citeseq is required for dataset '{wildcards.dataset}' (paired "
            "RNA + protein cells for the translator, e.g. resources/raw/citeseq/<name>/citeseq.h5ad "
            "written by import_citeseq)"
        )
    inputs = {"citeseq": path}
    folder = PRIORS.get("translator", {}).get("checkpoint")
    if folder:
        inputs["checkpoint"] = folder
    return inputs


def complexes_input(wildcards):
    """Protein complexes for PQM's s_cx (priors.files.complexes or the world's), when any."""
    path = prior_file(wildcards.dataset, "complexes")
    return {"complexes": path} if path else {}


def cell_state_targets():
    """The App. A.2.3 validation (validate_pqm) of every dataset on which a configured
    method needs a cell-state prior (translator, protein or vmcs)."""
    cell_state = {"translator", "protein", "vmcs"}
    datasets = dict.fromkeys(
        ds for ds, _, method in RUN.jobs if cell_state & set(RUN.methods[method].priors)
    )
    return [
        path
        for ds in datasets
        for path in (
            f"results/tables/pqm_validation_{ds}.tsv",
            f"results/figures/pqm_validation_{ds}.pdf",
            f"results/figures/pqm_validation_{ds}.png",
        )
    ]


# -- PerturbDiff marginal pretraining (rule in pretrain.smk) ----------------------------------
PERTURBDIFF_PRETRAIN = config.get("perturbdiff_pretrain", {})
PERTURBDIFF_PRETRAIN_PRESET = PERTURBDIFF_PRETRAIN.get("preset", "tiny")


def _pretrain_params():
    """The resolved pretraining parameters (a perturbdiff preset); errors name the config key."""
    from scpert.methods.registry import get_spec

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


# -- figures (rules in figures.smk; scpert.plots.FIGURES) --------------------------------------
FIGURES_CONFIG = config["figures"]
if FIGURES_CONFIG["scatter_reference"] not in (None, *RUN.methods):
    raise WorkflowError(
        f"config: figures.scatter_reference: '{FIGURES_CONFIG['scatter_reference']}' is not a "
        f"configured method (methods: {', '.join(RUN.methods)})"
    )


def figure_outputs(stem):
    """Named outputs of a figure rule: pdf, png (in the report with its caption), tsv (data;
    scpert.plots.figure_files)."""
    from scpert.plots import figure_files

    family = stem.split("_{")[0]
    files = figure_files(stem)
    return {
        "pdf": files["pdf"],
        "png": report(
            files["png"],
            caption=f"../report/figure_{family}.rst",
            category="Figures",
            subcategory=family,
        ),
        "tsv": files["tsv"],
    }


def figure_targets():
    """PDF, PNG and data table of every figure family the configured splits can fill."""
    from scpert.plots import figure_files, figure_names

    datasets = sorted({ds for ds, _ in evaluations()})
    bases = list(method_bases().values())
    has_variants = any(bases.count(b) > 1 for b in bases)
    names = figure_names(
        split_types().values(), datasets, has_variants, list(RUN.methods)
    )
    names = [
        n for n in names if not n.startswith("gsea_") or gsea_gmt(n[len("gsea_") :])
    ]
    return [path for name in names for path in figure_files(name).values()]


def baseline_methods():
    """Configured methods whose spec is a baseline (scpert.methods.baselines)."""
    from scpert.methods.registry import get_spec

    return [
        name
        for name, entry in RUN.methods.items()
        if get_spec(entry.base).module.startswith("scpert.methods.baselines")
    ]


def method_bases():
    """Configured method -> its base method (variants share a base; the seed replicates of
    ``seeds`` are not variants and are left out)."""
    return {
        name: entry.base
        for name, entry in RUN.methods.items()
        if layout.split_seed_replicate(name)[1] is None
    }


def held_out_drug_splits(dataset, generative=False):
    """drug_ood splits of ``dataset`` -> the methods scored on each (reference rows included):
    the predictions the dose-response and padj-density figures read; ``generative``: only the
    methods that are not baselines, at the first seed (the UMAP and GSEA figures)."""
    baselines = set(baseline_methods()) if generative else set()
    return {
        split: (
            [
                m
                for m in methods
                if m not in baselines and layout.split_seed_replicate(m)[1] is None
            ]
            if generative
            else methods + oracle_rows(dataset)
        )
        for (ds, split), methods in evaluations().items()
        if ds == dataset and config["splits"][split]["type"] == "drug_ood"
    }


def held_out_drug_inputs(wildcards, generative=False):
    splits = held_out_drug_splits(wildcards.dataset, generative)
    prefix = f"results/{wildcards.dataset}"
    return {
        "h5ad": f"{prefix}/processed.h5ad",
        "split": [f"{prefix}/splits/{s}.tsv" for s in splits],
        "genes": [f"{prefix}/{s}/genes.tsv" for s in splits],
        "preds": [
            f"{prefix}/{s}/{m}/pred.h5ad"
            for s, methods in splits.items()
            for m in methods
        ],
    }


def generative_drug_inputs(wildcards):
    return held_out_drug_inputs(wildcards, generative=True)


def gsea_gmt(dataset):
    """Gene sets of the GSEA figure: ``figures.gsea_gmt``, else the synthetic world's GMT (None
    for a real dataset without one: no GSEA figure)."""
    if FIGURES_CONFIG.get("gsea_gmt"):
        return FIGURES_CONFIG["gsea_gmt"]
    if config["datasets"][dataset]["source"] == "simulate":
        return f"{raw_dir(dataset)}/{WORLD_FILES['gene_sets']}"
    return None


def gsea_inputs(wildcards):
    return {**generative_drug_inputs(wildcards), "gmt": gsea_gmt(wildcards.dataset)}
