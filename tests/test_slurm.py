"""profiles/slurm: what it requests, and a real run on a one-node SLURM cluster with a fake GPU.

The profile tests (dry run, rule/profile/README consistency) need no SLURM. The cluster tests
(marked ``slurm``) start tests/slurm/start_cluster.sh and run a small CI world (2 methods x 1
split) through ``--profile profiles/slurm`` with conda switched off, while the
same config runs locally. SLURM's job records and the jobs' output must show a GPU for every
sample job and none for the other rules (train jobs of these CPU methods ask for none; a GPU
method's ask for its preset's ``gpus``), job sizes must follow the config's resources by
preset, and the metrics must equal the local run's. They need root, the Debian packages
slurmctld, slurmd, slurm-client and munge (.ci/run installs them) and
snakemake-executor-plugin-slurm; without them they skip, or fail under SCPERT_REQUIRE_SLURM=1
(set by .ci/run).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from scpert.plots import figure_names

from .conftest import REPO
from .test_envs import workflow_rules

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SCRIPTS = REPO / "tests/slurm"
PROFILE = REPO / "profiles/slurm"
PARTITION = "scpert_test"
# from the Debian packages slurmctld, slurmd, slurm-client and munge
TOOLS = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged", "mungekey")
GPU_RULES = {"train", "sample"}
#: the test config's one split: one evaluate job (rule) scores both methods
EVALUATE = "evaluate_synthetic_drug_ood"
CPU_RULES = {
    "simulate_world",
    "preprocess",
    "make_split",
    "select_hvg",
    EVALUATE,
    "aggregate",
    "heatmap",
    "world_vs_real",
    "oracle",  # the reference row's prediction (a simulated dataset)
    "comparisons",
    # the figure families one drug_ood split of one dataset fills, no method variants
    *(
        f"figure_{name.removesuffix('_synthetic')}"
        for name in figure_names(["drug_ood"], ["synthetic"], has_variants=False)
    ),
}
METHODS = {"train_mean": "paper", "base_mlp": "tiny"}
# job sizes of the test config: CPU rules, and train/sample by preset (tiny = the flat keys)
RESOURCES = {
    "mem_mb": 500,
    "runtime": 10,
    "train_mem_mb": 1000,
    "train_runtime": 20,
    "gpu_threads": 1,
    "presets": {"paper": {"train_mem_mb": 1200, "train_runtime": 30, "gpu_threads": 2}},
}
SLURM_RUN_TIMEOUT_S = 420


def small_config(path: Path) -> Path:
    """The CI world on one split with a baseline at the paper preset and a torch MLP at tiny."""
    cfg = yaml.safe_load((REPO / "config/ci.yaml").read_text())
    cfg["datasets"]["synthetic"]["splits"] = ["drug_ood"]
    cfg["methods"] = {name: {"preset": preset} for name, preset in METHODS.items()}
    cfg["evaluation"]["protocols"] = ["scperturbench"]
    cfg["resources"] = RESOURCES
    for optional in ("priors", "latent"):
        cfg.pop(optional, None)
    path.write_text(yaml.safe_dump(cfg))
    return path


def expected_size(rule: str, method: str) -> tuple[int, int, int]:
    """(mem_mb, runtime minutes, CPUs) the test config gives a job of ``rule``."""
    if rule == EVALUATE:  # the time limit covers each method it scores, the oracle and the ceiling
        return RESOURCES["mem_mb"], RESOURCES["runtime"] * (len(METHODS) + 2), 1
    if rule not in GPU_RULES:
        return RESOURCES["mem_mb"], RESOURCES["runtime"], 1
    size = {**RESOURCES, **RESOURCES["presets"].get(METHODS[method], {})}
    return size["train_mem_mb"], size["train_runtime"], size["gpu_threads"]


def profile() -> dict:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


# -- the profile, without SLURM --------------------------------------------------------------------


def test_profile_requests_a_gpu_for_every_rule_that_declares_one():
    """Rules whose resources declare ``gpu`` (per method for train/sample) are the profile's GPU
    rules plus ``train`` and ``experiment_train``, whose GPU count the rule takes from the method
    preset; every one of
    them is in the README."""
    declared = {name for name, rule in workflow_rules().items() if rule["gpu"]}
    in_profile = {rule for rule, res in profile()["set-resources"].items() if res.get("gpu") == 1}
    per_preset = {"train", "experiment_train"}  # GPUs from the method preset
    for rule in per_preset:
        assert "gpu" not in profile()["set-resources"].get(rule, {})
    assert declared == in_profile | per_preset
    readme = (REPO / "README.md").read_text().split("## Running on a SLURM GPU cluster")[1]
    for word in [
        *in_profile,
        "CHANGE_ME",
        "slurm_account",
        "--conda-prefix",
        "--conda-create-envs-only",
        "--sdm conda",
        "slurm-status-command: squeue",
    ]:
        assert word in readme, word


def test_profile_keeps_its_contract():
    prof = profile()
    assert prof["executor"] == "slurm"
    assert prof["software-deployment-method"] == "conda"
    assert prof["slurm-status-command"] == "sacct"
    assert prof["default-resources"]["slurm_partition"] == "CHANGE_ME"
    assert prof["retries"] >= 1 and prof["latency-wait"] >= 30


def test_dry_run_through_the_profile_sizes_jobs_by_preset(tmp_path):
    config = small_config(tmp_path / "config.yaml")
    proc = subprocess.run(
        [
            SNAKEMAKE,
            "-n",
            "-s",
            REPO / "Snakefile",
            "-d",
            tmp_path,
            "--configfile",
            config,
            "--profile",
            PROFILE,
            "--sdm",
            "env-modules",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = [
        (rule, block)
        for rule, block in re.findall(
            r"^rule (\w+):\n(.*?)^Shell command", proc.stdout, re.M | re.S
        )
        if rule != "all"
    ]  # the target rule runs nothing
    assert sorted({rule for rule, _ in jobs}) == sorted(GPU_RULES | CPU_RULES)
    for rule, block in jobs:
        method = re.search(r"method=(\w+)", block)
        method = method.group(1) if method else ""
        resources = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"resources: (.*)", block)[1]))
        mem, minutes, _ = expected_size(rule, method)
        assert (resources["mem_mb"], resources["runtime"]) == (str(mem), str(minutes)), rule
        assert resources["slurm_partition"] == "CHANGE_ME", rule
        # train: the preset's GPU count for GPU methods, none for these CPU methods
        expected_gpu = {"sample": "1", "train": "0"}.get(rule)
        assert resources.get("gpu") == expected_gpu, (rule, method)


# -- a real cluster --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Environment of a started cluster; its daemons are stopped by PID afterwards, always."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        missing.append("snakemake-executor-plugin-slurm")
    reason = f"missing {', '.join(missing)}" if missing else None
    if reason is None and os.geteuid() != 0:
        reason = "start_cluster.sh needs root"
    if reason:
        if os.environ.get("SCPERT_REQUIRE_SLURM") == "1":
            pytest.fail(f"SCPERT_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("slurm_cluster")
    try:
        proc = subprocess.run(
            ["bash", SCRIPTS / "start_cluster.sh", directory, PARTITION, "2"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"start_cluster.sh failed:\n{proc.stdout}\n{proc.stderr}"
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        env["SLURM_CONF"] = str(directory / "slurm.conf")
        yield env
    finally:
        subprocess.run(["bash", SCRIPTS / "stop_cluster.sh", directory], timeout=60)


def profile_default_resources() -> list[str]:
    """The profile's default-resources with the test partition (a CLI value replaces the key)."""
    return [
        f"{key}={PARTITION if key == 'slurm_partition' else value}"
        for key, value in profile()["default-resources"].items()
    ]


