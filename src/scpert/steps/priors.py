"""Rule steps of StateXDiff's priors: the drug priors (pretrain_graph, pretrain_mdt,
evaluate_priors) and the cell-state priors (train_translator, infer_protein, train_vmcs,
validate_pqm; for Fig. 3c's protein sources measure_protein and finetune_translator).

Each pretraining step writes one prior folder (:func:`scpert.layout.prior_dir`) atomically; the
files inside are described in :mod:`scpert.priors.outputs` (drug priors),
:mod:`scpert.priors.protein` (translator, protein) and :mod:`scpert.priors.vmcs`.
"""

from __future__ import annotations

import json
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


# ------------------------------------------------------------------- cell-state priors (VMCS)
def _read_citeseq(path):
    """CITE-seq RNA AnnData, its ADT counts, protein names and obs (scpert.priors.protein)."""
    from scpert.priors import protein

    cite, adt, proteins = protein.citeseq_tables(io.read_h5ad(path), path)
    return cite, adt, proteins, cite.obs


def _untreated(obs: pd.DataFrame, control: str) -> np.ndarray:
    """Untreated CITE-seq cells: drug == control, or every cell without a ``drug`` column."""
    if schema.DRUG not in obs:
        return np.ones(len(obs), dtype=bool)
    return (obs[schema.DRUG].astype(str) == control).to_numpy()


def _var_names(h5ad_path) -> list[str]:
    return [str(g) for g in io.read_h5ad(h5ad_path, backed="r").var_names]


def train_translator(
    citeseq_path,
    h5ad_path,
    out_dir,
    settings: dict,
    control: str = schema.DEFAULT_CONTROL,
    *,
    checkpoint=None,
    device: str = "auto",
    threads: int = 1,
) -> None:
    """Rule train_translator: the dataset-level ``translator`` prior (scpert.priors.protein).

    Trains the stand-in translator on the CITE-seq cells (untreated ones unless
    ``params.train_on: all``) in the genes shared with ``processed.h5ad``, holding out a seeded
    fraction to score it against the mean-protein baseline; with ``checkpoint`` (config
    ``priors.translator.checkpoint``) the given translator folder is checked, scored on every
    CITE-seq cell and copied instead.
    """
    import shutil

    import torch

    from scpert.errors import InputError
    from scpert.priors import protein

    params = protein.resolve_params(settings.get("preset", "tiny"), settings.get("params"))
    device = runtime.torch_setup(device, threads, seed=params["seed"])
    cite, adt, proteins, obs = _read_citeseq(citeseq_path)
    known = set(_var_names(h5ad_path))
    shared = [g for g in map(str, cite.var_names) if g in known]
    if not shared:
        raise InputError(f"{citeseq_path}: no gene in common with {h5ad_path}")
    cells = _untreated(obs, control) if params["train_on"] == "control" else np.ones(len(obs), bool)
    rna_all = protein.rna_levels(cite.X[cells])  # normalised over every CITE-seq gene
    pos = {g: i for i, g in enumerate(map(str, cite.var_names))}
    y = protein.protein_levels(adt[cells])
    names = list(obs.index[cells])
    with runtime.atomic_dir(out_dir) as tmp:
        if checkpoint:
            translator = protein.load_translator(checkpoint, device)
            missing = [g for g in translator.genes if g not in known]
            if missing:
                raise InputError(
                    f"{checkpoint}: translator genes missing from {h5ad_path}, e.g. {missing[:3]}"
                )
            have = [g for g in translator.genes if g in pos]
            if len(have) < len(translator.genes):
                raise InputError(
                    f"{citeseq_path}: lacks translator genes, e.g. "
                    f"{[g for g in translator.genes if g not in pos][:3]}"
                )
            x = rna_all[:, [pos[g] for g in translator.genes]]
            panel = [proteins.index(p) for p in translator.proteins if p in proteins]
            p_hat, _ = translator.translate(x)
            keep = [i for i, p in enumerate(translator.proteins) if p in proteins]
            metrics = protein.heldout_metrics(p_hat[:, keep], y[:, panel], y[:, panel].mean(0))
            for item in Path(checkpoint).iterdir():
                if item.is_file():
                    shutil.copy2(item, tmp / item.name)
            heldout = np.ones(len(names), bool)
            log.info("translator from %s (%s): %s", checkpoint, type(translator).__name__, metrics)
        else:
            genes = protein.input_genes(
                rna_all[:, [pos[g] for g in shared]], shared, proteins, params["n_input_genes"]
            )
            x = rna_all[:, [pos[g] for g in genes]]
            heldout = protein.heldout_split(len(x), params["heldout_fraction"], params["seed"])
            log.info(
                "translator on %d CITE-seq cells (%d held out) x %d genes -> %d proteins, device %s",
                (~heldout).sum(),
                heldout.sum(),
                len(genes),
                len(proteins),
                device,
            )
            net, history = protein.train_net(x[~heldout], y[~heldout], params, device)
            translator = protein.ScpertTranslator(net, genes, proteins, device)
            p_hat, _ = translator.translate(x[heldout])
            train_mean = y[~heldout].mean(0)
            metrics = protein.heldout_metrics(p_hat, y[heldout], train_mean)
            base = protein.per_protein_pearson(np.broadcast_to(train_mean, p_hat.shape), y[heldout])
            runtime.write_tsv(history, tmp / protein.HISTORY_TSV)
            runtime.write_tsv(
                pd.DataFrame(
                    {
                        "protein": proteins,
                        "pearson": protein.per_protein_pearson(p_hat, y[heldout]),
                        "mse": ((p_hat - y[heldout]) ** 2).mean(0),
                        "mse_mean_baseline": ((train_mean - y[heldout]) ** 2).mean(0),
                        "pearson_mean_baseline": base,
                    }
                ),
                tmp / protein.HELDOUT_TSV,
                float_format="%.6g",
            )
            torch.save(net.state_dict(), tmp / protein.TRANSLATOR_STATE)
            protein.write_names(tmp / protein.GENES_TSV, genes)
            protein.write_names(tmp / protein.PROTEINS_TSV, proteins)
            meta = {
                "kind": "scpert",
                "embedding_dim": protein.EMBEDDING_DIM,
                "params": params,
                "n_genes": len(genes),
                "n_proteins": len(proteins),
                "citeseq": str(citeseq_path),
                **metrics,
            }
            (tmp / protein.TRANSLATOR_JSON).write_text(json.dumps(meta, indent=1) + "\n")
            log.info(
                "held-out MSE %.4f vs mean-protein baseline %.4f (R2 %.3f), median Pearson %.3f",
                metrics["heldout_mse"],
                metrics["heldout_mse_mean_baseline"],
                metrics["heldout_r2"],
                metrics["heldout_pearson_median"],
            )
        runtime.write_tsv(
            pd.DataFrame({"cell": np.asarray(names)[heldout]}), tmp / protein.HELDOUT_CELLS
        )


