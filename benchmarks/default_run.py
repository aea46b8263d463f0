"""The default workflow from an empty ``results/``: wall time, CPU seconds per rule, jobs, peak RSS.

Usage::

    .venv/bin/python benchmarks/default_run.py [--cores 2] [--configfile FILE ...]
        [--keep DIR] [--reference metrics_long.tsv] [--json OUT.json]

Runs ``snakemake --cores N`` of this checkout's Snakefile in a fresh temporary work directory
(``--keep DIR`` uses ``DIR`` instead, which must not exist, and leaves it in place), so every job
runs: the synthetic world, preprocessing, priors, training, sampling, evaluation, tables and figures.

Measured per job, exactly: every Python process of the run loads a ``sitecustomize`` module that
this script puts first on ``PYTHONPATH``; at exit it appends its own ``getrusage`` (user + system
CPU seconds of the process and of the children it waited for, peak RSS) and its wall time to a
JSON-lines file. A job is the process running Snakemake's generated script
``.snakemake/scripts/tmp*.<rule>.py``; the Snakemake head process (DAG, scheduling, job
launches) is reported as ``(snakemake head)``. Snakemake's own ``benchmark:`` files sample every
0.5 s and then every 30 s, so they miss the tail of every job; they are not used here.

Printed: wall time; per rule the number of jobs, the summed and the mean CPU seconds, the largest
job's peak RSS; the total CPU seconds and the wall time they imply on the given cores: the bound
``total / cores``, and a schedule of the measured jobs (each job's CPU seconds as its duration on
``threads`` cores, dependencies from the dry run, the longest remaining path first, plus the
Snakemake head's CPU seconds spread over the cores), which is what the run takes on idle cores when the
machine is shared and the wall time is inflated; the peak of the summed RSS of all processes of
the run (sampled every 0.25 s). ``--reference`` compares the run's
``results/tables/metrics_long.tsv`` with an earlier one (same rows, max |difference| of the
values); ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAD = "(snakemake head)"
ACCOUNTING_ENV = "SCPERT_JOB_ACCOUNTING"

#: installed as sitecustomize.py in a temporary folder first on PYTHONPATH
SITECUSTOMIZE = f'''
import atexit, json, os, resource, sys, time

_START = time.time()


def _scpert_account():
    path = os.environ.get("{ACCOUNTING_ENV}")
    if not path:
        return
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = {{
        "pid": os.getpid(),
        "argv": sys.argv[:3],
        "cpu_self": me.ru_utime + me.ru_stime,
        "cpu_children": kids.ru_utime + kids.ru_stime,
        "max_rss_mb": max(me.ru_maxrss, kids.ru_maxrss) / 1024,
        "wall": time.time() - _START,
    }}
    job = getattr(sys.modules.get("__main__"), "snakemake", None)  # a rule's script
    if job is not None:
        record["rule"] = str(job.rule)
        record["output"] = [str(path) for path in job.output]
        record["threads"] = int(job.threads)
    with open(path, "a") as out:
        out.write(json.dumps(record) + "\\n")


atexit.register(_scpert_account)
'''


def rule_of(argv: list[str]) -> str:
    """The rule a process ran: Snakemake's generated script is ``tmpXXXX.<rule>.py``."""
    for arg in argv:
        name = Path(arg).name
        if name.startswith("tmp") and name.endswith(".py") and ".snakemake" in arg:
            return name.split(".")[-2]
    if any(Path(arg).name == "snakemake" for arg in argv[:2]):
        return HEAD
    return "(other) " + " ".join(argv)[:60]


