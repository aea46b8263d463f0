"""Data-parallel training inside one job: torch DDP processes launched by ``torchrun``.

A train job whose method preset asks for ``gpus: N > 1`` (and that sees N GPUs) re-runs its step
in N processes: :func:`launch` writes the call (a ``module:function`` and its JSON keyword
arguments) to a file and starts ``python -m torch.distributed.run --standalone
--nproc-per-node N -m scpert.generative.distributed FILE``; each process joins the process group
(:func:`init_process_group`: NCCL on GPUs, gloo on CPU; device ``cuda:LOCAL_RANK``) and calls the
function with ``device`` set to its own. The :class:`~scpert.generative.trainer.Trainer` then
shards every global batch across the ranks and rank 0 writes checkpoints and the model.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def launched() -> bool:
    """True inside a process started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_process_group(device: str) -> str:
    """Join the torchrun process group; returns this process's device (``cuda:i`` or ``cpu``)."""
    cuda = device.startswith("cuda")
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def processes_for(requested: int, device: str) -> int:
    """Processes to launch: ``requested`` GPUs when the job sees that many, else 1 (logged)."""
    requested = max(int(requested), 1)
    if requested == 1 or launched():
        return 1
    available = torch.cuda.device_count() if device.startswith("cuda") else 0
    if available < requested:
        log.warning(
            "preset asks for %d GPUs but the job sees %d; training in one process on the same "
            "global batch",
            requested,
            available,
        )
        return 1
    return requested


def torchrun_command(n_processes: int, call_file: str | Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={int(n_processes)}",
        "-m",
        "scpert.generative.distributed",
        str(call_file),
    ]


def launch(n_processes: int, target: str, kwargs: dict, call_file: str | Path) -> None:
    """Run ``target`` (``module:function``) with ``kwargs`` in ``n_processes`` DDP processes."""
    call_file = Path(call_file)
    call_file.parent.mkdir(parents=True, exist_ok=True)
    call_file.write_text(json.dumps({"target": target, "kwargs": kwargs}, default=str))
    command = torchrun_command(n_processes, call_file)
    log.info("launching %d processes: %s", n_processes, " ".join(command))
    subprocess.run(command, check=True)


def _main(call_file: str) -> None:
    from scpert import runtime

    call = json.loads(Path(call_file).read_text())
    runtime.setup_logging()
    module, function = call["target"].split(":")
    kwargs = dict(call["kwargs"])
    kwargs["device"] = init_process_group(str(kwargs.get("device", "cpu")))
    try:
        getattr(importlib.import_module(module), function)(**kwargs)
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    _main(sys.argv[1])
