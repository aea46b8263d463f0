"""scPPDM (scppdm.txt §3, App. D, E, G): the Method — fit, predict, persistence.

The networks are in :mod:`.model`, training in :mod:`.train`, guided DDIM in :mod:`.sample`.

Prediction (§3.1, Fig. 2; cells are this project's addition, the paper evaluates pseudobulks)
    Cells are drawn as in every method (:class:`scpert.data.pairing.ControlCells`): ``n_cells``
    control cells per condition row, from the row's plate when it names one. For every (row,
    plate of a drawn cell) unit, ``samples_per_unit`` guided DDIM samples (paper preset 1: one
    prediction per test pair) start from noise seeded by ``(seed, condition, plate)`` and are
    conditioned on that plate's control pseudobulk ``z_pre = E(mean x_ctrl)``; each sample is
    re-projected onto the unit sphere (the encoder's range) and decoded, and the unit's cells are
    shared round-robin among its samples (so their mean is the samples' mean). ``effect``:

    - ``decoded`` (paper preset): ``x^ = D(z^_0)`` is the predicted pseudobulk; every drawn
      control cell is shifted by ``x^ - mean x_ctrl`` of its plate, so the predicted cells'
      mean is ``x^`` (up to the clip at 0) and their spread the observed control spread;
    - ``decoded_difference`` (``scppdm_residual``): the shift is ``D(z^_0) - D(z_pre)``, which
      cancels the decoder's reconstruction error of the control pseudobulk to first order.

    Predicted cells are ``max(x_ctrl + shift, 0)``.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch
from torch import nn

from scpert.data import pairing
from scpert.data.schema import CELL_LINE, CONDITION, DOSE, DRUG, PLATE
from scpert.generative import make_schedule
from scpert.latent import LatentModel, load_frozen_prior, load_model, save_model
from scpert.methods.base import Method, PerturbData
from scpert.methods.registry import register
from scpert.methods.scppdm.model import ConditionBatch, ScppdmNet
from scpert.methods.scppdm.sample import sample_standardised
from scpert.methods.scppdm.train import (
    Standardizer,
    finetune_latent_on_pseudobulks,
    fit_network,
    seen_drugs,
    training_set,
)
from scpert.perturbations import DrugTable, drug_table

log = logging.getLogger(__name__)

SAMPLER = "ddim"
STATE_FILE = "scppdm.pt"
LATENT_DIR = "latent"


@register
class ScPPDM(Method):
    """scPPDM (see the module docstring)."""

    name = "scppdm"

    def __init__(self, params: dict[str, Any], seed: int = 0):
        super().__init__(params, seed)
        self.device = torch.device("cpu")

    # -- construction
    def _build(self, latent_dim: int, n_genes: int, drugs: DrugTable) -> None:
        self.drugs = drugs
        p = self.params
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = ScppdmNet(
                p, latent_dim, n_genes, torch.from_numpy(drugs.fingerprints), len(drugs.train_drugs)
            )
        self.net.to(self.device)
        kwargs = (
            {"beta_start": p["beta_start"], "beta_end": p["beta_end"]}
            if p["schedule"] == "linear_vp"
            else {}
        )
        self.schedule = make_schedule(p["schedule"], int(p["num_timesteps"]), **kwargs)

    def parameter_counts(self) -> dict[str, int]:
        if hasattr(self, "net"):
            net = self.net
        else:
            p = self.params
            n_drugs = int(p["describe_n_drugs"])
            fps = torch.zeros(n_drugs, int(p["fingerprint_bits"]), dtype=torch.uint8)
            with torch.device("meta"):
                net = ScppdmNet(p, 128, int(p["describe_n_genes"]), fps, n_drugs)
        counts = {}
        for group, parts in net.module_groups().items():
            params = [
                q
                for part in parts
                for q in ([part] if isinstance(part, nn.Parameter) else part.parameters())
            ]
            counts[group] = sum(q.numel() for q in params if q.requires_grad)
        return counts

    # -- training
    def fit(self, train: PerturbData, device: str = "cpu") -> None:
        p = self.params
        self.device = torch.device(device)
        self.genes = [str(g) for g in train.adata.var_names]
        self.latent = self._latent_prior(train)
        pairs = pairing.pseudobulk_pairs(train.adata, train.control)
        self.latent_history = finetune_latent_on_pseudobulks(
            self.latent,
            np.concatenate([pairs.post, np.unique(pairs.pre, axis=0)]),
            p,
            self.device,
            self.seed,
        )
        drugs = drug_table(train, seen_drugs(pairs), p)
        self._build(self.latent.latent_dim, len(self.genes), drugs)
        data = training_set(pairs, self.latent, drugs, p)
        self.target_scale = Standardizer.fit(data.target)
        self.pre_scale = Standardizer.fit(data.z_pre)
        log.info(
            "scppdm: %d plate-matched pseudobulk pairs (%d without same-plate controls), %d drugs "
            "(%d in training), %d genes, latent %d, target %s",
            len(pairs.keys),
            pairs.fallbacks,
            len(drugs.names),
            len(drugs.train_drugs),
            len(self.genes),
            self.latent.latent_dim,
            p["target"],
        )
        result = fit_network(
            self.net,
            self.schedule,
            data,
            self.target_scale(data.target),
            self.pre_scale(data.z_pre),
            p,
            self.device,
            self.seed,
            self.checkpoint_dir,
        )
        self.history = result.as_dict()

    def _latent_prior(self, train: PerturbData) -> LatentModel:
        return load_frozen_prior(train.priors, self.genes, "scppdm", self.device)

    # -- sampling
    def sample_latents(
        self, z_pre: np.ndarray, conditions: ConditionBatch, noise: torch.Tensor
    ) -> np.ndarray:
        """Guided DDIM samples of ``z0`` (unit-norm latents) given control latents (B, D)."""
        pre = self.pre_scale(z_pre).to(self.device)
        z = sample_standardised(
            self.net, self.schedule, self.params, pre, conditions, noise.to(self.device)
        )
        z = self.target_scale.invert(z.cpu().numpy())
        if self.params["target"] == "residual":
            z = z + z_pre
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    def _unit_shifts(
        self, controls: pairing.ControlCells, table: pd.DataFrame, units: pd.DataFrame, seed: int
    ) -> np.ndarray:
        """The shifts of every (row, plate) unit (module docstring), (n_units, S, G) for
        ``S = samples_per_unit`` model samples."""
        S = int(self.params["samples_per_unit"])
        if len(units) == 0:
            return np.zeros((0, S, len(self.genes)))
        rows = units["row"].to_numpy()
        lines = table[CELL_LINE].to_numpy()[rows]
        conditions = table[CONDITION].to_numpy()[rows]
        plates = units[PLATE].to_numpy()
        ctrl_means = np.stack(
            [
                controls.index.mean(line, plate, f"condition '{c}'")
                for line, plate, c in zip(lines, plates, conditions)
            ]
        )
        z_ctrl = self.latent.embed(ctrl_means)
        cond = ConditionBatch.encode(
            table[DRUG].to_numpy()[rows], table[DOSE].to_numpy()[rows], self.drugs
        )
        noise = torch.stack(
            [
                torch.randn(
                    S,
                    self.latent.latent_dim,
                    generator=torch.Generator().manual_seed(_unit_seed(seed, c, plate)),
                )
                for c, plate in zip(conditions, plates)
            ]
        )  # (units, S, D)
        many = np.repeat(np.arange(len(units)), S)
        z0 = self.sample_latents(
            z_ctrl[many], cond[torch.from_numpy(many)], noise.reshape(-1, noise.shape[-1])
        )
        decoded = self.latent.reconstruct(z0).reshape(len(units), S, -1)
        if self.params["effect"] == "decoded_difference":
            return decoded - self.latent.reconstruct(z_ctrl)[:, None]
        return decoded - ctrl_means[:, None]

    def predict_deltas(
        self, controls: ad.AnnData, conditions: pd.DataFrame, seed: int = 0
    ) -> pd.DataFrame:
        """Mean shift over the samples of each (condition, plate) unit of :meth:`predict` (rows;
        genes columns)."""
        cells = pairing.ControlCells(controls, self.genes)
        table = pairing.prediction_table(conditions)
        units = cells.draw(table, seed).units
        shifts = self._unit_shifts(cells, table, units, seed).mean(axis=1)
        index = pd.MultiIndex.from_arrays(
            [table[CONDITION].to_numpy()[units["row"].to_numpy()], units[PLATE].to_numpy()],
            names=[CONDITION, PLATE],
        )
        return pd.DataFrame(shifts, index=index, columns=self.genes)

    def predict(self, controls: ad.AnnData, conditions: pd.DataFrame, seed: int = 0) -> ad.AnnData:
        cells = pairing.ControlCells(controls, self.genes)
        table = pairing.prediction_table(conditions)
        draw = cells.draw(table, seed)
        shifts = self._unit_shifts(cells, table, draw.units, seed)
        # the cells of a unit are shared round-robin among its model samples
        sample_of_cell = _rank_within(draw.unit) % shifts.shape[1] if len(draw.unit) else 0
        X = cells.realise(draw, shifts[draw.unit, sample_of_cell] if len(draw.unit) else 0.0)
        uns = {"method": self.name, "seed": int(seed), "sampler": SAMPLER}
        return cells.prediction(table, draw, X, uns)

    # -- persistence
    def add_perturbations(
        self, drugs: pd.DataFrame, names: list[str], priors: dict | None = None
    ) -> list[str]:
        """Fingerprint rows of unseen chemicals appended to the drug table and the encoder's
        buffer (their training id stays 0, unseen); an id-only encoder cannot featurise them."""
        missing = self.drugs.unseen(names)
        if not missing:
            return []
        if self.params["drug_encoder"] != "morgan":
            raise NotImplementedError(
                f"scppdm (drug_encoder {self.params['drug_encoder']}): cannot featurise "
                f"'{missing[0]}' absent from training"
            )
        self.drugs, added = self.drugs.grown_into(
            self.net.drug_encoder, drugs, missing, radius=int(self.params["fingerprint_radius"])
        )
        return added

    def _save_state(self, path: Path) -> None:
        meta = {
            "copied_from": "training prior",
            "pseudobulk_steps": int(self.params["latent_steps"]),
        }
        save_model(self.latent.cpu(), path / LATENT_DIR, meta)
        self.latent.to(self.device)
        torch.save(
            {
                "net": {k: v.cpu() for k, v in self.net.state_dict().items()},
                "target_scale": self.target_scale.arrays(),
                "pre_scale": self.pre_scale.arrays(),
                "drugs": self.drugs.names,
                "fingerprints": self.drugs.fingerprints,
                "train_drugs": self.drugs.train_drugs,
                "unpredictable": self.drugs.unpredictable,
                "history": self.history,
            },
            path / STATE_FILE,
        )

    def _load_state(self, path: Path, device: str) -> None:
        self.device = torch.device(device)
        self.latent = load_model(path / LATENT_DIR, self.device)
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
        self.target_scale = Standardizer(*state["target_scale"])
        self.pre_scale = Standardizer(*state["pre_scale"])
        self.history = state["history"]
        drugs = DrugTable(
            list(state["drugs"]),
            state["fingerprints"],
            list(state["train_drugs"]),
            state.get("unpredictable"),
        )
        self._build(self.latent.latent_dim, len(self.genes), drugs)
        self.net.load_state_dict(state["net"])
        self.net.eval()


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each group id, in order of appearance."""
    return pd.Series(groups).groupby(groups).cumcount().to_numpy()


def _unit_seed(seed: int, condition: str, plate: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(f"{condition}@{plate}".encode())) % (2**63)