def _complex_lists(path) -> list[list[str]]:
    from scpert.priors import sources

    return [] if not path else [list(g) for g in sources.read_complexes(path)["genes"]]


def infer_protein(
    inputs: dict,
    out_dir,
    settings: dict,
    control: str = schema.DEFAULT_CONTROL,
    *,
    device: str = "auto",
    threads: int = 1,
) -> None:
    """Rule infer_protein: the split-level ``protein`` prior (scpert.priors.protein
    :class:`CellProteins`) for every untreated cell of the split's processed data.

    inputs: ``h5ad``, ``split``, ``genes`` (the split's), ``translator`` and ``latent`` prior
    folders, optionally ``complexes``; settings: config ``priors.protein`` (``params``: PQM,
    scpert.priors.pqm.DEFAULTS).
    """
    from scpert.errors import InputError
    from scpert.latent import load_model
    from scpert.priors import pqm, protein

    params = pqm.resolve_params(settings.get("params"))
    dev = runtime.torch_setup(device, threads)
    adata = io.read_processed(inputs["h5ad"], control)
    io.read_split(inputs["split"], adata.obs[schema.CONDITION], inputs["h5ad"])
    controls = adata[(adata.obs[schema.DRUG].astype(str) == control).to_numpy()]
    translator = protein.load_translator(inputs["translator"], dev)
    missing = [g for g in translator.genes if g not in controls.var_names]
    if missing:
        raise InputError(
            f"{inputs['h5ad']}: translator genes ({inputs['translator']}) missing, e.g. {missing[:3]}"
        )
    p_hat, g_p = translator.translate(controls[:, translator.genes].X)
    genes = io.read_genes(inputs["genes"], adata.var_names, inputs["h5ad"])
    latent = load_model(inputs["latent"], dev)
    if latent.genes != genes:
        raise InputError(f"{inputs['latent']}: genes differ from {inputs['genes']}")
    z_c = latent.embed(controls[:, genes].X)
    rna = pqm.rna_of_proteins(controls.X, list(map(str, controls.var_names)), translator.proteins)
    result = pqm.compute_pqm(
        rna,
        p_hat,
        g_p,
        z_c,
        translator.proteins,
        _complex_lists(inputs.get("complexes")),
        params,
        index=controls.obs_names,
    )
    log.info(
        "PQM on %d untreated cells: |A| = %d reference genes (%s > %.2f): %s",
        controls.n_obs,
        len(result.reference),
        params["reference"],
        params["threshold"],
        ", ".join(result.reference),
    )
    log.info(
        "PQM: %d complexes with >= %d subunits on the panel: %s",
        len(result.complexes),
        params["min_subunits"],
        "; ".join("+".join(c) for c in result.complexes) or "none",
    )
    log.info("PQM: q median %.3f (5%% %.3f, 95%% %.3f)", *np.quantile(result.q, [0.5, 0.05, 0.95]))
    cells = protein.CellProteins(
        list(map(str, controls.obs_names)), p_hat, g_p, result.q, list(translator.proteins)
    )
    summary = {
        "n_cells": controls.n_obs,
        "reference_genes": result.reference,
        "complexes": result.complexes,
        "stats": result.stats,
        "population_spearman": result.population_rho,
        "params": params,
    }
    with runtime.atomic_dir(out_dir) as tmp:
        protein.write_cell_proteins(cells, tmp / protein.CELL_PROTEINS)
        runtime.write_tsv(
            result.scores.rename_axis("cell").reset_index(),
            tmp / protein.PQM_TSV,
            float_format="%.6g",
        )
        (tmp / protein.PQM_JSON).write_text(json.dumps(summary, indent=1) + "\n")


