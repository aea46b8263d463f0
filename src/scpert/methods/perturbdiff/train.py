"""PerturbDiff training (arXiv:2602.19685 §4.4, App. B.2.1, C.1) and marginal pretraining (§4.6)
on the shared trainer.

Cell sets (§4.2, App. B.3)
    :class:`scpert.data.pairing.CellSets`: m perturbed cells of one (cell line, drug, dose,
    plate) with m random control cells of the same (cell line, plate); a group shorter than m is
    padded by resampling its cells, and the padded slots are flagged and weigh 0 in the loss
    (they stay in the set as context). With ``control_sets`` the control groups are sets too
    (perturbation = control), so every cell line's embedding is trained, including lines whose
    perturbed cells are held out (cell_ood). ``perturbed_fraction`` < 1 keeps that share of each
    training condition's perturbed cells (at least one; seeded by the method seed and the
    condition, so scratch and fine-tuned variants see the same cells).
Objective (eqs. 27-33)
    ``B_t = sqrt(abar_t) B_0 + sqrt(1 - abar_t) eps`` with t uniform on the VP linear schedule;
    ``B_theta = f_theta(B_t, t; B_ctrl, c, tau)``; ``L = ed_weight ED(B_0, B_theta) + lambda_MSE
    MSE`` with ED the energy distance of eq. 32 per set (:func:`scpert.generative.losses.
    energy_distance`, weighted: padded slots 0) and MSE = ``(1/m) sum_j ||x_j - x^_j||^2``
    (eq. 8; ``mse_reduction: element_mean`` the code's mean over genes too), in the network's
    scale (expression / ``input_scale``). Self-conditioning (eq. 33): with probability
    ``p_self_cond`` per step a first, stop-gradient prediction is fed back. CFG dropout: each
    set's metadata (cell line, batch, perturbation) replaced by the null embedding with
    probability ``p_drop``; the control set is always given.
Optimisation (App. C.1)
    AdamW (2e-4, betas 0.9/0.98, weight decay 0.01 on weight matrices), cosine schedule with 200
    warm-up steps and a floor at 0.1, clipping 1.0, EMA 0.99 every 10 steps (the model sampled),
    20k steps; every ``val_every`` steps the EMA weights sample the validation sets
    (``val_sets`` sets of the split's val conditions, ``val_sampler_steps`` DDIM steps, fixed
    noise) and the weights with the lowest mean energy distance to the true sets are kept
    ("select the best checkpoint ... evaluated every 2k steps on validation set").
Marginal pretraining (§4.6, App. C.1)
    :func:`pretrain_marginal`: the same network and pipeline on sets of control cells (and
    atlas cells) grouped by (cell line, plate), the control stream set to zeros and the
    conditioning restricted to the cellular context (perturbation = control, batch = unseen).
    ``pretrain_steps`` 0 = one epoch of the pretraining cells (App. C.1 fine-tunes from the
    end-of-first-epoch checkpoint). :func:`transfer` loads it for fine-tuning: tables row by row
    by name (cell lines, plates, drugs, doses), every other tensor as is, the gene input/output
    layers too (``finetune_io: keep``, strategy (1) of App. C.1) or re-initialised (``reinit``).
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from scpert.data import pairing
from scpert.data.schema import CELL_LINE, CONDITION, DRUG, PLATE, SchemaError
from scpert.generative.losses import energy_distance
from scpert.generative.schedules import NoiseSchedule
from scpert.generative.trainer import Batch, TrainConfig, Trainer, TrainResult, fingerprint
from scpert.methods.perturbdiff import ARCHITECTURE
from scpert.methods.perturbdiff.covariates import Vocabularies
from scpert.methods.perturbdiff.model import PerturbDiffNet
from scpert.methods.perturbdiff.sample import sample_sets

log = logging.getLogger(__name__)

COV_KEYS = ("cell_line", "plate", "drug", "feature", "dose", "slot")
#: embedding tables transferred row by row, with the vocabulary naming their rows
VOCAB_TABLES = {
    "covariates.cell_line.weight": "cell_lines",
    "covariates.plate.weight": "plates",
    "covariates.drug.weight": "drugs",
    "covariates.dose.weight": "doses",
}
GENE_LAYERS = ("input_pert.", "input_ctrl.", "final.linear.")
FEATURE_BUFFERS = ("covariates.fingerprints", "covariates.mdt")


@dataclass
class SetData:
    """Cells (network scale) on the device, their cell sets and each set group's covariates."""

    X: torch.Tensor
    sets: pairing.CellSets
    cov: dict[str, torch.Tensor]  # per group of ``sets``
    zero_control: bool = False

    def batch(self, n_sets: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        b = self.sets.sample(n_sets, rng)
        group = torch.from_numpy(b.group)
        rows = {
            "pert": torch.from_numpy(b.perturbed),
            "ctrl": torch.from_numpy(b.controls),
            "weight": torch.from_numpy(~b.padded).float(),
        }
        rows.update({f"cov_{k}": self.cov[k][group] for k in COV_KEYS})
        return rows


def kept_rows(obs: pd.DataFrame, control: str, p: dict, seed: int) -> np.ndarray:
    """Rows that make training sets: each condition's perturbed cells (a ``perturbed_fraction``
    share of them), and the controls when ``control_sets`` (module docstring)."""
    is_control = (obs[DRUG].astype(str) == control).to_numpy()
    fraction = float(p["perturbed_fraction"])
    perturbed = np.flatnonzero(~is_control)
    if fraction < 1.0:
        keep = []
        conditions = obs[CONDITION].astype(str).to_numpy()[perturbed]
        for condition, members in pd.Series(perturbed).groupby(conditions, sort=True):
            k = max(1, math.ceil(fraction * len(members)))
            rng = np.random.default_rng([int(seed), zlib.crc32(condition.encode())])
            keep.append(rng.choice(members.to_numpy(), size=k, replace=False))
        perturbed = np.sort(np.concatenate(keep)) if keep else perturbed[:0]
    if p["control_sets"]:
        return np.sort(np.concatenate([perturbed, np.flatnonzero(is_control)]))
    return perturbed


def perturbation_sets(
    X: torch.Tensor, obs: pd.DataFrame, control: str, vocab: Vocabularies, p: dict, rows, source
) -> SetData:
    sets = pairing.CellSets(obs, control, int(p["set_size"]), source=source, rows=rows)
    return SetData(X, sets, vocab.encode(sets.keys))


def marginal_sets(
    X: torch.Tensor, obs: pd.DataFrame, control: str, vocab: Vocabularies, p: dict
) -> SetData:
    """Sets of unperturbed cells per (cell line, plate), context-only covariates."""
    rows = np.flatnonzero((obs[DRUG].astype(str) == control).to_numpy())
    sets = pairing.CellSets(
        obs, control, int(p["set_size"]), (CELL_LINE, PLATE), "pretraining cells", rows
    )
    keys = sets.keys.assign(**{DRUG: control, "dose": "0"})
    return SetData(X, sets, vocab.encode(keys, plate=[None] * len(keys)), zero_control=True)


def train_config(p: dict, seed: int, steps: int, lr: float, val: bool) -> TrainConfig:
    return TrainConfig(
        steps=int(steps),
        lr=float(lr),
        betas=tuple(p["betas"]),
        weight_decay=float(p["weight_decay"]),
        lr_schedule=p["lr_schedule"],
        warmup_steps=int(p["warmup_steps"]),
        lr_floor=float(p["lr_floor"]),
        grad_clip=float(p["grad_clip"]) or None,
        ema_decay=float(p["ema_decay"]) or None,
        ema_every=int(p["ema_every"]),
        precision=str(p["mixed_precision"]),
        checkpoint_every=int(p["checkpoint_every"]),
        val_every=int(p["val_every"]) if val else 0,
        seed=int(seed),
    )


def set_loss(net, p: dict, x0, x_t, t, ctrl, cov, keep, weight, self_cond: bool):
    """``(total, terms)`` of eq. 30 for a batch of sets (module docstring)."""
    estimate = None
    if self_cond:
        with torch.no_grad():
            estimate = net(x_t, t, ctrl, cov, keep).detach()
    pred = net(x_t, t, ctrl, cov, keep, estimate).to(x0.dtype)
    sq = (pred - x0) ** 2
    per_cell = sq.sum(-1) if p["mse_reduction"] == "cell_sum" else sq.mean(-1)
    mse = (per_cell * weight).sum() / weight.sum().clamp(min=1.0)
    ed = energy_distance(pred, x0, x_weights=weight, y_weights=weight).mean()
    total = float(p["ed_weight"]) * ed + float(p["lambda_mse"]) * mse
    return total, {"ed": ed.detach(), "mse": mse.detach()}


def fit_sets(
    net: PerturbDiffNet,
    schedule: NoiseSchedule,
    data: SetData,
    p: dict,
    config: TrainConfig,
    device: torch.device,
    checkpoint_dir=None,
    val: SetData | None = None,
    name: str = "perturbdiff",
) -> TrainResult:
    """Train ``net`` on ``data``'s sets (module docstring); ``val``: validation sets."""
    n_sets = int(p["batch_sets"])
    p_sc, p_drop = float(p["p_self_cond"]), float(p["p_drop"])
    X = data.X.to(device)
    shape = (n_sets, int(p["set_size"]), X.shape[1])

    def batch(step: int, g: torch.Generator) -> Batch:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=g)))
        rows = data.batch(n_sets, rng)
        rows["t"] = schedule.sample_timesteps(n_sets, g)
        rows["eps"] = torch.randn(shape, generator=g)
        rows["keep"] = torch.rand(n_sets, generator=g) >= p_drop
        self_cond = bool(torch.rand((), generator=g) < p_sc)
        return Batch(rows, {"self_cond": self_cond})

    def loss(model, b: Batch, step: int):
        r = b.rows
        x0 = X[r["pert"]]
        ctrl = torch.zeros_like(x0) if data.zero_control else X[r["ctrl"]]
        x_t = schedule.add_noise(x0, r["eps"], r["t"])
        cov = {k: r[f"cov_{k}"] for k in COV_KEYS}
        return set_loss(
            model, p, x0, x_t, r["t"], ctrl, cov, r["keep"], r["weight"], b.shared["self_cond"]
        )

    validate = validation(schedule, val, p, device) if val is not None else None
    trainer = Trainer(
        net,
        config,
        device=device,
        checkpoint_dir=checkpoint_dir,
        run_id=fingerprint(p, config.seed, tuple(X.shape), float(X.sum()), name),
        name=name,
    )
    return trainer.fit(batch, loss, validate=validate)


