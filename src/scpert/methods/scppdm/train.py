"""scPPDM training (scppdm.txt §3.3.1, §4.1.1, App. D, E) on the shared trainer.

Data
    Plate-matched pseudobulk pairs (:func:`scpert.data.pairing.pseudobulk_pairs`): per key
    (cell line, drug, dose, plate) ``x_post`` and the same line's same-plate control mean
    ``x_pre``, embedded by the frozen latent encoder (eval mode, the deterministic posterior mean
    of eq. 4): ``z0 = E(x_post)``, ``z_pre = E(x_pre)``. The diffused variable (``target``):
    ``post`` = ``z0`` (§3.1, the paper), or ``residual`` = ``z0 - z_pre`` (the named variant
    ``scppdm_residual``, the vector-field view of App. A.1 eq. 17). The diffused variable and
    ``z_pre`` are standardised per dimension with their training statistics (latent scaling,
    Rombach et al. 2022): unit-norm 128-d codes spread ~0.09 per dimension against unit noise.
Latent fine-tuning (§4: "We first fine-tune SCimilarity VAE on the training set ..., then freeze
    the encoder/decoder")
    The latent prior (rule ``finetune_latent``: the SCimilarity-layout model fitted on the split's
    training CELLS) is fine-tuned on scPPDM's training set, the pseudobulks ``x_post`` and ``x_pre``
    of the pairs, by reconstruction MSE for ``latent_steps`` steps (AdamW, ``latent_lr``, weight
    decay 0.01 as SCimilarity, batch ``latent_batch_size``, dropout off, BatchNorm statistics
    re-estimated on pseudobulks), then frozen. A decoder fitted to single cells reconstructs
    pseudobulk means poorly: on the default world's pair_ood split its error (mean squared, all
    genes) on the test conditions' pseudobulks is 0.160, larger than the drug effects themselves
    (0.145 on the training pairs), and 0.077 after 300 fine-tuning steps (``docs/decisions.md``).
Objective (eqs. 9-14)
    ``L = L_denoise + ramp(step) (lambda_align L_align + lambda_info L_info)``, both lambdas ramped
    linearly from 0 over the first 20 % of steps (App. D). Four-state dropout: ``z_pre`` and
    ``z~_drug`` dropped independently with p = 0.1 each
    (:func:`scpert.generative.bernoulli_modes`). ``v^ = (x_post - x_pre) / ||.||`` in gene space
    (eq. 9); ``q = W z~_drug / ||.||``; ``L_align = ||v^ - q||^2`` (eq. 10); ``L_info`` = InfoNCE
    (eq. 11, tau 0.1) of ``q`` against its own ``v^`` (in the denominator) and ``n_negatives``
    directions drawn from a FIFO memory bank (length ``memory_bank``) of past batches' ``v^``;
    bank entries of the anchor's own condition (cell line, drug, dose: the same response on
    another plate) are excluded from its negatives. Ablation (A) No-Cond keeps both channels null
    and weighs the injection losses 0.
Optimisation
    :class:`scpert.generative.trainer.Trainer`: AdamW (lr 1e-4, betas 0.9/0.95, weight decay 1e-5
    on weight matrices), 3,000 warm-up steps then linear decay to zero, gradient clipping 1.0,
    fp16 mixed precision on GPUs (``mixed_precision``), EMA 0.999 for sampling, global batch 1024
    (4 GPUs x 256 with ``gpus: 4``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scpert.data import pairing, schema
from scpert.data.schema import CELL_LINE, DOSE, DRUG
from scpert.generative import bernoulli_modes
from scpert.generative.schedules import NoiseSchedule
from scpert.generative.trainer import Batch, TrainConfig, Trainer, TrainResult, fingerprint
from scpert.latent import LatentModel
from scpert.methods.scppdm.model import ConditionBatch, ScppdmNet
from scpert.perturbations import DrugTable

log = logging.getLogger(__name__)

PRE, DRUG_CHANNEL = "pre", "drug"


@dataclass
class Standardizer:
    """Per-dimension ``(x - mean) / std`` (std floored at 1e-6) and its inverse."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        return cls(x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6))

    def __call__(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x - self.mean) / self.std).astype(np.float32))

    def invert(self, x: np.ndarray) -> np.ndarray:
        return x * self.std + self.mean

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean, self.std


