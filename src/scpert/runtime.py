"""Run-time plumbing shared by the workflow scripts: logging, atomic writes, device choice."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from scpert.errors import InputError

log = logging.getLogger("scpert")


def setup_logging(logfile: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send scpert's log (and warnings) to ``logfile`` (a rule's ``log:``) and stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logfile, mode="w"))
    logging.basicConfig(
        level=level,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    return log


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; on success rename it onto ``path`` (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_dir(path: str | Path):
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (renamed)."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700; give the usual permissions
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` only if it succeeded."""
    with atomic_path(path) as tmp:
        writer(tmp)


def write_h5ad(adata, path: str | Path) -> None:
    write_atomic(path, lambda p: adata.write_h5ad(p, compression="gzip"))


def write_tsv(table: pd.DataFrame, path: str | Path, **kwargs) -> None:
    kwargs.setdefault("index", False)
    write_atomic(path, lambda p: table.to_csv(p, sep="\t", **kwargs))


def pick_device(requested: str = "auto") -> str:
    """``cuda`` when requested/auto and available, else ``cpu`` (SLURM may set CUDA_VISIBLE_DEVICES
    on nodes without a usable GPU, so availability is checked, never assumed)."""
    if requested == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        log.warning("cuda requested but torch.cuda.is_available() is False; using cpu")
    return "cpu"


def torch_setup(device: str = "auto", threads: int | None = None, seed: int | None = None) -> str:
    """Prepare torch for one job, the one place torch jobs set threads and seeds: CPU threads = the
    rule's ``threads`` (more threads than free cores slow small models down; docs/decisions.md),
    the global seed of every device (``torch.manual_seed``), and the device to use
    (:func:`pick_device`). Used by the train, sample, finetune_latent and prior rules' steps."""
    import torch

    if threads:
        torch.set_num_threads(max(1, int(threads)))
    if seed is not None:
        torch.manual_seed(int(seed))
    return pick_device(device)


def run_step(logfile: str | Path | None, step: Callable, *args, **kwargs) -> None:
    """Run a workflow step with logging to the rule's log file.

    Input errors (the data contract, splits, config) end the job with ONE message naming the file
    and field, written to the log and stderr, and exit status 1; anything else keeps its traceback.
    The log starts with the GPUs the scheduler gave the job: SLURM sets CUDA_VISIBLE_DEVICES in
    jobs allocated GPUs (its SLURM_* variables do not reach the rule under Snakemake's job step).
    """
    setup_logging(logfile)
    log.info("CUDA_VISIBLE_DEVICES=%s", os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)"))
    try:
        step(*args, **kwargs)
    except InputError as err:
        log.error("%s", err)
        raise SystemExit(1) from None