def validation(schedule: NoiseSchedule, val: SetData, p: dict, device):
    """``validate(model)``: mean energy distance (network scale) between sampled and true
    validation sets, fixed sets and noise (module docstring)."""
    rng = np.random.default_rng(0)
    rows = val.batch(int(p["val_sets"]), rng)
    X = val.X.to(device)
    x0, ctrl = X[rows["pert"]], X[rows["ctrl"]]
    cov = {k: rows[f"cov_{k}"].to(device) for k in COV_KEYS}
    weight = rows["weight"].to(device)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).to(device)

    def validate(model) -> float:
        pred = sample_sets(model, schedule, p, ctrl, cov, noise, steps=int(p["val_sampler_steps"]))
        return float(energy_distance(pred, x0, x_weights=weight, y_weights=weight).mean())

    return validate


def pretrain_marginal(
    net: PerturbDiffNet,
    schedule: NoiseSchedule,
    data: SetData,
    p: dict,
    device: torch.device,
    seed: int,
    checkpoint_dir=None,
) -> TrainResult:
    """Marginal pretraining (module docstring): ``pretrain_steps`` steps (0: one epoch)."""
    steps = int(p["pretrain_steps"])
    if steps <= 0:
        cells = sum(len(m) for m in data.sets.members)
        steps = max(1, math.ceil(cells / (int(p["batch_sets"]) * int(p["set_size"]))))
    config = train_config(p, seed, steps, float(p["pretrain_lr"]), val=False)
    return fit_sets(
        net, schedule, data, p, config, device, checkpoint_dir, name="perturbdiff pretrain"
    )


