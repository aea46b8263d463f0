"""Bad input and faults, one case at a time through the workflow.

Every case of :data:`CASES` starts from a small user dataset (raw counts and ``drugs.tsv`` written
here, a config with relative paths, baselines only, the scPerturBench protocol) or from a copy of
one finished run of it, breaks one thing, runs Snakemake in that folder and asserts

- the exit status;
- the one-line message (``…`` stands for any text): on a line of Snakemake's output and, when a
  job fails, as the last line of the rule log that Snakemake names in "Error in rule";
- that nothing is left: no output of the failed job and no hidden temporary under ``results/``;
- parse-time errors: no job ran and Snakemake's output is a few lines (no schema dump).

Cases that corrupt an intermediate copy the shared finished run, so only the jobs downstream of
the broken file run. The table of cases with their messages, ``tests/bad_input_cases.md``, is
generated from :data:`CASES` (``python -m tests.test_bad_input > tests/bad_input_cases.md``) and
:func:`test_case_table_is_current` keeps it true.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from .conftest import REPO, make_raw

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TABLE = Path(__file__).with_name("bad_input_cases.md")

COUNTS = "data/counts.h5ad"
DRUGS = "data/drugs.tsv"
PROCESSED = "results/own/processed.h5ad"
SPLIT = "results/own/splits/drug_ood.tsv"
GENES = "results/own/drug_ood/genes.tsv"
REG = "results/own/drug_ood/base_reg"  # the structure-based baseline's folder

#: the user's config: one h5ad dataset, one split, two baselines, one metric protocol
CONFIG = {
    "seed": 0,
    "control_label": "control",
    "device": "cpu",
    "datasets": {
        "own": {
            "source": "h5ad",
            "counts": COUNTS,
            "drugs": DRUGS,
            "splits": ["drug_ood"],
            "preprocess": {"min_cells_per_condition": 5},
            "hvg": {"n_top_genes": 30},
        }
    },
    "splits": {"drug_ood": {"type": "drug_ood", "seed": 0, "test_fraction": 0.34}},
    "methods": {"base_control": {"preset": "tiny"}, "base_reg": {"preset": "tiny"}},
    "evaluation": {"protocols": ["scperturbench"], "max_cells": 100},
}


# --------------------------------------------------------------------------------- the world
class World:
    """One working folder: the user's inputs, config and (maybe) results of a run."""

    def __init__(self, root: Path, origin: Path | None = None):
        self.root = root
        self.origin = origin  # the finished run this folder is a copy of
        self.config = yaml.safe_load((root / "config.yaml").read_text())

    @classmethod
    def inputs(cls, root: Path) -> World:
        """A fresh folder with the user's raw counts, drug table and config."""
        (root / "data").mkdir(parents=True, exist_ok=True)
        make_raw().write_h5ad(root / COUNTS)
        drug_table().to_csv(root / DRUGS, sep="\t", index=False)
        (root / "config.yaml").write_text(yaml.safe_dump(CONFIG))
        return cls(root)

    @classmethod
    def copy_of(cls, finished: Path, root: Path) -> World:
        """A copy of a finished run (modification times kept, so nothing is out of date)."""
        shutil.copytree(finished, root, symlinks=True, dirs_exist_ok=True)
        return cls(root, origin=finished)

    def __truediv__(self, rel: str) -> Path:
        return self.root / rel

    def save_config(self) -> None:
        (self.root / "config.yaml").write_text(yaml.safe_dump(self.config))

    def command(self, *args) -> list[str]:
        config = f"--configfile={self.root / 'config.yaml'}"
        return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(self.root), config, *args]

    def snakemake(self, *args, umask: int | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(*args),
            cwd=REPO,
            capture_output=True,
            text=True,
            preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
        )

    def hidden_temporaries(self) -> list[Path]:
        """Hidden files or folders under results/ (Snakemake's own ``.snakemake_timestamp`` aside)."""
        results = self.root / "results"
        if not results.exists():
            return []
        return [p for p in results.rglob(".*") if p.name != ".snakemake_timestamp"]


def drug_table() -> pd.DataFrame:
    smiles = pd.read_csv(REPO / "resources/drugs/drug_panel.tsv", sep="\t")["smiles"].tolist()
    return pd.DataFrame(
        {
            "drug": [f"d{c}" for c in "ABCDEF"],
            "smiles": smiles[:6],
            "moa": ["m1", "m1", "m2", "m2", "m3", "m3"],
            "targets": "",
        }
    )


# ---------------------------------------------------------------------------- edits of inputs
def config_edit(edit: Callable[[dict], None]) -> Callable[[World], None]:
    def apply(world: World) -> None:
        edit(world.config)

    return apply


