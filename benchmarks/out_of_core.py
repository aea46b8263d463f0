"""Time and peak memory of the out-of-core preprocessing on Tahoe-like shards.

    nice python benchmarks/out_of_core.py [--cells 250000 500000 1000000] [--workdir DIR]

Generates Tahoe-100M-like expression shards once (``scpert.data.sources.tahoe.write_shard``:
token lists opened by the marker token, 20,000 genes, 25,000 cells per shard sorted by sample as
in the release, 50 cell lines per sample, two shards per drug-dose sample; counts are UMIs drawn
from a skewed gene distribution with log-normal depth, so that a cell detects ~1,000 genes, the
median of the released shards' 393-5,450), then for each size runs the four steps as separate
processes, one at a time, exactly as the rules call them: ``qc_shard`` per shard,
``plan_shards``, ``preprocess_shard`` per shard, ``gather_shards``, and ``select_hvg_streamed``
on a cell-line split. Each job's CPU seconds (user + sys) come from ``os.wait4``, its peak RSS from its own
``VmHWM`` (``/proc/self/status``).
Prints one row per size (and per step with ``--steps``) as TSV; ``--out`` also writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

N_GENES = 20_000
CELLS_PER_SHARD = 25_000
SHARDS_PER_SAMPLE = 2
N_LINES = 50
MEDIAN_UMIS = 2_000


def cell_lines() -> list[str]:
    return [f"CVCL_{i:04d}" for i in range(N_LINES)]


def samples(n: int) -> pd.DataFrame:
    """Drug-dose samples: every tenth is the DMSO_TF vehicle, the rest 30 drugs x 3 doses."""
    rows = []
    for i in range(n):
        if i % 10 == 0:
            rows.append((f"smp_{i:04d}", "DMSO_TF", "[('DMSO_TF', 0.0, 'uM')]"))
        else:
            drug, dose = f"drug{i % 30:02d}", (0.05, 0.5, 5.0)[i % 3]
            rows.append((f"smp_{i:04d}", drug, f"[('{drug}', {dose}, 'uM')]"))
    return pd.DataFrame(rows, columns=["sample", "drug", "drugname_drugconc"])


def write_metadata(folder: Path, n_samples: int) -> None:
    tokens = 3 + np.arange(N_GENES)
    symbols = [f"MT-G{i}" for i in range(13)] + [f"GENE{i}" for i in range(13, N_GENES)]
    pd.DataFrame(
        {
            "gene_symbol": symbols,
            "ensembl_id": [f"ENSG{i:011d}" for i in range(N_GENES)],
            "token_id": tokens,
        }
    ).to_parquet(folder / "gene_metadata.parquet")
    samples(n_samples).to_parquet(folder / "sample_metadata.parquet")
    drugs = sorted({d for d in samples(n_samples)["drug"] if d != "DMSO_TF"})
    pd.DataFrame(
        {
            "drug": drugs,
            "canonical_smiles": "C",
            "moa-fine": "unclear",
            "targets": [["A"]] * len(drugs),
        }
    ).to_parquet(folder / "drug_metadata.parquet")
    pd.DataFrame(
        {"Cell_ID_Cellosaur": cell_lines(), "cell_name": [f"LINE{i}" for i in range(N_LINES)]}
    ).to_parquet(folder / "cell_line_metadata.parquet")


def gene_weights(rng) -> tuple[np.ndarray, np.ndarray]:
    """A skewed (Zipf-like) gene distribution and per-cell-line log-normal modulation."""
    base = 1.0 / (np.arange(N_GENES) + 20.0) ** 1.1
    base = base[rng.permutation(N_GENES)]
    lines = np.exp(rng.normal(0.0, 0.5, (N_LINES, N_GENES)))
    return base, lines


def write_shard(folder: Path, index: int, table: pd.DataFrame, base, lines, seed: int) -> Path:
    from scpert.data.sources import tahoe

    rng = np.random.default_rng(seed + index)
    sample = table.iloc[index // SHARDS_PER_SAMPLE]
    effect = np.ones(N_GENES)
    if sample["drug"] != "DMSO_TF":
        hit = np.random.default_rng(int(sample["drug"][4:])).choice(N_GENES, 200, replace=False)
        effect[hit] = np.exp(np.random.default_rng(index // SHARDS_PER_SAMPLE).normal(0, 1.0, 200))
    per_line = CELLS_PER_SHARD // N_LINES
    mats, obs = [], []
    for line in range(N_LINES):
        p = base * lines[line] * effect
        p /= p.sum()
        umis = np.maximum(rng.lognormal(np.log(MEDIAN_UMIS), 0.5, per_line).astype(np.int64), 50)
        cell = np.repeat(np.arange(per_line), umis)
        gene = rng.choice(N_GENES, size=len(cell), p=p)
        mats.append(
            sp.csr_matrix(
                (np.ones(len(cell), dtype=np.float32), (cell, gene)), shape=(per_line, N_GENES)
            )
        )
        for i in range(per_line):
            obs.append(
                (
                    sample["drug"],
                    sample["sample"],
                    cell_lines()[line],
                    f"plate{index // SHARDS_PER_SAMPLE % 14 + 1}",
                    f"{index:05d}_{line:02d}_{i:04d}-lib_{index}",
                )
            )
    counts = sp.vstack(mats, format="csr")
    counts.sum_duplicates()
    frame = pd.DataFrame(
        obs, columns=["drug", "sample", "cell_line_id", "plate", "BARCODE_SUB_LIB_ID"]
    )
    path = folder / f"train-{index:05d}.parquet"
    tahoe.write_shard(path, counts, frame, 3 + np.arange(N_GENES))
    return path


def generate(folder: Path, n_shards: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    n_samples = -(-n_shards // SHARDS_PER_SAMPLE)
    write_metadata(folder, n_samples)
    table = samples(n_samples)
    rng = np.random.default_rng(seed)
    base, lines = gene_weights(rng)
    paths = []
    for index in range(n_shards):
        path = folder / f"train-{index:05d}.parquet"
        if not path.exists():
            t0 = time.process_time()
            write_shard(folder, index, table, base, lines, seed)
            print(
                f"# generated {path.name} ({time.process_time() - t0:.1f} CPU s)",
                file=sys.stderr,
                flush=True,
            )
        paths.append(path)
    return paths


JOB = """
import json, sys
from scpert.runtime import setup_logging
from scpert import steps
setup_logging(None)
name, args = sys.argv[1], json.loads(sys.argv[2])
getattr(steps, name)(*args["args"], **args.get("kwargs", {}))
# peak RSS of this program: VmHWM of its own address space (ru_maxrss of a forked child also
# counts the parent's pages it held before exec)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(f"VmHWM_kB={hwm}")
"""


def run_job(step: str, *args, **kwargs) -> dict:
    """One rule step in its own process (as Snakemake runs it); CPU seconds and peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    payload = json.dumps(
        {"args": [str(a) if isinstance(a, Path) else a for a in args], "kwargs": kwargs},
        default=str,
    )
    start = time.monotonic()
    with tempfile.TemporaryFile() as log:  # the job's log (stderr), read back on failure
        proc = subprocess.Popen(
            [sys.executable, "-c", JOB, step, payload], env=env, stdout=subprocess.PIPE, stderr=log
        )
        out = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        log.seek(0)
        err = log.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{step} failed:\n{err[-3000:]}")
    hwm = int(out.rsplit("VmHWM_kB=", 1)[1].split()[0])
    return {
        "step": step,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "wall_s": time.monotonic() - start,
        "max_rss_mb": hwm / 1024,
    }


