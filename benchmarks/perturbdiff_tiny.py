"""PerturbDiff's tiny preset and its variants on one split of a workflow run directory: CPU
seconds of training and sampling, and where the predicted population departs from the truth.

Usage::

    PYTHONPATH=src python benchmarks/perturbdiff_tiny.py RUN_DIR SPLIT NAME \
        ['{"key": value}' | -] ['[{"sampling key": value}, ...]']
    PYTHONPATH=src python benchmarks/perturbdiff_tiny.py --pred RUN_DIR SPLIT METHOD[,METHOD...]

``RUN_DIR`` is a ``snakemake -d`` work directory of the default config in which the split's
``genes.tsv``, ``hvg_ranking.tsv`` and the priors the variant needs exist (e.g. after
``snakemake -d RUN_DIR results/synthetic/cell_ood/perturbdiff/model``). The variant (the tiny
preset overlaid with the JSON overrides) is trained through ``scpert.steps.train`` into
``RUN_DIR/perturbdiff_tiny/SPLIT/NAME/model`` (``-``: reuse that model), then sampled once per
entry of the optional list of sampling overrides (``guidance_scale``, ``sampler_steps``, ``eta``,
``p_self_cond``, ...; default ``[{}]``) with the workflow's conditions and seed 0. ``--pred``
scores the workflow's own predictions ``RUN_DIR/results/synthetic/SPLIT/METHOD/pred.h5ad``.

Printed: CPU seconds (``time.process_time``) of training and of each sampling, and per test
condition, averaged, on the truth's top-100 DEGs (t-test against the line's true controls, as
scPerturBench ranks them, :func:`scpert.metrics.de.rank_degs`):
``ed`` the Euclidean energy distance of the cells (:func:`scpert.metrics.distances.
energy_distance`, the scPerturBench value without the 2,000-cell subsample, which these splits
never reach); ``ed_spread`` the same with the predicted cells moved onto the true mean (what is
left is the population's shape); ``ed_mean`` the true cells moved by the mean error (the mean
error alone); ``mse`` of the means; ``pcc`` of the deltas against the control mean; ``norm`` =
``|delta_pred| / |delta_true|`` (> 1: the predicted effect is too large); ``sd_pred / sd_true``
the mean per-gene standard deviation; ``sum_sd_*`` the standard deviation of the per-cell sum
over all evaluated genes; ``zeros_*`` the share of zeros (<= 1e-3) on the DEGs
(``docs/decisions.md`` "PerturbDiff on cell_ood").
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scpert import runtime, steps
from scpert.data import io, pairing, schema
from scpert.methods import get_spec
from scpert.methods.base import saved_method_class
from scpert.metrics.de import rank_degs
from scpert.metrics.distances import energy_distance
from scpert.steps.methods import conditions_to_predict


def inputs_of(run: str, split: str) -> dict:
    results = Path(run) / "results" / "synthetic"
    return {
        "h5ad": str(results / "processed.h5ad"),
        "split": str(results / "splits" / f"{split}.tsv"),
        "genes": str(results / split / "genes.tsv"),
        "ranking": str(results / split / "hvg_ranking.tsv"),
        "drugs": str(Path(run) / "resources/raw/synthetic/drugs.tsv"),
    }


class Truth:
    """The split's true cells on its evaluated genes, and per condition the top-100 DEGs."""

    def __init__(self, inputs: dict):
        adata = io.read_processed(inputs["h5ad"], "control")
        self.genes = io.read_genes(inputs["genes"], adata.var_names, inputs["h5ad"])
        truth = adata[:, self.genes]
        self.X, self.obs = pairing.dense(truth.X).astype(np.float64), truth.obs
        self.adata = adata
        self._cache: dict = {}

    def condition(self, condition: str):
        if condition not in self._cache:
            obs = self.obs
            cells = (obs[schema.CONDITION].astype(str) == condition).to_numpy()
            line = obs[schema.CELL_LINE].astype(str)[cells].iloc[0]
            ctrl = (obs[schema.DRUG].astype(str) == "control") & (obs[schema.CELL_LINE] == line)
            C = self.X[ctrl.to_numpy()]
            top = rank_degs(self.X[cells], C, 100)
            self._cache[condition] = (
                top,
                self.X[cells][:, top],
                C[:, top].mean(0),
                self.X[cells].sum(1),
            )
        return self._cache[condition]

    def score(self, pred: ad.AnnData) -> dict:
        pred = pred[:, self.genes]
        P = pairing.dense(pred.X).astype(np.float64)
        rows = []
        labels = pred.obs[schema.CONDITION].astype(str)
        for condition in labels.unique():
            top, t, ctrl_mean, t_sums = self.condition(condition)
            cells = P[(labels == condition).to_numpy()]
            p = cells[:, top]
            error = p.mean(0) - t.mean(0)
            d_pred, d_true = p.mean(0) - ctrl_mean, t.mean(0) - ctrl_mean
            rows.append(
                {
                    "ed": energy_distance(p, t),
                    "ed_spread": energy_distance(p - error, t),
                    "ed_mean": energy_distance(t + error, t),
                    "mse": float(np.mean(error**2)),
                    "pcc": float(np.corrcoef(d_pred, d_true)[0, 1]),
                    "norm": float(np.linalg.norm(d_pred) / np.linalg.norm(d_true)),
                    "sd_pred": float(p.std(0).mean()),
                    "sd_true": float(t.std(0).mean()),
                    "sum_sd_pred": float(cells.sum(1).std()),
                    "sum_sd_true": float(t_sums.std()),
                    "zeros_pred": float((p <= 1e-3).mean()),
                    "zeros_true": float((t <= 1e-3).mean()),
                }
            )
        return pd.DataFrame(rows).mean().round(3).to_dict()