def counts_edit(edit: Callable[[ad.AnnData], ad.AnnData | None]) -> Callable[[World], None]:
    def apply(world: World) -> None:
        raw = make_raw()
        (edit(raw) or raw).write_h5ad(world / COUNTS)

    return apply


def drugs_edit(edit: Callable[[pd.DataFrame], pd.DataFrame], sep: str = "\t", keep_mtime=False):
    """Rewrite drugs.tsv; ``keep_mtime`` keeps its modification time (so that, in a finished run,
    only the forced job reruns instead of everything downstream of the drug table)."""

    def apply(world: World) -> None:
        path = world / DRUGS
        stat = path.stat()
        edit(drug_table()).to_csv(path, sep=sep, index=False)
        if keep_mtime:
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    return apply


def truncate(rel: str, keep: float = 0.5) -> Callable[[World], None]:
    """Cut a file to ``keep`` of its size (mid-line for text files), as a full disk or a killed
    copy leaves it."""

    def apply(world: World) -> None:
        path = world / rel
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return apply


def edit_text(rel: str, edit: Callable[[list[str]], list[str]]) -> Callable[[World], None]:
    def apply(world: World) -> None:
        path = world / rel
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(edit(lines)))

    return apply


def set_values(column: str, where: Callable[[pd.DataFrame], pd.Series], value):
    def edit(raw: ad.AnnData) -> None:
        raw.obs.loc[where(raw.obs), column] = value

    return edit


def dense_counts(edit: Callable[[np.ndarray], None]):
    def apply(raw: ad.AnnData) -> None:
        x = raw.X.toarray()
        edit(x)
        raw.X = sp.csr_matrix(x)

    return apply


def duplicate_gene(raw: ad.AnnData) -> None:
    names = list(raw.var_names)
    names[1] = names[0]
    raw.var_names = names


def drop_drug_column(raw: ad.AnnData) -> None:
    del raw.obs["drug"]


def line_without_controls(raw: ad.AnnData) -> ad.AnnData:
    obs = raw.obs
    return raw[~((obs["cell_line"] == "L3") & (obs["drug"] == "control")).to_numpy()].copy()


def not_hdf5(world: World) -> None:
    (world / COUNTS).write_text("cell,G0,G1\nc0,1,2\n")


def drop_test_condition(world: World) -> None:
    path = world / f"{REG}/pred.h5ad"
    pred = ad.read_h5ad(path)
    first = pred.obs["condition"].astype(str).iloc[0]
    pred[(pred.obs["condition"].astype(str) != first).to_numpy()].copy().write_h5ad(path)


def remove_model_state(world: World) -> None:
    (world / f"{REG}/model/state.npz").unlink()


def add_line(rel: str, line: str) -> Callable[[World], None]:
    return edit_text(rel, lambda lines: [*lines, line])


# ------------------------------------------------------------------------- custom case drivers
def kill_train_job(signum: int):
    """Run the workflow and send ``signum`` to base_reg's train job once it runs (the first line
    of its rule log is written), as ``kill -9``, a node failure (SIGKILL) or a SLURM time limit
    (SIGTERM) does."""

    def run(world: World) -> subprocess.CompletedProcess:
        log = world / "results/logs/train/own/drug_ood/base_reg.log"
        scripts = str(world / ".snakemake/scripts")
        out, err = world / "snakemake.out", world / "snakemake.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(
                world.command("-j1", f"{REG}/model"), cwd=REPO, stdout=stdout, stderr=stderr
            )
            sent = False
            deadline = time.monotonic() + 300
            while proc.poll() is None and time.monotonic() < deadline:
                if not sent and log.exists() and "CUDA_VISIBLE_DEVICES" in log.read_text():
                    for pid in job_pids(scripts, "train.py"):
                        os.kill(pid, signum)
                        sent = True
                time.sleep(0.02)
            proc.wait(timeout=60)
        assert sent, "the train job was never seen running"
        return subprocess.CompletedProcess(
            proc.args, proc.returncode, out.read_text(), err.read_text()
        )

    return run


