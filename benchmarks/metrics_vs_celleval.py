"""Our cell-eval protocol against the ``cell-eval`` package on the same inputs: time, memory, values.

Usage: ``.venv/bin/python benchmarks/metrics_vs_celleval.py [--threads 1] [--cases small,large]``

Cases: ``small`` = 50 perturbations x 200 cells x 2,000 genes, ``large`` = 200 x 200 x 5,000, each
with 200 control cells and log1p(Poisson) expression (ties, zero-variance genes). Each tool runs in
its own subprocess with the same thread count (numpy/BLAS, numba, polars), first on a small
warm-up input (imports, numba compilation), then once on the case, timed: CPU seconds (user +
system of the process, all threads; the speed-up is their ratio, robust to other load on the
machine) and wall seconds. Memory is the peak resident set size during the timed run minus the
resident size just before it (inputs and warm-up already loaded, freed heap memory returned to the
OS first). Prints both times, the ratios and, per metric, the largest absolute difference over
the perturbations where both give a value.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = {"small": (50, 200, 2000), "large": (200, 200, 5000)}
WARMUP = (4, 50, 300)
N_CONTROL = 200
CONTROL = "control"
LINE = "L1"


def make_pair(n_perts: int, n_cells: int, n_genes: int, seed: int = 0):
    """Ground truth (with controls) and a prediction (without) as AnnData, float32 log1p(Poisson)."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.6, 1.5, n_genes)
    rate[: n_genes // 50] = 0.0  # never expressed: zero-variance genes
    conditions = [f"{LINE}|drug{i:03d}|1" for i in range(n_perts)]

    def cells(effect: np.ndarray, n: int) -> np.ndarray:
        return np.log1p(rng.poisson(rate * effect, (n, n_genes))).astype(np.float32)

    effects = {
        c: np.exp(rng.normal(0.0, 0.5, n_genes) * (rng.uniform(size=n_genes) < 0.15))
        for c in conditions
    }
    control = cells(np.ones(n_genes), N_CONTROL)

    def adata(blocks, labels):
        obs = pd.DataFrame({"condition": labels}, index=[f"c{i}" for i in range(len(labels))])
        obs["cell_line"] = LINE
        obs["drug"] = [label.split("|")[1] if label != CONTROL else CONTROL for label in labels]
        return ad.AnnData(
            np.vstack(blocks), obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)])
        )

    labels = [c for c in conditions for _ in range(n_cells)]
    truth = adata(
        [control] + [cells(effects[c], n_cells) for c in conditions], [CONTROL] * N_CONTROL + labels
    )
    pred = adata([cells(effects[c] ** 0.7, n_cells) for c in conditions], labels)
    return truth, pred, conditions


def run_ours(truth, pred, conditions) -> dict[str, dict[str, float]]:
    from scpert.metrics import evaluate_predictions

    table = evaluate_predictions(truth, pred, conditions, CONTROL, protocols=("celleval",))
    out: dict[str, dict[str, float]] = {}
    for row in table.itertuples():
        out.setdefault(row.metric, {})[row.condition] = row.value
    return out


def run_celleval(truth, pred, conditions, threads: int) -> dict[str, dict[str, float]]:
    import anndata as ad
    from cell_eval import MetricsEvaluator

    pred_with_control = ad.concat([truth[truth.obs["condition"] == CONTROL], pred])
    pred_with_control.obs_names_make_unique()
    with tempfile.TemporaryDirectory() as outdir:
        evaluator = MetricsEvaluator(
            pred_with_control,
            truth.copy(),
            control_pert=CONTROL,
            pert_col="condition",
            num_threads=threads,
            outdir=outdir,
        )
        results, _ = evaluator.compute(profile="full", write_csv=False)
    frame = results.to_pandas().set_index("perturbation")
    return {metric: frame[metric].astype(float).to_dict() for metric in frame.columns}


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reset_peak() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``), then reset VmHWM to the
    current RSS (Linux >= 4.0: write 5 to clear_refs), so the peak measures the run itself."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")


def worker(tool: str, case: str, threads: int, out_path: str) -> None:
    """One tool on one case, in this (fresh) process."""
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ["TQDM_DISABLE"] = "1"

    def run(truth, pred, conditions):
        if tool == "ours":
            return run_ours(truth, pred, conditions)
        return run_celleval(truth, pred, conditions, threads)

    run(*make_pair(*WARMUP, seed=1))
    truth, pred, conditions = make_pair(*CASES[case])
    _reset_peak()
    before = _rss_mb()
    start, start_cpu = time.perf_counter(), _cpu_seconds()
    values = run(truth, pred, conditions)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - start_cpu
    peak = _peak_rss_mb() - before
    Path(out_path).write_text(
        json.dumps({"seconds": seconds, "cpu": cpu, "peak_mb": peak, "values": values})
    )


def _spawn(tool: str, case: str, threads: int, workdir: Path) -> dict:
    out = workdir / f"{tool}_{case}.json"
    env = dict(os.environ)
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMBA_NUM_THREADS",
        "POLARS_MAX_THREADS",
    ):
        env[var] = str(threads)
    env["TQDM_DISABLE"] = "1"
    subprocess.run(
        [sys.executable, __file__, "--worker", tool, case, str(threads), str(out)],
        check=True,
        env=env,
    )
    return json.loads(out.read_text())


def compare(ours: dict, reference: dict) -> list[tuple[str, float, int]]:
    """Per cell-eval metric: max |ours - cell-eval| and the number of values compared.

    Values computed across the conditions of a cell line (same for every perturbation in cell-eval)
    sit under the condition ``L1|*`` in ours.
    """
    rows = []
    for metric, ref_values in sorted(reference.items()):
        mine = ours.get(metric, {})
        diffs = []
        for condition, ref in ref_values.items():
            value = mine.get(condition, mine.get(f"{LINE}|*"))
            if value is not None and not np.isnan(ref):
                diffs.append(abs(value - ref))
        rows.append((metric, max(diffs) if diffs else float("nan"), len(diffs)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", default="small,large")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        tool, case, threads, out = args.worker
        worker(tool, case, int(threads), out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            n_perts, n_cells, n_genes = CASES[case]
            print(
                f"\n== {case}: {n_perts} perturbations x {n_cells} cells x {n_genes} genes "
                f"(+{N_CONTROL} control cells), {args.threads} thread(s)"
            )
            ours = _spawn("ours", case, args.threads, Path(tmp))
            ref = _spawn("cell-eval", case, args.threads, Path(tmp))
            for name, run in (("ours", ours), ("cell-eval", ref)):
                print(
                    f"{name:9s} {run['cpu']:8.2f} s CPU {run['seconds']:8.2f} s wall   "
                    f"peak +{run['peak_mb']:7.0f} MB"
                )
            print(
                f"speed-up  {ref['cpu'] / ours['cpu']:8.1f} x CPU "
                f"{ref['seconds'] / ours['seconds']:8.1f} x wall"
            )
            print(f"{'metric':30s} {'max |diff|':>12s} {'n':>5s}")
            for metric, diff, n in compare(ours["values"], ref["values"]):
                print(f"{metric:30s} {diff:12.3g} {n:5d}")


if __name__ == "__main__":
    main()
