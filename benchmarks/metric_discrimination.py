"""Why scPerturBench's KL and Common-DEGs fail to rank methods, measured on a finished run.

Usage::

    .venv/bin/python benchmarks/metric_discrimination.py RUN_DIR [--splits drug_ood cell_ood]

RUN_DIR: a ``snakemake -d`` work directory of a finished default run (``results/<dataset>/...``).
Per split and method, over the split's test conditions (scPerturBench top-100 DEGs of the truth,
the evaluate step's ground truth, all predicted and true cells): ``kl`` (the protocol's value),
the share of the mean per-gene symmetric KL that comes from genes with std < 1e-6 in the
prediction or the truth (``share_zero_std``), ``kl_floor`` (the variant), ``common_degs``, and the
share of the prediction's top-100 DEGs that are never detected in the predicted cells
(``top100_undetected``); the last line gives chance, 100 / number of genes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scpert.metrics.distances import sym_kl_gaussian
from scpert.metrics.evaluate import ConditionContext, GroundTruth, _dense_rows
from scpert.metrics.scperturbench import KL_STD_FLOOR


def per_gene_sym_kl(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    sx, sy = x.std(0) + 1e-8, y.std(0) + 1e-8
    d2 = (x.mean(0) - y.mean(0)) ** 2
    return (
        np.log(sy / sx) + (sx**2 + d2) / (2 * sy**2) - 0.5
        + np.log(sx / sy) + (sy**2 + d2) / (2 * sx**2) - 0.5
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--splits", nargs="+", default=["drug_ood", "cell_ood"])
    args = parser.parse_args()
    root = args.run_dir / "results" / args.dataset
    adata = ad.read_h5ad(root / "processed.h5ad")
    rows = []
    for split in args.splits:
        genes = pd.read_csv(root / split / "genes.tsv", sep="\t")["gene"].tolist()
        table = pd.read_csv(root / "splits" / f"{split}.tsv", sep="\t")
        test = table.loc[table["split"] == "test", "condition"].tolist()
        keep = adata.obs["condition"].isin(test).to_numpy() | (adata.obs["drug"] == "control")
        truth = adata[np.asarray(keep)][:, genes].copy()
        ground = GroundTruth(truth, test, "control")
        methods = sorted(p.parent.name for p in (root / split).glob("*/pred.h5ad"))
        for method in methods:
            pred = ad.read_h5ad(root / split / method / "pred.h5ad")
            groups = pred.obs.groupby("condition", observed=True).indices
            values = []
            for condition, tc in ground.conditions.items():
                ctx = ConditionContext(
                    condition,
                    tc.cell_line,
                    truth.var_names,
                    _dense_rows(truth.X, tc.rows),
                    _dense_rows(pred.X, groups[condition]),
                    ground.controls[tc.cell_line],
                    truth_shared=tc.shared,
                )
                top = ctx.truth_ranking[:100]
                x, y = ctx.pred[:, top].astype(float), ctx.truth[:, top].astype(float)
                kl = per_gene_sym_kl(x, y)
                zero = (x.std(0) < 1e-6) | (y.std(0) < 1e-6)
                pred_top = ctx.pred_ranking[:100]
                values.append(
                    (
                        np.log2(1 + kl.mean()),
                        kl[zero].sum() / kl.sum(),
                        sym_kl_gaussian(x, y, std_floor=KL_STD_FLOOR),
                        np.intersect1d(pred_top, top).size / 100,
                        (ctx.pred[:, pred_top] == 0).all(0).mean(),
                    )
                )
            v = np.mean(values, axis=0)
            rows.append((split, method, *v))
        print(f"{split}: chance Common-DEGs = 100 / {len(genes)} = {100 / len(genes):.3f}")
    columns = ["split", "method", "kl", "share_zero_std", "kl_floor", "common_degs"]
    out = pd.DataFrame(rows, columns=[*columns, "top100_undetected"])
    print(out.round(4).to_markdown(index=False))


if __name__ == "__main__":
    main()