def job_pids(scripts_dir: str, script: str) -> list[int]:
    """PIDs of the Python processes running a Snakemake script of this run (by command line)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # the Python process itself (bash's "set -euo pipefail; python ..." argument does not start
        # with the script's path)
        if any(a.startswith(scripts_dir.encode()) and a.endswith(script.encode()) for a in argv):
            pids.append(int(proc.name))
    return pids


def remove_base_reg_outputs(world: World) -> None:
    shutil.rmtree(world / REG)
    (world / "results/logs/train/own/drug_ood/base_reg.log").unlink()


# ------------------------------------------------------------------------------------- checks
def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reruns(world: World, proc: subprocess.CompletedProcess) -> None:
    """The dry run lists base_reg's train ("Params have changed since last execution"), sample,
    the split's evaluate, the tables, statistics and figures, and no other job."""
    out = proc.stdout
    assert job_stats(out) == {
        "train": 1,
        "sample": 1,
        "evaluate_own_drug_ood": 1,
        "aggregate": 1,
        "heatmap": 1,
        # the paired statistics and the figures that read the split's metrics or predictions
        "comparisons": 1,
        "figure_comparisons": 1,
        "figure_dose_response": 1,
        "figure_padj_density": 1,
        "figure_radar": 1,
        "figure_scatter": 1,
        "all": 1,
        "total": 12,
    }, out
    blocks = job_blocks(out)
    train = blocks["train"]
    assert "method=base_reg" in train and "Params have changed since last execution" in train
    assert "method=base_reg" in blocks["sample"], blocks["sample"]
    # one evaluate job per split scores every method of the split
    assert "base_reg/pred.h5ad" in blocks["evaluate_own_drug_ood"]


def nothing_to_do(world: World, proc: subprocess.CompletedProcess) -> None:
    """The dry run says "Nothing to be done" (no spurious reruns)."""
    assert "Nothing to be done" in proc.stdout + proc.stderr


def same_tables(world: World, proc: subprocess.CompletedProcess) -> None:
    """The rebuilt metrics and summary are byte-identical to the finished run's."""
    for rel in (f"{REG}/metrics.tsv", "results/tables/summary.tsv"):
        assert digest(world / rel) == digest(world.origin / rel), rel


def retrained(world: World, proc: subprocess.CompletedProcess) -> None:
    """base_reg's forced train job ran and wrote a new model (IFNG's row is never featurised)."""
    output = proc.stdout + proc.stderr  # a real run logs to stderr
    assert job_stats(output) == {"train": 1, "total": 1}, output
    model = f"{REG}/model/method.json"
    assert (world / model).stat().st_mtime_ns > (world.origin / model).stat().st_mtime_ns


def rerun_completes(world: World, proc: subprocess.CompletedProcess) -> None:
    """No model is left (SIGKILL leaves no line to log); the rerun completes, no temporaries."""
    assert not (world / f"{REG}/model").exists()
    again = world.snakemake("-j1", f"{REG}/model")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (world / f"{REG}/model/method.json").exists() and not world.hidden_temporaries()


def stale_removed_and_group_readable(world: World, proc: subprocess.CompletedProcess) -> None:
    """The rerun removes the temporaries (and logs it); folders 0750 and files 0640 (umask 027)."""
    folder = world / "results/own/drug_ood/base_control"
    assert not list(folder.glob(".*")), list(folder.glob(".*"))
    assert (folder / "model").stat().st_mode & 0o777 == 0o750
    assert (folder / "pred.h5ad").stat().st_mode & 0o777 == 0o640
    assert (folder / "model/method.json").stat().st_mode & 0o777 == 0o640
    assert (
        "left by an earlier job that was killed"
        in (world / "results/logs/train/own/drug_ood/base_control.log").read_text()
    )


def plant_stale_temporaries(world: World) -> None:
    """What a SIGKILLed train / sample job of base_control leaves (mkdtemp / mkstemp names)."""
    folder = world / "results/own/drug_ood/base_control"
    shutil.rmtree(folder)
    folder.mkdir()
    stale_dir = folder / ".model.k3j9x_2a"
    stale_dir.mkdir(mode=0o700)
    (stale_dir / "state.npz").write_bytes(b"partial")
    (folder / ".pred.h5ad.q8w1e0vn.h5ad").write_bytes(b"partial")


# -------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One bad input or fault and what the workflow must answer."""

    name: str
    category: str
    what: str  # the fault, in words
    message: str  # the one line expected ("…" = any text); "" when the run must succeed
    edit: Callable[[World], None] = lambda world: None
    start: str = "inputs"  # "inputs": the user's files only; "finished": a copy of a finished run
    args: tuple = ("-j1",)  # Snakemake arguments (targets, -n, -R ...)
    rule: str | None = None  # the rule whose job fails; None: parse time (no job runs)
    item: int | None = None  # the item of issue 11 this case comes from
    returncode: int = 1
    check: Callable[[World, subprocess.CompletedProcess], None] | None = None
    run: Callable[[World], subprocess.CompletedProcess] | None = None
    umask: int | None = None


DRY = ("-n",)
PREPROCESS = (PROCESSED, "-j1")
FORCE_REG_TRAIN = ("-j1", f"{REG}/model", "-R", "train")


