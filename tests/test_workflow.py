"""Workflow tests: dry run, lint, formatting, the CI-sized DAG end to end."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import REPO

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def snakemake(*args, cwd=REPO, check=True):
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def job_counts(stdout: str) -> dict[str, int]:
    lines = stdout.split("Job stats:")[1].splitlines()[3:]
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_dry_run_default_lists_expected_jobs(tmp_path):
    out = snakemake("-n", "-d", tmp_path, "--configfile", REPO / "config/config.yaml").stdout
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    n_splits = len(cfg["datasets"]["synthetic"]["splits"])
    n_pairs = sum(
        len(m.get("splits", cfg["datasets"]["synthetic"]["splits"]))
        for m in cfg["methods"].values()
    )
    expected = {
        "simulate_world": 1,
        "preprocess": 1,
        "make_split": n_splits,
        "select_hvg": n_splits,
        "train": n_pairs,
        "sample": n_pairs,
        "aggregate": 1,
        "heatmap": 1,
        "world_vs_real": 1,
        "all": 1,
        "total": 6 + 3 * n_splits + 2 * n_pairs,
    }
    # reference rows: the oracle's prediction per split (the ceiling is computed by evaluate);
    # the paired statistics and every figure family the split types fill (scpert.plots.FIGURES)
    from scpert.plots import figure_names

    split_types = [cfg["splits"][s]["type"] for s in cfg["datasets"]["synthetic"]["splits"]]
    figures = figure_names(split_types, ["synthetic"])
    expected.update({"oracle": n_splits, "comparisons": 1})
    expected.update({f"figure_{name.removesuffix('_synthetic')}": 1 for name in figures})
    expected["total"] += n_splits + 1 + len(figures)
    # one evaluate job (a rule per split) scores every method of the split
    expected.update(
        {f"evaluate_synthetic_{split}": 1 for split in cfg["datasets"]["synthetic"]["splits"]}
    )
    if cfg.get("priors", {}).get("enabled"):  # one graph prior, MDT + evaluation per split
        expected.update(pretrain_graph=1, pretrain_mdt=n_splits, evaluate_priors=n_splits)
        expected["total"] += 1 + 2 * n_splits
    # one latent model per split that a method needing the "latent" prior (scPPDM, StateXDiff)
    # runs on
    from scpert.methods import get_spec

    def required_priors(name, m):
        spec = get_spec(m.get("base", name))
        return spec.required_priors(spec.resolve(m["preset"], m.get("params")))

    def needs_latent(name, m):
        return "latent" in required_priors(name, m)

    latent_splits = {
        split
        for name, m in cfg["methods"].items()
        if needs_latent(name, m)
        for split in m.get("splits", cfg["datasets"]["synthetic"]["splits"])
    }
    if latent_splits:
        expected["finetune_latent"] = len(latent_splits)
        expected["total"] += len(latent_splits)
    # one marginal prior per split that a PerturbDiff variant fine-tuning it (init pretrained) runs on
    marginal_splits = {
        split
        for name, m in cfg["methods"].items()
        if m.get("base", name) == "perturbdiff" and m.get("params", {}).get("init") == "pretrained"
        for split in m.get("splits", cfg["datasets"]["synthetic"]["splits"])
    }
    if marginal_splits:
        expected["pretrain_perturbdiff"] = len(marginal_splits)
        expected["total"] += len(marginal_splits)
    # StateXDiff's cell-state priors: a translator and the PQM validation per dataset, protein
    # and VMCS per split of a method needing them
    cell_state_splits = {
        split
        for name, m in cfg["methods"].items()
        if {"protein", "vmcs"} & set(required_priors(name, m))
        for split in m.get("splits", cfg["datasets"]["synthetic"]["splits"])
    }
    if cell_state_splits:
        n = len(cell_state_splits)
        expected.update(train_translator=1, validate_pqm=1, infer_protein=n, train_vmcs=n)
        expected["total"] += 2 + 2 * n
    assert job_counts(out) == expected


def test_dry_run_multiseed_overlay_repeats_every_method_per_seed(tmp_path):
    """config/multiseed.yaml: train and sample once per (method, split, seed), one aggregate job
    that writes the tables across seeds; the replicates run in <method>.seed<s>/."""
    default = snakemake("-n", "-d", tmp_path / "a", "--configfile", REPO / "config/config.yaml")
    out = snakemake(
        "-n",
        "-d",
        tmp_path / "b",
        "--configfile",
        REPO / "config/config.yaml",
        REPO / "config/multiseed.yaml",
    ).stdout
    one, three = job_counts(default.stdout), job_counts(out)
    seeds = yaml.safe_load((REPO / "config/multiseed.yaml").read_text())["seeds"]
    assert seeds == [0, 1, 2]
    assert three["train"] == 3 * one["train"] and three["sample"] == 3 * one["sample"]
    assert three["aggregate"] == 1 and three.get("finetune_latent") == one.get("finetune_latent")
    assert "results/synthetic/drug_ood/scppdm.seed2/pred.h5ad" in out
    assert "results/tables/multiseed.tsv" in out and "multiseed.tsv" not in default.stdout
    assert "results/tables/aggregate_score.tsv" in default.stdout


HEAD_PROBE = """
import sys
from snakemake.cli import main
try:
    main(sys.argv[1:])
