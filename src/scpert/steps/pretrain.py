"""Rule step of PerturbDiff's marginal pretraining: pretrain_perturbdiff (arXiv:2602.19685 §4.6).

The split-level prior ``perturbdiff_marginal`` (``results/{dataset}/{split}/priors/
perturbdiff_marginal/``): PerturbDiff's network (:mod:`scpert.methods.perturbdiff`) trained on
the unperturbed cell distributions of each context — the control cells of the split's training
data (every cell line's controls are training cells) plus the cells of any configured atlas —
with the control stream zeroed and context-only conditioning. The method variant with ``init:
pretrained`` (``perturbdiff_ft``) fine-tunes it.

Atlas files (config ``perturbdiff_pretrain.atlas``): AnnData (h5ad) of unperturbed cells,
``X`` log-normalised as ``processed.h5ad`` (log1p of normalize_total 1e4), ``obs["cell_line"]``
the context and optionally ``obs["plate"]`` the batch. Genes of the split missing from an atlas
are zeros there (counted in the log); an atlas with fewer than half of them is an input error.
Each atlas' batches are kept apart from the dataset's plates (``<atlas file stem>:<plate>``).

Files: ``model.pt`` (network state, params, genes, vocabularies; read by
:func:`scpert.methods.perturbdiff.method.load_prior`) and ``prior.json`` (cells, sets, steps,
loss history, seconds).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from scpert import runtime
from scpert.data import io, schema

log = logging.getLogger(__name__)


def _atlas(path, genes: list[str], control: str):
    """One atlas file as (X, obs) over ``genes`` (module docstring)."""
    import scipy.sparse as sp

    adata = io.read_h5ad(path)
    if schema.CELL_LINE not in adata.obs.columns:
        raise schema.SchemaError(f"{path}: obs['{schema.CELL_LINE}'] is missing (the context)")
    have = {str(g): i for i, g in enumerate(adata.var_names)}
    found = [g for g in genes if g in have]
    if len(found) < len(genes) / 2:
        raise schema.SchemaError(
            f"{path}: var_names hold {len(found)} of the split's {len(genes)} genes (fewer than "
            "half; gene symbols expected)"
        )
    X = sp.csr_matrix(adata.X, dtype=np.float32)[:, [have[g] for g in found]]
    column = {g: j for j, g in enumerate(genes)}
    full = sp.csr_matrix(
        (
            np.ones(len(found), np.float32),
            ([k for k in range(len(found))], [column[g] for g in found]),
        ),
        shape=(len(found), len(genes)),
    )
    stem = Path(path).stem
    plates = (
        adata.obs[schema.PLATE].astype(str).to_numpy()
        if schema.PLATE in adata.obs.columns
        else np.full(adata.n_obs, "all")
    )
    obs = pd.DataFrame(
        {
            schema.CELL_LINE: adata.obs[schema.CELL_LINE].astype(str).to_numpy(),
            schema.DRUG: control,
            schema.DOSE: "0",
            schema.PLATE: [f"{stem}:{p}" for p in plates],
        }
    )
    log.info(
        "atlas %s: %d cells, %d cell lines, %d of %d genes (%d zero)",
        path,
        adata.n_obs,
        obs[schema.CELL_LINE].nunique(),
        len(found),
        len(genes),
        len(genes) - len(found),
    )
    return (X @ full).tocsr(), obs


def pretrain_perturbdiff(
    inputs: dict,
    out_dir,
    settings: dict,
    control: str,
    seed: int,
    device: str,
    threads: int | None = None,
) -> None:
    """Rule ``pretrain_perturbdiff``: the marginal prior of one split (module docstring).

    inputs: ``h5ad``, ``split``, ``genes``, ``drugs``, ``prior_mdt`` when the network uses MDT
    drug features, ``atlas_<i>`` atlas files; settings: the config's ``perturbdiff_pretrain``
    block (``preset``, ``params`` of the perturbdiff presets)."""
    import scipy.sparse as sp
    import torch

    from scpert.data.preprocess import train_cells_mask
    from scpert.methods import get_spec
    from scpert.methods.perturbdiff.covariates import structure_features, vocabularies
    from scpert.methods.perturbdiff.method import (
        build_network,
        dense_scaled,
        save_prior,
        schedule_of,
    )
    from scpert.methods.perturbdiff.train import marginal_sets, pretrain_marginal
    from scpert.perturbations import seen_perturbations

    params = get_spec("perturbdiff").resolve(
        settings.get("preset", "tiny"), settings.get("params"), key="perturbdiff_pretrain"
    )
    adata = io.read_processed(inputs["h5ad"], control)
    split = io.read_split(inputs["split"], adata.obs[schema.CONDITION], inputs["h5ad"])
    genes = io.read_genes(inputs["genes"], adata.var_names, inputs["h5ad"])
    train = adata[train_cells_mask(adata.obs, split, control)]
    train = io.restrict_genes(
        train[(train.obs[schema.DRUG] == control).to_numpy()], genes, inputs["h5ad"]
    )
    columns = [schema.CELL_LINE, schema.DRUG, schema.DOSE, schema.PLATE]
    parts_X, parts_obs = (
        [sp.csr_matrix(train.X, dtype=np.float32)],
        [train.obs[columns].astype(str)],
    )
    for key in sorted(k for k in inputs if k.startswith("atlas_")):
        X, obs = _atlas(inputs[key], genes, control)
        parts_X.append(X)
        parts_obs.append(obs)
    obs = pd.concat(parts_obs, ignore_index=True)
    drugs = io.read_drug_table(
        inputs["drugs"], adata.obs[schema.DRUG].unique(), inputs["h5ad"], control
    )
    dev = runtime.torch_setup(device, threads, seed)
    vocab = vocabularies(obs, drugs, control)
    # the feature rows of the model fine-tuned from this prior: the split's training perturbations
    seen = seen_perturbations(adata.obs[train_cells_mask(adata.obs, split, control)], control)
    fps, mdt, vocab = structure_features(
        drugs, vocab, params, inputs.get("prior_mdt"), seen=seen, controls=train
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_network(params, len(genes), vocab, fps, mdt).to(dev)
    X = dense_scaled(sp.vstack(parts_X).tocsr(), params)
    data = marginal_sets(X, obs, control, vocab, params)
    log.info(
        "marginal pretraining on %d unperturbed cells (%d from atlases), %d (cell line, plate) "
        "groups, %d genes, device %s",
        len(obs),
        len(obs) - train.n_obs,
        len(data.sets),
        len(genes),
        dev,
    )
    result = pretrain_marginal(
        net,
        schedule_of(params),
        data,
        params,
        torch.device(dev),
        seed,
        Path(out_dir).parent / ".perturbdiff_marginal_checkpoints",
    )
    meta = {
        "cells": int(len(obs)),
        "atlas_cells": int(len(obs) - train.n_obs),
        "groups": int(len(data.sets)),
        "seed": int(seed),
        "history": result.as_dict(),
    }
    with runtime.atomic_dir(out_dir) as tmp:
        save_prior(tmp, net.cpu(), params, genes, vocab, meta)
    import shutil

    shutil.rmtree(Path(out_dir).parent / ".perturbdiff_marginal_checkpoints", ignore_errors=True)
    log.info("marginal prior: %s (%d steps, %.1f s)", out_dir, result.steps, result.seconds)
