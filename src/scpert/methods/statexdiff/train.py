"""StateXDiff training (arXiv:2605.16104 §3.4, App. A.4, A.5.2, Table 6) on the shared trainer.

Data (§3.1)
    Single-cell pairs: every perturbed training cell ``x_p`` with a control cell ``x_c`` of its
    own (cell line, plate), drawn afresh at every step (the counted fallback to the line's other
    plates of :class:`scpert.data.pairing.ControlIndex` where a plate has no controls). Both are
    embedded once by the frozen latent encoder (the ``latent`` prior, eval mode): the target is
    the latent residual ``delta_z = z_p - z_c`` (128-d in the paper). With ``target_scaling:
    standardise`` (this project's choice; the paper is silent) ``delta_z`` is standardised per
    dimension by the mean and standard deviation of a fixed random pairing of the training cells
    (latent scaling as in Rombach et al. 2022): on the default world the residuals of the
    unit-norm codes spread 0.074-0.13 per dimension (mean 0.09, drug_ood and cell_ood splits:
    ``target_scale`` of the saved models) against unit noise.
Objective (Eq. 12, A.4)
    Cosine schedule (T = 1000, s = 0.008), v-prediction: ``v = sqrt(abar) eps - sqrt(1 - abar)
    delta_z``; ``L = ||v^ - v||^2 + lambda_triplet L_triplet`` (lambda 0.1). Triplet (Eq. 12):
    per row, with probability 0.5 the drug is replaced by another batch row's drug (d' != d) and
    otherwise the control cell by a control of another cell line; ``v^_mis`` is the prediction
    under that mismatched joint condition at the same ``(delta_z_t, t)``;
    ``q_i max(0, cos(v^_mis, v) - cos(v^, v) + m)`` (margin 0.1,
    :func:`scpert.generative.losses.cosine_margin_triplet`), over rows in the joint mode (a row
    whose condition is dropped has nothing to mismatch). Structured dropout: one mode per row,
    joint 0.85, unconditional / cell-only / drug-only 0.05 each
    (:data:`scpert.generative.STATEXDIFF_MODES`); protein tokens replaced by the learned null
    with probability ``1 - q_i``.
Optimisation (Table 6)
    AdamW (lr 1e-4, betas 0.9/0.999, weight decay 0.01 on weight matrices), cosine schedule with
    5 % linear warm-up, gradient clipping 1.0, EMA 0.9999 for sampling, bf16 autocast on GPUs,
    batch 512 pairs, 200 epochs over the perturbed training cells (``steps: 0``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from scpert.data import pairing, schema
from scpert.data.schema import CELL_LINE, DOSE, DRUG, PLATE, SchemaError
from scpert.generative import categorical_modes, from_x0_eps
from scpert.generative.conditioning import mode
from scpert.generative.losses import cosine_margin_triplet
from scpert.generative.schedules import NoiseSchedule
from scpert.generative.trainer import Batch, TrainConfig, Trainer, TrainResult, fingerprint
from scpert.methods.statexdiff.model import CellInput, StateXDiffNet

log = logging.getLogger(__name__)

CELL, DRUG_CHANNEL = "cell", "drug"


def mode_probabilities(p: dict) -> dict:
    """Structured dropout over the cell and drug channels (A.4, Table 6)."""
    p0, pc, pd_ = float(p["p_uncond"]), float(p["p_cell_only"]), float(p["p_drug_only"])
    return {
        mode(CELL, DRUG_CHANNEL): 1.0 - p0 - pc - pd_,
        mode(): p0,
        mode(CELL): pc,
        mode(DRUG_CHANNEL): pd_,
    }


@dataclass
class Standardizer:
    """Per-dimension ``(x - mean) / std`` and its inverse (identity when ``mean = 0, std = 1``)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, enabled: bool = True) -> Standardizer:
        if not enabled:
            return cls(np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32))
        return cls(
            x.mean(axis=0).astype(np.float32), np.maximum(x.std(axis=0), 1e-6).astype(np.float32)
        )

    def __call__(self, x):
        return (x - self.mean) / self.std

    def invert(self, x):
        return x * self.std + self.mean