CASES = [
    # -- config: parse time, one line naming the key ------------------------------------
    Case(
        "config-unknown-top-level-key",
        "config",
        "a top-level key the schema does not know (`output: x`)",
        "config: output: unknown key (allowed at the top level: seed, seeds, control_label, "
        "device, benchmark, datasets, splits, methods, evaluation, figures, priors, latent, "
        "perturbdiff_pretrain, downloads, citeseq, lincs, experiments, resources)",
        config_edit(lambda c: c.update(output="x")),
        args=DRY,
        item=12,
    ),
    Case(
        "config-misspelled-key",
        "config",
        "misspelled nested key `evaluation.max_cels`",
        "config: evaluation.max_cels: unknown key (allowed under evaluation: protocols, "
        "max_cells, seed, max_pred_cells, reference_rows, ceiling_seed)",
        config_edit(lambda c: c["evaluation"].update(max_cels=5)),
        args=DRY,
    ),
    Case(
        "config-bad-split-type",
        "config",
        "a split type that does not exist",
        "config: splits.drug_ood.type: 'drug_oodd' is not allowed (allowed: cell_ood, "
        "drug_ood, pair_ood, combo_seen0, combo_seen1, combo_seen2)",
        config_edit(lambda c: c["splits"]["drug_ood"].update(type="drug_oodd")),
        args=DRY,
    ),
    Case(
        "config-wrong-type",
        "config",
        "a string where an integer belongs (`seed: zero`)",
        "config: seed: expected integer, got str 'zero'",
        config_edit(lambda c: c.update(seed="zero")),
        args=DRY,
    ),
    Case(
        "config-missing-required-key",
        "config",
        "a dataset without `splits`",
        "config: datasets.own.splits: required key is missing",
        config_edit(lambda c: c["datasets"]["own"].pop("splits")),
        args=DRY,
    ),
    Case(
        "config-undefined-split",
        "config",
        "a dataset naming a split that `splits` does not define",
        "config: datasets.own.splits: 'cell_ood' is not defined under 'splits'",
        config_edit(lambda c: c["datasets"]["own"]["splits"].append("cell_ood")),
        args=DRY,
    ),
    Case(
        "config-unknown-method",
        "config",
        "a method that is not registered",
        "config: methods.chemcpa: unknown method 'chemcpa' (available: …)",
        config_edit(lambda c: c["methods"].update(chemcpa={"preset": "tiny"})),
        args=DRY,
    ),
    Case(
        "config-unknown-preset",
        "config",
        "a preset the method does not have",
        "config: methods.base_reg.preset: unknown preset 'huge' (known: tiny, paper)",
        config_edit(lambda c: c["methods"]["base_reg"].update(preset="huge")),
        args=DRY,
    ),
    Case(
        "config-misspelled-param",
        "config",
        "misspelled method parameter `methods.base_reg.params.alpah` (was accepted, trained "
        "with the default)",
        "config: methods.base_reg.params.alpah: unknown parameter (known: …)",
        config_edit(lambda c: c["methods"]["base_reg"].update(params={"alpah": 2.0})),
        args=DRY,
        item=1,
    ),
    Case(
        "config-param-wrong-kind",
        "config",
        "a method parameter of the wrong kind",
        "config: methods.base_reg.params.alpha: expected float like the preset's 1.0, got str "
        "'strong'",
        config_edit(lambda c: c["methods"]["base_reg"].update(params={"alpha": "strong"})),
        args=DRY,
    ),
    Case(
        "config-scppdm-unknown-param",
        "config",
        "unknown scPPDM parameter (was a bare KeyError at train time)",
        "config: methods.scppdm.params.stepz: unknown parameter (known: …)",
        config_edit(lambda c: c["methods"].update(scppdm={"params": {"stepz": 10}})),
        args=DRY,
        item=6,
    ),
    Case(
        "config-priors-without-files",
        "config",
        "drug priors enabled for a user dataset without prior files",
        "config: priors.files.dti is required for dataset 'own' (only simulated datasets bring "
        "their own prior files)",
        config_edit(lambda c: c.update(priors={"enabled": True})),
        args=DRY,
    ),
    Case(
        "config-counts-not-found",
        "config",
        "`datasets.own.counts` names a file that does not exist",
        "config: datasets.own.counts: file not found: data/count.h5ad",
        config_edit(lambda c: c["datasets"]["own"].update(counts="data/count.h5ad")),
        args=DRY,
    ),
    # -- raw counts: preprocess, naming the file and the field --------------------------
    Case(
        "counts-no-drug-column",
        "counts",
        "obs has no `drug` column",
        "data/counts.h5ad: obs['drug'] is missing (required: cell_line, drug, dose, plate)",
        counts_edit(drop_drug_column),
        args=PREPROCESS,
        rule="preprocess",
    ),
    Case(
        "counts-nan",
        "counts",
        "a NaN in X",
        "data/counts.h5ad: X has 1 NaN/inf values",
        counts_edit(dense_counts(lambda x: x.__setitem__((0, 0), np.nan))),
        args=PREPROCESS,
        rule="preprocess",
    ),
    Case(
        "counts-not-integer",
        "counts",
        "normalised values instead of raw counts",
        "data/counts.h5ad: X must hold raw integer counts",
        counts_edit(dense_counts(lambda x: x.__imul__(0.37))),
        args=PREPROCESS,
        rule="preprocess",
    ),
    Case(
        "counts-bad-dose",
        "counts",
        "a dose that is not a number",
        "data/counts.h5ad: obs['dose'] has non-numeric values, e.g. ['high']",
        counts_edit(set_values("dose", lambda o: o["drug"] == "dA", "high")),
        args=PREPROCESS,
        rule="preprocess",
    ),
    Case(
        "counts-dose-mismatch",
        "counts",
        "a combination with a single dose",
        "data/counts.h5ad: obs['dose'] does not match obs['drug'] components (cell c168: "
        "drug 'dA+dB', dose '1')",
        counts_edit(set_values("dose", lambda o: o["drug"] == "dA+dB", "1")),
        args=PREPROCESS,
        rule="preprocess",
    ),
    Case(
        "counts-duplicate-genes",
        "counts",
        "duplicate gene symbols",
        "data/counts.h5ad: var_names (gene symbols) are not unique, e.g. ['G0']",
        counts_edit(duplicate_gene),
        args=PREPROCESS,
        rule="preprocess",
    ),
    Case(
        "counts-no-controls",
        "counts",
        "controls labelled otherwise than `control_label`",
        "data/counts.h5ad: obs['drug'] has no control cells labelled 'control'",
        counts_edit(set_values("drug", lambda o: o["drug"] == "control", "DMSO")),
        args=PREPROCESS,
        rule="preprocess",
    ),
    Case(
        "counts-line-without-controls",
        "counts",
        "a cell line without control cells (failed late, at train)",
        "data/counts.h5ad: cell line 'L3' (obs['cell_line']) has no control cells "
        "(obs['drug'] == 'control'); every cell line needs its own control cells (methods "
        "start from them and metrics compare to them)",
        counts_edit(line_without_controls),
        args=PREPROCESS,
        rule="preprocess",
        item=9,
    ),
    Case(
        "counts-truncated-h5ad",
        "counts",
        "a truncated counts h5ad (was an h5py OSError traceback)",
        "data/counts.h5ad: not a readable h5ad (Unable to … open file (truncated file: …))",
        truncate(COUNTS),
        args=PREPROCESS,
        rule="preprocess",
        item=8,
    ),
    Case(
        "counts-not-hdf5",
        "counts",
        "a CSV file named .h5ad",
        "data/counts.h5ad: not a readable h5ad (Unable to … open file (file signature not found))",
        not_hdf5,
        args=PREPROCESS,
        rule="preprocess",
    ),
    Case(
        "counts-qc-removes-every-cell",
        "counts",
        "QC that removes every cell (was sklearn's `Found array with 0 sample(s)`)",
        "data/counts.h5ad: QC removed every cell: preprocess.min_genes=1000 removed the last "
        "720 of 720 cells (of 720 cells x 40 genes, min_genes=1000 removed 720 cells and 0 "
        "genes)",
        config_edit(lambda c: c["datasets"]["own"]["preprocess"].update(min_genes=1000)),
        args=PREPROCESS,
        rule="preprocess",
        item=7,
    ),
    # -- drug table ---------------------------------------------------------------------
    Case(
        "drugs-comma-separated",
        "drug table",
        "a comma-separated drugs.tsv (was \"column 'drug' is missing\")",
        "data/drugs.tsv: not tab-separated (the header line has commas but no tabs); write "
        "the drug table as TSV or name it .csv (columns: drug, smiles, moa, targets)",
        drugs_edit(lambda t: t, sep=","),
        args=PREPROCESS,
        rule="preprocess",
        item=10,
    ),
    Case(
        "drugs-missing-column",
        "drug table",
        "a drug table without `moa`",
        "data/drugs.tsv: column 'moa' is missing (required: drug, smiles, moa, targets)",
        drugs_edit(lambda t: t.drop(columns="moa")),
        args=PREPROCESS,
        rule="preprocess",
    ),
    Case(
        "drugs-missing-drug",
        "drug table",
        "a drug of the counts without a row (was MoA 'unknown', moved from test to train)",
        "data/drugs.tsv: no row for drug 'dF' of data/counts.h5ad (column 'drug'; 1 of its 6 "
        "drugs missing)",
        drugs_edit(lambda t: t[t["drug"] != "dF"]),
        args=PREPROCESS,
        rule="preprocess",
        item=4,
    ),
    Case(
        "drugs-invalid-smiles",
        "drug table",
        "an unparsable SMILES of a drug in the data (failed late, at train)",
        "data/drugs.tsv: field 'smiles' of drug 'dA' is not a valid SMILES: 'C1CC(('",
        drugs_edit(lambda t: t.assign(smiles=np.where(t["drug"] == "dA", "C1CC((", t["smiles"]))),
        args=PREPROCESS,
        rule="preprocess",
    ),
    Case(
        "drugs-unused-row-without-smiles",
        "drug table",
        "an extra row without SMILES for a perturbation not in the counts (blocked base_reg)",
        "",
        drugs_edit(
            lambda t: pd.concat(
                [t, pd.DataFrame([{"drug": "IFNG", "smiles": "", "moa": "cytokine"}])]
            ).fillna(""),
            keep_mtime=True,
        ),
        start="finished",
        args=FORCE_REG_TRAIN,
        item=11,
        returncode=0,
        check=retrained,
    ),
    # -- corrupt intermediates (a copy of the finished run) ------------------------------
    Case(
        "split-truncated",
        "intermediates",
        "a split table cut mid-line (was read; the summary covered half the test conditions)",
        f"{SPLIT}: the last line is incomplete (the file was cut short)",
        truncate(SPLIT),
        start="finished",
        rule="select_hvg",
        item=3,
    ),
    Case(
        "split-missing-conditions",
        "intermediates",
        "a split table missing its last rows (cut at a line end)",
        f"{SPLIT}: 3 of the 57 conditions of {PROCESSED} are missing, e.g. 'L3|dE|1' (a "
        "split lists every condition of its data exactly once)",
        edit_text(SPLIT, lambda lines: lines[:-3]),
        start="finished",
        rule="select_hvg",
    ),
    Case(
        "split-duplicate-condition",
        "intermediates",
        "a condition listed twice in the split table",
        f"{SPLIT}: condition 'L1|control|0' is listed 2 times (each exactly once)",
        edit_text(SPLIT, lambda lines: [*lines, lines[1]]),
        start="finished",
        rule="select_hvg",
    ),
    Case(
        "genes-not-in-data",
        "intermediates",
        "genes.tsv naming a gene the processed data lack",
        f"{GENES}: 1 genes are not in the var_names of {PROCESSED}, e.g. ['NOTAGENE']",
        add_line(GENES, "NOTAGENE\t31\t0.5\n"),
        start="finished",
        rule="train",
    ),
    Case(
        "processed-truncated",
        "intermediates",
        "a truncated processed.h5ad (was an h5py OSError traceback)",
        f"{PROCESSED}: not a readable h5ad (Unable to … open file (truncated file: …))",
        truncate(PROCESSED),
        start="finished",
        rule="make_split",
    ),
    Case(
        "pred-missing-condition",
        "intermediates",
        "a prediction without one test condition",
        f"{REG}/pred.h5ad: no predicted cells for 1 of the 18 test conditions, e.g. "
        "'L1|dB|0.1' (obs['condition'])",
        drop_test_condition,
        start="finished",
        # the metrics as target: the figures reading the same prediction fail alike
        args=("-j1", f"{REG}/metrics.tsv"),
        rule="evaluate_own_drug_ood",
    ),
    Case(
        "metrics-truncated",
        "intermediates",
        "a metrics table cut mid-line",
        f"{REG}/metrics.tsv: the last line is incomplete (the file was cut short)",
        truncate(f"{REG}/metrics.tsv"),
        start="finished",
        rule="aggregate",
    ),
    Case(
        "model-state-missing",
        "intermediates",
        "a model folder without its state file: an unexpected exception (was a traceback "
        "on stderr and a log ending at its last INFO line)",
        "rule sample: unexpected FileNotFoundError: [Errno 2] No such file or directory: "
        f"'{REG}/model/state.npz' (inputs: {REG}/model, {PROCESSED}, {SPLIT}, {GENES}; "
        "traceback above)",
        remove_model_state,
        start="finished",
        args=("-j1", f"{REG}/pred.h5ad", "-R", "sample"),  # a folder's mtime is its timestamp
        rule="sample",
        item=5,
    ),
    # -- kills ------------------------------------------------------------------------
    Case(
        "kill-stale-temporaries",
        "kills",
        "hidden temporaries of SIGKILLed jobs beside their outputs; umask 027",
        "",
        plant_stale_temporaries,
        start="finished",
        args=("-j1", "results/own/drug_ood/base_control/metrics.tsv"),
        item=13,
        returncode=0,
        check=stale_removed_and_group_readable,
        umask=0o027,
    ),
    Case(
        "kill-sigkill-train",
        "kills",
        "SIGKILL of a running train job, then a rerun",
        "",
        remove_base_reg_outputs,
        start="finished",
        rule="train",
        check=rerun_completes,
        run=kill_train_job(signal.SIGKILL),
    ),
    Case(
        "kill-sigterm-train",
        "kills",
        "SIGTERM of a running train job (a SLURM time limit, scancel)",
        "rule train: stopped by SIGTERM; no output was written",
        remove_base_reg_outputs,
        start="finished",
        rule="train",
        run=kill_train_job(signal.SIGTERM),
    ),
    # -- determinism and reruns ----------------------------------------------------------
    Case(
        "rerun-after-param-edit",
        "determinism",
        'a method parameter edited after a finished run (was "Nothing to be done")',
        "",
        config_edit(lambda c: c["methods"]["base_reg"].update(params={"alpha": 2.0})),
        start="finished",
        args=DRY,
        item=2,
        returncode=0,
        check=reruns,
    ),
    Case(
        "rerun-nothing-changed",
        "determinism",
        "a second run with nothing changed",
        "",
        start="finished",
        args=DRY,
        returncode=0,
        check=nothing_to_do,
    ),
    Case(
        "rerun-same-seed-same-tables",
        "determinism",
        "base_reg's model, prediction, metrics and the tables deleted and rebuilt",
        "",
        lambda world: [shutil.rmtree(world / REG), shutil.rmtree(world / "results/tables")],
        start="finished",
        args=("-j1", "results/tables/summary.tsv"),
        returncode=0,
        check=same_tables,
    ),
]