def _tree_rss_mb(root: int) -> float:
    """Summed RSS of ``root`` and all its descendants (from /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        rss[int(entry)] = int(fields[21])
    members, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in members:
                members.add(child)
                frontier.append(child)
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
    return sum(rss.get(pid, 0) for pid in members) * page_mb


def dry_run_jobs(cmd: list[str], env: dict) -> dict[int, dict]:
    """jobid -> {rule, input, output, threads} of every job of the dry run of ``cmd``."""
    proc = subprocess.run(cmd + ["--dry-run"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit("the dry run failed")
    jobs = {}
    for rule, body in re.findall(r"^(?:local)?rule (\S+):\n((?:    .*\n?)+)", proc.stdout, re.M):
        fields = dict(re.findall(r"^    (\w+): (.*)$", body, re.M))
        paths = {
            key: [p for p in fields.get(key, "").split(", ") if p] for key in ("input", "output")
        }
        jobs[int(fields["jobid"])] = {
            "rule": rule,
            **paths,
            "threads": int(fields.get("threads", 1)),
        }
    return jobs


def schedule(jobs: dict[int, dict], durations: dict[int, float], cores: int) -> float:
    """Makespan of the jobs on ``cores`` idle cores: a job starts once the jobs making its inputs
    are done and ``threads`` cores are free; among ready jobs the one with the longest remaining
    path (its duration plus its longest chain of dependents) goes first."""
    producer = {path: jid for jid, job in jobs.items() for path in job["output"]}
    needs = {jid: {producer[p] for p in job["input"] if p in producer} for jid, job in jobs.items()}
    dependents = defaultdict(set)
    for jid, parents in needs.items():
        for parent in parents:
            dependents[parent].add(jid)
    remaining: dict[int, float] = {}

    def path(jid: int) -> float:
        if jid not in remaining:
            remaining[jid] = durations.get(jid, 0.0) + max(
                (path(c) for c in dependents[jid]), default=0.0
            )
        return remaining[jid]

    sys.setrecursionlimit(max(1000, 4 * len(jobs)))
    waiting = {jid: set(parents) for jid, parents in needs.items()}
    running: list[tuple[float, int]] = []
    now, free = 0.0, cores
    while waiting or running:
        ready = sorted((j for j, parents in waiting.items() if not parents), key=lambda j: -path(j))
        for jid in ready:
            threads = min(jobs[jid]["threads"], cores)
            if threads <= free:
                free -= threads
                running.append((now + durations.get(jid, 0.0), jid))
                del waiting[jid]
        if not running:
            raise RuntimeError("the dry-run DAG has a cycle or an unknown input")
        running.sort()
        now, done = running.pop(0)
        free += min(jobs[done]["threads"], cores)
        for child in dependents[done]:
            waiting[child].discard(done)
    return now


def run_workflow(workdir: Path, cores: int, configfiles: list[str]) -> dict:
    accounting = workdir / ".accounting.jsonl"
    custom = workdir / ".sitecustomize"
    custom.mkdir(parents=True)
    (custom / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(custom)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env[ACCOUNTING_ENV] = str(accounting)
    cmd = [
        str(Path(sys.executable).parent / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        str(cores),
    ]
    if configfiles:
        cmd += ["--configfile", *configfiles]
    jobs = dry_run_jobs(cmd, env)
    log_path = workdir / ".snakemake_run.log"
    peak = {"rss": 0.0}
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

        def sample():
            while proc.poll() is None:
                peak["rss"] = max(peak["rss"], _tree_rss_mb(proc.pid))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        returncode = proc.wait()
        sampler.join()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if returncode != 0:
        sys.stderr.write(log_path.read_text()[-5000:])
        raise SystemExit(f"snakemake failed with exit status {returncode} (log: {log_path})")
    records = [json.loads(line) for line in accounting.read_text().splitlines()]
    total_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    by_output = {job["output"][0]: jid for jid, job in jobs.items() if job["output"]}
    durations = {}
    for record in records:
        if record.get("output"):
            durations[by_output[record["output"][0]]] = record["cpu_self"] + record["cpu_children"]
    head_cpu = sum(r["cpu_self"] for r in records if rule_of(r["argv"]) == HEAD)
    makespan = schedule(jobs, durations, cores)
    return {
        "wall_s": wall,
        "total_cpu_s": total_cpu,
        "peak_tree_rss_mb": peak["rss"],
        "records": records,
        "cores": cores,
        "dry_run_jobs": len(jobs),
        # the head's CPU competes with the jobs for the same cores: S = makespan + head / cores
        # (the fixed point of S = makespan / (1 - head / (S * cores)); the wall time of a shared
        # machine would understate the head's share)
        "scheduled_s": makespan + head_cpu / cores,
    }


def per_rule(records: list[dict]) -> dict[str, dict]:
    rules: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "cpu_s": 0.0, "max_rss_mb": 0.0})
    for record in records:
        rule = rule_of(record["argv"])
        entry = rules[rule]
        entry["jobs"] += 1
        # the head's children are the jobs themselves (counted under their rules)
        cpu = record["cpu_self"] + (0.0 if rule == HEAD else record["cpu_children"])
        entry["cpu_s"] += cpu
        entry["max_rss_mb"] = max(entry["max_rss_mb"], record["max_rss_mb"])
    return dict(rules)


def compare_tables(new: Path, reference: Path) -> str:
    import numpy as np
    import pandas as pd

    keys = ["dataset", "split", "method", "condition", "protocol", "metric", "deg_set"]
    a = pd.read_csv(new, sep="\t", keep_default_na=False, na_values=[""])
    b = pd.read_csv(reference, sep="\t", keep_default_na=False, na_values=[""])
    merged = a.merge(b, on=keys, how="outer", suffixes=("", "_ref"), indicator=True)
    only_new = int((merged["_merge"] == "left_only").sum())
    only_ref = int((merged["_merge"] == "right_only").sum())
    both = merged[merged["_merge"] == "both"]
    diff = (both["value"] - both["value_ref"]).abs()
    same_nan = both["value"].isna() & both["value_ref"].isna()
    diff = diff[~same_nan]
    worst = both.loc[diff.idxmax()] if diff.size and np.nanmax(diff) > 0 else None
    lines = [
        f"metrics_long.tsv vs {reference}: {len(both)} rows in both, "
        f"{only_new} only in this run, {only_ref} only in the reference",
        f"  identical values: {int((diff == 0).sum())} of {diff.size}; "
        f"max |diff| {float(diff.max()) if diff.size else 0.0:.3g}",
    ]
    if worst is not None:
        lines.append(
            "  largest at "
            + " ".join(str(worst[k]) for k in keys)
            + f": {worst['value']!r} vs {worst['value_ref']!r}"
        )
    return "\n".join(lines)


def report(result: dict) -> str:
    rules = per_rule(result["records"])
    jobs = sum(v["jobs"] for k, v in rules.items() if k != HEAD and not k.startswith("(other)"))
    lines = [
        f"wall time            {result['wall_s']:8.1f} s ({result['wall_s'] / 60:.2f} min), "
        f"--cores {result['cores']}",
        f"jobs                 {jobs:8d} (+ the head process)",
        f"CPU, all processes   {result['total_cpu_s']:8.1f} s  (user + sys, getrusage of the run)",
        f"  -> on {result['cores']} busy cores {result['total_cpu_s'] / result['cores']:8.1f} s "
        f"({result['total_cpu_s'] / result['cores'] / 60:.2f} min)",
        f"  -> scheduled      {result['scheduled_s']:8.1f} s ({result['scheduled_s'] / 60:.2f} min)"
        " (the jobs' CPU seconds over the DAG on idle cores)",
        f"peak RSS, all procs  {result['peak_tree_rss_mb']:8.0f} MB (summed, sampled every 0.25 s)",
        "",
        f"{'rule':22s} {'jobs':>5s} {'CPU s':>9s} {'CPU s/job':>10s} {'max RSS MB':>11s}",
    ]
    ordered = sorted(rules.items(), key=lambda item: -item[1]["cpu_s"])
    for rule, entry in ordered:
        lines.append(
            f"{rule:22s} {entry['jobs']:5d} {entry['cpu_s']:9.1f} "
            f"{entry['cpu_s'] / entry['jobs']:10.2f} {entry['max_rss_mb']:11.0f}"
        )
    accounted = sum(v["cpu_s"] for v in rules.values())
    lines.append(f"{'(sum of the above)':22s} {'':5s} {accounted:9.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", nargs="+", default=[])
    parser.add_argument("--keep", type=Path, help="run in this new folder and keep it")
    parser.add_argument("--reference", type=Path, help="an earlier metrics_long.tsv to compare")
    parser.add_argument("--json", type=Path, help="write the measurements to this file")
    args = parser.parse_args()
    configfiles = [str(Path(p).resolve()) for p in args.configfile]
    if args.keep:
        if args.keep.exists():
            raise SystemExit(f"--keep {args.keep}: the folder exists; give a new one")
        workdir = args.keep.resolve()
    else:
        workdir = Path(tempfile.mkdtemp(prefix="scpert_default_run."))
        shutil.rmtree(workdir)
    try:
        result = run_workflow(workdir, args.cores, configfiles)
        print(report(result))
        tables = workdir / "results" / "tables" / "metrics_long.tsv"
        if args.reference:
            print()
            print(compare_tables(tables, args.reference))
        if args.json:
            summary = {k: v for k, v in result.items() if k != "records"}
            summary["rules"] = per_rule(result["records"])
            args.json.write_text(json.dumps(summary, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