# ------------------------------------------------------------------------------ drug conditions
def encode_drugs(
    drugs, doses, names: list[str], source: str = "conditions"
) -> tuple[np.ndarray, np.ndarray]:
    """Drug-table rows (B, C) and ``log(1 + dose)`` (B, C) of each row's components (C = the most
    components of any row; padding: row 0 with log-dose 0, which contributes nothing)."""
    position = {n: i for i, n in enumerate(names)}
    keys = pd.DataFrame({"d": np.asarray(drugs, dtype=str), "x": np.asarray(doses, dtype=str)})
    codes, uniques = pd.factorize(pd.MultiIndex.from_frame(keys))
    parts = []
    for drug, dose in uniques:
        comps, amounts = schema.components(drug), schema.component_doses(dose)
        if len(comps) != len(amounts):
            raise SchemaError(
                f"{source}: drug '{drug}' has {len(comps)} components but dose '{dose}' has "
                f"{len(amounts)} (field '{DOSE}')"
            )
        missing = [c for c in comps if c not in position]
        if missing:
            raise SchemaError(
                f"{source}: drug '{missing[0]}' has no drug template (field '{DRUG}'; the MDT "
                "prior or the drug table lacks it)"
            )
        parts.append(
            [(position[c], math.log1p(max(float(a), 0.0))) for c, a in zip(comps, amounts)]
        )
    width = max((len(p) for p in parts), default=1)
    index = np.zeros((len(parts), width), dtype=np.int64)
    logd = np.zeros((len(parts), width), dtype=np.float32)
    for i, comps in enumerate(parts):
        for j, (row, value) in enumerate(comps):
            index[i, j], logd[i, j] = row, value
    return index[codes], logd[codes]


# ------------------------------------------------------------------------------ cell conditions
class CellContext:
    """Per control cell: its latent ``z_c``, line code, reliability ``q`` and what the cell branch
    reads (raw standardised ``z_c`` or VMCS tokens of ``(z_c, g_p, q)``)."""

    def __init__(
        self,
        z: np.ndarray,
        lines: np.ndarray,
        q: np.ndarray,
        g_p: np.ndarray | None,
        vmcs,
        z_scale: Standardizer,
        device: torch.device,
    ):
        self.z = torch.as_tensor(z, dtype=torch.float32, device=device)
        self.z_std = torch.as_tensor(z_scale(z), dtype=torch.float32, device=device)
        self.lines = torch.as_tensor(lines, dtype=torch.long, device=device)
        self.q = torch.as_tensor(q, dtype=torch.float32, device=device)
        self.g_p = None if g_p is None else torch.as_tensor(g_p, dtype=torch.float32, device=device)
        self.vmcs = vmcs

    def __len__(self) -> int:
        return len(self.z)

    @torch.no_grad()
    def inputs(self, rows: torch.Tensor) -> CellInput:
        if self.vmcs is None:
            return CellInput(z_c=self.z_std[rows])
        tokens = self.vmcs.tokens(self.z[rows], self.g_p[rows], self.q[rows])
        return CellInput(shared=tokens.shared.float(), protein=tokens.protein.float())


