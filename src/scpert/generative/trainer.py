"""One training loop for every torch method.

A method supplies its network, a batch function and a loss; the :class:`Trainer` does the rest:

- optimiser: AdamW with weight decay on weight matrices only — biases, normalisation layers and
  other 1-D parameters (null embeddings, PReLU slopes) get none (:func:`parameter_groups`);
- learning-rate schedules (:func:`lr_multiplier`): ``linear`` (linear warm-up, then linear decay
  to ``lr_floor x lr`` at the last step; scPPDM App. D), ``cosine`` (linear warm-up, then cosine
  to the floor; PerturbDiff: 200 warm-up steps, floor 0.1), ``constant`` (warm-up only);
- mixed precision by device (:func:`autocast_settings`): none on CPU; on CUDA ``auto`` is bf16
  where the GPU supports it, else fp16 with a gradient scaler; ``fp16``/``bf16``/``fp32`` force;
- gradient clipping by global norm; EMA of the weights (decay, every k steps), which the final
  model and validation use;
- validation every ``val_every`` steps (``validate(model) -> float``, lower is better) with
  best-checkpoint selection: the final weights are the best validated ones;
- a progress line in the log every ``log_seconds`` (step, loss terms, steps/s, ETA);
- checkpoints every ``checkpoint_every`` steps in ``checkpoint_dir`` (atomically replaced
  ``last.pt``: weights, optimiser, schedule, scaler, EMA, best weights, loss history, the batch
  generator's and torch's RNG states, and the method's extra state such as a memory bank). A
  run that finds a checkpoint with the same fingerprint resumes after its step; on CPU the
  resumed run ends with the same weights as an uninterrupted one;
- data parallel (torch DDP, one process per GPU launched by ``torchrun``; gloo on CPU): every
  rank draws the same GLOBAL batch from the shared generator and trains on its contiguous
  shard of the rows (:class:`Batch`), DDP averages the gradients, so with equal shards the
  update equals one process's on the global batch. Rank 0 logs and writes checkpoints.

The batch function ``batch(step, generator) -> Batch`` must draw every random number of a step
(rows, timesteps, noise, dropout masks of conditions) from ``generator``, so that resuming and
sharding reproduce it; dropout inside the network draws from torch's global generator, which the
trainer seeds (``seed + rank``) and checkpoints.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from scpert.generative.ema import EMA

log = logging.getLogger(__name__)

LR_SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
CHECKPOINT = "last.pt"
NORM_LAYERS = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.InstanceNorm1d,
    nn.RMSNorm,
)


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class TrainConfig:
    """What the trainer needs from a method's preset (see the module docstring)."""

    steps: int
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    lr_schedule: str = "linear"
    warmup_steps: int = 0
    lr_floor: float = 0.0
    grad_clip: float | None = None
    ema_decay: float | None = None
    ema_every: int = 1
    precision: str = "auto"
    checkpoint_every: int = 0
    val_every: int = 0
    log_seconds: float = 5.0
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule '{self.lr_schedule}' ({LR_SCHEDULES})")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision '{self.precision}' ({PRECISIONS})")
        if not 0.0 <= self.lr_floor <= 1.0:
            raise ValueError(f"lr_floor is a fraction of lr in [0, 1], got {self.lr_floor}")
        self.betas = tuple(float(b) for b in self.betas)


