"""One rule step in this process, for timing a job's whole cost (imports included) from outside.

Usage (from the repository root, on a finished default run ``RUN``)::

    /usr/bin/time -f "%U+%S" .venv/bin/python benchmarks/step_cpu.py STEP RUN

``STEP`` is ``select_hvg`` or the name of a method of ``config/config.yaml`` (its ``train``
step); both run on ``RUN``'s drug_ood split. With ``PYTHONPATH=OTHER/src`` the step of another
checkout runs (docs/decisions.md "Jobs without scanpy and scikit-learn imports"). Prints which of
scanpy, scikit-learn and numba the step imported.
"""

from __future__ import annotations

import glob
import sys
import tempfile

SPLIT = "drug_ood"


def main(step: str, run: str) -> None:
    from scpert import steps

    root = f"{run}/results/synthetic"
    out = tempfile.mkdtemp()
    if step == "select_hvg":
        steps.select_hvg(
            f"{root}/processed.h5ad",
            f"{root}/splits/{SPLIT}.tsv",
            f"{out}/genes.tsv",
            {"n_top_genes": 800, "flavor": "seurat_v3"},
            "control",
            f"{out}/hvg_ranking.tsv",
        )
    else:
        import yaml

        from scpert.workflow_config import resolve_config

        with open("config/config.yaml") as fh:
            entry = resolve_config(yaml.safe_load(fh)).methods[step]
        inputs = {
            "h5ad": f"{root}/processed.h5ad",
            "split": f"{root}/splits/{SPLIT}.tsv",
            "genes": f"{root}/{SPLIT}/genes.tsv",
            "ranking": f"{root}/{SPLIT}/hvg_ranking.tsv",
            "drugs": glob.glob(f"{run}/resources/raw/*/drugs.tsv")[0],
        }
        steps.train(inputs, f"{out}/model", entry.recordable(), "control", 0, "cpu", threads=1)
    print(step, "imported:", sorted(m for m in ("scanpy", "sklearn", "numba") if m in sys.modules))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
