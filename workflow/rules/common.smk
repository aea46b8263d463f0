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

from scpert.workflow_config import ConfigError, resolve_config  # noqa: E402

try:
    RUN = resolve_config(config)
except ConfigError as err:
    raise WorkflowError(f"config: {err}") from None

CONTROL = config["control_label"]
RES = config["resources"]


wildcard_constraints:
    dataset="[A-Za-z0-9][A-Za-z0-9_.-]*",
    split="[A-Za-z0-9][A-Za-z0-9_.-]*",
    method="[A-Za-z0-9][A-Za-z0-9_.-]*",


def raw_dir(dataset):
    return f"resources/raw/{dataset}"


def raw_counts(wildcards):
    ds = config["datasets"][wildcards.dataset]
    if ds["source"] == "h5ad":
        return ds["counts"]
    return f"{raw_dir(wildcards.dataset)}/counts.h5ad"


def raw_drugs(wildcards):
    ds = config["datasets"][wildcards.dataset]
    if ds["source"] == "h5ad":
        return ds["drugs"]
    return f"{raw_dir(wildcards.dataset)}/drugs.tsv"


def method_entry(wildcards):
    return RUN.methods[wildcards.method]


# prior name -> output path pattern (wildcards dataset, split); rule files producing priors add theirs
PRIOR_FILES = {}


def train_inputs(wildcards):
    """Data inputs of ``train`` plus the priors the method needs (keys ``prior_<name>``)."""
    inputs = {
        "h5ad": f"results/{wildcards.dataset}/processed.h5ad",
        "split": f"results/{wildcards.dataset}/splits/{wildcards.split}.tsv",
        "genes": f"results/{wildcards.dataset}/{wildcards.split}/genes.tsv",
        "drugs": raw_drugs(wildcards),
    }
    for name in RUN.methods[wildcards.method].priors:
        if name not in PRIOR_FILES:
            raise WorkflowError(
                f"method {wildcards.method} needs prior '{name}' but no rule provides it"
            )
        inputs[f"prior_{name}"] = PRIOR_FILES[name].format(**wildcards)
    return inputs


def method_gpus(wildcards):
    """1 for methods that train/sample on a GPU (the SLURM profile turns this into --gpus=1)."""
    return 1 if RUN.methods[wildcards.method].uses_gpu else 0


def all_targets():
    targets = ["results/tables/metrics_long.tsv", "results/tables/summary.tsv"]
    targets += expand(
        "results/tables/table1_scperturbench_{deg_set}.{ext}",
        deg_set=["top100", "top5000"],
        ext=["md", "tex"],
    )
    targets += expand("results/figures/heatmap_scperturbench.{ext}", ext=["pdf", "png"])
    return targets


def metric_files():
    return [
        f"results/{ds}/{split}/{method}/metrics.tsv" for ds, split, method in RUN.jobs
    ]