def main(run: str, split: str, name: str, overrides: str = "{}", sampling: str = "[{}]") -> None:
    inputs = inputs_of(run, split)
    model = Path(run) / "perturbdiff_tiny" / split / name / "model"
    if overrides != "-":
        spec = get_spec("perturbdiff")
        params = spec.resolve("tiny", json.loads(overrides))
        for prior in spec.required_priors(params):
            inputs[f"prior_{prior}"] = str(Path(inputs["genes"]).parent / "priors" / prior)
        entry = {"name": name, "base": "perturbdiff", "preset": "tiny", "params": params}
        start = time.process_time()
        steps.train(inputs, model, entry, "control", 0, "cpu", threads=1)
        print(f"{name}: CPU s train {time.process_time() - start:.1f}")
    truth = Truth(inputs)
    runtime.torch_setup("cpu", 1, 0)  # one thread, as the workflow's sample jobs
    method = saved_method_class(str(model)).load(str(model), device="cpu")
    adata = truth.adata
    split_table = io.read_split(inputs["split"], adata.obs[schema.CONDITION], inputs["h5ad"])
    controls = io.restrict_genes(
        adata[(adata.obs[schema.DRUG] == "control").to_numpy()], method.genes, inputs["h5ad"]
    ).copy()
    conditions = conditions_to_predict(adata.obs, split_table, 2000)
    trained = dict(method.params)
    for change in json.loads(sampling):
        method.params = {**trained, **change}
        start = time.process_time()
        pred = method.predict(controls, conditions, seed=0)
        cpu = time.process_time() - start
        print(f"{name} {json.dumps(change)}: CPU s sample {cpu:.1f}; {truth.score(pred)}")


def score_predictions(run: str, split: str, methods: str) -> None:
    truth = Truth(inputs_of(run, split))
    for method in methods.split(","):
        pred = ad.read_h5ad(Path(run) / "results" / "synthetic" / split / method / "pred.h5ad")
        print(f"{method}: {truth.score(pred)}")


if __name__ == "__main__":
    if sys.argv[1] == "--pred":
        score_predictions(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