# ------------------------------------------------------------------------------ training data
@dataclass
class TrainingCells:
    """Perturbed training cells, the control pool of each, their targets' ingredients."""

    z_p: torch.Tensor  # (P, d) latents of the perturbed cells
    pool_start: torch.Tensor  # (P,) start of each cell's control pool in ``pool``
    pool_size: torch.Tensor  # (P,)
    pool: torch.Tensor  # control rows (into CellContext), pools concatenated
    drug: torch.Tensor  # (P, C) drug-table rows
    log_dose: torch.Tensor  # (P, C)
    line: torch.Tensor  # (P,) line code
    by_line: torch.Tensor  # control rows sorted by line code
    line_start: torch.Tensor  # (n_lines,) start of each line's controls in ``by_line``
    line_size: torch.Tensor  # (n_lines,)

    def __len__(self) -> int:
        return len(self.z_p)

    def draw_controls(self, rows: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """A random control of each row's (line, plate) pool."""
        u = torch.rand(len(rows), generator=g).to(self.pool.device)
        offset = (u * self.pool_size[rows]).long().clamp(max=self.pool_size[rows] - 1)
        return self.pool[self.pool_start[rows] + offset]

    def draw_other_line(self, line: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """A random control of a cell line other than ``line`` (uniform over those controls)."""
        n = len(self.by_line)
        start, size = self.line_start[line], self.line_size[line]
        others = (n - size).clamp(min=1)
        u = torch.rand(len(line), generator=g).to(self.pool.device)
        k = (u * others).long().clamp(max=others - 1)
        k = torch.where(k >= start, k + size, k).clamp(max=n - 1)
        return self.by_line[k]


def training_cells(
    obs: pd.DataFrame,
    z: np.ndarray,
    control: str,
    drug_names: list[str],
    line_codes: dict[str, int],
    device: torch.device,
    source: str = "training data",
) -> tuple[TrainingCells, np.ndarray]:
    """The perturbed cells of ``obs`` (rows aligned with ``z``) with their control pools; also
    returns the rows of ``obs`` that are controls (the CellContext order)."""
    is_control = (obs[DRUG].astype(str) == control).to_numpy()
    ctrl_rows = np.flatnonzero(is_control)
    pert_rows = np.flatnonzero(~is_control)
    if len(pert_rows) == 0:
        raise SchemaError(f"{source}: no perturbed training cells (field '{DRUG}')")
    index = pairing.ControlIndex(obs.iloc[ctrl_rows], source=source)
    lines = obs[CELL_LINE].astype(str).to_numpy()
    plates = obs[PLATE].astype(str).to_numpy()
    keys = pd.DataFrame({"l": lines[pert_rows], "p": plates[pert_rows]})
    pools, start, size = [], np.zeros(len(pert_rows), np.int64), np.zeros(len(pert_rows), np.int64)
    offset = 0
    for (line, plate), members in keys.groupby(["l", "p"], sort=True).indices.items():
        pool = index.rows(line, plate, f"{source} cells of ({line}, {plate})")
        pools.append(pool)
        start[members], size[members] = offset, len(pool)
        offset += len(pool)
    index.report_fallbacks(f"{source}: control pairing")
    ctrl_line = np.array([line_codes[x] for x in lines[ctrl_rows]], dtype=np.int64)
    order = np.argsort(ctrl_line, kind="stable")
    counts = np.bincount(ctrl_line, minlength=len(line_codes))
    drug, logd = encode_drugs(
        obs[DRUG].to_numpy()[pert_rows], obs[DOSE].to_numpy()[pert_rows], drug_names, source
    )
    t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    cells = TrainingCells(
        z_p=t(z[pert_rows].astype(np.float32)),
        pool_start=t(start),
        pool_size=t(size),
        pool=t(np.concatenate(pools).astype(np.int64)),
        drug=t(drug),
        log_dose=t(logd),
        line=t(np.array([line_codes[x] for x in lines[pert_rows]], dtype=np.int64)),
        by_line=t(order.astype(np.int64)),
        line_start=t(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)),
        line_size=t(counts.astype(np.int64)),
    )
    return cells, ctrl_rows


# ------------------------------------------------------------------------------ the fit
def train_config(p: dict, steps: int, seed: int) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        lr=float(p["lr"]),
        betas=tuple(p["betas"]),
        weight_decay=float(p["weight_decay"]),
        lr_schedule="cosine",
        warmup_steps=int(round(float(p["warmup_fraction"]) * steps)),
        grad_clip=float(p["grad_clip"]),
        ema_decay=float(p["ema_decay"]),
        precision=str(p["mixed_precision"]),
        checkpoint_every=int(p["checkpoint_every"]),
        seed=int(seed),
    )


def n_steps(p: dict, n_cells: int) -> int:
    """``steps``, or ``epochs`` passes over the perturbed training cells when ``steps`` is 0."""
    if int(p["steps"]) > 0:
        return int(p["steps"])
    return max(1, math.ceil(int(p["epochs"]) * n_cells / int(p["batch_size"])))


