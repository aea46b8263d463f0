"""Rule steps of the drug priors: pretrain_graph, pretrain_mdt, evaluate_priors.

Each pretraining step writes one prior folder (:func:`scpert.layout.prior_dir`) atomically; the
files inside are described in :mod:`scpert.priors.outputs`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scpert import runtime
from scpert.data import io, schema

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- graph rule
def pretrain_graph(
    drugs_path,
    dti_path,
    ppi_path,
    out_dir,
    settings: dict,
    *,
    complexes_path=None,
    gene_sets_path=None,
    string_info_path=None,
    extra_drugs_path=None,
    device: str = "auto",
    threads: int = 1,
) -> None:
    """Rule pretrain_graph: the ``graph`` prior folder ``out_dir``.

    settings: ``{"preset": ..., "params": {...}}`` (config priors.graph); threads: torch CPU threads
    (the rule's ``threads``).
    """
    from scpert.chem import structure_embedding
    from scpert.priors import graph, outputs, sources

    params = graph.resolve_params(settings.get("preset", "tiny"), settings.get("params"))
    device = runtime.torch_setup(device, threads, seed=params["seed"])
    drugs = sources.read_drugs(drugs_path, extra_drugs_path)
    features = structure_embedding(
        drugs["smiles"].to_dict(), n_bits=params["fingerprint_bits"], source=str(drugs_path)
    )
    ppi = sources.read_ppi(ppi_path, string_info_path)
    if complexes_path:
        ppi = pd.concat([ppi, sources.complex_edges(sources.read_complexes(complexes_path))])
    gene_sets = sources.read_gmt(gene_sets_path) if gene_sets_path else None
    g = graph.build_graph(features, sources.read_dti(dti_path), ppi, gene_sets, params)
    start = time.perf_counter()
    model, history = graph.train_graph(g, params, device)
    h = graph.encode(model, g)
    seconds = time.perf_counter() - start
    edges = g.edge_pairs()
    metrics = {
        "n_drugs": len(g.drugs),
        "n_genes": len(g.genes),
        **{f"edges_{k}": v for k, v in edges.items()},
        "dti_auroc": graph.dti_auroc(h, g, params),
        "loss_final": float(history["loss"].iloc[-1]) if len(history) else float("nan"),
        "epochs": params["epochs"],
        "train_seconds": seconds,
        "device": device,
    }
    with runtime.atomic_dir(out_dir) as tmp:
        outputs.write_drug_embeddings(graph.drug_embeddings(h, g), tmp / outputs.GRAPH_EMBEDDINGS)
        runtime.write_tsv(
            pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())}),
            tmp / outputs.GRAPH_METRICS,
        )
    log.info("graph prior: %s", metrics)


# ------------------------------------------------------------------------------------ MDT rule
def pretrain_mdt(
    drugs_path,
    split_path,
    genes_path,
    l1000_path,
    graph_dir,
    out_dir,
    settings: dict,
    *,
    sig_info_path=None,
    gene_info_path=None,
    extra_drugs_path=None,
    control: str = schema.DEFAULT_CONTROL,
    device: str = "auto",
    threads: int = 1,
) -> None:
    """Rule pretrain_mdt: the ``mdt`` prior folder ``out_dir`` of one split.

    graph_dir: the dataset's ``graph`` prior folder; settings: ``{"preset": ..., "params": {...}}``
    (config priors.mdt); threads: torch CPU threads (the rule's ``threads``).
    """
    import torch

    from scpert.chem import structure_embedding
    from scpert.priors import l1000, mdt, outputs, sources

    params = mdt.resolve_params(settings.get("preset", "tiny"), settings.get("params"))
    device = runtime.torch_setup(device, threads, seed=params["seed"])
    drugs = sources.read_drugs(drugs_path, extra_drugs_path)
    split = io.read_split(split_path)
    held_out = sources.held_out_drugs(split, control)
    structure = structure_embedding(
        drugs["smiles"].to_dict(), n_bits=params["fingerprint_bits"], source=str(drugs_path)
    )
    gct = l1000.read_gct(l1000_path)
    if sig_info_path:
        gct.col_meta = l1000.merge_info(gct.col_meta, sig_info_path, "sig_id")
    if gene_info_path:
        gct.row_meta = l1000.merge_info(gct.row_meta, gene_info_path, "pr_gene_id")
    views = l1000.select_views(
        gct,
        list(drugs.index),
        params["views_per_drug"],
        params["tas"],
        params["clip_z"],
        source=l1000_path,
    )
    data = mdt.prepare_data(
        structure,
        outputs.read_drug_embeddings(Path(graph_dir) / outputs.GRAPH_EMBEDDINGS),
        views,
        held_out,
        params,
    )
    log.info(
        "MDT: %d drugs (%d train, %d val, %d held out, %d of them with L1000 views), "
        "%d training views on %d landmarks",
        len(data.drugs),
        data.train.sum(),
        data.val.sum(),
        data.excluded.sum(),
        len(np.unique(data.held_out_view_drug)),
        len(data.views.x),
        len(views.landmarks),
    )
    model, history = mdt.train_mdt(data, params, device)
    view_x, view_tas, view_drug = mdt.template_views(data)
    out = mdt.drug_templates(model, data.structure, view_x, view_tas, view_drug, device)

    role = np.full(len(data.drugs), "unused", dtype=object)
    role[data.train], role[data.val], role[data.excluded] = "train", "val", "held_out"
    in_cells = {c for d in split["drug"].astype(str) for c in schema.components(d)}
    n_views = np.bincount(view_drug, minlength=len(data.drugs))
    gene_pos = {g: i for i, g in enumerate(io.read_genes(genes_path))}
    arrays = {
        "drug": np.asarray(data.drugs, dtype=str),
        "role": role.astype(str),
        "in_single_cell": np.array([d in in_cells for d in data.drugs]),
        "n_views": n_views.astype(np.int64),
        "tokens": out.tokens,
        "e_drug": out.e_drug,
        "z_struct": out.z_struct,
        "z_drug": out.z_drug,
        "response": out.response,
        "landmarks": np.asarray(views.landmarks, dtype=str),
        "landmark_gene_index": np.array(
            [gene_pos.get(g, -1) for g in views.landmarks], dtype=np.int64
        ),
    }
    state = {
        "state_dict": model.state_dict(),
        "params": params,
        "struct_dim": data.structure.shape[1],
        "n_genes": data.views.x.shape[1],
        "bio_dim": data.bio.shape[1],
        "landmarks": views.landmarks,
    }
    with runtime.atomic_dir(out_dir) as tmp:
        outputs.write_drug_tokens(arrays, tmp / outputs.MDT_TOKENS)
        torch.save(state, tmp / outputs.MDT_MODEL)
        runtime.write_tsv(history, tmp / outputs.MDT_HISTORY)


def evaluate_priors(
    drugs_path,
    mdt_dir,
    graph_dir,
    out_path,
    dataset: str,
    split: str,
    *,
    extra_drugs_path=None,
) -> None:
    """Rule evaluate_priors: held-out drugs' MoA retrieval (MDT vs Morgan), held-out DTI AUROC,
    from the split's ``mdt`` and the dataset's ``graph`` prior folders."""
    from scpert.priors import outputs
    from scpert.priors.evaluate import evaluate_priors as evaluate

    evaluate(
        drugs_path,
        Path(mdt_dir) / outputs.MDT_TOKENS,
        Path(graph_dir) / outputs.GRAPH_EMBEDDINGS,
        Path(graph_dir) / outputs.GRAPH_METRICS,
        out_path,
        dataset,
        split,
        extra_drugs_path=extra_drugs_path,
    )
