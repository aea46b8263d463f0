"""Rule steps of the evaluation family: evaluate (all protocols and methods of a split, one pass)
and aggregate."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scpert import runtime
from scpert.data import io, schema

log = logging.getLogger(__name__)


def training_perturbation_reference(
    adata: ad.AnnData, split: pd.DataFrame, genes: list[str], control: str, source: str | Path
) -> np.ndarray:
    """Systema's reference: the mean over training perturbed conditions of each condition's centroid
    (log-normalised X restricted to ``genes``; controls excluded), pooled over cell lines."""
    train_conditions = split.loc[split["split"] == "train", "condition"]
    obs = adata.obs
    is_train = (
        obs[schema.CONDITION].isin(train_conditions) & (obs[schema.DRUG] != control)
    ).to_numpy()
    if not is_train.any():
        raise schema.SchemaError(
            f"{source}: no training perturbed conditions to form the systema "
            "reference (column 'split' has no 'train' condition with cells)"
        )
    train = io.restrict_genes(adata[is_train], genes, source)
    codes, _ = pd.factorize(train.obs[schema.CONDITION].astype(str))
    n_conditions = codes.max() + 1
    membership = sp.csr_matrix(
        (np.ones(codes.size), (codes, np.arange(codes.size))), shape=(n_conditions, codes.size)
    )
    sums = membership @ train.X
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
    centroids = sums / np.bincount(codes)[:, None]
    return centroids.mean(axis=0)


def evaluate(
    inputs: dict,
    predictions: dict[str, str | Path],
    outputs: dict[str, str | Path],
    evaluation: dict,
    control: str,
    meta: dict,
    ceiling_output: str | Path | None = None,
) -> None:
    """Rule evaluate: score each method's predictions of one split (``predictions``: method ->
    pred.h5ad; the ``oracle`` reference row is one of them) and write its metrics table
    (``outputs``: method -> metrics.tsv); with ``ceiling_output``, also the data ceiling's raw
    half-depth values (:func:`scpert.metrics.reference.ceiling_metrics`, seed
    ``evaluation["ceiling_seed"]``).

    The ground truth (the split's test conditions and the controls, restricted to the split's
    genes) and the Systema reference are read and prepared once
    (:class:`scpert.metrics.evaluate.GroundTruth`); truth-side statistics are computed on the
    first method and reused by the others. meta: ``dataset`` and ``split``, the first columns of
    every table (then ``method``).
    """
    import time

    from scpert.metrics.evaluate import GroundTruth

    adata = io.read_processed(inputs["h5ad"], control)
    genes = io.read_genes(inputs["genes"], adata.var_names, inputs["h5ad"])
    split = io.read_split(inputs["split"], adata.obs[schema.CONDITION], inputs["h5ad"])
    test = split.loc[split["split"] == "test", "condition"].tolist()
    keep = (
        adata.obs[schema.CONDITION].isin(test).to_numpy()
        | (adata.obs[schema.DRUG] == control).to_numpy()
    )
    truth = io.restrict_genes(adata[keep], genes, inputs["h5ad"]).copy()
    protocols = tuple(evaluation["protocols"])
    reference = (
        training_perturbation_reference(adata, split, genes, control, inputs["split"])
        if "systema" in protocols
        else None
    )
    del adata
    ground = GroundTruth(
        truth,
        test,
        control,
        seed=evaluation["seed"],
        max_cells=evaluation["max_cells"],
        train_reference=reference,
    )
    log.info(
        "ground truth: %d test conditions, %d genes; %d methods to score (%s)",
        len(ground.conditions),
        truth.n_vars,
        len(predictions),
        ", ".join(protocols),
    )
    for i, (method, pred_path) in enumerate(predictions.items(), 1):
        start = time.process_time()
        pred = io.read_prediction(pred_path, genes, test)
        try:
            table = ground.evaluate(pred, protocols)
        except schema.SchemaError as err:
            raise schema.SchemaError(f"{pred_path}: {err}") from None
        for j, (key, value) in enumerate({**meta, "method": method}.items()):
            table.insert(j, key, value)
        runtime.write_tsv(table, outputs[method], float_format="%.10g")
        log.info(
            "%d/%d %s: %d metric values, %.1f CPU s",
            i,
            len(predictions),
            method,
            len(table),
            time.process_time() - start,
        )
    if ceiling_output is not None:
        from scpert.metrics.reference import CEILING, ceiling_metrics

        start = time.process_time()
        table = ceiling_metrics(
            truth,
            test,
            control,
            protocols,
            seed=evaluation.get("ceiling_seed", 0),
            eval_seed=evaluation["seed"],
            max_cells=evaluation["max_cells"],
            train_reference=reference,
        )
        for j, (key, value) in enumerate({**meta, "method": CEILING}.items()):
            table.insert(j, key, value)
        runtime.write_tsv(table, ceiling_output, float_format="%.10g")
        log.info(
            "ceiling: %d half-depth values, %.1f CPU s", len(table), time.process_time() - start
        )


def oracle(inputs: dict, out_path, control: str, seed: int, max_cells: int) -> None:
    """Rule oracle: the synthetic world's truth sampled with its own noise for every test
    condition and plate of the split, as many cells as a method is asked for
    (:func:`scpert.metrics.reference.oracle_prediction`), written as a ``pred.h5ad``."""
    from scpert.metrics.reference import oracle_prediction
    from scpert.steps.methods import check_prediction, conditions_to_predict

    world = io.read_h5ad(inputs["world"])
    adata = io.read_processed(inputs["h5ad"], control)
    split = io.read_split(inputs["split"], adata.obs[schema.CONDITION], inputs["h5ad"])
    genes = io.read_genes(inputs["genes"], adata.var_names, inputs["h5ad"])
    requests = conditions_to_predict(adata.obs, split, max_cells)
    try:
        pred = oracle_prediction(world, requests, list(adata.var_names), genes, seed)
    except schema.SchemaError as err:
        raise schema.SchemaError(f"{inputs['world']}: {err}") from None
    check_prediction(pred, requests, "oracle prediction", by_plate=True)
    pred.strings_to_categoricals()
    runtime.write_h5ad(pred, out_path)
    log.info("oracle: %d cells for %d conditions", pred.n_obs, requests["condition"].nunique())


def aggregate(
    metric_paths,
    long_path,
    summary_path,
    table_paths,
    split_types: dict[str, str] | None = None,
    score_path=None,
    multiseed_paths=(),
    first_seed: int = 0,
) -> None:
    """Rule aggregate: the long table, the summary, each paper table named by a path's stem,
    scPerturBench's aggregate score (``score_path``) and, with several seeds, the tables across
    seeds (``multiseed_paths``: a ``.tsv`` and markdown/LaTeX renderings)."""
    from scpert import tables

    long = tables.read_long(metric_paths)
    summary = tables.summarise(long)
    runtime.write_tsv(long, long_path, float_format="%.10g")
    runtime.write_tsv(summary, summary_path, float_format="%.10g")
    if score_path is not None:
        runtime.write_tsv(tables.aggregate_score(summary), score_path, float_format="%.6g")
    if multiseed_paths:
        across = tables.multiseed(summary, first_seed)
        for path in map(Path, multiseed_paths):
            if path.suffix == ".tsv":
                runtime.write_tsv(across, path, float_format="%.10g")
            else:
                text = tables.render(tables.multiseed_table(across), path.suffix)
                runtime.write_atomic(path, lambda p, t=text: p.write_text(t))
    split_types = split_types or {}
    for path in map(Path, table_paths):
        if path.stem not in tables.PAPER_TABLES:
            raise runtime.InputError(
                f"{path}: unknown paper table '{path.stem}' "
                f"(known: {', '.join(tables.PAPER_TABLES)})"
            )
        spec = tables.PAPER_TABLES[path.stem]
        layout = spec.tables(long, split_types)
        if not any(t.rows for t in layout):
            layout = [
                tables.Table(spec.title, ["–"], [], 1, "No results for this layout in this run.")
            ]
        text = tables.render(layout, path.suffix)
        runtime.write_atomic(path, lambda p, t=text: p.write_text(t))
    log.info("aggregated %d values from %d files", len(long), len(metric_paths))


def comparisons(long_path, out_path, baselines: list[str], seed: int = 0) -> None:
    """Rule comparisons: each method against the best baseline per metric (scpert.stats)."""
    from scpert import stats, tables

    long = tables.read_long([long_path])
    table = stats.compare_to_best_baseline(long, baselines, tables.metric_directions(), seed=seed)
    runtime.write_tsv(table, out_path, float_format="%.6g")
    log.info(
        "comparisons: %d (method, metric) pairs; %d better, %d worse than the best baseline "
        "(BH < 0.05)",
        len(table),
        int((table["verdict"] == "better").sum()),
        int((table["verdict"] == "worse").sum()),
    )