@dataclass
class Batch:
    """One global batch: ``rows`` are tensors with the batch on dim 0, split across data-parallel
    ranks; ``shared`` is given whole to every rank (e.g. InfoNCE negatives)."""

    rows: dict[str, Any]
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        sizes = {len(v) for v in self.rows.values()}
        if len(sizes) != 1:
            raise ValueError(f"Batch.rows must share their first dimension, got sizes {sizes}")
        return sizes.pop()

    def shard(self, rank: int, world: int) -> Batch:
        """This rank's contiguous rows (the global size must divide by ``world``)."""
        if world == 1:
            return self
        n = self.size
        if n % world:
            raise ValueError(f"global batch {n} does not divide across {world} processes")
        part = slice(rank * n // world, (rank + 1) * n // world)
        return Batch({k: v[part] for k, v in self.rows.items()}, self.shared)

    def to(self, device) -> Batch:
        return Batch(_to(self.rows, device), _to(self.shared, device))


def _to(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if hasattr(obj, "to") and not isinstance(obj, nn.Module):
        return obj.to(device)
    return obj


# ---------------------------------------------------------------------------- building blocks
def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices, none on biases, norm layers and 1-D parameters."""
    no_decay_ids = set()
    for module in model.modules():
        if isinstance(module, NORM_LAYERS):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in no_decay_ids or name.endswith("bias") or p.ndim <= 1:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_multiplier(step: int, config: TrainConfig) -> float:
    """Factor on the base lr at ``step`` (0-based) for ``config.lr_schedule``."""
    warmup, total, floor = int(config.warmup_steps), int(config.steps), float(config.lr_floor)
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if config.lr_schedule == "constant":
        return 1.0
    span = max(total - 1 - warmup, 1)
    progress = min(max((step - warmup) / span, 0.0), 1.0)
    if config.lr_schedule == "linear":
        return floor + (1.0 - floor) * (1.0 - progress)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def autocast_settings(device: torch.device, precision: str) -> tuple[bool, torch.dtype, bool]:
    """``(autocast enabled, dtype, use a GradScaler)`` for ``precision`` on ``device``."""
    if device.type != "cuda" or precision == "fp32":
        return False, torch.float32, False
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "bf16":
        return True, torch.bfloat16, False
    return True, torch.float16, True


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-serialisable parts (a checkpoint resumes only with the same one)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def distributed_context() -> tuple[int, int]:
    """``(rank, world size)``: (0, 1) unless torch.distributed is initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


# ------------------------------------------------------------------------------------ trainer
@dataclass
class TrainResult:
    """What a fit returns: per-window loss means, steps run in this process, timing, best."""

    history: dict[str, list[float]]
    every: int
    steps: int
    resumed_from: int
    seconds: float
    best_step: int | None = None
    best_value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


LossFn = Callable[[nn.Module, Batch, int], tuple[torch.Tensor, Mapping[str, torch.Tensor]]]
BatchFn = Callable[[int, torch.Generator], Batch]


class Trainer:
    """``Trainer(model, config, device=..., checkpoint_dir=..., extra_state=...).fit(batch, loss)``.

    ``extra_state``: name -> object with ``state_dict``/``load_state_dict`` saved in checkpoints
    (e.g. a memory bank). ``run_id``: a fingerprint of everything that defines the run (params,
    data); a checkpoint with another one is ignored (and replaced).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        *,
        device: str | torch.device = "cpu",
        checkpoint_dir: str | Path | None = None,
        extra_state: Mapping[str, Stateful] | None = None,
        run_id: str = "",
        name: str = "train",
    ):
        self.model = model
        self.config = config
        self.device = torch.device(device)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.extra_state = dict(extra_state or {})
        self.run_id = run_id or fingerprint(asdict(config))
        self.name = name
        self.rank, self.world = distributed_context()
        self.optimizer = torch.optim.AdamW(
            parameter_groups(model, config.weight_decay),
            lr=config.lr,
            betas=config.betas,
            fused=True,  # one kernel for all parameters, on CPU and GPU (~25% of a tiny step)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_multiplier(s, config)
        )
        self.amp, self.amp_dtype, use_scaler = autocast_settings(self.device, config.precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.ema = EMA(model, config.ema_decay, config.ema_every) if config.ema_decay else None
        self.generator = torch.Generator().manual_seed(int(config.seed))
        self.every = max(config.steps // 100, 1)
        self.history: dict[str, list[float]] = {}
        self._window: dict[str, list[float]] = {}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.step = 0  # steps done

    # -- checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return self.checkpoint_dir / CHECKPOINT if self.checkpoint_dir else None

    def _state(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None
        return {
            "run_id": self.run_id,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": cuda,
            "history": self.history,
            "window": self._window,
            "best": (self.best_state, self.best_value, self.best_step),
            "extra": {k: v.state_dict() for k, v in self.extra_state.items()},
        }

    def save_checkpoint(self) -> None:
        if self.checkpoint_path is None or self.rank != 0:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_dir / f".{CHECKPOINT}.{os.getpid()}.tmp"
        torch.save(self._state(), tmp)
        os.replace(tmp, self.checkpoint_path)

    def try_resume(self) -> int:
        """Load ``last.pt`` when it belongs to this run; returns the step resumed after (0)."""
        path = self.checkpoint_path
        if path is None or not path.is_file():
            return 0
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("run_id") != self.run_id:
            log.warning(
                "%s: %s is from another run (params or data changed); ignored", self.name, path
            )
            return 0
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
            self.ema.shadow = {k: v.to(self.device) for k, v in self.ema.shadow.items()}
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.history, self._window = state["history"], state["window"]
        self.best_state, self.best_value, self.best_step = state["best"]
        for key, obj in self.extra_state.items():
            obj.load_state_dict(state["extra"][key])
        self.step = int(state["step"])
        log.info("%s: resumed from %s after step %d", self.name, path, self.step)
        return self.step

    # -- the loop
    def _ddp_model(self) -> nn.Module:
        if self.world == 1:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def _record(self, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            self._window.setdefault(key, []).append(float(value))
        if self.step % self.every == 0 or self.step == self.config.steps:
            for key, values in self._window.items():
                self.history.setdefault(key, []).append(sum(values) / len(values))
            self._window = {}

    def _validate(self, validate: Callable[[nn.Module], float]) -> None:
        live = copy.deepcopy(self.model.state_dict()) if self.ema else None
        if self.ema:
            self.ema.copy_to(self.model)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            value = float(validate(self.model))
        self.model.train(was_training)
        if self.best_value is None or value < self.best_value:
            self.best_value, self.best_step = value, self.step
            self.best_state = {
                k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
            }
        if live is not None:
            self.model.load_state_dict(live)
        self.history.setdefault("validation", []).append(value)
        log.info(
            "%s: step %d validation %.5g (best %.5g at step %d)",
            self.name,
            self.step,
            value,
            self.best_value,
            self.best_step,
        )

    def fit(
        self,
        batch_fn: BatchFn,
        loss_fn: LossFn,
        *,
        validate: Callable[[nn.Module], float] | None = None,
        after_step: Callable[[Batch, int], None] | None = None,
    ) -> TrainResult:
        """Train ``config.steps`` steps (resuming from a checkpoint of this run) and leave the
        final weights (EMA, or the best validated) in ``model`` in eval mode."""
        cfg = self.config
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(int(cfg.seed) + self.rank)
            resumed = self.try_resume()
            seconds = self._loop(batch_fn, loss_fn, validate, after_step, resumed)
        if validate is not None and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        elif self.ema is not None:
            self.ema.copy_to(self.model)
        self.model.eval()
        return TrainResult(
            self.history,
            self.every,
            cfg.steps - resumed,
            resumed,
            seconds,
            self.best_step,
            self.best_value,
        )

    def _loop(self, batch_fn, loss_fn, validate, after_step, resumed: int) -> float:
        cfg = self.config
        model = self._ddp_model()
        self.model.train()
        start = last_log = time.monotonic()
        for step in range(resumed, cfg.steps):
            batch = batch_fn(step, self.generator)
            local = batch.shard(self.rank, self.world).to(self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                loss, metrics = loss_fn(model, local, step)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), float(cfg.grad_clip))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            if after_step is not None:
                after_step(batch, step)
            self.step = step + 1
            self._record(
                {"loss": loss.detach().float().item(), **{k: float(v) for k, v in metrics.items()}}
            )
            if (
                validate is not None
                and cfg.val_every
                and (self.step % cfg.val_every == 0 or self.step == cfg.steps)
            ):
                self._validate(validate)
            if (
                cfg.checkpoint_every
                and self.step % cfg.checkpoint_every == 0
                and self.step < cfg.steps
            ):
                self.save_checkpoint()
            now = time.monotonic()
            if self.rank == 0 and (now - last_log >= cfg.log_seconds or self.step == cfg.steps):
                self._progress(now - start, self.step - resumed)
                last_log = now
        return time.monotonic() - start

    def _progress(self, elapsed: float, done: int) -> None:
        rate = done / elapsed if elapsed > 0 else float("inf")
        left = (self.config.steps - self.step) / rate if rate > 0 else float("inf")
        recent = {k: v[-1] for k, v in self._window.items() if v} or {
            k: v[-1] for k, v in self.history.items() if v and k != "validation"
        }
        terms = ", ".join(f"{k} {v:.4g}" for k, v in recent.items())
        log.info(
            "%s: step %d/%d (%.0f%%), %s, %.1f steps/s, ETA %.0f s",
            self.name,
            self.step,
            self.config.steps,
            100.0 * self.step / self.config.steps,
            terms,
            rate,
            left,
        )