def job_records(env) -> list[dict[str, str]]:
    out = subprocess.run(
        ["scontrol", "-o", "show", "job"], env=env, capture_output=True, text=True, check=True
    ).stdout
    return [dict(re.findall(r"(\S+?)=(\S*)", line)) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """(slurm workdir, local workdir, SLURM job records by (rule, method or ''))."""
    base = tmp_path_factory.mktemp("slurm_runs")
    config = small_config(base / "config.yaml")
    slurm_dir, local_dir = base / "slurm", base / "local"
    common = [SNAKEMAKE, "-s", REPO / "Snakefile", "--configfile", config]
    # the local run takes the CPU the SLURM jobs leave while Snakemake polls for their status
    local = subprocess.Popen(
        ["nice", "-n", "19", *common, "-d", local_dir, "--cores", "1"],
        env=cluster,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # conda off: the profile's conda is replaced by env modules, which no rule declares, so
        # jobs run in this environment. No accounting here, so squeue gives the job status.
        slurm = subprocess.run(
            [
                *common,
                "-d",
                slurm_dir,
                "--profile",
                PROFILE,
                "--sdm",
                "env-modules",
                "--default-resources",
                *profile_default_resources(),
                "--slurm-status-command",
                "squeue",
                "--slurm-init-seconds-before-status-checks",
                "2",
                "--slurm-keep-successful-logs",
            ],
            env=cluster,
            capture_output=True,
            text=True,
            timeout=SLURM_RUN_TIMEOUT_S,
        )
        local_out = local.communicate(timeout=SLURM_RUN_TIMEOUT_S)[0]
    finally:
        local.kill()
    assert slurm.returncode == 0, (
        f"SLURM run failed:\n{slurm.stdout[-3000:]}\n{slurm.stderr[-6000:]}"
    )
    assert local.returncode == 0, f"local run failed:\n{local_out[-6000:]}"
    records = {}
    for rec in job_records(cluster):
        match = re.fullmatch(r"rule_(\w+?)(?:_wildcards_(\w+))?", rec.get("Comment", ""))
        assert match, f"job {rec.get('JobId')} has no Snakemake rule comment: {rec.get('Comment')}"
        rule, wildcards = match.group(1), match.group(2) or ""
        method = next((m for m in METHODS if wildcards.endswith(f"_{m}")), "")
        assert (rule, method) not in records, f"{rule} {method} ran twice"
        records[rule, method] = rec
    return slurm_dir, local_dir, records


@pytest.mark.slurm
def test_every_rule_ran_as_a_completed_slurm_job_in_the_partition(runs):
    _, _, records = runs
    expected = {(rule, m) for rule in GPU_RULES for m in METHODS}
    expected |= {(rule, "") for rule in CPU_RULES}
    assert set(records) == expected
    for key, rec in records.items():
        assert rec["JobState"] == "COMPLETED", (key, rec["JobState"])
        assert rec["Partition"] == PARTITION, key


@pytest.mark.slurm
def test_gpu_rules_were_allocated_a_gpu(runs):
    """SLURM records the GPU request of sample jobs only (train jobs of CPU methods ask for none),
    and slurmd's allocation reaches the rule: the job's output (the rule's log on stderr) shows
    CUDA_VISIBLE_DEVICES, unset in the submitting environment, naming one of the node's 2 GPUs."""
    _, _, records = runs
    for (rule, method), rec in records.items():
        visible = re.search(r"CUDA_VISIBLE_DEVICES=(\S+)", Path(rec["StdOut"]).read_text())
        assert visible, (rule, method)
        if rule == "sample":
            assert rec.get("TresPerJob") == "gres:gpu:1", (rule, method, rec.get("TresPerJob"))
            assert visible.group(1) in {"0", "1"}, (rule, method, visible.group(1))
        else:
            assert "TresPerJob" not in rec, (rule, rec.get("TresPerJob"))
            assert visible.group(1) == "(unset)", (rule, visible.group(1))


@pytest.mark.slurm
def test_job_sizes_follow_the_config_resources_by_preset(runs):
    _, _, records = runs
    for (rule, method), rec in records.items():
        mem, minutes, cpus = expected_size(rule, method)
        assert rec["MinMemoryNode"] == f"{mem}M", (rule, method, rec["MinMemoryNode"])
        assert rec["TimeLimit"] == f"00:{minutes:02d}:00", (rule, method, rec["TimeLimit"])
        assert rec["NumCPUs"] == str(cpus), (rule, method, rec["NumCPUs"])


@pytest.mark.slurm
def test_metrics_equal_the_local_run(runs):
    slurm_dir, local_dir, _ = runs
    tables = ["results/tables/metrics_long.tsv"]
    tables += [f"results/synthetic/drug_ood/{m}/metrics.tsv" for m in METHODS]
    for table in tables:
        on_slurm = pd.read_csv(slurm_dir / table, sep="\t")
        local = pd.read_csv(local_dir / table, sep="\t")
        assert len(local) > 0, table
        pd.testing.assert_frame_equal(on_slurm, local, check_exact=True, obj=table)
    for ext in ("pdf", "png"):
        assert (slurm_dir / f"results/figures/heatmap_scperturbench.{ext}").stat().st_size > 1000