def measure_protein(
    inputs: dict,
    out_dir,
    settings: dict,
    control: str = schema.DEFAULT_CONTROL,
    *,
    device: str = "auto",
    threads: int = 1,
) -> None:
    """Rule measure_protein: the split-level ``protein_measured`` prior (TrueProt of Fig. 3c,
    :mod:`scpert.priors.protein_sources`): the measured ADT levels of every untreated cell of the
    split's processed data as ``p_hat = g_p``, ``q = 1``. inputs: ``h5ad``, ``split``,
    ``citeseq`` (the CITE-seq h5ad holding those cells' ADT counts)."""
    from scpert.priors import protein, protein_sources

    adata = io.read_processed(inputs["h5ad"], control)
    io.read_split(inputs["split"], adata.obs[schema.CONDITION], inputs["h5ad"])
    controls = adata.obs_names[(adata.obs[schema.DRUG].astype(str) == control).to_numpy()]
    cite, adt, proteins, obs = _read_citeseq(inputs["citeseq"])
    cells = protein_sources.measured_cell_proteins(
        controls, obs.index, adt, proteins, inputs["citeseq"]
    )
    log.info(
        "measured proteins of %d untreated cells x %d ADT proteins from %s (q = 1)",
        len(cells.obs_names),
        len(cells.proteins),
        inputs["citeseq"],
    )
    summary = {
        "source": protein_sources.MEASURED,
        "citeseq": str(inputs["citeseq"]),
        "n_cells": len(cells.obs_names),
        "n_proteins": len(cells.proteins),
        "levels": "log1p(ADT / cell total * median total)",
        "q": 1.0,
    }
    with runtime.atomic_dir(out_dir) as tmp:
        protein.write_cell_proteins(cells, tmp / protein.CELL_PROTEINS)
        (tmp / protein.PQM_JSON).write_text(json.dumps(summary, indent=1) + "\n")