finally:
    heavy = ("torch", "rdkit", "sklearn", "anndata", "scanpy")
    print("HEAD-IMPORTS", *sorted(m for m in heavy if m in sys.modules) or ["none"])
"""


def test_benchmark_files_follow_config(tmp_path):
    """``benchmark: true`` writes the rule's benchmark file, ``false`` (the default and CI
    configs) writes none; the job's output is the same."""
    from scpert import layout

    counts = f"resources/raw/synthetic/{layout.world_files()['counts']}"
    bench = "results/benchmarks/simulate_world/synthetic.tsv"
    for flag in ("True", "False"):  # --config parses Python literals
        workdir = tmp_path / flag
        snakemake(
            "-c1", "-d", workdir, "--configfile", REPO / "config/ci.yaml",
            "--config", f"benchmark={flag}", "--", counts,
        )  # fmt: skip
        assert (workdir / counts).is_file()
        assert (workdir / bench).is_file() == (flag == "True")
    header = (tmp_path / "True" / bench).read_text().splitlines()[0].split("\t")
    assert header[:2] == ["s", "h:m:s"]
    for config_file in ("config/config.yaml", "config/ci.yaml"):
        assert yaml.safe_load((REPO / config_file).read_text())["benchmark"] is False


def test_dry_run_head_process_imports_neither_torch_nor_rdkit(tmp_path):
    """The head process (config resolution, method specs, the target and input functions of the
    whole default DAG) stays light: no torch, RDKit, scikit-learn, anndata or scanpy."""
    proc = subprocess.run(
        [sys.executable, "-c", HEAD_PROBE, "-s", str(REPO / "Snakefile"), "-n", "-d", tmp_path],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Job stats:" in proc.stdout  # the DAG was built, input functions included
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("HEAD-IMPORTS")]
    assert line == "HEAD-IMPORTS none"


