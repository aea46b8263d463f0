"""StateXDiff (arXiv:2605.16104 §3, App. A.4-A.5): the Method — fit, predict, persistence.

The denoiser is in :mod:`.model`, training in :mod:`.train`, guided DDIM in :mod:`.sample`.

Priors (read at fit time, copied into the model folder so that a saved model is self-contained)
    ``latent``: the frozen SCimilarity-layout encoder/decoder (``z = E(x)``, unit-norm 128-d);
    ``mdt``: the drug templates ``T_d`` of every drug with a structure (held-out drugs included:
    zero-shot from structure and, where present, external L1000 views; :mod:`scpert.priors.mdt`);
    ``protein`` (:func:`scpert.priors.protein.read_cell_proteins`: ``g_p`` and PQM ``q`` of every
    control cell) and ``vmcs`` (:func:`scpert.priors.vmcs.load_vmcs`: the frozen VMCS that turns
    ``(z_c, g_p, q)`` into cell tokens), both imported only on the VMCS path; with
    ``protein_source: measured`` / ``finetuned`` (Fig. 3c) the pair ``protein_measured`` +
    ``vmcs_measured`` / ``protein_finetuned`` + ``vmcs_finetuned`` in their place
    (:func:`scpert.methods.statexdiff.protein_priors`).
Prediction (cell level, §3.1)
    For every condition row, ``n_cells`` control cells of its context (from the row's plate;
    :class:`scpert.data.pairing.ControlCells`); each drawn cell ``x_c`` is embedded, ``z_c =
    E(x_c)``, and gets its own residual sample ``delta_z`` (noise seeded by ``(seed, condition,
    plate)``, so a condition's cells never depend on the other conditions); ``z_p = z_c + delta_z``
    is re-projected onto the unit sphere (the encoder's range; the paper is silent) and decoded.
    ``effect``: ``decoded`` (paper preset, §3.1 "reconstructed from the resulting latent state"):
    ``x^_p = max(D(z_p), 0)``; ``decoded_difference``: ``max(x_c + D(z_p) - D(z_c), 0)``, which
    keeps the control cell's own variation and cancels the decoder's reconstruction error to
    first order.
"""

from __future__ import annotations

import logging
import shutil
import time
import zlib
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch
from torch import nn

from scpert.data import pairing
from scpert.data.schema import CELL_LINE, CONDITION, DOSE, DRUG, PLATE, SchemaError
from scpert.generative import make_schedule
from scpert.latent import LatentModel, load_frozen_prior, load_model, save_model
from scpert.methods.base import Method, PerturbData
from scpert.methods.registry import register
from scpert.methods.statexdiff import protein_priors
from scpert.methods.statexdiff.model import CellInput, StateXDiffNet
from scpert.methods.statexdiff.sample import sample_residuals
from scpert.methods.statexdiff.train import (
    CellContext,
    Standardizer,
    encode_drugs,
    fit_network,
    training_cells,
)
from scpert.perturbations import method_features

log = logging.getLogger(__name__)

SAMPLER = "ddim"
STATE_FILE = "statexdiff.pt"
LATENT_DIR, VMCS_DIR = "latent", "vmcs"
G_P_DIM = 128  # width of the pseudo-protein embedding g_p (Table 9)


