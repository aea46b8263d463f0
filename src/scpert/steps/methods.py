"""Rule steps of the method family: train and sample (generic over registered methods).

The seams between the workflow and a method (``docs/architecture.md`` "Method protocol"):
:func:`training_data` builds the :class:`~scpert.methods.base.PerturbData` a method fits on
(training and validation cells in the method's gene space, its prior folders),
:func:`conditions_to_predict` the conditions it predicts (one row per test condition and plate of
its true cells), and :func:`sample` keeps the split's evaluated genes of the prediction and checks
it against the request.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from scpert import runtime
from scpert.data import io, schema

log = logging.getLogger(__name__)


def training_data(
    processed_path,
    split_path,
    genes_path,
    drugs_path,
    control: str,
    *,
    ranking_path=None,
    train_genes: int = 0,
):
    """The split's :class:`~scpert.methods.base.PerturbData`: ``train`` conditions and all controls
    as ``adata``, ``val`` conditions as ``val``, in the split's genes, or in ``train_genes`` genes of
    its HVG ranking (``ranking_path``) when that is larger."""
    from scpert.data.preprocess import train_cells_mask, training_genes
    from scpert.methods import PerturbData

    adata = io.read_processed(processed_path, control)
    split = io.read_split(split_path, adata.obs[schema.CONDITION], processed_path)
    eval_genes = io.read_genes(genes_path, adata.var_names, processed_path)
    genes = eval_genes
    if train_genes > len(eval_genes):
        if ranking_path is None:
            raise runtime.InputError(
                f"train_genes {train_genes} needs the split's HVG ranking (hvg_ranking.tsv)"
            )
        genes = training_genes(pd.read_csv(ranking_path, sep="\t"), eval_genes, train_genes)
    train = io.restrict_genes(
        adata[train_cells_mask(adata.obs, split, control)], genes, processed_path
    )
    val_conditions = split.loc[split["split"] == "val", "condition"]
    is_val = adata.obs[schema.CONDITION].astype(str).isin(val_conditions).to_numpy()
    val = io.restrict_genes(adata[is_val], genes, processed_path).copy() if is_val.any() else None
    return PerturbData(
        adata=train.copy(),
        # rows of every perturbation of the data (held-out ones too), and only those
        drugs=io.read_drug_table(
            drugs_path, adata.obs[schema.DRUG].unique(), processed_path, control
        ),
        control=control,
        val=val,
        eval_genes=list(eval_genes),
    )


def checkpoint_dir(model_dir) -> Path:
    """The trainer's checkpoints of a train job: ``results/.../{method}/checkpoints`` beside the
    declared ``model/`` output, so that they survive a failed job (Snakemake removes the outputs
    of failed jobs and ``--rerun-incomplete`` reruns it); removed once the model is saved."""
    return Path(model_dir).parent / "checkpoints"


def train(
    inputs: dict,
    model_dir,
    entry: dict,
    control: str,
    seed: int,
    device: str,
    threads: int | None = None,
) -> None:
    """Fit ``entry`` (``MethodEntry.recordable()``: name, base, preset, complete params) and save
    it to ``model_dir``.

    inputs: ``h5ad``, ``split``, ``genes``, ``drugs``, optionally ``ranking`` (the split's HVG
    ranking) and ``prior_<name>`` folders; threads: torch CPU threads (the rule's ``threads``).
    A GPU method whose preset asks for ``gpus: N > 1`` trains in N data-parallel processes
    launched by torchrun inside the job when the job sees N GPUs
    (:mod:`scpert.generative.distributed`); checkpoints go to :func:`checkpoint_dir`.
    """
    from scpert.methods import get_spec

    spec = get_spec(entry["base"])
    kwargs = dict(
        inputs=inputs,
        model_dir=str(model_dir),
        entry=entry,
        control=control,
        seed=seed,
        threads=threads,
    )
    processes = 1
    if spec.uses_gpu and int(entry["params"].get("gpus", 1)) > 1:
        from scpert.generative import distributed

        processes = distributed.processes_for(entry["params"]["gpus"], runtime.pick_device(device))
    if processes > 1:
        distributed.launch(
            processes,
            "scpert.steps.methods:train_process",
            {**kwargs, "device": "cuda"},
            checkpoint_dir(model_dir) / "launch.json",
        )
    else:
        train_process(**kwargs, device=device)
    shutil.rmtree(checkpoint_dir(model_dir), ignore_errors=True)


def train_process(
    inputs: dict,
    model_dir,
    entry: dict,
    control: str,
    seed: int,
    device: str,
    threads: int | None = None,
) -> None:
    """One training process: the only one, or one rank of a torchrun launch (``device``
    ``cuda:<local rank>``); rank 0 saves the model."""
    from scpert.methods import get_method, get_spec

    spec = get_spec(entry["base"])
    method_cls = get_method(entry["base"])
    data = training_data(
        inputs["h5ad"],
        inputs["split"],
        inputs["genes"],
        inputs["drugs"],
        control,
        ranking_path=inputs.get("ranking"),
        train_genes=spec.train_genes(entry["params"]),
    )
    data.priors = {
        k.removeprefix("prior_"): Path(v) for k, v in inputs.items() if k.startswith("prior_")
    }
    dev = setup_torch(spec.uses_gpu, device, threads, seed)
    if dev == "cuda" and device.startswith("cuda:"):
        dev = device  # a data-parallel rank keeps its own GPU
    rank, world = (0, 1)
    if "torch" in sys.modules:
        from scpert.generative.trainer import distributed_context

        rank, world = distributed_context()
    method = method_cls(entry["params"], seed=seed)
    method.genes = list(data.adata.var_names)
    method.checkpoint_dir = checkpoint_dir(model_dir)
    log.info(
        "training %s (%s, preset %s) on %d cells x %d genes (%d evaluated), %s validation "
        "cells, device %s%s",
        entry["name"],
        entry["base"],
        entry["preset"],
        data.adata.n_obs,
        data.adata.n_vars,
        len(data.eval_genes),
        data.val.n_obs if data.val is not None else "no",
        dev,
        f" (rank {rank} of {world})" if world > 1 else "",
    )
    method.fit(data, device=dev)
    if rank == 0:
        with runtime.atomic_dir(model_dir) as tmp:
            method.save(tmp)


def setup_torch(uses_gpu: bool, device: str, threads: int | None, seed: int) -> str:
    """The device of a train/sample job, after :func:`scpert.runtime.torch_setup` (threads, seed)
    when the method's module has loaded torch; a method without torch (most baselines) never pays
    for importing it. Methods never set torch threads themselves."""
    if "torch" not in sys.modules:
        return "cpu"
    return runtime.torch_setup(device if uses_gpu else "cpu", threads, seed)


def conditions_to_predict(obs: pd.DataFrame, split: pd.DataFrame, max_cells: int) -> pd.DataFrame:
    """One row per (test condition, plate of its true cells): ``condition, cell_line, drug, dose,
    plate, n_cells``, with that plate's number of true cells.

    A condition with more than ``max_cells`` true cells gets ``max_cells`` predicted cells,
    shared among its plates in proportion to their cells (largest remainders, ties by plate).
    Rows are ordered by condition, then plate.
    """
    test = split.loc[split["split"] == "test"]
    cells = obs[obs[schema.CONDITION].astype(str).isin(test["condition"])]
    described = ["cell_line", "drug", "dose"]
    if not set(described) <= set(test.columns):  # a split table needs only condition and split
        first = cells.drop_duplicates(schema.CONDITION)
        test = pd.DataFrame(
            {
                "condition": first[schema.CONDITION].astype(str).to_numpy(),
                "cell_line": first[schema.CELL_LINE].astype(str).to_numpy(),
                "drug": first[schema.DRUG].astype(str).to_numpy(),
                "dose": first[schema.DOSE].to_numpy(),
            }
        )
    test = test[["condition", *described]]
    counts = (
        pd.DataFrame(
            {
                "condition": cells[schema.CONDITION].astype(str).to_numpy(),
                "plate": cells[schema.PLATE].astype(str).to_numpy(),
            }
        )
        .value_counts()
        .rename("n_cells")
        .reset_index()
        .sort_values(["condition", "plate"], kind="stable")
    )
    missing = sorted(set(test["condition"]) - set(counts["condition"]))
    if missing:
        raise schema.SchemaError(
            f"test conditions without cells in processed.h5ad (obs['{schema.CONDITION}']): "
            f"{missing[:3]}"
        )
    counts["n_cells"] = counts.groupby("condition")["n_cells"].transform(
        lambda n: _capped(n.to_numpy(), max_cells)
    )
    counts = counts[counts["n_cells"] > 0]  # a plate left without cells by the cap
    table = counts.merge(test, on="condition", how="left", validate="many_to_one")
    columns = ["condition", "cell_line", "drug", "dose", "plate", "n_cells"]
    return table[columns].reset_index(drop=True)


def _capped(counts: np.ndarray, total: int) -> np.ndarray:
    """``counts`` scaled to sum to ``total`` when they exceed it (largest remainders)."""
    if counts.sum() <= total:
        return counts
    share = counts * total / counts.sum()
    out = np.floor(share).astype(int)
    order = np.argsort(-(share - out), kind="stable")
    out[order[: total - out.sum()]] += 1
    return out


def sample(
    inputs: dict,
    out_path,
    control: str,
    seed: int,
    device: str,
    max_cells: int,
    method_name: str,
    threads: int | None = None,
) -> None:
    """Rule sample: predict every test condition of the split and write ``pred.h5ad`` in the
    split's evaluated genes (``inputs["genes"]``).

    The method gets one row per (test condition, plate) when its spec sets ``predicts_plates``,
    else one row per condition (:func:`scpert.methods.base.per_condition`); either way every
    condition must come back with its requested cells (and every plate with its own, for methods
    that predict plates).
    """
    from scpert.methods.base import per_condition, saved_method_class

    method_cls = saved_method_class(inputs["model"])
    spec = method_cls.spec()
    dev = setup_torch(spec.uses_gpu, device, threads, seed)
    method = method_cls.load(inputs["model"], device=dev)
    adata = io.read_processed(inputs["h5ad"], control)
    split = io.read_split(inputs["split"], adata.obs[schema.CONDITION], inputs["h5ad"])
    eval_genes = io.read_genes(inputs["genes"], adata.var_names, inputs["h5ad"])
    if not set(eval_genes) <= set(map(str, method.genes)):
        raise schema.SchemaError(
            f"{inputs['model']}: the model's genes do not cover {inputs['genes']} "
            f"({len(set(eval_genes) - set(map(str, method.genes)))} of {len(eval_genes)} "
            "missing); retrain it"
        )
    controls = io.restrict_genes(
        adata[(adata.obs[schema.DRUG] == control).to_numpy()], method.genes, inputs["h5ad"]
    ).copy()
    by_plate = conditions_to_predict(adata.obs, split, max_cells)
    conditions = by_plate if spec.predicts_plates else per_condition(by_plate)
    pred = method.predict(controls, conditions, seed=seed)
    pred.uns["method"] = method_name
    pred.uns["base_method"] = method.name
    pred.uns["seed"] = int(seed)
    pred.uns.setdefault("sampler", "none")
    predicted_genes = set(map(str, pred.var_names))
    missing = [g for g in eval_genes if g not in predicted_genes]
    if missing:
        raise schema.SchemaError(
            f"{method_name} prediction: the split's genes are missing from var_names, "
            f"e.g. {missing[:3]}"
        )
    if list(pred.var_names) != eval_genes:
        pred = pred[:, eval_genes].copy()
    check_prediction(pred, conditions, f"{method_name} prediction", by_plate=spec.predicts_plates)
    pred.strings_to_categoricals()
    runtime.write_h5ad(pred, out_path)
    log.info(
        "predicted %d cells x %d genes for %d conditions (%d condition-plate rows)",
        pred.n_obs,
        pred.n_vars,
        conditions["condition"].nunique(),
        len(by_plate),
    )


def check_prediction(pred, conditions: pd.DataFrame, source: str, by_plate: bool) -> None:
    """``pred`` follows the prediction contract and has the requested cells: per condition, and
    per (condition, plate) when ``by_plate``. Raises :class:`~scpert.data.schema.SchemaError`."""
    schema.validate(
        pred,
        source,
        kind="prediction",
        required_obs=(schema.CELL_LINE, schema.DRUG, schema.DOSE, schema.PLATE),
    )
    keys = ["condition", "plate"] if by_plate else ["condition"]
    obs = pd.DataFrame(
        {
            "condition": pred.obs[schema.CONDITION].astype(str).to_numpy(),
            "plate": pred.obs[schema.PLATE].astype(str).to_numpy(),
        }
    )
    got = obs.groupby(keys).size()
    wanted = conditions.assign(plate=conditions.get("plate", "")).groupby(keys)["n_cells"].sum()
    diff = got.reindex(wanted.index, fill_value=0).ne(wanted)
    extra = got.index.difference(wanted.index)
    if diff.any() or len(extra):
        key = wanted.index[diff.to_numpy()][0] if diff.any() else extra[0]
        got_n = int(got.get(key, 0))
        want_n = int(wanted.get(key, 0))
        raise schema.SchemaError(
            f"{source}: {want_n} cells requested for {' / '.join(keys)} {key}, got {got_n}"
        )
