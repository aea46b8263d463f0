"""What bounds scPPDM's decoded predictions: the latent decoder's reconstruction of pseudobulks.

Usage::

    .venv/bin/python benchmarks/scppdm_bounds.py RUN_DIR [--dataset synthetic] [--split pair_ood]
        [--latent-steps 300]

From a finished workflow directory (its ``processed.h5ad``, split, genes and the split's latent
model from rule ``finetune_latent``), for the latent as the rule leaves it (trained on single
cells) and after scPPDM's fine-tuning on the training pseudobulks (``latent_steps`` of the tiny
preset, :func:`scpert.methods.scppdm.train.finetune_latent_on_pseudobulks`):

- ``recon_*``: mean squared reconstruction error ``D(E(x)) - x`` over all genes of the test
  conditions' per-plate pseudobulks, the control pseudobulks and the training pairs' ``x_post``;
- ``effect_err_*``: mean squared error of the decoded training effect against ``x_post - x_pre``,
  for the paper's decode ``D(E(x_post)) - x_pre`` and the residual variant's
  ``D(E(x_post)) - D(E(x_pre))``, next to the effect's own size ``mean (x_post - x_pre)^2``;
- ``oracle_*``: scPerturBench MSE (top-100, top-5000 DEGs) and PCC-delta (top-100) of cells
  realised as the test plate's controls shifted by the decode of the TRUE test pseudobulk (a
  perfect diffusion model), next to ``truth_shift`` (shifted by the true effect itself);
- a PCA of the latent's width fitted on the training pseudobulks: its reconstruction error of the
  test pseudobulks is what a linear code of that size leaves (mostly their own sampling noise).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from scpert import layout
from scpert.data import io, pairing, schema
from scpert.latent import load_model
from scpert.methods.scppdm import TINY
from scpert.methods.scppdm.train import finetune_latent_on_pseudobulks
from scpert.metrics import evaluate_predictions
from scpert.steps.methods import conditions_to_predict, training_data


def _score(pred, truth, test) -> dict[str, float]:
    table = evaluate_predictions(truth, pred, test, control="control", protocols=("scperturbench",))
    means = table.groupby(["metric", "deg_set"])["value"].mean()
    return {
        "mse_top100": means[("mse", "top100")],
        "mse_top5000": means[("mse", "top5000")],
        "pcc_delta_top100": means[("pcc_delta", "top100")],
    }


def bounds(run: Path, dataset: str, split: str, latent_steps: int) -> pd.DataFrame:
    res = run / "results" / dataset
    data = training_data(
        res / "processed.h5ad",
        res / "splits" / f"{split}.tsv",
        res / split / "genes.tsv",
        run / "resources" / "raw" / dataset / "drugs.tsv",
        "control",
    )
    adata = io.read_processed(res / "processed.h5ad", "control")
    genes = io.read_genes(res / split / "genes.tsv")
    table = io.read_split(res / "splits" / f"{split}.tsv")
    test = table.loc[table["split"] == "test", "condition"].tolist()
    is_ctrl = (adata.obs[schema.DRUG] == "control").to_numpy()
    truth = io.restrict_genes(
        adata[adata.obs[schema.CONDITION].isin(test).to_numpy() | is_ctrl], genes, ""
    ).copy()
    controls = io.restrict_genes(adata[is_ctrl], genes, "").copy()
    pairs = pairing.pseudobulk_pairs(data.adata, "control")
    test_pb = pairing.pseudobulks(truth.X, truth.obs, pairing.PAIR_KEYS)
    ctrl_pb = pairing.pseudobulks(controls.X, controls.obs, [schema.CELL_LINE, schema.PLATE])
    cells = pairing.ControlCells(controls, genes)
    predict = pairing.prediction_table(conditions_to_predict(table, 2000))
    draw = cells.draw(predict, 0)
    rows, plates = draw.units["row"].to_numpy(), draw.units[schema.PLATE].to_numpy()
    lines, conds = (
        predict[schema.CELL_LINE].to_numpy()[rows],
        predict[schema.CONDITION].to_numpy()[rows],
    )
    x_pre = np.stack([cells.index.mean(line, plate) for line, plate in zip(lines, plates)])
    x_line = np.stack([cells.index.mean(line) for line in lines])
    tX = pairing.dense(truth.X)
    post = {c: tX[(truth.obs[schema.CONDITION] == c).to_numpy()].mean(0) for c in set(conds)}
    x_post = np.stack([post[c] for c in conds])

    def realised(shift):
        return cells.prediction(predict, draw, cells.realise(draw, shift[draw.unit]), {})

    rule = load_model(run / layout.prior_dir("latent", dataset, split))
    tuned = copy.deepcopy(rule)
    finetune_latent_on_pseudobulks(
        tuned,
        np.concatenate([pairs.post, np.unique(pairs.pre, axis=0)]),
        {**TINY, "latent_steps": latent_steps},
        torch.device("cpu"),
        0,
    )
    # a linear reference: PCA with the latent's width fitted on the training pseudobulks
    fit_rows = np.concatenate([pairs.post, np.unique(pairs.pre, axis=0)])
    centre = fit_rows.mean(0)
    basis = np.linalg.svd(fit_rows - centre, full_matrices=False)[2][: rule.latent_dim]
    pca_test = (test_pb.means - centre) @ basis.T @ basis + centre
    pca_row = {
        "latent": f"PCA {rule.latent_dim} (train pseudobulks)",
        "recon_test_pb": float(((pca_test - test_pb.means) ** 2).mean()),
    }
    truth_shift = _score(realised(x_post - x_line), truth, test)
    rows_out = [{"latent": "truth_shift", **{f"oracle_{k}": v for k, v in truth_shift.items()}}]
    for name, model in (("rule (cells)", rule), (f"+ {latent_steps} pseudobulk steps", tuned)):

        def rec(x, m=model):
            return m.reconstruct(m.embed(x))

        d_true = pairs.post - pairs.pre
        row = {
            "latent": name,
            "recon_test_pb": float(((rec(test_pb.means) - test_pb.means) ** 2).mean()),
            "recon_ctrl_pb": float(((rec(ctrl_pb.means) - ctrl_pb.means) ** 2).mean()),
            "recon_train_post": float(((rec(pairs.post) - pairs.post) ** 2).mean()),
            "effect_size": float((d_true**2).mean()),
            "effect_err_decoded": float(((rec(pairs.post) - pairs.pre - d_true) ** 2).mean()),
            "effect_err_difference": float(
                ((rec(pairs.post) - rec(pairs.pre) - d_true) ** 2).mean()
            ),
        }
        for decode, shift in (
            ("decoded", rec(x_post) - x_pre),
            ("difference", rec(x_post) - rec(x_line)),
        ):
            for k, v in _score(realised(shift), truth, test).items():
                row[f"oracle_{decode}_{k}"] = v
        rows_out.append(row)
    rows_out.append(pca_row)
    return pd.DataFrame(rows_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the workflow's working directory")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--split", default="pair_ood")
    parser.add_argument("--latent-steps", type=int, default=int(TINY["latent_steps"]))
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = bounds(args.run, args.dataset, args.split, args.latent_steps)
    print(table.T.to_string(float_format=lambda x: f"{x:.4f}"))


if __name__ == "__main__":
    main()