def test_every_prior_of_the_layout_is_built_by_a_rule(tmp_path):
    """Each prior of scpert.layout.PRIORS is the output folder of one rule at its level."""
    from scpert import layout

    targets = [layout.prior_dir(name, "synthetic", "drug_ood") for name in layout.PRIORS]
    assert targets == [
        "results/synthetic/priors/graph",
        "results/synthetic/drug_ood/priors/mdt",
        "results/synthetic/drug_ood/priors/latent",
        "results/synthetic/priors/translator",
        "results/synthetic/drug_ood/priors/protein",
        "results/synthetic/drug_ood/priors/vmcs",
        "results/synthetic/drug_ood/priors/protein_measured",
        "results/synthetic/drug_ood/priors/vmcs_measured",
        "results/synthetic/drug_ood/priors/translator_finetuned",
        "results/synthetic/drug_ood/priors/protein_finetuned",
        "results/synthetic/drug_ood/priors/vmcs_finetuned",
        "results/synthetic/drug_ood/priors/perturbdiff_marginal",
    ]
    out = snakemake("-n", "-d", tmp_path, *targets).stdout
    counts = job_counts(out)
    assert counts["pretrain_graph"] == 1 and counts["pretrain_mdt"] == 1
    assert counts["finetune_latent"] == 1 and "train" not in counts
    assert counts["train_translator"] == 1 and counts["infer_protein"] == 1
    assert counts["train_vmcs"] == 1
    assert counts["pretrain_perturbdiff"] == 1
    # Fig. 3c's protein sources (TrueProt, TrueProt-FT)
    assert counts["measure_protein"] == 1 and counts["train_vmcs_measured"] == 1
    assert counts["finetune_translator"] == 1 and counts["infer_protein_finetuned"] == 1
    assert counts["train_vmcs_finetuned"] == 1


def test_configfile_replaces_the_default_config(tmp_path):
    """--configfile ci.yaml must not inherit default-only entries (methods, priors) by merging."""
    out = snakemake("-n", "-d", tmp_path, "--configfile", REPO / "config/ci.yaml").stdout
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    ci = yaml.safe_load((REPO / "config/ci.yaml").read_text())
    assert default.get("priors", {}).get("enabled") and not ci.get("priors", {}).get("enabled")
    counts = job_counts(out)
    assert "pretrain_graph" not in counts and "pretrain_mdt" not in counts
    only_default = set(default["methods"]) - set(ci["methods"])
    # a method's jobs write results/{dataset}/{split}/{method}/model (the checkout's own path may
    # contain a method's name)
    assert only_default and not any(f"/{m}/model" in out for m in only_default)


def test_lint_is_clean():
    proc = snakemake("--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_snakefmt_check():
    rules = sorted(str(p) for p in (REPO / "workflow/rules").glob("*.smk"))
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("snakefmt")),
            "--check",
            str(REPO / "Snakefile"),
            *rules,
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


PY_DIRS = ("src", "tests", "workflow/scripts", "benchmarks", "resources")