def finetune_translator(
    inputs: dict,
    out_dir,
    settings: dict,
    control: str = schema.DEFAULT_CONTROL,
    *,
    device: str = "auto",
    threads: int = 1,
) -> None:
    """Rule finetune_translator: the split-level ``translator_finetuned`` prior (TrueProt-FT of
    Fig. 3c, :mod:`scpert.priors.protein_sources`): the ``translator`` prior trained further on
    the CITE-seq cells of the split's training data. inputs: ``h5ad``, ``split``, ``citeseq``,
    ``translator``; settings: config ``priors.translator_finetune``."""
    import shutil

    import torch

    from scpert.data.preprocess import train_cells_mask
    from scpert.errors import InputError
    from scpert.priors import protein, protein_sources

    params = protein_sources.resolve_finetune(settings)
    dev = runtime.torch_setup(device, threads, seed=params["seed"])
    translator = protein.load_translator(inputs["translator"], dev)
    if not isinstance(translator, protein.ScpertTranslator):
        raise InputError(
            f"{inputs['translator']}: translator kind {protein.read_meta(inputs['translator'])['kind']!r}"
            " cannot be fine-tuned here (kind 'scpert' only)"
        )
    adata = io.read_processed(inputs["h5ad"], control)
    split = io.read_split(inputs["split"], adata.obs[schema.CONDITION], inputs["h5ad"])
    seen = adata.obs_names[train_cells_mask(adata.obs, split, control)]
    cite, adt, proteins, obs = _read_citeseq(inputs["citeseq"])
    position = {str(c): i for i, c in enumerate(obs.index)}
    rows = np.array([position[c] for c in map(str, seen) if c in position], dtype=np.int64)
    if len(rows) < 10:
        raise InputError(
            f"{inputs['citeseq']}: {len(rows)} of the split's {len(seen)} training cells have ADT "
            "counts (fine-tuning needs the CITE-seq cells of the training split, at least 10)"
        )
    missing = [p for p in translator.proteins if p not in proteins]
    var = {g: i for i, g in enumerate(map(str, cite.var_names))}
    absent = [g for g in translator.genes if g not in var]
    if missing or absent:
        raise InputError(
            f"{inputs['citeseq']}: lacks translator proteins {missing[:3]} / genes {absent[:3]}"
        )
    x = protein.rna_levels(cite.X[rows])[:, [var[g] for g in translator.genes]]
    y = protein.protein_levels(adt[rows])[:, [proteins.index(p) for p in translator.proteins]]
    heldout = protein.heldout_split(len(x), params["heldout_fraction"], params["seed"])
    train_mean = y[~heldout].mean(0)
    before = protein.heldout_metrics(translator.translate(x[heldout])[0], y[heldout], train_mean)
    meta = protein.read_meta(inputs["translator"])
    log.info(
        "fine-tuning the translator on %d CITE-seq training cells (%d held out), %d steps; "
        "held-out MSE before %.4f (mean-protein baseline %.4f)",
        (~heldout).sum(),
        heldout.sum(),
        params["steps"],
        before["heldout_mse"],
        before["heldout_mse_mean_baseline"],
    )
    train_params = {**meta["params"], **params}
    net, history = protein.train_net(
        x[~heldout], y[~heldout], train_params, dev, net=translator.net
    )
    tuned = protein.ScpertTranslator(net, translator.genes, translator.proteins, dev)
    after = protein.heldout_metrics(tuned.translate(x[heldout])[0], y[heldout], train_mean)
    log.info(
        "held-out MSE after %.4f (before %.4f), median Pearson %.3f (before %.3f)",
        after["heldout_mse"],
        before["heldout_mse"],
        after["heldout_pearson_median"],
        before["heldout_pearson_median"],
    )
    with runtime.atomic_dir(out_dir) as tmp:
        for name in (protein.GENES_TSV, protein.PROTEINS_TSV):
            shutil.copy2(Path(inputs["translator"]) / name, tmp / name)
        torch.save(net.state_dict(), tmp / protein.TRANSLATOR_STATE)
        runtime.write_tsv(history, tmp / protein.HISTORY_TSV)
        tuned_meta = {**meta, "finetuned_from": str(inputs["translator"]), **after}
        (tmp / protein.TRANSLATOR_JSON).write_text(json.dumps(tuned_meta, indent=1) + "\n")
        report = {
            "params": params,
            "n_train_cells": int((~heldout).sum()),
            "n_heldout_cells": int(heldout.sum()),
            "before": before,
            "after": after,
        }
        (tmp / protein_sources.FINETUNE_JSON).write_text(json.dumps(report, indent=1) + "\n")


