"""Biological graph prior z_b: heterogeneous drug–gene graph + HeteroSAGE pretraining.

StateXDiff App. A.3.1 and Table 5 ("HG Pretrain"):

Graph
    Drug nodes (features: a structure embedding, :func:`scpert.chem.structure_embedding`; the
    paper's UniMol 512-d embedding is replaced by Morgan bits, 512 bits in the paper preset so the
    input width matches) and gene nodes (features: gene-set membership from a GMT file; the paper
    uses ESM-2 protein embeddings, which this workplace cannot compute — any per-gene feature table
    can be passed to :func:`build_graph`). Four relations: ``dti`` drug->gene (drug–target
    interactions), ``rev_dti`` gene->drug, ``ppi`` gene<->gene (score >= ``ppi_min_score``, 700 on
    STRING's 0–1000 scale; CORUM complexes add member pairs at score 1000) and ``dds`` drug<->drug
    (cosine of the structure embeddings > ``dds_min_cosine``, 0.995 in the paper).
Encoder (Eq. 19–20)
    ``h^(0) = W_type x`` (linear into ``hidden``), then ``n_layers`` HeteroConv layers of
    ``SAGEConv(aggr="mean")`` per relation summed over relations. SAGEConv adds a root (self)
    term to Eq. 20's neighbour sum, so nodes without edges keep their own features; the
    non-linearity (ReLU) is applied between layers, not after the last, so the output is not
    confined to the positive orthant.
Loss (Eq. 21–24)
    ``w_dti L_DTI + w_mae L_MAE + w_er L_ER`` (1.0 / 1.0 / 0.5). L_DTI: InfoNCE of each training
    DTI pair against ``dti_negatives`` uniformly drawn genes, logits = dot products (Eq. 22).
    L_MAE: ``mask_rate`` (30 %) of each node type's nodes get a learnable mask vector as input and a
    linear decoder reconstructs their features; the loss is the scaled cosine error
    ``mean (1 - cos(x, x_hat))^alpha`` with alpha = 2 (Table 5 "SCE"; the text of A.3.1 says MSE,
    the table wins). Nodes with all-zero features have no direction and are left out of L_MAE.
    L_ER: binary cross-entropy of dot-product logits for every edge of ``dti``, ``ppi`` and
    ``dds`` against as many uniformly drawn node pairs (Eq. 24 plus negatives), averaged over
    the relations. One forward pass per epoch on the masked graph serves all three losses (full
    batch); Adam.
Output
    After training the encoder is frozen and run on the unmasked graph; drug outputs are L2
    normalised: z_b, one ``hidden``-d row per drug (:func:`drug_embeddings`).
Evaluation
    ``dti_holdout`` of the DTI pairs are removed from the graph and the losses; their ranking by
    the DTI scorer ``h_d . h_g`` against ``auroc_negatives`` random non-target genes per held-out
    pair gives :func:`dti_auroc`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv, SAGEConv

from scpert.chem import cosine_matrix
from scpert.presets import resolve_preset
from scpert.priors.determinism import deterministic

log = logging.getLogger(__name__)

DRUG, GENE = "drug", "gene"
DTI = (DRUG, "dti", GENE)
REV_DTI = (GENE, "rev_dti", DRUG)
PPI = (GENE, "ppi", GENE)
DDS = (DRUG, "dds", DRUG)
RELATIONS = (DTI, REV_DTI, PPI, DDS)
#: relations reconstructed by L_ER (reverse DTI duplicates DTI)
ER_RELATIONS = (DTI, PPI, DDS)

#: Table 5 "HG Pretrain" (and App. A.3.1); keys marked "not in the paper" are our choices.
PRESETS: dict[str, dict] = {
    "paper": {
        "hidden": 256,  # GNN layers / hidden dim: 2 / 256, output 256-d per drug
        "n_layers": 2,
        "aggr": "mean",  # HeteroSAGE, scatter-mean
        "ppi_min_score": 700,  # PPI >= 700
        "dds_min_cosine": 0.995,  # DDS >= 0.995
        "mask_rate": 0.3,  # HetMAE mask rate 0.3
        "sce_alpha": 2.0,  # SCE loss (alpha = 2.0)
        "w_dti": 1.0,  # loss weights DTI / feat / edge: 1.0 / 1.0 / 0.5
        "w_mae": 1.0,
        "w_er": 0.5,
        "epochs": 200,  # epochs / LR: 200 / 1e-3, Adam
        "lr": 1e-3,
        "fingerprint_bits": 512,  # structure features 512 (UniMol width; Morgan bits here)
        "dti_min_score": 0.0,  # not in the paper: every DTI pair of the table is an edge
        "dti_negatives": 64,  # not in the paper: genes drawn per InfoNCE positive
        "dti_holdout": 0.1,  # not in the paper: DTI pairs held out for the AUROC
        "auroc_negatives": 200,  # not in the paper
        "seed": 0,
    },
    "tiny": {
        "hidden": 64,
        "n_layers": 2,
        "aggr": "mean",
        "ppi_min_score": 700,
        # Morgan bit vectors are sparse: the paper's cosine 0.995 (on UniMol embeddings) joins no
        # pair of the drug panel's fingerprints, 0.8 joins close analogues (docs/decisions.md)
        "dds_min_cosine": 0.8,
        "mask_rate": 0.3,
        "sce_alpha": 2.0,
        "w_dti": 1.0,
        "w_mae": 1.0,
        "w_er": 0.5,
        "epochs": 100,
        "lr": 1e-2,
        "fingerprint_bits": 1024,
        # the synthetic DTI table scores targets 0.7-1 and random weak off-targets 0.05-0.4
        "dti_min_score": 0.5,
        "dti_negatives": 32,
        "dti_holdout": 0.1,
        "auroc_negatives": 200,
        "seed": 0,
    },
}


def resolve_params(preset: str, overrides: dict | None = None, key: str = "priors.graph") -> dict:
    """Preset values overlaid with ``overrides``; unknown names raise naming the config key."""
    return resolve_preset(PRESETS, preset, overrides, key)


# ------------------------------------------------------------------------------------ the graph
@dataclass
class DrugGeneGraph:
    """The heterogeneous graph plus the index maps and the held-out DTI pairs."""

    data: HeteroData
    drugs: list[str]
    genes: list[str]
    heldout_dti: np.ndarray  # (k, 2) int: (drug index, gene index) pairs removed from the graph
    known_dti: set[tuple[int, int]]  # every DTI pair (training and held out)

    def edge_pairs(self) -> dict[str, int]:
        """Edges per relation (directed, as in ``edge_index``) plus held-out DTI pairs."""
        counts = {rel[1]: int(self.data[rel].edge_index.shape[1]) for rel in RELATIONS}
        counts["dti_heldout"] = len(self.heldout_dti)
        return counts


def gene_set_features(genes: list[str], gene_sets: dict[str, list[str]]) -> pd.DataFrame:
    """Gene x set membership (float32 0/1); genes in no set have an all-zero row."""
    names = list(gene_sets)
    position = {g: i for i, g in enumerate(genes)}
    values = np.zeros((len(genes), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        for g in gene_sets[name]:
            if g in position:
                values[position[g], j] = 1.0
    return pd.DataFrame(values, index=pd.Index(genes, name="gene"), columns=names)


def _both_directions(src: np.ndarray, dst: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(
        np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])]), dtype=torch.long
    )


def build_graph(
    drug_features: pd.DataFrame,
    dti: pd.DataFrame,
    ppi: pd.DataFrame,
    gene_sets: dict[str, list[str]] | None,
    params: dict,
) -> DrugGeneGraph:
    """Assemble the HeteroData (App. A.3.1).

    drug_features: structure embedding per drug (index = drug names; every graph drug).
    dti: ``drug, gene, score`` (drug names matched case-insensitively, pairs of unknown drugs
        dropped; score >= dti_min_score kept).
    ppi: ``gene1, gene2, score`` undirected pairs (score >= ppi_min_score kept).
    gene_sets: gene features by membership (None: one constant feature per gene).
    Gene nodes: every gene of a kept DTI or PPI pair, sorted.
    """
    drugs = [str(d) for d in drug_features.index]
    drug_pos = {d: i for i, d in enumerate(drugs)}
    by_lower = {d.lower(): d for d in drugs}  # DTI databases spell names in their own case
    dti = dti.assign(drug=dti["drug"].astype(str).str.lower().map(by_lower))
    dti = dti[dti["drug"].notna() & (dti["score"] >= params["dti_min_score"])]
    dti = dti.groupby(["drug", "gene"], as_index=False, sort=True)["score"].max()
    ppi = ppi[ppi["score"] >= params["ppi_min_score"]]
    genes = sorted(set(dti["gene"]) | set(ppi["gene1"]) | set(ppi["gene2"]))
    gene_pos = {g: i for i, g in enumerate(genes)}
    if gene_sets is None:
        gene_x = pd.DataFrame(np.ones((len(genes), 1), np.float32), index=genes)
    else:
        gene_x = gene_set_features(genes, gene_sets)

    pairs = np.array(
        [[drug_pos[d], gene_pos[g]] for d, g in zip(dti["drug"], dti["gene"])], dtype=np.int64
    ).reshape(-1, 2)
    rng = np.random.default_rng(params["seed"])
    n_held = int(round(params["dti_holdout"] * len(pairs))) if len(pairs) > 1 else 0
    held = np.zeros(len(pairs), dtype=bool)
    held[rng.choice(len(pairs), n_held, replace=False)] = True
    train_pairs = pairs[~held]

    sim = cosine_matrix(drug_features).to_numpy()
    a, b = np.nonzero(np.triu(sim > params["dds_min_cosine"], k=1))

    data = HeteroData()
    data[DRUG].x = torch.as_tensor(drug_features.to_numpy(np.float32))
    data[GENE].x = torch.as_tensor(gene_x.to_numpy(np.float32))
    dti_index = torch.as_tensor(train_pairs.T.copy(), dtype=torch.long).reshape(2, -1)
    data[DTI].edge_index = dti_index
    data[REV_DTI].edge_index = dti_index.flip(0)
    p1 = ppi["gene1"].map(gene_pos).to_numpy(np.int64)
    p2 = ppi["gene2"].map(gene_pos).to_numpy(np.int64)
    data[PPI].edge_index = _both_directions(p1, p2)
    data[DDS].edge_index = _both_directions(a.astype(np.int64), b.astype(np.int64))
    graph = DrugGeneGraph(data, drugs, genes, pairs[held], {tuple(p) for p in pairs.tolist()})
    log.info("graph: %d drugs, %d genes, edges %s", len(drugs), len(genes), graph.edge_pairs())
    return graph


# ------------------------------------------------------------------------------------ the model
class HeteroSAGE(nn.Module):
    """Eq. 19–20: per-type input projection, HeteroConv(SAGEConv mean) layers; MAE parts."""

    def __init__(self, in_dims: dict[str, int], hidden: int, n_layers: int, aggr: str = "mean"):
        super().__init__()
        self.inputs = nn.ModuleDict({t: nn.Linear(d, hidden) for t, d in in_dims.items()})
        self.convs = nn.ModuleList(
            HeteroConv({rel: SAGEConv(hidden, hidden, aggr=aggr) for rel in RELATIONS}, aggr="sum")
            for _ in range(n_layers)
        )
        self.mask_token = nn.ParameterDict(
            {t: nn.Parameter(torch.zeros(d)) for t, d in in_dims.items()}
        )
        self.decoders = nn.ModuleDict({t: nn.Linear(hidden, d) for t, d in in_dims.items()})

    def forward(self, x: dict[str, torch.Tensor], edge_index: dict) -> dict[str, torch.Tensor]:
        h = {t: self.inputs[t](v) for t, v in x.items()}
        for layer, conv in enumerate(self.convs):
            h = conv(h, edge_index)
            if layer < len(self.convs) - 1:
                h = {t: F.relu(v) for t, v in h.items()}
        return h


def dti_infonce(h_drug, h_gene, pairs: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Eq. 22 averaged over pairs: -log e^{z_d.z_g} / (e^{z_d.z_g} + sum_g' e^{z_d.z_g'}).

    pairs: (2, E) drug and gene indices; negatives: (E, n) gene indices per pair.
    """
    d = h_drug[pairs[0]]
    positive = (d * h_gene[pairs[1]]).sum(-1, keepdim=True)
    negative = torch.einsum("eh,enh->en", d, h_gene[negatives])
    logits = torch.cat([positive, negative], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=d.device))


