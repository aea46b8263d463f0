"""Where the workflow's shared files live, declared once for the rules, the steps and the tests.

Light (stdlib only): the Snakemake head process reads it. ``docs/architecture.md`` draws the whole
results tree; this module holds the parts that several places must agree on.

The synthetic world
    :data:`WORLD_FILES`: the raw files rule ``simulate_world`` writes to
    ``resources/raw/{dataset}/`` (:func:`scpert.data.simulate.simulate_world`); a rule input names
    one by its stem (``counts``, ``drugs``, ``l1000``, ...). :data:`WORLD_PRIOR_INPUTS`: the world
    files that stand in for the priors' knowledge inputs (config ``priors.files.<key>`` replaces
    them; real datasets must set them).

Reference rows
    :data:`REFERENCE_ROWS`: the ``oracle`` (simulated datasets) and the data ``ceiling``, scored
    by each split's evaluate job into ``results/{dataset}/{split}/{name}/metrics.tsv`` like a
    method's table; their names are reserved (no method may use them).

Priors
    A prior is one folder written by one rule, at one of two levels: dataset-level priors
    (``results/{dataset}/priors/{prior}/``) may use every cell and drug of the dataset, split-level
    priors (``results/{dataset}/{split}/priors/{prior}/``) see the split's training data only.
    :data:`PRIORS` names every prior and its level; a method asks for priors by these names
    (:attr:`scpert.methods.registry.MethodSpec.priors`) and receives their folders in
    :attr:`scpert.methods.base.PerturbData.priors`. The files inside a folder are the producing
    rule's business (:mod:`scpert.priors.outputs`, :mod:`scpert.latent.checkpoint`,
    :mod:`scpert.priors.protein`, :mod:`scpert.priors.vmcs`).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

#: raw files of the synthetic world, in ``resources/raw/{dataset}/``
WORLD_FILES = (
    "counts.h5ad",
    "drugs.tsv",
    "cell_lines.tsv",
    "l1000.gctx",
    "dti.tsv",
    "ppi.tsv",
    "complexes.tsv",
    "gene_sets.gmt",
    "citeseq.h5ad",
    "ground_truth.h5ad",
)

#: world files (by stem) that a simulated dataset uses as the priors' knowledge inputs
WORLD_PRIOR_INPUTS = ("dti", "ppi", "complexes", "gene_sets", "l1000", "citeseq")

DATASET, SPLIT = "dataset", "split"

#: prior name -> level; the rule producing a prior writes the folder :func:`prior_dir` names
PRIORS = {
    "graph": DATASET,  # drug-gene HeteroSAGE prior z_b (rule pretrain_graph)
    "mdt": SPLIT,  # L1000 mechanism-aware drug templates, test drugs excluded (pretrain_mdt)
    "latent": SPLIT,  # SCimilarity-layout encoder/decoder on training cells (finetune_latent)
    # StateXDiff's cell-state priors (scpert.priors.protein, .pqm, .vmcs; arXiv:2605.16104 §3.2)
    "translator": DATASET,  # RNA -> protein translator on CITE-seq cells (train_translator)
    "protein": SPLIT,  # p_hat, g_p, PQM q of every untreated cell (infer_protein)
    "vmcs": SPLIT,  # virtual multimodal cell state on untreated training cells (train_vmcs)
    # Fig. 3c's other protein sources (scpert.priors.protein_sources): TrueProt, TrueProt-FT
    "protein_measured": SPLIT,  # measured ADT as p_hat = g_p, q = 1 (measure_protein)
    "vmcs_measured": SPLIT,  # VMCS on protein_measured (train_vmcs_measured)
    "translator_finetuned": SPLIT,  # translator trained on the split's training cells
    "protein_finetuned": SPLIT,  # p_hat, g_p, q of translator_finetuned (infer_protein_finetuned)
    "vmcs_finetuned": SPLIT,  # VMCS on protein_finetuned (train_vmcs_finetuned)
    "perturbdiff_marginal": SPLIT,  # PerturbDiff's marginal model of control cells (pretrain_perturbdiff)
}

#: reference rows of every table (scpert.metrics.reference), written to
#: ``results/{dataset}/{split}/{name}/`` beside the methods; no method may take these names
ORACLE, CEILING = "oracle", "ceiling"
REFERENCE_ROWS = (ORACLE, CEILING)

#: several seeds (config ``seeds: [s0, s1, ...]``): a method runs at ``s0`` under its own name and
#: at every further seed ``s`` as ``<method>.seed<s>`` (``results/{dataset}/{split}/<method>.seed<s>/``)
SEED_SUFFIX = ".seed"
_SEED_REPLICATE = re.compile(r"^(.+)\.seed(\d+)$")


def seed_replicate(method: str, seed: int) -> str:
    """Name (and results folder) of ``method`` run at a further seed: ``scppdm.seed1``."""
    return f"{method}{SEED_SUFFIX}{seed}"


def split_seed_replicate(name: str) -> tuple[str, int | None]:
    """``("scppdm", 1)`` for ``scppdm.seed1``; ``(name, None)`` for a name without a seed suffix
    (a method at the first seed, a reference row)."""
    match = _SEED_REPLICATE.match(name)
    return (match.group(1), int(match.group(2))) if match else (name, None)


#: split names that would collide with the layout (``results/{dataset}/priors/``, ``splits/``)
RESERVED_SPLIT_NAMES = ("priors", "splits")


def world_files() -> dict[str, str]:
    """Stem -> file name of every world file (``{"counts": "counts.h5ad", ...}``)."""
    return {PurePosixPath(name).stem: name for name in WORLD_FILES}


def prior_dir(name: str, dataset: str = "{dataset}", split: str = "{split}") -> str:
    """Folder of prior ``name``: a Snakemake pattern by default, a path given dataset and split."""
    if name not in PRIORS:
        raise KeyError(f"unknown prior '{name}' (known: {', '.join(PRIORS)})")
    if PRIORS[name] == DATASET:
        return f"results/{dataset}/priors/{name}"
    return f"results/{dataset}/{split}/priors/{name}"