def test_ruff_lint_and_format():
    ruff = str(Path(sys.executable).with_name("ruff"))
    for args in (["check"], ["format", "--check"]):
        proc = subprocess.run([ruff, *args, *PY_DIRS], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, f"ruff {' '.join(args)}:\n{proc.stdout}{proc.stderr}"


def _run_ci(workdir: Path) -> None:
    snakemake("--cores", "2", "-d", workdir, "--configfile", REPO / "config/ci.yaml")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ci_run")
    _run_ci(workdir)
    return workdir


@pytest.mark.workflow
def test_ci_dag_produces_tables_figures_and_report(ci_run):
    tables = ci_run / "results/tables"
    long = pd.read_csv(tables / "metrics_long.tsv", sep="\t")
    assert list(long.columns) == [
        "dataset",
        "split",
        "method",
        "condition",
        "protocol",
        "metric",
        "deg_set",
        "value",
    ]
    cfg = yaml.safe_load((REPO / "config/ci.yaml").read_text())
    assert set(long["method"]) == set(cfg["methods"]) | {"oracle", "ceiling"}
    assert set(long["split"]) == set(cfg["splits"])
    assert set(long["protocol"]) == set(cfg["evaluation"]["protocols"])
    scperturbench = long[long["protocol"] == "scperturbench"]
    assert set(scperturbench["metric"]) == {
        "mse",
        "pcc_delta",
        "e_distance",
        "wasserstein",
        "kl",
        "kl_floor",
        "common_degs",
    }
    assert {
        "pearson_delta",
        "overlap_at_N",
        "discrimination_score_l1",
        "de_spearman_sig",
        "r2",
    } <= set(long.loc[long["protocol"] == "celleval", "metric"])
    assert {"logfc_pearson", "delta_spearman", "ev"} <= set(
        long.loc[long["protocol"] == "scppdm", "metric"]
    )
    assert set(long.loc[long["protocol"] == "systema", "metric"]) == {
        "l2",
        "pearson_delta_hat",
        "centroid_accuracy",
        "discrimination_score",
    }
    assert long["value"].notna().all()
    summary = pd.read_csv(tables / "summary.tsv", sep="\t")
    assert list(summary.columns) == [
        "dataset",
        "split",
        "method",
        "protocol",
        "metric",
        "deg_set",
        "mean",
        "sd",
        "n",
    ]
    md = (tables / "table1_scperturbench_top100.md").read_text()
    assert (
        "| Dataset | Split | Method | E-dist ↓ | MSE ↓ | PCCΔ ↑ | KL ↓ | WD ↓ | Common-DEGs ↑ |"
        in md
    )
    assert "| DEOver ↑ | DEPrec ↑ | ES ↑ |" in (tables / "perturbdiff_table4.md").read_text()
    for name in (
        "scppdm_table1_2",
        "scppdm_table3_4",
        "scdfm_table1",
        "scdfm_table2",
        "statexdiff_table11_ud_top100",
    ):
        assert (tables / f"{name}.md").stat().st_size > 200 and (tables / f"{name}.tex").exists(), (
            name
        )
    for ext in ("pdf", "png"):
        assert (ci_run / f"results/figures/heatmap_scperturbench.{ext}").stat().st_size > 1000
        assert (ci_run / f"results/figures/world_vs_real_synthetic.{ext}").stat().st_size > 1000
    # reference rows last and unranked in the paper tables; the oracle beats base_control
    assert "| [oracle] |" in md and "| [ceiling] |" in md
    pcc = summary[(summary["metric"] == "pcc_delta") & (summary["deg_set"] == "top100")]
    pcc = pcc.set_index(["split", "method"])["mean"]
    for split in cfg["splits"]:
        assert pcc[split, "oracle"] > pcc[split, "base_control"] + 0.3, split
        assert 0 < pcc[split, "ceiling"] <= 1
    comparisons = pd.read_csv(tables / "comparisons.tsv", sep="\t")
    assert set(comparisons["method"]) == {"scppdm"}
    assert comparisons["p_bh"].between(0, 1).all()
    from scpert.plots import figure_names

    types = [cfg["splits"][s]["type"] for s in cfg["splits"]]
    names = figure_names(types, ["synthetic"], has_variants=False)  # one scPPDM variant
    assert "ablations_synthetic" not in names and "radar_synthetic" in names
    assert not (ci_run / "results/figures/ablations_synthetic.png").exists()
    for name in names:
        for ext in ("pdf", "png", "tsv"):
            assert (ci_run / f"results/figures/{name}.{ext}").stat().st_size > 100, name
    realism = pd.read_csv(tables / "world_vs_real_synthetic.tsv", sep="\t")
    assert list(realism.columns[:6]) == [
        "statistic",
        "family",
        "world",
        "real",
        "ratio",
        "within_tolerance",
    ]
    assert len(realism) == 7 and realism["world"].notna().all()
    for rule in ("train", "sample", "evaluate"):
        assert list((ci_run / "results/logs" / rule).rglob("*.log")), rule
    report = ci_run / "results/report.html"
    snakemake("--report", report, "-d", ci_run, "--configfile", REPO / "config/ci.yaml")
    assert report.stat().st_size > 10_000


@pytest.mark.workflow
def test_ci_baselines_behave(ci_run):
    """On the CI world the simple baselines order as expected (drug_ood, top-100 DEGs)."""
    s = pd.read_csv(ci_run / "results/tables/summary.tsv", sep="\t")
    s = s[(s["deg_set"] == "top100") & (s["protocol"] == "scperturbench")].set_index(
        ["split", "method", "metric"]
    )["mean"]
    assert abs(s["drug_ood", "base_control", "pcc_delta"]) < 0.3
    assert (
        s["drug_ood", "train_mean", "pcc_delta"] > s["drug_ood", "base_control", "pcc_delta"] + 0.05
    )
    # structure-aware regression generalises to unseen drugs better than the mean shift; the
    # world's shared response (docs/world_vs_real.md) gives the mean shift much of the signal, as
    # on real data, so the gap is smaller than the shift over base_control
    assert s["drug_ood", "base_reg", "pcc_delta"] > s["drug_ood", "train_mean", "pcc_delta"] + 0.05
    assert s["combo_seen2", "additive", "mse"] < s["combo_seen2", "train_mean", "mse"]


@pytest.mark.workflow
def test_same_seed_gives_identical_tables(ci_run, tmp_path):
    _run_ci(tmp_path)
    for name in ("metrics_long.tsv", "summary.tsv", "table1_scperturbench_top100.md"):
        assert _digest(ci_run / "results/tables" / name) == _digest(
            tmp_path / "results/tables" / name
        ), name


# Bad input and faults (one clear message, non-zero exit, no partial outputs): test_bad_input.py


def _with(tmp_path, edit) -> Path:
    cfg = yaml.safe_load((REPO / "config/ci.yaml").read_text())
    edit(cfg)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_misspelled_method_param_fails_the_dry_run_with_one_line(tmp_path):
    cfg = _with(tmp_path, lambda c: c["methods"]["base_reg"].update(params={"alpah": 2.0}))
    proc = snakemake("-n", "-d", tmp_path, "--configfile", cfg, check=False)
    assert proc.returncode != 0
    lines = [x for x in (proc.stdout + proc.stderr).splitlines() if "alpah" in x]
    assert lines == [
        "config: methods.base_reg.params.alpah: unknown parameter "
        "(known: alpha, describe_n_genes, n_bits, n_context_pcs, radius)"
    ]
    assert not (tmp_path / "results").exists()


def test_reserved_split_name_fails_at_parse_time(tmp_path):
    def rename(c):
        c["splits"]["priors"] = c["splits"].pop("drug_ood")
        c["datasets"]["synthetic"]["splits"] = ["priors", "combo_seen2"]
        c["methods"]["scppdm"]["splits"] = ["priors"]

    proc = snakemake("-n", "-d", tmp_path, "--configfile", _with(tmp_path, rename), check=False)
    assert proc.returncode != 0
    assert "config: splits.priors: the name is reserved by the results layout" in proc.stdout


def test_reference_row_name_as_a_method_fails_at_parse_time(tmp_path):
    def rename(c):
        c["methods"]["oracle"] = c["methods"].pop("train_mean")

    proc = snakemake("-n", "-d", tmp_path, "--configfile", _with(tmp_path, rename), check=False)
    assert proc.returncode != 0
    assert "config: methods.oracle: the name is reserved for a reference row" in proc.stdout


def test_unknown_scatter_reference_fails_at_parse_time(tmp_path):
    def point(c):
        c["figures"] = {"scatter_reference": "nope"}

    proc = snakemake("-n", "-d", tmp_path, "--configfile", _with(tmp_path, point), check=False)
    assert proc.returncode != 0
    assert "config: figures.scatter_reference: 'nope' is not a configured method" in proc.stdout


def test_a_prior_no_rule_provides_is_a_config_error(monkeypatch):
    from scpert.errors import ConfigError
    from scpert.methods import registry
    from scpert.workflow_config import resolve_config

    spec = registry.MethodSpec("needs_atlas", "nowhere", {"tiny": {}}, priors=("atlas",))
    monkeypatch.setitem(registry._SPECS, "needs_atlas", spec)
    cfg = yaml.safe_load((REPO / "config/ci.yaml").read_text())
    cfg["methods"] = {"mine": {"base": "needs_atlas"}}
    with pytest.raises(ConfigError, match="methods.mine: method 'needs_atlas' needs prior 'atlas'"):
        resolve_config(cfg)
    cfg["methods"] = {"base_control": {}}
    assert resolve_config(cfg).jobs  # the same config without it resolves


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")
def test_rulegraph_renders(tmp_path):
    dot = snakemake("--rulegraph", "-d", tmp_path).stdout
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True
    ).stdout
    assert "<svg" in svg and "evaluate" in svg
