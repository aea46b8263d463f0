"""The workflow's steps as plain functions of paths (the Snakemake scripts only call these).

Keeping the logic here makes every rule testable without Snakemake and keeps rules thin.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scpert import runtime
from scpert.data import schema

log = logging.getLogger(__name__)

META_COLUMNS = ("dataset", "split", "method")


def read_split(path: str | Path) -> pd.DataFrame:
    table = pd.read_csv(
        path, sep="\t", dtype={"dose": str, "condition": str, "drug": str, "cell_line": str}
    )
    for col in ("condition", "split"):
        if col not in table.columns:
            raise schema.SchemaError(f"{path}: column '{col}' is missing")
    return table


def read_genes(path: str | Path) -> list[str]:
    genes = pd.read_csv(path, sep="\t")
    if "gene" not in genes.columns:
        raise schema.SchemaError(f"{path}: column 'gene' is missing")
    return genes["gene"].astype(str).tolist()


def read_processed(path: str | Path, control: str) -> ad.AnnData:
    adata = ad.read_h5ad(path)
    schema.validate(adata, path, control=control, kind="processed")
    return adata


def restrict_genes(adata: ad.AnnData, genes: list[str], source: str | Path) -> ad.AnnData:
    missing = [g for g in genes if g not in adata.var_names]
    if missing:
        raise schema.SchemaError(
            f"{source}: genes of the split are missing from var_names, e.g. {missing[:3]}"
        )
    return adata[:, genes]


# -- preprocess / split / hvg -------------------------------------------------------------------


def run_preprocess(counts_path, out_path, params: dict, control: str) -> None:
    from scpert.data.preprocess import preprocess_counts

    raw = ad.read_h5ad(counts_path)
    adata = preprocess_counts(raw, control=control, source=str(counts_path), **params)
    runtime.write_h5ad(adata, out_path)
    log.info("wrote %s: %d cells x %d genes", out_path, adata.n_obs, adata.n_vars)


def run_make_split(processed_path, drugs_path, out_path, params: dict, control: str) -> None:
    from scpert.data.splits import condition_table, make_split

    obs = ad.read_h5ad(processed_path, backed="r").obs
    drugs = schema.read_drug_table(drugs_path)
    conditions = condition_table(obs, control)
    kwargs = {k: v for k, v in params.items() if k != "type"}
    table = make_split(conditions, params["type"], drug_moa=drugs["moa"].to_dict(), **kwargs)
    runtime.write_tsv(table, out_path)
    log.info("split %s: %s", params["type"], table["split"].value_counts().to_dict())


def run_select_hvg(processed_path, split_path, out_path, params: dict, control: str) -> None:
    from scpert.data.preprocess import select_hvg

    adata = read_processed(processed_path, control)
    genes = select_hvg(adata, read_split(split_path), control=control, **params)
    runtime.write_tsv(genes, out_path)
    log.info("kept %d genes", len(genes))


# -- train / sample -----------------------------------------------------------------------------


def training_data(processed_path, split_path, genes_path, drugs_path, control: str):
    from scpert.data.preprocess import train_cells_mask
    from scpert.methods import PerturbData

    adata = read_processed(processed_path, control)
    split = read_split(split_path)
    genes = read_genes(genes_path)
    train = restrict_genes(
        adata[train_cells_mask(adata.obs, split, control)], genes, processed_path
    )
    return PerturbData(
        adata=train.copy(), drugs=schema.read_drug_table(drugs_path), control=control
    )


def run_train(inputs: dict, model_dir, entry, control: str, seed: int, device: str) -> None:
    """Fit ``entry`` (a :class:`scpert.workflow_config.MethodEntry`) and save it to ``model_dir``."""
    from scpert.methods import get_method

    data = training_data(inputs["h5ad"], inputs["split"], inputs["genes"], inputs["drugs"], control)
    data.priors = {
        k.removeprefix("prior_"): Path(v) for k, v in inputs.items() if k.startswith("prior_")
    }
    method = get_method(entry.base).from_preset(entry.preset, entry.params, seed=seed)
    method.genes = list(data.adata.var_names)
    dev = runtime.pick_device(device) if method.uses_gpu else "cpu"
    log.info(
        "training %s (%s, preset %s) on %d cells x %d genes, device %s",
        entry.name,
        entry.base,
        entry.preset,
        data.adata.n_obs,
        data.adata.n_vars,
        dev,
    )
    method.fit(data, device=dev)
    model_dir = Path(model_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.", dir=model_dir.parent))
    try:
        method.save(tmp)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        tmp.rename(model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_conditions(split: pd.DataFrame, max_cells: int) -> pd.DataFrame:
    test = split[split["split"] == "test"].copy()
    test["n_cells"] = np.minimum(test["n_cells"].astype(int), max_cells)
    return test[["condition", "cell_line", "drug", "dose", "n_cells"]].reset_index(drop=True)


def run_sample(
    inputs: dict, out_path, control: str, seed: int, device: str, max_cells: int, method_name: str
) -> None:
    from scpert.methods.base import saved_method_class

    method_cls = saved_method_class(inputs["model"])
    dev = runtime.pick_device(device) if method_cls.uses_gpu else "cpu"
    method = method_cls.load(inputs["model"], device=dev)
    adata = read_processed(inputs["h5ad"], control)
    controls = restrict_genes(
        adata[(adata.obs[schema.DRUG] == control).to_numpy()], method.genes, inputs["h5ad"]
    ).copy()
    conditions = test_conditions(read_split(inputs["split"]), max_cells)
    pred = method.predict(controls, conditions, seed=seed)
    pred.uns["method"] = method_name
    pred.uns["base_method"] = method.name
    pred.uns["seed"] = int(seed)
    pred.uns.setdefault("sampler", "none")
    if list(pred.var_names) != list(method.genes):
        raise schema.SchemaError(f"{method_name}: prediction genes differ from the model's genes")
    schema.validate(
        pred,
        f"{method_name} prediction",
        kind="prediction",
        required_obs=(schema.CELL_LINE, schema.DRUG, schema.DOSE),
    )
    missing = set(conditions["condition"]) - set(pred.obs[schema.CONDITION].astype(str))
    if missing:
        raise schema.SchemaError(
            f"{method_name}: no predicted cells for conditions {sorted(missing)[:3]}"
        )
    pred.strings_to_categoricals()
    runtime.write_h5ad(pred, out_path)
    log.info("predicted %d cells for %d conditions", pred.n_obs, len(conditions))


# -- evaluate / aggregate -----------------------------------------------------------------------


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
    train = restrict_genes(adata[is_train], genes, source)
    codes, _ = pd.factorize(train.obs[schema.CONDITION].astype(str))
    n_conditions = codes.max() + 1
    membership = sp.csr_matrix(
        (np.ones(codes.size), (codes, np.arange(codes.size))), shape=(n_conditions, codes.size)
    )
    sums = membership @ train.X
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
    centroids = sums / np.bincount(codes)[:, None]
    return centroids.mean(axis=0)


def run_evaluate(inputs: dict, out_path, evaluation: dict, control: str, meta: dict) -> None:
    from scpert.metrics import evaluate_predictions

    adata = read_processed(inputs["h5ad"], control)
    genes = read_genes(inputs["genes"])
    split = read_split(inputs["split"])
    test = split.loc[split["split"] == "test", "condition"].tolist()
    keep = (
        adata.obs[schema.CONDITION].isin(test).to_numpy()
        | (adata.obs[schema.DRUG] == control).to_numpy()
    )
    truth = restrict_genes(adata[keep], genes, inputs["h5ad"]).copy()
    protocols = tuple(evaluation["protocols"])
    reference = (
        training_perturbation_reference(adata, split, genes, control, inputs["split"])
        if "systema" in protocols
        else None
    )
    pred = ad.read_h5ad(inputs["pred"])
    schema.validate(
        pred,
        inputs["pred"],
        kind="prediction",
        required_obs=(schema.CELL_LINE, schema.DRUG, schema.DOSE),
    )
    table = evaluate_predictions(
        truth,
        pred,
        test,
        control=control,
        protocols=protocols,
        seed=evaluation["seed"],
        max_cells=evaluation["max_cells"],
        train_reference=reference,
    )
    for i, key in enumerate(META_COLUMNS):
        table.insert(i, key, meta[key])
    runtime.write_tsv(table, out_path, float_format="%.10g")
    log.info("%d metric values for %d conditions", len(table), len(test))