# -------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished run of the user's dataset, copied by the cases that start from it."""
    root = tmp_path_factory.mktemp("finished")
    world = World.inputs(root)
    proc = world.snakemake("-j1")
    assert proc.returncode == 0, proc.stderr[-5000:]
    return root


def pattern(message: str) -> re.Pattern:
    return re.compile(".*?".join(re.escape(part) for part in message.split("…")))


FAILED_JOB = re.compile(r"^Error in rule (\S+):\n((?:    .*\n?)+)", re.M)


def failed_jobs(output: str) -> list[dict[str, str]]:
    """Rule, log and outputs of each "Error in rule" block of Snakemake's output."""
    jobs = []
    for rule, block in FAILED_JOB.findall(output):
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        log = fields.get("log", "").replace(" (check log file(s) for error details)", "")
        outputs = [p for p in fields.get("output", "").split(", ") if p]
        jobs.append({"rule": rule, "log": log, "outputs": outputs})
    return jobs


LOG_LINE = re.compile(r"^\S+ \S+ (?:ERROR|INFO|WARNING) \S+: (.*)$")


def last_log_message(path: Path) -> str:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert lines, f"{path} is empty"
    match = LOG_LINE.match(lines[-1])
    assert match, f"last line of {path} is not a log record: {lines[-1]!r}"
    return match.group(1)


