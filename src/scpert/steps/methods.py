"""Rule steps of the method family: train and sample (generic over registered methods)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from scpert import runtime
from scpert.data import io, schema

log = logging.getLogger(__name__)


def training_data(processed_path, split_path, genes_path, drugs_path, control: str):
    from scpert.data.preprocess import train_cells_mask
    from scpert.methods import PerturbData

    adata = io.read_processed(processed_path, control)
    split = io.read_split(split_path, adata.obs[schema.CONDITION], processed_path)
    genes = io.read_genes(genes_path, adata.var_names, processed_path)
    train = io.restrict_genes(
        adata[train_cells_mask(adata.obs, split, control)], genes, processed_path
    )
    # rows of every perturbation of the data (held-out ones too), and only those
    drugs = io.read_drug_table(drugs_path, adata.obs[schema.DRUG].unique(), processed_path, control)
    return PerturbData(adata=train.copy(), drugs=drugs, control=control)


def train(inputs: dict, model_dir, entry: dict, control: str, seed: int, device: str) -> None:
    """Fit ``entry`` (``MethodEntry.recordable()``: name, base, preset, complete params) and save
    it to ``model_dir``."""
    from scpert.methods import get_method

    data = training_data(inputs["h5ad"], inputs["split"], inputs["genes"], inputs["drugs"], control)
    data.priors = {
        k.removeprefix("prior_"): Path(v) for k, v in inputs.items() if k.startswith("prior_")
    }
    method = get_method(entry["base"])(entry["params"], seed=seed)
    method.genes = list(data.adata.var_names)
    dev = runtime.pick_device(device) if method.spec().uses_gpu else "cpu"
    log.info(
        "training %s (%s, preset %s) on %d cells x %d genes, device %s",
        entry["name"],
        entry["base"],
        entry["preset"],
        data.adata.n_obs,
        data.adata.n_vars,
        dev,
    )
    method.fit(data, device=dev)
    with runtime.atomic_dir(model_dir) as tmp:
        method.save(tmp)


def conditions_to_predict(split: pd.DataFrame, max_cells: int) -> pd.DataFrame:
    test = split[split["split"] == "test"].copy()
    test["n_cells"] = np.minimum(test["n_cells"].astype(int), max_cells)
    return test[["condition", "cell_line", "drug", "dose", "n_cells"]].reset_index(drop=True)


def sample(
    inputs: dict, out_path, control: str, seed: int, device: str, max_cells: int, method_name: str
) -> None:
    from scpert.methods.base import saved_method_class

    method_cls = saved_method_class(inputs["model"])
    dev = runtime.pick_device(device) if method_cls.spec().uses_gpu else "cpu"
    method = method_cls.load(inputs["model"], device=dev)
    adata = io.read_processed(inputs["h5ad"], control)
    split = io.read_split(inputs["split"], adata.obs[schema.CONDITION], inputs["h5ad"])
    genes = io.read_genes(inputs["genes"], adata.var_names, inputs["h5ad"])
    if list(method.genes) != genes:
        raise schema.SchemaError(
            f"{inputs['model']}: the model's genes differ from {inputs['genes']} "
            f"({len(method.genes)} vs {len(genes)} genes); retrain it"
        )
    controls = io.restrict_genes(
        adata[(adata.obs[schema.DRUG] == control).to_numpy()], method.genes, inputs["h5ad"]
    ).copy()
    conditions = conditions_to_predict(split, max_cells)
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
