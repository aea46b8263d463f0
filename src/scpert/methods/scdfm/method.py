"""scDFM (arXiv:2602.07103): the Method — fit, predict, persistence.

The gene graph is in :mod:`.graph`, the PAD-Transformer in :mod:`.model`, training in
:mod:`.train`, ODE sampling in :mod:`.sample`.

Fit
    Genes: the method's training space (``train_genes``: the paper's ~5,000 HVGs of the split's
    training-cell ranking; the split's evaluated genes at 0). The co-expression graph from
    ``PerturbData.adata`` (training conditions and controls only), the drug table (fingerprints
    of every drug, held-out ones too; the id vocabulary = drugs of the training conditions), then
    flow matching with the MMD regulariser (:mod:`.train`). ``standardize: control`` z-scores the
    genes by the training controls (:class:`.train.GeneScale`, saved with the model);
    ``gene_init: pca`` sets the gene-identity rows from the PC loadings of the same correlation
    matrix the graph uses (:func:`.graph.principal_loadings`).
Predict
    Cells are drawn as in every method (:class:`scpert.data.pairing.ControlCells`): ``n_cells``
    control cells per test condition from its context's controls (all plates: the spec does not
    set ``predicts_plates``; a plate's batch effect reaches the prediction through its control
    cell, which the model conditions on, and the cell keeps that plate in ``obs``). Each
    drawn control cell ``c_x`` is the condition of one ODE sample (eq. 1: a cell is generated
    from noise given ``c_x`` and ``c_p``), whose noise is seeded by ``(seed, condition)``.
    ``generated_cells: N > 0`` (the CPU preset) integrates only the condition's first N drawn
    controls and repeats those N samples round-robin over its ``n_cells`` (the released code generates a
    fixed 128 cells per test perturbation); 0 = one sample per predicted cell (paper preset).
"""

from __future__ import annotations

import logging
import time
import zlib
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

from scpert.data import pairing, schema
from scpert.data.schema import CONDITION, DOSE, DRUG, PLATE
from scpert.methods.base import Method, PerturbData
from scpert.methods.registry import register
from scpert.methods.scdfm import graph
from scpert.methods.scdfm.model import PADTransformer
from scpert.methods.scdfm.sample import integrate, round_robin, unit_noise
from scpert.methods.scdfm.train import GeneScale, dense_rows, fit_network, groups_and_cells
from scpert.methods.scppdm.model import ConditionBatch
from scpert.perturbations import DrugTable, drug_table

log = logging.getLogger(__name__)

STATE_FILE = "scdfm.pt"
PROGRESS_SECONDS = 5.0


