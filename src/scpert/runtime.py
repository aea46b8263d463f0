"""Run-time plumbing shared by the workflow scripts: logging, atomic writes, device choice.

Every rule script calls its step through :func:`run_step`, which gives each job the same fault
behaviour (the cases and their messages: tests/bad_input_cases.md):

- the rule log ends with ONE line saying what went wrong: the message of an
  :class:`~scpert.errors.InputError` (file and field), or, for an unexpected exception, its type
  and message with the rule's inputs (its traceback is logged just above that line);
- SIGTERM (a SLURM time limit, ``scancel``, Snakemake stopping its jobs) and SIGINT end the job
  through Python's exception machinery, so atomic writes remove their temporary files and the log
  says which signal stopped it;
- outputs appear only complete: writers go to a hidden temporary beside the output
  (``.<name>.XXXX``) and rename it; hidden temporaries that a killed job (SIGKILL, node failure)
  left beside the job's outputs are removed when the job runs again;
- files and folders get the permissions the umask gives (``mkstemp``/``mkdtemp`` create 0600/0700,
  which would keep a cluster group from reading models and tables).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import traceback
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
        prefix=temp_prefix(path), suffix=path.suffix or ".tmp", dir=path.parent
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path), dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700; give the usual permissions
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def temp_prefix(path: Path) -> str:
    """Name prefix of the hidden temporaries of ``path``: ``.<name>.`` in the same folder."""
    return f".{path.name}."


def is_temporary_of(candidate: Path, path: Path) -> bool:
    """Whether ``candidate`` is named like a temporary of ``path`` made by :func:`atomic_path`
    (``.<name>.XXXXXXXX<suffix>``) or :func:`atomic_dir` (``.<name>.XXXXXXXX``), with tempfile's
    eight random characters, so that outputs sharing a name prefix never match."""
    pattern = rf"{re.escape(temp_prefix(path))}[a-z0-9_]{{8}}({re.escape(path.suffix or '.tmp')})?"
    return candidate.parent == path.parent and re.fullmatch(pattern, candidate.name) is not None


def remove_stale_temporaries(outputs) -> list[Path]:
    """Remove hidden temporaries beside each output (:func:`is_temporary_of`) that a killed job
    left.

    Snakemake runs one job per output at a time (it locks the working directory), so every
    temporary of an output that is about to be written belongs to an earlier, dead job.
    Returns the removed paths.
    """
    removed = []
    for output in map(Path, outputs):
        if not output.parent.is_dir():
            continue
        for stale in output.parent.glob(f"{glob.escape(temp_prefix(output))}*"):
            if not is_temporary_of(stale, output):
                continue
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


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


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Terminated(BaseException):
    """The job received SIGTERM or SIGINT (a BaseException, so no ``except Exception`` in library
    code swallows it and every ``finally`` of the atomic writers runs)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def run_step(logfile: str | Path | None, step: Callable, *args, **kwargs) -> None:
    """Run a workflow step with logging to the rule's log file and one-line errors.

    The log starts with the GPUs the scheduler gave the job: SLURM sets CUDA_VISIBLE_DEVICES in
    jobs allocated GPUs (its SLURM_* variables do not reach the rule under Snakemake's job step).
    The job ends with exit status 1 after an error and 128 + signal number after SIGTERM/SIGINT;
    its log's last line says why (see the module docstring); the signals are handled from the
    log's first line on. Inside a Snakemake script, the rule's name, inputs and outputs come from
    the script's ``snakemake`` object.
    """
    job = snakemake_job()
    setup_logging(logfile)
    previous = {}
    if threading.current_thread() is threading.main_thread():  # signal handlers: main thread only
        previous = {sig: signal.signal(sig, _raise_terminated) for sig in STOP_SIGNALS}
    try:
        for stale in remove_stale_temporaries(job.output if job is not None else ()):
            log.info("removed %s (left by an earlier job that was killed)", stale)
        log.info("CUDA_VISIBLE_DEVICES=%s", os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)"))
        step(*args, **kwargs)
    except InputError as err:
        log.error("%s", one_line(str(err)))
        raise SystemExit(1) from None
    except Terminated as stop:
        name = signal.Signals(stop.signum).name
        log.error("%s: stopped by %s; no output was written", _rule_name(job, step), name)
        raise SystemExit(128 + stop.signum) from None
    except Exception as err:
        log.error("traceback of the error below:\n%s", traceback.format_exc().rstrip())
        log.error("%s", unexpected_error_message(err, _rule_name(job, step), _inputs(job, args)))
        raise SystemExit(1) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters if given."""
    flat = " ".join(text.split())
    return flat if limit is None or len(flat) <= limit else flat[: limit - 3] + "..."


def unexpected_error_message(err: BaseException, rule: str, inputs: list[str]) -> str:
    """The last log line of a job that failed with an exception that is not an InputError."""
    detail = one_line(f"{type(err).__name__}: {err}", 300) if str(err) else type(err).__name__
    shown = ", ".join(inputs[:6]) + (f" and {len(inputs) - 6} more" if len(inputs) > 6 else "")
    return f"{rule}: unexpected {detail} (inputs: {shown or 'none'}; traceback above)"


def snakemake_job():
    """The ``snakemake`` object of the running Snakemake script, or None outside one.

    Snakemake runs a rule's ``script:`` as the main module with a global ``snakemake`` (input,
    output, log, rule, wildcards, ...).
    """
    main = sys.modules.get("__main__")
    job = getattr(main, "snakemake", None)
    return job if hasattr(job, "output") and hasattr(job, "rule") else None


def _rule_name(job, step: Callable) -> str:
    return f"rule {job.rule}" if job is not None else getattr(step, "__name__", "step")


def _inputs(job, args) -> list[str]:
    if job is not None:
        return [str(p) for p in job.input]
    return [str(a) for a in args if isinstance(a, (str, Path)) and Path(a).exists()]