def job_stats(stdout: str) -> dict[str, int]:
    lines = stdout.split("Job stats:")[1].splitlines()[3:]
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def job_blocks(stdout: str) -> dict[str, str]:
    """Rule -> the text of its (last) job block in a dry run."""
    blocks = {}
    for match in re.finditer(r"^(?:local)?rule (\w+):\n((?:    .*\n?)+)", stdout, re.M):
        blocks[match.group(1)] = match.group(2)
    return blocks


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, tmp_path: Path, request):
    if case.start == "finished":
        world = World.copy_of(request.getfixturevalue("finished"), tmp_path / "run")
    else:
        world = World.inputs(tmp_path / "run")
    case.edit(world)
    world.save_config()
    proc = case.run(world) if case.run else world.snakemake(*case.args, umask=case.umask)
    output = proc.stdout + proc.stderr
    assert proc.returncode == case.returncode, output[-5000:]
    failed = failed_jobs(output)
    if case.rule is None:
        assert not failed, failed
    else:
        assert [job["rule"] for job in failed] == [case.rule], output[-5000:]
        for out in failed[0]["outputs"]:
            assert not (world / out).exists(), out
    if case.message:
        expected = pattern(case.message)
        assert any(expected.search(line) for line in output.splitlines()), output[-5000:]
        if case.rule is None:  # parse time: no job, no results, no dump of schema and config
            assert not (world / "results").exists()
            assert len(output.strip().splitlines()) <= 5, output
        else:
            last = last_log_message(world / failed[0]["log"])
            assert expected.fullmatch(last), f"last log line: {last!r}"
            if case.item == 5:
                assert "Traceback (most recent call last)" in (world / failed[0]["log"]).read_text()
    if case.check:  # may rerun (after a SIGKILL, temporaries are left until the next run)
        case.check(world, proc)
    assert not world.hidden_temporaries(), world.hidden_temporaries()