def fit_network(
    net: StateXDiffNet,
    schedule: NoiseSchedule,
    cells: TrainingCells,
    context: CellContext,
    target_scale: Standardizer,
    p: dict,
    device: torch.device,
    seed: int,
    checkpoint_dir=None,
) -> TrainResult:
    """Train ``net`` (module docstring)."""
    n = len(cells)
    batch_size = min(int(p["batch_size"]), n)
    steps = n_steps(p, n)
    probabilities = mode_probabilities(p)
    mean = torch.as_tensor(target_scale.mean, device=device)
    std = torch.as_tensor(target_scale.std, device=device)
    use_protein = context.vmcs is not None and bool(p["use_protein"])
    lam = float(p["lambda_triplet"])
    latent_dim = cells.z_p.shape[1]

    def batch(step: int, g: torch.Generator) -> Batch:
        rows = torch.randint(0, n, (batch_size,), generator=g)
        modes = categorical_modes(batch_size, probabilities, [CELL, DRUG_CHANNEL], g)
        rows_d = rows.to(device)
        ctrl = cells.draw_controls(rows_d, g)
        q = context.q[ctrl].cpu()
        keep_protein = (torch.rand(batch_size, generator=g) < q) & use_protein
        swap_drug = torch.rand(batch_size, generator=g) < 0.5
        other = torch.randint(0, batch_size, (batch_size,), generator=g)
        mis_ctrl = cells.draw_other_line(cells.line[rows_d], g)
        return Batch(
            {
                "rows": rows,
                "ctrl": ctrl.cpu(),
                "t": schedule.sample_timesteps(batch_size, g),
                "eps": torch.randn(batch_size, latent_dim, generator=g),
                "keep_cell": modes.keep[CELL],
                "keep_drug": modes.keep[DRUG_CHANNEL],
                "keep_protein": keep_protein,
                "swap_drug": swap_drug,
                "other": rows[other],
                "mis_ctrl": mis_ctrl.cpu(),
            }
        )

    def loss(model, b: Batch, step: int):
        r, ctrl = b.rows["rows"], b.rows["ctrl"]
        dz = (cells.z_p[r] - context.z[ctrl] - mean) / std
        t, eps = b.rows["t"], b.rows["eps"]
        dz_t = schedule.add_noise(dz, eps, t)
        v = from_x0_eps(dz, eps, "v", schedule.alpha_bar(t))
        keep = (b.rows["keep_cell"], b.rows["keep_drug"], b.rows["keep_protein"])
        drug, dose = cells.drug[r], cells.log_dose[r]
        if lam <= 0:
            v_hat = model(dz_t, t, context.inputs(ctrl), drug, dose, *keep).float()
            mse = (v_hat - v).pow(2).mean()
            return mse, {"mse": mse.detach()}
        # mismatched joint condition (Eq. 12): another batch drug, or a control of another line
        swap, other = b.rows["swap_drug"], b.rows["other"]
        drug_mis = torch.where(swap[:, None], cells.drug[other], drug)
        dose_mis = torch.where(swap[:, None], cells.log_dose[other], dose)
        ctrl_mis = torch.where(swap, ctrl, b.rows["mis_ctrl"])
        valid = torch.where(
            swap,
            (cells.drug[other] != drug).any(dim=1),
            context.lines[b.rows["mis_ctrl"]] != cells.line[r],
        )
        # the matched and the mismatched rows in one forward pass (same delta_z_t, t, modes)
        both = model(
            dz_t.repeat(2, 1),
            t.repeat(2),
            context.inputs(torch.cat([ctrl, ctrl_mis])),
            torch.cat([drug, drug_mis]),
            torch.cat([dose, dose_mis]),
            *(k.repeat(2) for k in keep),
        ).float()
        v_hat, v_mis = both[: len(r)], both[len(r) :]
        mse = (v_hat - v).pow(2).mean()
        weight = context.q[ctrl] * (keep[0] & keep[1] & valid).float()
        triplet = cosine_margin_triplet(v_hat, v_mis, v, float(p["triplet_margin"]), weight)
        return mse + lam * triplet, {"mse": mse.detach(), "triplet": triplet.detach()}

    trainer = Trainer(
        net,
        train_config(p, steps, seed),
        device=device,
        checkpoint_dir=checkpoint_dir,
        run_id=fingerprint(p, seed, n, float(cells.z_p.sum())),
        name="statexdiff",
    )
    return trainer.fit(batch, loss)