@dataclass
class TrainingSet:
    """Everything the loss reads, one row per plate-matched pair."""

    pairs: pairing.PseudobulkPairs
    z_pre: np.ndarray  # E(x_pre), unit norm
    target: np.ndarray  # the diffused variable before standardisation
    direction: np.ndarray  # v^ (eq. 9), gene space
    condition_code: np.ndarray  # (cell line, drug, dose) id, for the InfoNCE exclusion
    cond: ConditionBatch


def training_set(
    pairs: pairing.PseudobulkPairs, latent: LatentModel, drugs: DrugTable, p: dict
) -> TrainingSet:
    z0 = latent.embed(pairs.post)
    z_pre = latent.embed(pairs.pre)
    target = z0 - z_pre if p["target"] == "residual" else z0
    direction = pairs.post - pairs.pre
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    codes = pairs.keys.groupby([CELL_LINE, DRUG, DOSE], sort=True).ngroup().to_numpy()
    cond = ConditionBatch.encode(pairs.keys[DRUG], pairs.keys[DOSE], drugs)
    return TrainingSet(pairs, z_pre, target, direction.astype(np.float32), codes, cond)


class MemoryBank:
    """FIFO queue of past response directions and their condition ids (App. D: length 16,384),
    a ring buffer: the newest ``size`` rows are kept."""

    def __init__(self, size: int, dim: int):
        self.size, self.dim = int(size), int(dim)
        self.items = torch.zeros(0, dim)
        self.codes = torch.zeros(0, dtype=torch.long)
        self.next = 0  # the slot the next row overwrites once the bank is full

    def push(self, rows: torch.Tensor, codes: torch.Tensor) -> None:
        rows, codes = rows.detach()[-self.size :], codes[-self.size :].to(rows.device)
        if len(self.items) < self.size:
            room = self.size - len(self.items)
            head, rows, codes_head, codes = rows[:room], rows[room:], codes[:room], codes[room:]
            self.items = torch.cat([self.items.to(head.device), head])
            self.codes = torch.cat([self.codes.to(head.device), codes_head])
        if len(rows):
            slots = (self.next + torch.arange(len(rows), device=rows.device)) % self.size
            self.items[slots] = rows
            self.codes[slots] = codes
            self.next = int((self.next + len(rows)) % self.size)

    def sample(self, k: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.items) <= k:
            return self.items, self.codes
        pick = torch.randperm(len(self.items), generator=generator)[:k].to(self.items.device)
        return self.items[pick], self.codes[pick]

    def state_dict(self) -> dict:
        return {
            "size": self.size,
            "items": self.items.cpu(),
            "codes": self.codes.cpu(),
            "next": self.next,
        }

    def load_state_dict(self, state: dict) -> None:
        self.size, self.items, self.codes = state["size"], state["items"], state["codes"]
        self.next = int(state["next"])
        self.dim = self.items.shape[1]