# ------------------------------------------------------------- run_step and the atomic writers
def test_run_step_ends_the_log_with_one_line(tmp_path):
    from scpert import runtime
    from scpert.errors import InputError

    log = tmp_path / "step.log"
    data = tmp_path / "input.tsv"
    data.write_text("x\n")

    def broken(path):
        raise KeyError("alpah")

    with pytest.raises(SystemExit) as stop:
        runtime.run_step(log, broken, data)
    assert stop.value.code == 1
    text = log.read_text()
    assert last_log_message(log) == (
        f"broken: unexpected KeyError: 'alpah' (inputs: {data}; traceback above)"
    )
    assert text.index("Traceback (most recent call last)") < text.index("broken: unexpected")

    def bad_input(path):
        raise InputError(f"{path}: column 'x'\nis wrong")

    with pytest.raises(SystemExit):
        runtime.run_step(log, bad_input, data)
    assert last_log_message(log) == f"{data}: column 'x' is wrong"
    assert "Traceback" not in log.read_text()


def test_sigterm_during_a_write_leaves_nothing(tmp_path):
    """The step's writer is stopped by SIGTERM: exit 143, the log says so, no output, no temp."""
    script = f"""
import os, signal
from pathlib import Path
from scpert import runtime

def step(out):
    def writer(tmp):
        tmp.write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)
        tmp.write_text("never")
    runtime.write_atomic(out, writer)

runtime.run_step({str(tmp_path / "step.log")!r}, step, {str(tmp_path / "out.tsv")!r})
"""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert (
        last_log_message(tmp_path / "step.log") == "step: stopped by SIGTERM; no output was written"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step.log"]


def test_stale_temporaries_and_permissions(tmp_path):
    from scpert import runtime

    out = tmp_path / "model"
    # temporaries of "model" (atomic_dir) and "model.gz" (atomic_path): only the first are stale
    keep = [tmp_path / n for n in (".other.abcdefgh", "model.bak", ".model.gz.abcdefgh.gz")]
    stale = [tmp_path / ".model.k3j9x_2a.tmp", tmp_path / ".model.x1y2z3w4"]
    for path in keep + stale[:1]:
        path.write_text("x")
    stale[1].mkdir(mode=0o700)
    assert sorted(runtime.remove_stale_temporaries([out])) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)
    previous = os.umask(0o027)
    try:
        with runtime.atomic_dir(out) as tmp:
            (tmp / "state.npz").write_bytes(b"1")
        runtime.write_tsv(pd.DataFrame({"a": [1]}), tmp_path / "t.tsv")
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "t.tsv").stat().st_mode & 0o777 == 0o640


