"""PerturbDiff (arXiv:2602.19685): the Method — fit, predict, persistence, and the marginal prior.

Prediction (App. B.2.2, B.3)
    For every (condition, plate) row, ``n_cells`` control cells of the row's cell line on that
    plate are drawn (:class:`scpert.data.pairing.ControlCells`: seeded by the condition and plate,
    so a condition's cells never depend on the other rows). They are cut into control sets of m
    (the last one padded by repeating its cells; padded outputs are dropped, never scored), and
    each set's perturbed counterpart is sampled from noise seeded by ``(seed, condition, plate,
    chunk)`` given the control set and the covariates (cell line, the row's plate, drug, dose).
    The predicted cells are the sampled cells themselves (x ``input_scale``), not shifted controls:
    PerturbDiff models the population (with ``output: control_residual`` each sampled cell is the
    control cell of its token plus the sampled change, :mod:`.model`).
"""

from __future__ import annotations

import json
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
from scpert.data.schema import CELL_LINE, DOSE, DRUG, PLATE, SchemaError
from scpert.generative import make_schedule
from scpert.methods.base import Method, PerturbData
from scpert.methods.perturbdiff import MARGINAL_PRIOR
from scpert.methods.perturbdiff.covariates import Vocabularies, structure_features, vocabularies
from scpert.methods.perturbdiff.model import CovariateEncoder, PerturbDiffNet
from scpert.methods.perturbdiff.sample import sample_sets
from scpert.methods.perturbdiff.train import (
    check_architecture,
    fit_sets,
    kept_rows,
    perturbation_sets,
    train_config,
    transfer,
)
from scpert.methods.registry import register
from scpert.perturbations import seen_perturbations

log = logging.getLogger(__name__)

STATE_FILE = "perturbdiff.pt"
#: files of the prior perturbdiff_marginal (rule pretrain_perturbdiff)
PRIOR_MODEL, PRIOR_META = "model.pt", "prior.json"
SAMPLER_BATCH = 256  # sets per sampling call (bounds memory)


def build_network(p: dict, n_genes: int, vocab: Vocabularies, fps, mdt) -> PerturbDiffNet:
    covariates = CovariateEncoder(
        int(p["width"]),
        len(vocab.cell_lines),
        len(vocab.plates),
        len(vocab.drugs),
        len(vocab.doses),
        fps,
        mdt,
    )
    return PerturbDiffNet(p, n_genes, covariates)


def schedule_of(p: dict):
    return make_schedule(
        "linear_vp", int(p["num_timesteps"]), beta_start=p["beta_start"], beta_end=p["beta_end"]
    )


def dense_scaled(X, p: dict) -> torch.Tensor:
    return torch.from_numpy(pairing.dense(X).astype(np.float32) / float(p["input_scale"]))