def benchmark(shards: list[Path], meta: Path, work: Path, n_cells: int) -> list[dict]:
    work.mkdir(parents=True, exist_ok=True)
    files = {
        "genes": str(meta / "gene_metadata.parquet"),
        "samples": str(meta / "sample_metadata.parquet"),
        "cell_lines": str(meta / "cell_line_metadata.parquet"),
    }
    settings = {
        "min_genes": 200,
        "min_cells": 3,
        "min_cells_per_condition": 10,
        "target_sum": 1e4,
        "max_pct_mito": 20.0,
        "max_cells_per_group": 64,
        "seed": 0,
    }
    options = {"batch_rows": 8192}
    jobs = []
    for i, shard in enumerate(shards):
        jobs.append(
            run_job(
                "qc_shard",
                "tahoe",
                shard,
                files,
                options,
                settings,
                "control",
                work / f"{i:05d}.qc.h5",
                "bench",
            )
        )
    jobs.append(
        run_job(
            "plan_shards",
            [str(work / f"{i:05d}.qc.h5") for i in range(len(shards))],
            settings,
            "control",
            work / "plan.h5",
            "bench",
        )
    )
    for i, shard in enumerate(shards):
        jobs.append(
            run_job(
                "preprocess_shard",
                "tahoe",
                shard,
                files,
                options,
                work / "plan.h5",
                "control",
                work / f"{i:05d}.stats.h5",
                "bench",
            )
        )
    jobs.append(
        run_job(
            "gather_shards",
            [str(work / f"{i:05d}.stats.h5") for i in range(len(shards))],
            work / "plan.h5",
            "control",
            work / "processed.h5ad",
            work / "group_stats.h5",
            memory_mb=512,
        )
    )
    split = work / "split.tsv"
    import h5py

    from scpert.data import out_of_core as ooc

    with h5py.File(work / "group_stats.h5", "r") as f:
        groups = ooc._read_table(f["groups"])
    conditions = groups.drop_duplicates("condition")
    held = conditions["cell_line"].isin({"LINE0", "LINE1", "LINE2", "LINE3", "LINE4"})
    pd.DataFrame(
        {"condition": conditions["condition"], "split": np.where(held, "test", "train")}
    ).to_csv(split, sep="\t", index=False)
    jobs.append(
        run_job(
            "select_hvg_streamed",
            work / "group_stats.h5",
            split,
            work / "genes.tsv",
            {"n_top_genes": 2000, "flavor": "seurat"},
            "control",
            "bench",
        )
    )
    for job in jobs:
        job["n_cells"] = n_cells
    return jobs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[250_000, 500_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/scpert-bench-ooc"))
    parser.add_argument("--steps", action="store_true", help="also print one row per step")
    parser.add_argument("--out", type=Path, help="write the rows as TSV")
    args = parser.parse_args(argv)
    n_max = max(args.cells) // CELLS_PER_SHARD
    shards = generate(args.workdir / "tahoe", n_max)
    rows, steps_rows = [], []
    for n_cells in sorted(args.cells):
        n = n_cells // CELLS_PER_SHARD
        jobs = benchmark(
            shards[:n], args.workdir / "tahoe", args.workdir / f"run_{n_cells}", n_cells
        )
        frame = pd.DataFrame(jobs)
        steps_rows.append(
            frame.groupby(["n_cells", "step"], sort=False)
            .agg(jobs=("cpu_s", "size"), cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max"))
            .reset_index()
        )
        nnz = sum(_nnz(p) for p in shards[:n])
        rows.append(
            {
                "n_cells": n_cells,
                "n_shards": n,
                "n_genes": N_GENES,
                "nnz": nnz,
                "density": nnz / (n_cells * N_GENES),
                "jobs": len(frame),
                "cpu_s": frame["cpu_s"].sum(),
                "cpu_us_per_cell": 1e6 * frame["cpu_s"].sum() / n_cells,
                "max_rss_mb": frame["max_rss_mb"].max(),
                "gather_cpu_s": frame.loc[frame["step"] == "gather_shards", "cpu_s"].sum(),
                "gather_rss_mb": frame.loc[frame["step"] == "gather_shards", "max_rss_mb"].max(),
            }
        )
        print(
            pd.DataFrame(rows[-1:]).to_csv(sep="\t", index=False, float_format="%.4g"), flush=True
        )
    table = pd.DataFrame(rows)
    print(table.to_csv(sep="\t", index=False, float_format="%.4g"))
    if args.steps:
        print(pd.concat(steps_rows).to_csv(sep="\t", index=False, float_format="%.4g"))
    if args.out:
        table.to_csv(args.out, sep="\t", index=False)


def _nnz(path: Path) -> int:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path)
    col = meta.read(columns=["genes"]).column("genes")
    return (
        int(sum(len(chunk.flatten()) for chunk in col.chunks)) - meta.metadata.num_rows
    )  # minus markers


if __name__ == "__main__":
    main()
