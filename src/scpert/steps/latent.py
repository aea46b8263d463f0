"""Rule step of the latent space: finetune_latent (scpert.latent)."""

from __future__ import annotations

import logging

import numpy as np

from scpert import runtime
from scpert.data import io

log = logging.getLogger(__name__)


def finetune_latent(
    inputs: dict,
    out_dir,
    latent: dict,
    control: str,
    seed: int,
    device: str,
    threads: int | None = None,
) -> None:
    """Rule ``finetune_latent``: fit the latent model of one split and save it (SCimilarity layout).

    inputs: ``h5ad``, ``split``, ``genes`` and optionally ``checkpoint`` (a published model folder);
    out_dir: the split's ``latent`` prior folder; latent: the config's ``latent`` block (``preset``,
    ``params``); threads: torch CPU threads (the rule's ``threads``, :func:`runtime.torch_setup`).
    """
    import torch

    from scpert.data import schema
    from scpert.data.preprocess import train_cells_mask
    from scpert.latent import LatentModel, adapt_to_genes, finetune, load_model, save_model
    from scpert.latent.finetune import resolve_params

    params = resolve_params(latent.get("preset", "tiny"), latent.get("params"))
    adata = io.read_processed(inputs["h5ad"], control)
    split = io.read_split(inputs["split"], adata.obs["condition"], inputs["h5ad"])
    genes = io.read_genes(inputs["genes"], adata.var_names, inputs["h5ad"])
    cells = io.restrict_genes(
        adata[train_cells_mask(adata.obs, split, control)], genes, inputs["h5ad"]
    )
    obs = cells.obs
    is_control = (obs[schema.DRUG].astype(str) == control).to_numpy()
    labels = np.where(
        is_control,
        obs[schema.CELL_LINE].astype(str) + "|" + control,
        obs[schema.CONDITION].astype(str),
    )
    dev = runtime.torch_setup(device, threads, seed)
    if inputs.get("checkpoint"):
        source = load_model(inputs["checkpoint"])
        model = adapt_to_genes(source, genes)
        overlap = len(set(genes) & set(source.genes))
        log.info(
            "initialised from %s (hidden %s, latent %d); %d of %d genes in its gene order",
            inputs["checkpoint"],
            source.hidden_dim,
            source.latent_dim,
            overlap,
            len(genes),
        )
        origin = f"SCimilarity checkpoint {inputs['checkpoint']}"
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LatentModel(
                genes,
                params["latent_dim"],
                params["hidden_dim"],
                params["dropout"],
                params["input_dropout"],
            )
        origin = "initialised"
        log.info(
            "no SCimilarity checkpoint (config latent.checkpoint): the latent model (preset %s) "
            "trains from scratch on the split's training cells",
            latent.get("preset", "tiny"),
        )
    log.info(
        "latent %s on %d training cells x %d genes, device %s", origin, cells.n_obs, len(genes), dev
    )
    with torch.random.fork_rng(devices=[dev] if dev == "cuda" else []):  # dropout's generator
        torch.manual_seed(seed)
        history = finetune(
            model, cells.X, labels, obs[schema.PLATE].astype(str).to_numpy(), params, dev, seed
        )
    meta = {
        "origin": origin,
        "params": params,
        "seed": int(seed),
        "n_cells": int(cells.n_obs),
        "history": history,
    }
    with runtime.atomic_dir(out_dir) as tmp:
        save_model(model.cpu(), tmp, meta)
    log.info("latent model: %s (%.1f s)", out_dir, history["seconds"])