def train_vmcs(
    inputs: dict,
    out_dir,
    settings: dict,
    control: str = schema.DEFAULT_CONTROL,
    *,
    device: str = "auto",
    threads: int = 1,
) -> None:
    """Rule train_vmcs: the split-level ``vmcs`` prior (scpert.priors.vmcs) from the untreated
    cells of the split's training data. inputs: ``h5ad``, ``split``, ``genes``, ``protein`` and
    ``latent`` prior folders; settings: config ``priors.vmcs`` (``preset``, ``params``)."""
    from scpert.data.preprocess import train_cells_mask
    from scpert.latent import load_model
    from scpert.priors import protein, vmcs

    params = vmcs.resolve_params(settings.get("preset", "tiny"), settings.get("params"))
    dev = runtime.torch_setup(device, threads, seed=params["seed"])
    adata = io.read_processed(inputs["h5ad"], control)
    split = io.read_split(inputs["split"], adata.obs[schema.CONDITION], inputs["h5ad"])
    untreated = (adata.obs[schema.DRUG].astype(str) == control).to_numpy()
    cells = adata[train_cells_mask(adata.obs, split, control) & untreated]
    genes = io.read_genes(inputs["genes"], adata.var_names, inputs["h5ad"])
    latent = load_model(inputs["latent"], dev)
    z_c = latent.embed(io.restrict_genes(cells, genes, inputs["h5ad"]).X)
    prior = protein.read_cell_proteins(inputs["protein"])
    rows = prior.rows(list(map(str, cells.obs_names)))
    log.info(
        "VMCS (preset %s) on %d untreated training cells: z_c %d, g_p %d, D %d, device %s",
        settings.get("preset", "tiny"),
        cells.n_obs,
        z_c.shape[1],
        prior.g_p.shape[1],
        params["D"],
        dev,
    )
    model, history = vmcs.train_vmcs(z_c, prior.g_p[rows], prior.q[rows], params, dev)
    final = {k: float(history[k].iloc[-1]) for k in ("loss", "mcc", "align") if k in history}
    meta = {
        "n_cells": int(cells.n_obs),
        "tau_s": float(model.tau_s),
        "beta": float(model.beta),
        "rho_mean": float(model.rho_ema.mean()),
        "final": final,
    }
    log.info("VMCS: %s, parameters %s", meta, model.parameter_counts())
    with runtime.atomic_dir(out_dir) as tmp:
        vmcs.save_vmcs(model, tmp, meta)
        runtime.write_tsv(history, tmp / vmcs.HISTORY_TSV, float_format="%.6g")
        runtime.write_tsv(
            cells.obs[[schema.CELL_LINE, schema.PLATE]]
            .astype(str)
            .rename_axis("cell")
            .reset_index(),
            tmp / vmcs.CELLS_TSV,
        )


def validate_pqm(
    citeseq_path,
    translator_dir,
    table_path,
    pdf_path,
    png_path,
    settings: dict,
    control: str = schema.DEFAULT_CONTROL,
    *,
    complexes_path=None,
    title: str = "",
    device: str = "auto",
    threads: int = 1,
) -> None:
    """Rule validate_pqm: App. A.2.3 on the translator's held-out untreated CITE-seq cells
    (scpert.priors.pqm_validation): a tidy table and a figure (PDF + PNG)."""
    import matplotlib.pyplot as plt

    from scpert.errors import InputError
    from scpert.plots.pqm import pqm_validation as draw
    from scpert.priors import pqm, protein
    from scpert.priors.pqm_validation import validate

    params = pqm.resolve_params(settings.get("params"))
    dev = runtime.torch_setup(device, threads)
    cite, adt, proteins, obs = _read_citeseq(citeseq_path)
    translator = protein.load_translator(translator_dir, dev)
    held_path = Path(translator_dir) / protein.HELDOUT_CELLS
    held = set(pd.read_csv(held_path, sep="\t")["cell"].astype(str))
    untreated = _untreated(obs, control)
    mask = np.array([c in held for c in map(str, obs.index)]) & untreated
    if mask.sum() < 3:
        raise InputError(f"{held_path}: fewer than 3 held-out untreated CITE-seq cells")
    absent = [p for p in translator.proteins if p not in proteins]
    if absent:
        raise InputError(f"{citeseq_path}: obsm['protein'] lacks translator proteins {absent[:3]}")
    rna_all = protein.rna_levels(cite.X[mask])
    var = list(map(str, cite.var_names))
    pos = {g: i for i, g in enumerate(var)}
    x = rna_all[:, [pos[g] for g in translator.genes]]
    p_hat, g_p = translator.translate(x)
    panel = [proteins.index(p) for p in translator.proteins]
    # levels on the translator's training scale: normalised over the untreated cells
    true = protein.protein_levels(adt[untreated])[mask[untreated]][:, panel]
    if schema.CELL_LINE not in obs:
        raise InputError(f"{citeseq_path}: obs needs '{schema.CELL_LINE}' (the cell type)")
    result = validate(
        pqm.rna_of_proteins(rna_all, var, translator.proteins),
        p_hat,
        g_p,
        true,
        x,
        obs[schema.CELL_LINE].astype(str).to_numpy()[mask],
        list(translator.proteins),
        _complex_lists(complexes_path),
        params,
    )
    for row in result.table.itertuples():
        log.info("%-36s %.4g  (paper %s)", row.quantity, row.value, row.paper)
    fig = draw(result.cells, result.table, title)
    runtime.write_tsv(result.table, table_path, float_format="%.6g")
    runtime.write_atomic(
        pdf_path, lambda p: fig.savefig(p, format="pdf", metadata={"CreationDate": None})
    )
    runtime.write_atomic(png_path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