def check_architecture(prior_params: dict, params: dict, source: str, key: str) -> None:
    """A prior fine-tuned by a method must have the method's network shape (:data:`ARCHITECTURE`)."""
    for name in ARCHITECTURE:
        if prior_params.get(name) != params.get(name):
            raise SchemaError(
                f"{source}: the pretrained network has {name} = {prior_params.get(name)!r}, "
                f"the method {params.get(name)!r}; set perturbdiff_pretrain.params.{name} and "
                f"{key}.params.{name} alike"
            )


def transfer(
    net: PerturbDiffNet, state: dict, prior_vocab: Vocabularies, vocab: Vocabularies, reinit_io
) -> dict[str, int]:
    """Load a pretrained ``state`` into ``net`` (module docstring); returns counts of what was
    copied."""
    own = net.state_dict()
    copied = {"tensors": 0, "table rows": 0}
    for key, value in state.items():
        if key in FEATURE_BUFFERS or (reinit_io and key.startswith(GENE_LAYERS)):
            continue
        if key in VOCAB_TABLES:
            table = VOCAB_TABLES[key]
            old, new = getattr(prior_vocab, table), getattr(vocab, table)
            where = {v: i + 1 for i, v in enumerate(new)}
            own[key][0] = value[0]
            for i, name in enumerate(old):
                if name in where:
                    own[key][where[name]] = value[i + 1]
                    copied["table rows"] += 1
            continue
        if key not in own or own[key].shape != value.shape:
            raise SchemaError(
                f"pretrained network: tensor '{key}' has shape {tuple(value.shape)}, the "
                f"method's {tuple(own[key].shape) if key in own else 'none'}"
            )
        own[key] = value
        copied["tensors"] += 1
    net.load_state_dict(own)
    return copied