def load_prior(folder) -> dict:
    """The marginal prior's network state, params, genes and vocabularies."""
    folder = Path(folder)
    path = folder / PRIOR_MODEL
    if not path.is_file():
        raise SchemaError(f"{path}: missing (rule pretrain_perturbdiff writes it)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    state["vocab"] = Vocabularies(**state["vocab"])
    return state


@register
class PerturbDiff(Method):
    """PerturbDiff (see the module docstring and :mod:`scpert.methods.perturbdiff`)."""

    name = "perturbdiff"

    def __init__(self, params: dict[str, Any], seed: int = 0):
        super().__init__(params, seed)
        self.device = torch.device("cpu")
        self.schedule = schedule_of(self.params)

    def parameter_counts(self) -> dict[str, int]:
        if hasattr(self, "net"):
            net = self.net
        else:
            p = self.params
            n = {k: int(p[f"describe_n_{k}"]) for k in ("drugs", "cell_lines", "plates", "doses")}
            vocab = Vocabularies(
                [f"c{i}" for i in range(n["cell_lines"])],
                [f"p{i}" for i in range(n["plates"])],
                [f"d{i}" for i in range(n["drugs"])],
                [float(i) for i in range(n["doses"])],
                [f"d{i}" for i in range(n["drugs"])] + ["control"],
            )
            bits = int(p["fingerprint_bits"]) if p["drug_features"] != "none" else 0
            with torch.device("meta"):
                fps = torch.zeros(n["drugs"] + 1, bits)
                mdt = (
                    torch.zeros(n["drugs"] + 1, 512) if p["drug_features"] == "morgan_mdt" else None
                )
                net = build_network(p, int(p["describe_n_genes"]), vocab, fps, mdt)
        counts = {}
        for group, parts in net.module_groups().items():
            params = [
                q
                for part in parts
                for q in ([part] if isinstance(part, nn.Parameter) else part.parameters())
            ]
            counts[group] = sum(q.numel() for q in params if q.requires_grad)
        return counts

    # -- construction
    def _build(self, vocab: Vocabularies, fps, mdt) -> None:
        self.vocab = vocab
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = build_network(self.params, len(self.genes), vocab, fps, mdt)
        self.net.to(self.device)

    # -- training
    def fit(self, train: PerturbData, device: str = "cpu") -> None:
        p = self.params
        self.device = torch.device(device)
        self.genes = [str(g) for g in train.adata.var_names]
        obs = train.adata.obs
        vocab = vocabularies(obs, train.drugs, train.control)
        is_control = (obs[DRUG].astype(str) == train.control).to_numpy()
        fps, mdt, vocab = structure_features(
            train.drugs,
            vocab,
            p,
            train.priors.get("mdt"),
            seen=seen_perturbations(obs, train.control),
            controls=train.adata[is_control],
        )
        self._build(vocab, fps, mdt)
        if p["init"] == "pretrained":
            self._from_prior(train)
        X = dense_scaled(train.adata.X, p)
        rows = kept_rows(obs, train.control, p, self.seed)
        data = perturbation_sets(X, obs, train.control, vocab, p, rows, "training data")
        val = self._validation_sets(train, X) if int(p["val_every"]) > 0 else None
        log.info(
            "perturbdiff: %d sets of m = %d cells per step from %d groups (%d of them control "
            "groups) of %d cells; %d genes, %d cell lines, %d plates, %d drugs, %s validation "
            "groups, init %s",
            int(p["batch_sets"]),
            int(p["set_size"]),
            len(data.sets),
            int((data.sets.keys[DRUG] == train.control).sum()),
            len(rows),
            len(self.genes),
            len(vocab.cell_lines),
            len(vocab.plates),
            len(vocab.drugs),
            "no" if val is None else len(val.sets),
            p["init"],
        )
        config = train_config(p, self.seed, int(p["steps"]), float(p["lr"]), val is not None)
        result = fit_sets(
            self.net, self.schedule, data, p, config, self.device, self.checkpoint_dir, val
        )
        self.history = result.as_dict()

    def _validation_sets(self, train: PerturbData, X: torch.Tensor):
        """Sets of the validation conditions, with the training controls of their line/plate."""
        if train.val is None or train.val.n_obs == 0:
            return None
        ctrl = np.flatnonzero(train.is_control)
        obs = pd.concat([train.adata.obs.iloc[ctrl], train.val.obs], ignore_index=True)
        Xv = torch.cat([X[torch.from_numpy(ctrl)], dense_scaled(train.val.X, self.params)])
        rows = np.arange(len(ctrl), len(obs))
        return perturbation_sets(
            Xv, obs, train.control, self.vocab, self.params, rows, "validation data"
        )

    def _from_prior(self, train: PerturbData) -> None:
        if MARGINAL_PRIOR not in train.priors:
            raise SchemaError(
                f"perturbdiff: init 'pretrained' needs the prior '{MARGINAL_PRIOR}' "
                "(rule pretrain_perturbdiff)"
            )
        folder = Path(train.priors[MARGINAL_PRIOR])
        prior = load_prior(folder)
        source = str(folder / PRIOR_MODEL)
        check_architecture(prior["params"], self.params, source, "methods.<variant>")
        if list(prior["genes"]) != self.genes:
            raise SchemaError(
                f"{source}: pretrained on {len(prior['genes'])} genes that differ from the "
                f"split's {len(self.genes)} (genes.tsv); rerun pretrain_perturbdiff"
            )
        copied = transfer(
            self.net,
            prior["state"],
            prior["vocab"],
            self.vocab,
            self.params["finetune_io"] == "reinit",
        )
        log.info(
            "perturbdiff: fine-tuning the marginal prior %s (%d tensors, %d embedding rows, "
            "gene layers %s)",
            folder,
            copied["tensors"],
            copied["table rows"],
            "re-initialised" if self.params["finetune_io"] == "reinit" else "kept",
        )

    # -- sampling
    def predict(self, controls: ad.AnnData, conditions: pd.DataFrame, seed: int = 0) -> ad.AnnData:
        p = self.params
        m = int(p["set_size"])
        cells = pairing.ControlCells(controls, self.genes)
        table = pairing.prediction_table(conditions)
        draw = cells.draw(table, seed)
        has_plate = PLATE in table.columns
        ctrl_sets, slots, set_rows, noises = [], [], [], []
        for i, r in enumerate(table.itertuples(index=False)):
            positions = np.flatnonzero(draw.row == i)
            plate = getattr(r, PLATE) if has_plate else ""
            for k, start in enumerate(range(0, len(positions), m)):
                chunk = positions[start : start + m]
                padded = chunk[np.arange(m) % len(chunk)]
                ctrl_sets.append(padded)
                slots.append(chunk)
                set_rows.append(i)
                g = torch.Generator().manual_seed(_set_seed(seed, r.condition, plate, k))
                noises.append(torch.randn(m, len(self.genes), generator=g))
        X = np.zeros((len(draw.row), len(self.genes)), np.float32)
        keys = table.iloc[set_rows] if set_rows else table.iloc[:0]
        cov = self.vocab.encode(
            keys[[CELL_LINE, DRUG, DOSE]], plate=list(keys[PLATE]) if has_plate else None
        )
        ctrl_X = dense_scaled(cells.X, p)
        self.net.eval()
        for a in range(0, len(set_rows), SAMPLER_BATCH):
            part = slice(a, a + SAMPLER_BATCH)
            idx = torch.from_numpy(np.stack([draw.cell[c] for c in ctrl_sets[part]]))
            out = sample_sets(
                self.net,
                self.schedule,
                p,
                ctrl_X[idx].to(self.device),
                {k: v[part].to(self.device) for k, v in cov.items()},
                torch.stack(noises[part]).to(self.device),
            )
            out = (out.cpu().numpy() * float(p["input_scale"])).astype(np.float32)
            for j, chunk in enumerate(slots[part]):
                X[chunk] = out[j, : len(chunk)]
        uns = {"method": self.name, "seed": int(seed), "sampler": p["sampler"]}
        return cells.prediction(table, draw, X, uns)

    # -- screening unseen chemicals
    def add_perturbations(
        self, drugs: pd.DataFrame, names: list[str], priors: dict | None = None
    ) -> list[str]:
        """Fingerprint rows of unseen chemicals, and with ``drug_features: morgan_mdt`` their MDT
        embeddings ``z_drug`` from the ``mdt`` prior (``priors["mdt"]``), inserted before the
        control's row, which stays last
        (:func:`~scpert.methods.perturbdiff.covariates.structure_features`); they keep drug id 0
        (unseen). ``drug_features: none`` cannot featurise them."""
        from dataclasses import replace

        from scpert.perturbations import added_features

        known = self.vocab.features[:-1]
        wanted = [n for n in names if n not in set(known)]
        if not wanted:
            return []
        kind = self.params["drug_features"]
        if kind == "none":
            raise NotImplementedError(
                f"perturbdiff (drug_features none): cannot featurise '{wanted[0]}' absent from "
                "training"
            )
        cov = self.net.covariates
        new = added_features(
            drugs,
            wanted,
            known,
            n_bits=int(cov.fingerprints.shape[1]),
            radius=int(self.params["fingerprint_radius"]),
        )
        rows = torch.as_tensor(new.to_numpy(np.float32), device=cov.fingerprints.device)
        cov.fingerprints = torch.cat([cov.fingerprints[:-1], rows, cov.fingerprints[-1:]])
        if kind == "morgan_mdt":
            from scpert.priors.outputs import MDT_TOKENS, load_drug_tokens

            if not priors or "mdt" not in priors:
                raise SchemaError("perturbdiff: drug_features morgan_mdt needs the prior 'mdt'")
            tokens = load_drug_tokens(Path(priors["mdt"]) / MDT_TOKENS)
            row = {str(d): i for i, d in enumerate(tokens["drug"])}
            absent = [d for d in new.index if d not in row]
            if absent:
                raise SchemaError(
                    f"{priors['mdt']}/{MDT_TOKENS}: no MDT embedding for drug '{absent[0]}' "
                    "(field 'drug')"
                )
            z = tokens["z_drug"].astype(np.float32)[[row[d] for d in new.index]]
            z = torch.as_tensor(z, device=cov.mdt.device)
            cov.mdt = torch.cat([cov.mdt[:-1], z, cov.mdt[-1:]])
        self.vocab = replace(self.vocab, features=[*known, *new.index, self.vocab.control])
        return list(new.index)

    # -- persistence
    def _save_state(self, path: Path) -> None:
        torch.save(
            {
                "net": {k: v.cpu() for k, v in self.net.state_dict().items()},
                "vocab": self.vocab.as_dict(),
                "history": getattr(self, "history", None),
            },
            path / STATE_FILE,
        )

    def _load_state(self, path: Path, device: str) -> None:
        self.device = torch.device(device)
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
        net = state["net"]
        mdt = net.get("covariates.mdt")
        self._build(Vocabularies(**state["vocab"]), net["covariates.fingerprints"], mdt)
        self.net.load_state_dict(net)
        self.net.eval()
        self.history = state["history"]


def _set_seed(seed: int, condition: str, plate: str, chunk: int) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(f"{condition}@{plate}#{chunk}".encode())) % (2**63)


def save_prior(folder, net: PerturbDiffNet, params: dict, genes, vocab, meta: dict) -> None:
    """Write the marginal prior's files into ``folder`` (an atomic_dir temporary)."""
    folder = Path(folder)
    torch.save(
        {
            "state": {k: v.cpu() for k, v in net.state_dict().items()},
            "params": params,
            "genes": list(genes),
            "vocab": vocab.as_dict(),
        },
        folder / PRIOR_MODEL,
    )
    (folder / PRIOR_META).write_text(json.dumps(meta, indent=1, default=str))