@register
class StateXDiff(Method):
    """StateXDiff (see the module docstring)."""

    name = "statexdiff"

    def __init__(self, params: dict[str, Any], seed: int = 0):
        super().__init__(params, seed)
        self.device = torch.device("cpu")
        self.vmcs = None

    # -- configuration
    @property
    def uses_vmcs(self) -> bool:
        return bool(self.params["use_vmcs"])

    def _build(self, latent_dim: int, cell_source: tuple, drug_source: tuple) -> None:
        p = self.params
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = StateXDiffNet(p, latent_dim, cell_source, drug_source)
        self.net.to(self.device)
        self.schedule = make_schedule(p["schedule"], int(p["num_timesteps"]))

    def parameter_counts(self) -> dict[str, int]:
        if hasattr(self, "net"):
            net = self.net
        else:
            p = self.params
            cell = ("vmcs", int(p["describe_token_dim"])) if self.uses_vmcs else ("raw", 128)
            drug = (
                ("mdt", torch.zeros(1, int(p["drug_tokens"]), int(p["describe_drug_dim"])))
                if p["drug_encoder"] == "mdt"
                else ("structure", torch.zeros(1, int(p["fingerprint_bits"])))
            )
            with torch.device("meta"):
                net = StateXDiffNet(p, 128, cell, drug)
        counts = {}
        for group, parts in net.module_groups().items():
            params = [
                q
                for part in parts
                for q in ([part] if isinstance(part, nn.Parameter) else part.parameters())
            ]
            counts[group] = sum(q.numel() for q in params if q.requires_grad)
        return counts

    # -- priors
    def _latent_prior(self, train: PerturbData) -> LatentModel:
        return load_frozen_prior(train.priors, self.genes, "statexdiff", self.device)

    def _drug_source(self, train: PerturbData) -> tuple[list[str], tuple]:
        p = self.params
        if p["drug_encoder"] == "mdt":
            from scpert.priors.outputs import MDT_TOKENS, load_drug_tokens

            if "mdt" not in train.priors:
                raise SchemaError("statexdiff: prior 'mdt' (rule pretrain_mdt) was not provided")
            arrays = load_drug_tokens(Path(train.priors["mdt"]) / MDT_TOKENS)
            names = [str(d) for d in arrays["drug"]]
            return names, ("mdt", torch.as_tensor(np.asarray(arrays["tokens"], np.float32)))
        names = [str(d) for d in train.drugs.index if str(d) != train.control]
        fps = method_features(train, names, n_bits=int(p["fingerprint_bits"]), radius=2)
        return list(fps.index), ("structure", torch.as_tensor(fps.to_numpy(np.float32)))

    def add_perturbations(
        self, drugs: pd.DataFrame, names: list[str], priors: dict | None = None
    ) -> list[str]:
        """Fingerprint rows of unseen chemicals for the structure encoder (``drug_encoder:
        structure``). The MDT encoder already holds the template of every drug of its ``mdt``
        prior (the drug table's chemicals, with or without cells); a drug outside it raises."""
        if self.params["drug_encoder"] == "mdt":
            new = [n for n in names if n not in set(self.drug_names)]
            if not new:
                return []
            raise NotImplementedError(
                f"statexdiff (drug_encoder mdt): no drug template for '{new[0]}' in the MDT "
                "prior the model was trained with"
            )
        from scpert.perturbations import added_features

        tokens = self.net.drug_tokens
        new = added_features(
            drugs,
            names,
            self.drug_names,
            n_bits=int(tokens.fingerprints.shape[1]),
            radius=2,  # as in _drug_source
        )
        if len(new):
            rows = torch.as_tensor(new.to_numpy(np.float32), device=tokens.fingerprints.device)
            tokens.fingerprints = torch.cat([tokens.fingerprints, rows])
            self.drug_names = [*self.drug_names, *new.index]
        return list(new.index)

    def _cell_proteins(self, train: PerturbData, control_names: list[str]):
        """``(g_p, q)`` of the training controls from the ``protein`` prior (module docstring),
        ``q = 1`` for "w/o PQM"; ``g_p = 0, q = 0`` for "w/o pseudo-protein"."""
        p = self.params
        n = len(control_names)
        if not p["use_protein"]:
            self.proteins = None
            return np.zeros((n, G_P_DIM), np.float32), np.zeros(n, np.float32)
        from scpert.priors.protein import read_cell_proteins

        name = protein_priors(p)[0]
        if name not in train.priors:
            raise SchemaError(f"statexdiff: prior '{name}' (its protein source) was not provided")
        proteins = read_cell_proteins(train.priors[name])
        self.proteins = {
            "obs_names": [str(x) for x in proteins.obs_names],
            "g_p": np.asarray(proteins.g_p, np.float32),
            "q": np.asarray(proteins.q, np.float32),
            "source": str(train.priors[name]),
        }
        return self._lookup_proteins(control_names)

    def _lookup_proteins(self, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.proteins is None:  # "w/o pseudo-protein": the protein branch removed
            return np.zeros((len(names), G_P_DIM), np.float32), np.zeros(len(names), np.float32)
        position = pd.Index(self.proteins["obs_names"])
        at = position.get_indexer(pd.Index(names))
        if (at < 0).any():
            raise SchemaError(
                f"{self.proteins['source']}: no pseudo-protein row for control cell "
                f"'{names[int(np.flatnonzero(at < 0)[0])]}' (field 'obs_names')"
            )
        q = self.proteins["q"][at] if self.params["use_pqm"] else np.ones(len(at), np.float32)
        return self.proteins["g_p"][at], q

    def _load_vmcs(self, folder) -> None:
        from scpert.priors.vmcs import load_vmcs

        self.vmcs = load_vmcs(folder, self.device)
        self.vmcs.eval()
        for q in self.vmcs.parameters():
            q.requires_grad_(False)

    # -- training
    def fit(self, train: PerturbData, device: str = "cpu") -> None:
        p = self.params
        self.device = torch.device(device)
        self.genes = [str(g) for g in train.adata.var_names]
        self.latent = self._latent_prior(train)
        obs = train.adata.obs
        z = self.latent.embed(train.adata.X)
        self.drug_names, drug_source = self._drug_source(train)
        line_code = {line: i for i, line in enumerate(sorted(obs[CELL_LINE].astype(str).unique()))}
        cells, ctrl_rows = training_cells(
            obs, z, train.control, self.drug_names, line_code, self.device
        )
        z_ctrl = z[ctrl_rows]
        self.z_scale = Standardizer.fit(z_ctrl)
        partner = pairing.random_control_pairs(obs, train.control, np.random.default_rng(self.seed))
        perturbed = ~train.is_control
        self.target_scale = Standardizer.fit(
            z[perturbed] - z[partner[perturbed]], p["target_scaling"] == "standardise"
        )
        control_names = [str(x) for x in obs.index[ctrl_rows]]
        self.proteins = None
        if self.uses_vmcs:
            vmcs_name = protein_priors(p)[1]
            if vmcs_name not in train.priors:
                raise SchemaError(f"statexdiff: prior '{vmcs_name}' (train_vmcs) was not provided")
            self.vmcs_source = Path(train.priors[vmcs_name])
            self._load_vmcs(self.vmcs_source)
            g_p, q = self._cell_proteins(train, control_names)
            cell_source = ("vmcs", int(self.vmcs.D_tok), int(self.vmcs.K_s), int(self.vmcs.K_p))
        else:
            g_p, q = None, np.ones(len(ctrl_rows), np.float32)
            cell_source = ("raw", z.shape[1])
        context = CellContext(
            z_ctrl,
            np.array([line_code[x] for x in obs[CELL_LINE].astype(str).to_numpy()[ctrl_rows]]),
            q,
            g_p,
            self.vmcs,
            self.z_scale,
            self.device,
        )
        self._build(z.shape[1], cell_source, drug_source)
        log.info(
            "statexdiff: %d perturbed training cells, %d controls, %d drugs with templates "
            "(%s), cell branch %s, %d genes, latent %d",
            len(cells),
            len(ctrl_rows),
            len(self.drug_names),
            p["drug_encoder"],
            cell_source[0],
            len(self.genes),
            z.shape[1],
        )
        result = fit_network(
            self.net,
            self.schedule,
            cells,
            context,
            self.target_scale,
            p,
            self.device,
            self.seed,
            self.checkpoint_dir,
        )
        self.history = result.as_dict()

    # -- sampling
    def _cell_input(self, z_c: np.ndarray, names: list[str]) -> tuple[CellInput, torch.Tensor]:
        """The cell branch's input for control cells and their protein keep mask."""
        device = self.device
        if self.vmcs is None:
            z_std = torch.as_tensor(self.z_scale(z_c), dtype=torch.float32, device=device)
            return CellInput(z_c=z_std), torch.zeros(len(z_c), dtype=torch.bool, device=device)
        g_p, q = self._lookup_proteins(names)
        with torch.no_grad():
            tokens = self.vmcs.tokens(
                torch.as_tensor(z_c, device=device),
                torch.as_tensor(g_p, device=device),
                torch.as_tensor(q, device=device),
            )
        keep = torch.full((len(z_c),), bool(self.params["use_protein"]), device=device)
        return CellInput(shared=tokens.shared.float(), protein=tokens.protein.float()), keep

    def sample_latents(
        self,
        z_c: np.ndarray,
        names: list[str],
        drug: np.ndarray,
        log_dose: np.ndarray,
        noise: np.ndarray,
    ) -> np.ndarray:
        """``z_p = normalise(z_c + delta_z)`` for control latents (n, d), in batches."""
        out = []
        size = int(self.params["sample_batch_size"])
        start = last = time.monotonic()
        for s in range(0, len(z_c), size):
            now = time.monotonic()
            if now - last >= 5.0:
                rate = s / (now - start)
                log.info(
                    "statexdiff: sampled %d/%d cells, %.0f cells/s, ETA %.0f s",
                    s,
                    len(z_c),
                    rate,
                    (len(z_c) - s) / rate,
                )
                last = now
            part = slice(s, s + size)
            cell, keep_protein = self._cell_input(z_c[part], names[part])
            dz = sample_residuals(
                self.net,
                self.schedule,
                self.params,
                cell,
                torch.as_tensor(drug[part], device=self.device),
                torch.as_tensor(log_dose[part], device=self.device),
                keep_protein,
                torch.as_tensor(noise[part], device=self.device),
            )
            out.append(self.target_scale.invert(dz.cpu().numpy()))
        dz = np.concatenate(out) if out else np.zeros_like(z_c)
        z_p = z_c + dz
        return z_p / np.maximum(np.linalg.norm(z_p, axis=1, keepdims=True), 1e-12)

    def predict(self, controls: ad.AnnData, conditions: pd.DataFrame, seed: int = 0) -> ad.AnnData:
        cells = pairing.ControlCells(controls, self.genes)
        table = pairing.prediction_table(conditions)
        draw = cells.draw(table, seed)
        uns = {"method": self.name, "seed": int(seed), "sampler": SAMPLER}
        if len(draw.cell) == 0:
            return cells.prediction(table, draw, np.zeros((0, len(self.genes))), uns)
        x_c = pairing.dense(cells.X[draw.cell]).astype(np.float32)
        z_c = self.latent.embed(x_c)
        names = [str(x) for x in cells.obs.index[draw.cell]]
        drug, logd = encode_drugs(
            table[DRUG].to_numpy()[draw.row], table[DOSE].to_numpy()[draw.row], self.drug_names
        )
        noise = _row_noise(table, draw.row, z_c.shape[1], seed)
        z_p = self.sample_latents(z_c, names, drug, logd, noise)
        decoded = self.latent.reconstruct(z_p)
        if self.params["effect"] == "decoded_difference":
            decoded = x_c + decoded - self.latent.reconstruct(z_c)
        return cells.prediction(table, draw, np.maximum(decoded, 0.0), uns)

    # -- persistence
    def _save_state(self, path: Path) -> None:
        save_model(self.latent.cpu(), path / LATENT_DIR, {"copied_from": "training prior"})
        self.latent.to(self.device)
        if self.vmcs is not None:
            shutil.copytree(self.vmcs_source, path / VMCS_DIR, dirs_exist_ok=True)
        torch.save(
            {
                "net": {k: v.cpu() for k, v in self.net.state_dict().items()},
                "cell_kind": self.net.cell_kind,
                "cell_source": _cell_source(self.net),
                "drug_kind": self.params["drug_encoder"],
                "drug_names": self.drug_names,
                "target_scale": (self.target_scale.mean, self.target_scale.std),
                "z_scale": (self.z_scale.mean, self.z_scale.std),
                "proteins": self.proteins,
                "history": self.history,
            },
            path / STATE_FILE,
        )

    def _load_state(self, path: Path, device: str) -> None:
        self.device = torch.device(device)
        self.latent = load_model(path / LATENT_DIR, self.device).eval()
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
        self.target_scale = Standardizer(*state["target_scale"])
        self.z_scale = Standardizer(*state["z_scale"])
        self.drug_names = list(state["drug_names"])
        self.proteins = state["proteins"]
        self.history = state["history"]
        if state["cell_kind"] == "vmcs":
            self.vmcs_source = path / VMCS_DIR
            self._load_vmcs(self.vmcs_source)
        net = state["net"]
        key = "templates" if state["drug_kind"] == "mdt" else "fingerprints"
        drug_source = (state["drug_kind"], net[f"drug_tokens.{key}"])
        self._build(self.latent.latent_dim, tuple(state["cell_source"]), drug_source)
        self.net.load_state_dict(net)
        self.net.eval()


def _cell_source(net: StateXDiffNet) -> tuple:
    if net.cell_kind == "raw":
        return ("raw", net.cell_tokens.proj.in_features)
    return ("vmcs", net.cell_tokens.shared.in_features, net.K_s, net.K_p)


def _row_noise(table: pd.DataFrame, row: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """``delta_z_T ~ N(0, I)`` per drawn cell, from a generator per (condition, plate) row."""
    noise = np.zeros((len(row), dim), dtype=np.float32)
    has_plate = PLATE in table.columns
    for i in np.unique(row):
        at = np.flatnonzero(row == i)
        key = table[CONDITION].iat[i] + (f"@{table[PLATE].iat[i]}" if has_plate else "")
        g = torch.Generator().manual_seed(
            (int(seed) * 1_000_003 + zlib.crc32(key.encode())) % 2**63
        )
        noise[at] = torch.randn(len(at), dim, generator=g).numpy()
    return noise