def test_cases_cover_the_issue():
    """43 cases: each of the 13 items of issue 11 once, and 30 further cases."""
    assert len(CASES) == 43
    assert all(c.message or (c.check and c.check.__doc__) for c in CASES)
    assert sorted(c.item for c in CASES if c.item) == list(range(1, 14))
    assert len({c.name for c in CASES}) == len(CASES)


def case_table() -> str:
    lines = [
        "# Bad input and faults: the cases of tests/test_bad_input.py",
        "",
        "Generated by `python -m tests.test_bad_input > tests/bad_input_cases.md`; each message is",
        "asserted by the test of its case (`…` = any text; a job's message is the last line of its",
        "rule log and appears in Snakemake's output; parse-time messages are Snakemake's output).",
        "",
        "| # | case | category | issue item | fault | rule | exit | message |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, c in enumerate(CASES, 1):
        if c.message:
            message = f"`{c.message}`"
        else:  # a case without a message is described by its check
            message = "(" + " ".join(c.check.__doc__.split()) + ")"
        if c.rule:
            rule = c.rule
        elif "-n" in c.args:
            rule = "parse time" if c.returncode else "dry run"
        else:
            rule = "–"
        lines.append(
            f"| {i} | {c.name} | {c.category} | {c.item or ''} | {c.what.replace('|', '/')} | "
            f"{rule} | {c.returncode} | {message.replace('|', chr(92) + '|')} |"
        )
    return "\n".join(lines) + "\n"


def test_case_table_is_current():
    assert TABLE.read_text() == case_table(), (
        "regenerate: python -m tests.test_bad_input > tests/bad_input_cases.md"
    )


if __name__ == "__main__":
    sys.stdout.write(case_table())