@register
class ScDFM(Method):
    """scDFM (see the module docstring)."""

    name = "scdfm"

    def __init__(self, params: dict[str, Any], seed: int = 0):
        super().__init__(params, seed)
        self.device = torch.device("cpu")

    def _build(self, n_genes: int, drugs: DrugTable) -> None:
        self.drugs = drugs
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = PADTransformer(
                self.params, n_genes, torch.from_numpy(drugs.fingerprints), len(drugs.train_drugs)
            )
        self.net.to(self.device)

    def parameter_counts(self) -> dict[str, int]:
        if hasattr(self, "net"):
            net = self.net
        else:
            p = self.params
            fps = torch.zeros(int(p["describe_n_drugs"]), int(p["fingerprint_bits"]))
            with torch.device("meta"):
                net = PADTransformer(p, int(p["describe_n_genes"]), fps, int(p["describe_n_drugs"]))
        return {
            group: sum(q.numel() for q in module.parameters() if q.requires_grad)
            for group, module in net.module_groups().items()
        }

    # -- training
    def fit(self, train: PerturbData, device: str = "cpu") -> None:
        p = self.params
        self.device = torch.device(device)
        adata = train.adata
        self.genes = [str(g) for g in adata.var_names]
        corr = graph.correlation(adata.X, int(p["graph_max_cells"]), self.seed)
        self.adjacency = graph.knn_graph(np.abs(corr), int(p["knn"]))
        is_control = (adata.obs[DRUG] == train.control).to_numpy()
        self.scale = GeneScale.fit(adata.X[is_control], p["standardize"])
        sets = pairing.CellSets(
            adata.obs, train.control, groups_and_cells(p)[1], source="scdfm training cells"
        )
        seen = sorted({c for drug in sets.keys[DRUG] for c in schema.components(str(drug))})
        drugs = drug_table(train, seen, p)
        self._build(len(self.genes), drugs)
        if p["gene_init"] == "pca":
            self.net.gene_encoder.initialise(graph.principal_loadings(corr, int(p["width"])))
        conditions = ConditionBatch.encode(sets.keys[DRUG], sets.keys[DOSE], drugs)
        log.info(
            "scdfm: %d training groups (cell line, drug, dose, plate), %d genes (graph: %d edges), "
            "%d drugs (%d in training)",
            len(sets),
            len(self.genes),
            int(self.adjacency.sum()),
            len(drugs.names),
            len(drugs.train_drugs),
        )
        result = fit_network(
            self.net,
            adata.X,
            sets,
            conditions,
            torch.from_numpy(self.adjacency),
            p,
            self.device,
            self.seed,
            self.checkpoint_dir,
            self.scale,
        )
        self.history = result.as_dict()

    # -- sampling
    def predict(self, controls: ad.AnnData, conditions: pd.DataFrame, seed: int = 0) -> ad.AnnData:
        p = self.params
        cells = pairing.ControlCells(controls, self.genes)
        table = pairing.prediction_table(conditions)
        draw = cells.draw(table, seed)
        cap = int(p["generated_cells"])
        sources, noise, rows, samples_of_cell = [], [], [], np.zeros(len(draw.row), np.int64)
        offset = 0
        for i in range(len(table)):
            members = np.flatnonzero(draw.row == i)
            n = len(members) if cap <= 0 else min(cap, len(members))
            plate = table[PLATE].iloc[i] if PLATE in table.columns else ""
            sources.append(draw.cell[members[:n]])
            noise.append(
                unit_noise(n, len(self.genes), _unit_seed(seed, table[CONDITION][i], plate))
            )
            rows.append(np.full(n, i))
            samples_of_cell[members] = offset + round_robin(len(members), n)
            offset += n
        generated = self._generate(
            cells.X,
            np.concatenate(sources) if sources else np.zeros(0, np.int64),
            table,
            np.concatenate(rows) if rows else np.zeros(0, np.int64),
            torch.cat(noise) if noise else torch.zeros(0, len(self.genes)),
            seed,
        )
        X = generated[samples_of_cell] if len(draw.row) else np.zeros((0, len(self.genes)))
        uns = {"method": self.name, "seed": int(seed), "sampler": f"ode_{p['sampler']}"}
        return cells.prediction(table, draw, X, uns)

    def _generate(self, X, sources, table, rows, noise, seed) -> np.ndarray:
        """ODE samples from control rows ``sources`` of ``X`` for table rows ``rows``."""
        out = np.zeros((len(sources), len(self.genes)), dtype=np.float32)
        if len(sources) == 0:
            return out
        cond = ConditionBatch.encode(
            table[DRUG].to_numpy()[rows], table[DOSE].to_numpy()[rows], self.drugs
        )
        adjacency = torch.from_numpy(self.adjacency).to(self.device)
        all_genes = np.arange(len(self.genes))
        step = max(int(self.params["sample_batch_size"]), 1)
        began = last = time.monotonic()
        for start in range(0, len(sources), step):
            part = slice(start, start + step)
            c_x = dense_rows(X, sources[part], all_genes).to(self.device)
            x = integrate(
                self.net,
                c_x,
                cond[torch.arange(start, min(start + step, len(sources)))].to(self.device),
                noise[part].to(self.device),
                adjacency,
                self.params,
                seed,
                self.scale,
            )
            out[part] = x.cpu().numpy()
            done, now = min(start + step, len(sources)), time.monotonic()
            if now - last >= PROGRESS_SECONDS or done == len(sources):
                rate = done / max(now - began, 1e-9)
                log.info(
                    "scdfm: sampled %d/%d cells (%s, %d steps), %.1f cells/s, ETA %.0f s",
                    done,
                    len(sources),
                    self.params["sampler"],
                    int(self.params["sampler_steps"]),
                    rate,
                    (len(sources) - done) / rate,
                )
                last = now
        return out

    # -- persistence
    def add_perturbations(
        self, drugs: pd.DataFrame, names: list[str], priors: dict | None = None
    ) -> list[str]:
        """Fingerprint rows of unseen chemicals appended to the drug table and the encoder's
        buffer (their training id stays 0, unseen); an id-only encoder cannot featurise them."""
        missing = self.drugs.unseen(names)
        if not missing:
            return []
        if self.params["perturbation_encoder"] == "id":
            raise NotImplementedError(
                f"scdfm (perturbation_encoder {self.params['perturbation_encoder']}): cannot featurise "
                f"'{missing[0]}' absent from training"
            )
        self.drugs, added = self.drugs.grown_into(
            self.net.perturbation, drugs, missing, radius=int(self.params["fingerprint_radius"])
        )
        return added

    def _save_state(self, path: Path) -> None:
        torch.save(
            {
                "net": {k: v.cpu() for k, v in self.net.state_dict().items()},
                "edges": graph.to_edges(self.adjacency),
                "drugs": self.drugs.names,
                "fingerprints": self.drugs.fingerprints,
                "train_drugs": self.drugs.train_drugs,
                "gene_mean": self.scale.mean,
                "gene_sd": self.scale.sd,
                "unpredictable": self.drugs.unpredictable,
                "history": self.history,
            },
            path / STATE_FILE,
        )

    def _load_state(self, path: Path, device: str) -> None:
        self.device = torch.device(device)
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
        self.adjacency = graph.from_edges(state["edges"], len(self.genes))
        self.history = state["history"]
        self.scale = GeneScale(state["gene_mean"], state["gene_sd"])
        drugs = DrugTable(
            list(state["drugs"]),
            state["fingerprints"],
            list(state["train_drugs"]),
            state.get("unpredictable"),
        )
        self._build(len(self.genes), drugs)
        self.net.load_state_dict(state["net"])
        self.net.eval()


def _unit_seed(seed: int, condition: str, plate: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(f"{condition}@{plate}".encode())) % (2**63)