def sce_loss(x: torch.Tensor, x_hat: torch.Tensor, alpha: float) -> torch.Tensor:
    """Scaled cosine error (GraphMAE): mean over rows of (1 - cos(x, x_hat))^alpha."""
    return ((1.0 - F.cosine_similarity(x, x_hat, dim=-1)) ** alpha).mean()


def edge_bce(h_src, h_dst, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Eq. 24 with negatives: BCE of logits ``h_u . h_v`` (label 1 for edges, 0 for non-edges)."""
    pos = (h_src[positive[0]] * h_dst[positive[1]]).sum(-1)
    neg = (h_src[negative[0]] * h_dst[negative[1]]).sum(-1)
    logits = torch.cat([pos, neg])
    labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
    return F.binary_cross_entropy_with_logits(logits, labels)


def _masked_input(x: dict, model: HeteroSAGE, rate: float, gen: torch.Generator):
    masked_x, masked = {}, {}
    for t, v in x.items():
        n = int(round(rate * len(v)))
        idx = torch.randperm(len(v), generator=gen, device="cpu")[:n].to(v.device)
        out = v.clone()
        out[idx] = model.mask_token[t]
        masked_x[t] = out
        masked[t] = idx[v[idx].abs().sum(-1) > 0]  # all-zero features have no direction
    return masked_x, masked


def _randint(high: int, shape, gen: torch.Generator, device) -> torch.Tensor:
    return torch.randint(high, shape, generator=gen, device="cpu").to(device)


def graph_loss(model, data: HeteroData, params: dict, gen: torch.Generator) -> dict:
    """The three terms of Eq. 21 on one masked forward pass, and their weighted sum."""
    x = {t: data[t].x for t in (DRUG, GENE)}
    edges = {rel: data[rel].edge_index for rel in RELATIONS}
    masked_x, masked = _masked_input(x, model, params["mask_rate"], gen)
    h = model(masked_x, edges)
    device = x[DRUG].device
    zero = torch.zeros((), device=device)

    pairs = edges[DTI]
    if pairs.shape[1]:
        negatives = _randint(len(x[GENE]), (pairs.shape[1], params["dti_negatives"]), gen, device)
        l_dti = dti_infonce(h[DRUG], h[GENE], pairs, negatives)
    else:
        l_dti = zero
    mae_terms = [
        sce_loss(x[t][idx], model.decoders[t](h[t][idx]), params["sce_alpha"])
        for t, idx in masked.items()
        if len(idx)
    ]
    l_mae = torch.stack(mae_terms).mean() if mae_terms else zero
    er_terms = []
    for rel in ER_RELATIONS:
        pos = edges[rel]
        if pos.shape[1] == 0:
            continue
        src, _, dst = rel
        neg = torch.stack(
            [
                _randint(len(x[src]), (pos.shape[1],), gen, device),
                _randint(len(x[dst]), (pos.shape[1],), gen, device),
            ]
        )
        er_terms.append(edge_bce(h[src], h[dst], pos, neg))
    l_er = torch.stack(er_terms).mean() if er_terms else zero
    total = params["w_dti"] * l_dti + params["w_mae"] * l_mae + params["w_er"] * l_er
    return {"loss": total, "dti": l_dti, "mae": l_mae, "er": l_er}


def train_graph(
    graph: DrugGeneGraph, params: dict, device: str = "cpu"
) -> tuple[HeteroSAGE, pd.DataFrame]:
    """Full-batch Adam for ``epochs``; returns the frozen model and the per-epoch loss history."""
    torch.manual_seed(params["seed"])
    gen = torch.Generator().manual_seed(params["seed"])
    data = graph.data.to(device)
    in_dims = {t: int(data[t].x.shape[1]) for t in (DRUG, GENE)}
    model = HeteroSAGE(in_dims, params["hidden"], params["n_layers"], params["aggr"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"])
    history = []
    start = time.perf_counter()
    with deterministic(device):
        for epoch in range(params["epochs"]):
            model.train()
            losses = graph_loss(model, data, params, gen)
            optimizer.zero_grad()
            losses["loss"].backward()
            optimizer.step()
            history.append(
                {"epoch": epoch + 1, **{k: float(v.detach()) for k, v in losses.items()}}
            )
    log.info(
        "graph pretraining: %d epochs in %.1f s, final %s",
        params["epochs"],
        time.perf_counter() - start,
        history[-1] if history else {},
    )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, pd.DataFrame(history)


@torch.no_grad()
def encode(model: HeteroSAGE, graph: DrugGeneGraph) -> dict[str, torch.Tensor]:
    """Frozen node representations of the unmasked graph (not normalised)."""
    data = graph.data
    return model(
        {t: data[t].x for t in (DRUG, GENE)}, {rel: data[rel].edge_index for rel in RELATIONS}
    )


def drug_embeddings(h: dict[str, torch.Tensor], graph: DrugGeneGraph) -> pd.DataFrame:
    """z_b: L2-normalised drug representations, index ``drug``, columns ``z0..``."""
    z = F.normalize(h[DRUG], dim=-1).cpu().numpy().astype(np.float32)
    return pd.DataFrame(
        z, index=pd.Index(graph.drugs, name="drug"), columns=[f"z{i}" for i in range(z.shape[1])]
    )


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve = P(score_pos > score_neg) + P(tie)/2 (Mann–Whitney U)."""
    scores = np.concatenate([positive, negative])
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    u = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2
    return float(u / (len(positive) * len(negative)))


def dti_auroc(h: dict[str, torch.Tensor], graph: DrugGeneGraph, params: dict) -> float:
    """AUROC of held-out DTI pairs against random non-target genes of their drug (NaN if none)."""
    if len(graph.heldout_dti) == 0:
        return float("nan")
    hd, hg = h[DRUG].cpu().numpy(), h[GENE].cpu().numpy()
    rng = np.random.default_rng(params["seed"] + 1)
    pos, neg = [], []
    for d, g in graph.heldout_dti:
        pos.append(hd[d] @ hg[g])
        candidates = rng.integers(len(graph.genes), size=params["auroc_negatives"])
        candidates = [c for c in candidates if (d, int(c)) not in graph.known_dti]
        neg.extend(hg[candidates] @ hd[d])
    return auroc(np.asarray(pos), np.asarray(neg))