def info_nce(
    q: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    tau: float,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE of unit vectors ``q`` (B, G) against their positives (B, G) and shared negatives
    (K, G) (eq. 11; positive in the denominator); ``exclude`` (B, K) True drops a negative."""
    if len(negatives) == 0:
        return q.sum() * 0.0
    neg = q @ negatives.T
    if exclude is not None:
        neg = neg.masked_fill(exclude, float("-inf"))
    logits = torch.cat([(q * positive).sum(dim=1, keepdim=True), neg], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def finetune_latent_on_pseudobulks(
    latent: LatentModel, X: np.ndarray, p: dict, device: torch.device, seed: int
) -> TrainResult | None:
    """Fine-tune ``latent`` in place on pseudobulk rows ``X`` (module docstring), then freeze it."""
    steps = int(p["latent_steps"])
    if steps <= 0:
        return None
    rows_t = torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)
    batch_size = min(int(p["latent_batch_size"]), len(rows_t))
    dropouts = [m for m in latent.modules() if isinstance(m, torch.nn.Dropout)]
    rates = [m.p for m in dropouts]
    for m in dropouts:
        m.p = 0.0
    for q in latent.parameters():
        q.requires_grad_(True)

    def batch(step: int, g: torch.Generator) -> Batch:
        return Batch({"rows": torch.randint(0, len(rows_t), (batch_size,), generator=g)})

    def loss(model, b: Batch, step: int):
        x = rows_t[b.rows["rows"]]
        mse = F.mse_loss(model(x)[1], x)
        return mse, {}

    config = TrainConfig(
        steps=steps,
        lr=float(p["latent_lr"]),
        weight_decay=0.01,
        lr_schedule="constant",
        seed=int(seed),
    )
    result = Trainer(latent, config, device=device, name="scppdm latent").fit(batch, loss)
    for m, rate in zip(dropouts, rates):
        m.p = rate
    for q in latent.parameters():
        q.requires_grad_(False)
    latent.eval()
    return result


def train_config(p: dict, seed: int) -> TrainConfig:
    return TrainConfig(
        steps=int(p["steps"]),
        lr=float(p["lr"]),
        betas=tuple(p["betas"]),
        weight_decay=float(p["weight_decay"]),
        lr_schedule="linear",
        warmup_steps=int(p["warmup_steps"]),
        grad_clip=float(p["grad_clip"]),
        ema_decay=float(p["ema_decay"]),
        precision=str(p["mixed_precision"]),
        checkpoint_every=int(p["checkpoint_every"]),
        seed=int(seed),
    )


def fit_network(
    net: ScppdmNet,
    schedule: NoiseSchedule,
    data: TrainingSet,
    target: torch.Tensor,
    pre: torch.Tensor,
    p: dict,
    device: torch.device,
    seed: int,
    checkpoint_dir=None,
) -> TrainResult:
    """Train ``net`` on standardised ``target`` / ``pre`` (module docstring)."""
    n = len(target)
    batch_size = min(int(p["batch_size"]), n)
    steps = int(p["steps"])
    unconditional = p["conditioning"] == "none"
    ramp = max(float(p["loss_warmup_fraction"]) * steps, 1.0)
    drop = {PRE: float(p["p_drop_pre"]), DRUG_CHANNEL: float(p["p_drop_drug"])}
    on = {
        "target": target.to(device),
        "pre": pre.to(device),
        "direction": torch.from_numpy(data.direction).to(device),
        "code": torch.from_numpy(data.condition_code).to(device),
    }
    cond = data.cond.to(device)
    bank = MemoryBank(int(p["memory_bank"]), data.direction.shape[1])
    latent_dim = target.shape[1]

    def batch(step: int, g: torch.Generator) -> Batch:
        rows = torch.randint(0, n, (batch_size,), generator=g)
        modes = bernoulli_modes(batch_size, drop, g)
        keep_pre, keep_drug = modes.keep[PRE], modes.keep[DRUG_CHANNEL]
        if unconditional:
            keep_pre, keep_drug = torch.zeros_like(keep_pre), torch.zeros_like(keep_drug)
        negatives, negative_codes = bank.sample(int(p["n_negatives"]), g)
        return Batch(
            {
                "rows": rows,
                "t": schedule.sample_timesteps(batch_size, g),
                "eps": torch.randn(batch_size, latent_dim, generator=g),
                "keep_pre": keep_pre,
                "keep_drug": keep_drug,
            },
            {"negatives": negatives, "negative_codes": negative_codes},
        )

    def loss(model, b: Batch, step: int):
        rows, eps = b.rows["rows"], b.rows["eps"]
        z_t = schedule.add_noise(on["target"][rows], eps, b.rows["t"])
        eps_hat, projected = model(
            z_t, b.rows["t"], on["pre"][rows], cond[rows], b.rows["keep_pre"], b.rows["keep_drug"]
        )
        denoise = F.mse_loss(eps_hat.float(), eps)
        q = F.normalize(projected.float(), dim=1)
        v = on["direction"][rows]
        align = (q - v).pow(2).sum(dim=1).mean()
        negatives = b.shared["negatives"]
        exclude = on["code"][rows][:, None] == b.shared["negative_codes"][None, :]
        info = info_nce(q, v, negatives, float(p["tau"]), exclude)
        weight = 0.0 if unconditional else min(1.0, (step + 1) / ramp)
        total = denoise + weight * (p["lambda_align"] * align + p["lambda_info"] * info)
        return total, {"denoise": denoise.detach(), "align": align.detach(), "info": info.detach()}

    def push(b: Batch, step: int) -> None:
        rows = b.rows["rows"].to(device)
        bank.push(on["direction"][rows], on["code"][rows])

    trainer = Trainer(
        net,
        train_config(p, seed),
        device=device,
        checkpoint_dir=checkpoint_dir,
        extra_state={"memory_bank": bank},
        run_id=fingerprint(p, seed, n, data.direction.shape[1], float(target.sum())),
        name="scppdm",
    )
    return trainer.fit(batch, loss, after_step=push)


def seen_drugs(pairs: pairing.PseudobulkPairs) -> list[str]:
    """The single drugs of the training pairs (the Drug-ID vocabulary), sorted."""
    return sorted({c for drug in pairs.keys[DRUG] for c in schema.components(drug)})
