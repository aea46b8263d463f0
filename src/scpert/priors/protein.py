"""RNA -> protein translator and the per-cell protein prior of StateXDiff (arXiv:2605.16104 §3.2,
App. A.1.2).

StateXDiff infers, for every untreated cell, protein predictions ``p_hat`` (used only by the PQM
reliability ``q_i``, :mod:`scpert.priors.pqm`) and a 128-d protein embedding ``g_p`` (the input
of the VMCS projector phi_p, :mod:`scpert.priors.vmcs`) with scLinguist, a pretrained Hyena
RNA -> protein model whose weights are not reachable here. :class:`TranslatorNet` stands in for
it with the same two outputs, trained on paired RNA + protein (CITE-seq) cells:

- gene tokens ``h_g = sum_k phi_k(x_g) V_kg + e_g`` of width 128: a per-gene value encoding
  over the basis ``phi(x) = (x, x^2 / 4, 1[x > 0])`` (:func:`value_features`) plus a
  gene-identity embedding; ``n_layers`` residual token blocks
  ``h <- h + MLP(LN(h) + U mean_g LN(h))`` (each token sees the pooled cell context, a light
  stand-in for scLinguist's long-convolution mixing; ``tiny`` has none, so the pooled state is
  one matrix product);
- ``g_p = mean_g h_g`` (A.1.2: "mean-pooling the encoder's per-gene hidden states");
- ``p_hat = softplus(MLP(LN(g_p)))``: log-normalised protein levels (non-negative, so the
  complex coherence std/mean of App. A.2.1 eq. 15 is defined).

Targets are ``log1p(ADT / total ADT of the cell * median total)`` (:func:`protein_levels`); the
input is ``log1p(normalize_total 1e4)`` RNA in the translator's genes (:func:`rna_levels`), the
scale of ``processed.h5ad``. Loss: mean squared error; AdamW on the shared trainer.

Replacing the translator (a scLinguist checkpoint, or any model with the two outputs)
    :func:`load_translator` reads a folder by its ``translator.json`` ``kind``; every kind yields a
    :class:`Translator` (``genes``, ``proteins``, ``translate(X) -> (p_hat, g_p)`` with ``X`` the
    log-normalised RNA in ``genes`` order and ``g_p`` 128 wide). Config
    ``priors.translator.checkpoint`` names such a folder: rule ``train_translator`` then checks and
    copies it instead of training. Kind ``scpert`` is this module's model; a scLinguist loader
    registers another kind in :data:`TRANSLATOR_KINDS`.

Folder of the dataset-level prior ``translator`` (rule ``train_translator``)
    ``translator.json`` (kind, params, genes/proteins counts, held-out metrics), ``genes.tsv``,
    ``proteins.tsv``, ``translator.pt`` (state dict), ``history.tsv``, ``heldout.tsv`` (per
    protein: Pearson and MSE of translator and of the mean-protein baseline on held-out CITE-seq
    cells), ``heldout_cells.tsv`` (those cells: rule ``validate_pqm`` scores them).

Folder of the split-level prior ``protein`` (rule ``infer_protein``)
    ``cell_proteins.npz`` read by :func:`read_cell_proteins` -> :class:`CellProteins` for every
    untreated (control) cell of the split's processed data: ``obs_names``, ``p_hat`` [n, P],
    ``g_p`` [n, 128], ``q`` [n] (PQM reliability in (0, 1)), ``proteins``; ``pqm.tsv`` (per cell
    the three sub-scores and q), ``pqm.json`` (reference genes A, complexes used, statistics).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scpert.errors import InputError

log = logging.getLogger(__name__)

EMBEDDING_DIM = 128  # g_p width (App. A.1.2)
TRANSLATOR_JSON, TRANSLATOR_STATE = "translator.json", "translator.pt"
GENES_TSV, PROTEINS_TSV = "genes.tsv", "proteins.tsv"
HISTORY_TSV, HELDOUT_TSV = "history.tsv", "heldout.tsv"
HELDOUT_CELLS = "heldout_cells.tsv"  # CITE-seq cells the translator did not train on
CELL_PROTEINS, PQM_TSV, PQM_JSON = "cell_proteins.npz", "pqm.tsv", "pqm.json"

#: translator presets. ``paper`` keeps scLinguist's interface (g_p 128) with a wider encoder;
#: scLinguist's own architecture (Hyena, 45M parameters, App. A.5.4 Table 8) is not reproduced.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "n_input_genes": 128,  # most variable CITE-seq genes (+ every panel gene present)
        "n_layers": 0,
        "decoder_hidden": 128,
        "steps": 300,
        "batch_size": 128,
        "lr": 1e-2,
        "weight_decay": 0.01,
        "heldout_fraction": 0.2,
        "train_on": "control",  # untreated CITE-seq cells ("all" = treated ones too)
        "seed": 0,
    },
    "paper": {
        "n_input_genes": 4000,
        "n_layers": 4,
        "decoder_hidden": 512,
        "steps": 20000,
        "batch_size": 256,
        "lr": 1e-4,
        "weight_decay": 0.01,
        "heldout_fraction": 0.1,
        "train_on": "control",
        "seed": 0,
    },
}
TRAIN_ON = ("control", "all")


def resolve_params(preset: str, overrides: dict | None = None) -> dict[str, Any]:
    """The preset overlaid with ``overrides``; unknown keys name ``priors.translator.params``."""
    if preset not in PRESETS:
        raise InputError(f"config priors.translator.preset: unknown preset '{preset}'")
    unknown = sorted(set(overrides or {}) - set(PRESETS[preset]))
    if unknown:
        raise InputError(f"config priors.translator.params: unknown key(s) {unknown}")
    params = {**PRESETS[preset], **(overrides or {})}
    if params["train_on"] not in TRAIN_ON:
        raise InputError(f"config priors.translator.params.train_on: one of {TRAIN_ON}")
    return params


# ------------------------------------------------------------------------------------ scales
def rna_levels(X) -> np.ndarray:
    """``log1p(normalize_total 1e4)`` of raw counts (rows = cells), dense float32."""
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    total = X.sum(axis=1, keepdims=True)
    return np.log1p(X / np.maximum(total, 1.0) * 1e4).astype(np.float32)


def protein_levels(adt) -> np.ndarray:
    """``log1p(ADT / cell total * median cell total)`` (non-negative), float32."""
    adt = np.asarray(adt, dtype=np.float64)
    total = adt.sum(axis=1, keepdims=True)
    return np.log1p(adt / np.maximum(total, 1.0) * np.median(total)).astype(np.float32)


ADT_FEATURE_TYPE = "Antibody Capture"  # 10x feature type of ADT features


def citeseq_tables(adata, source):
    """``(rna AnnData, ADT counts [n, P], protein names)`` of a CITE-seq AnnData whose proteins
    are either ``obsm["protein"]`` (a DataFrame, or an array named by ``uns["proteins"]``: the
    layout of :mod:`scpert.data.sources.citeseq` and of the synthetic world) or features of ``X``
    with ``var["feature_types"] == "Antibody Capture"`` (10x / muon-style single matrix)."""
    if "protein" in adata.obsm:
        prot = adata.obsm["protein"]
        if isinstance(prot, pd.DataFrame):
            names, values = [str(c) for c in prot.columns], prot.to_numpy(dtype=np.float64)
        else:
            names = [str(c) for c in adata.uns.get("proteins", [])]
            values = np.asarray(prot, dtype=np.float64)
            if len(names) != values.shape[1]:
                raise InputError(
                    f"{source}: obsm['protein'] is an array without uns['proteins'] names"
                )
        rna = adata
    elif "feature_types" in adata.var and (adata.var["feature_types"] == ADT_FEATURE_TYPE).any():
        is_adt = (adata.var["feature_types"] == ADT_FEATURE_TYPE).to_numpy()
        names = [str(c) for c in adata.var_names[is_adt]]
        block = adata.X[:, is_adt]
        values = np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float64)
        rna = adata[:, ~is_adt]
    else:
        raise InputError(
            f"{source}: CITE-seq data needs obsm['protein'] (ADT counts per cell) or ADT features "
            f"in X with var['feature_types'] == '{ADT_FEATURE_TYPE}'"
        )
    if not np.isfinite(values).all() or (values < 0).any():
        raise InputError(f"{source}: the ADT counts must be finite and non-negative")
    return rna, values, names


# ------------------------------------------------------------------------------------- model
def _torch():
    import torch
    from torch import nn

    return torch, nn


def value_features(x):
    """Expression-value basis ``phi_k(x_g)``: ``x``, ``x^2 / 4`` and ``1[x > 0]`` (k = 3)."""
    torch, _ = _torch()
    return torch.stack([x, 0.25 * x * x, (x > 0).to(x)], dim=-1)


N_VALUE_FEATURES = 3


def build_net(n_genes: int, n_proteins: int, params: dict):
    """The stand-in translator (module docstring) as a torch module."""
    torch, nn = _torch()
    d = EMBEDDING_DIM

    class TokenBlock(nn.Module):
        """``h <- h + MLP(LN(h) + U mean_g LN(h))``: a token update seeing the pooled context."""

        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(d)
            self.context = nn.Linear(d, d)
            self.mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))

        def forward(self, h):
            u = self.norm(h)
            return h + self.mlp(u + self.context(u.mean(dim=1, keepdim=True)))

    class TranslatorNet(nn.Module):
        """Gene tokens ``h_g = sum_k phi_k(x_g) V_kg + e_g``, token blocks, ``g_p = mean_g h_g``,
        ``p_hat = softplus(MLP(LN(g_p)))``. Without token blocks the mean over genes is one
        matrix product (no (cells, genes, 128) tensor)."""

        def __init__(self):
            super().__init__()
            k = N_VALUE_FEATURES
            self.value = nn.Parameter(torch.randn(n_genes, k, d) / math.sqrt(k))  # V_kg
            self.identity = nn.Parameter(torch.randn(n_genes, d) * 0.02)  # e_g
            self.blocks = nn.ModuleList(TokenBlock() for _ in range(params["n_layers"]))
            h = params["decoder_hidden"]
            self.decoder = nn.Sequential(
                nn.LayerNorm(d), nn.Linear(d, h), nn.GELU(), nn.Linear(h, n_proteins)
            )

        def embed(self, x):
            """g_p (n, 128): mean over genes of the per-gene hidden states."""
            phi = value_features(x)  # (n, G, k)
            if not self.blocks:
                pooled = torch.einsum("ngk,gkd->nd", phi, self.value) / x.shape[1]
                return pooled + self.identity.mean(dim=0)
            h = torch.einsum("ngk,gkd->ngd", phi, self.value) + self.identity
            for block in self.blocks:
                h = block(h)
            return h.mean(dim=1)

        def forward(self, x):
            g_p = self.embed(x)
            return nn.functional.softplus(self.decoder(g_p)), g_p

    return TranslatorNet()


# --------------------------------------------------------------------------------- interface
class Translator(Protocol):
    """What StateXDiff needs of an RNA -> protein translator (module docstring)."""

    genes: list[str]
    proteins: list[str]

    def translate(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(p_hat [n, len(proteins)], g_p [n, 128])`` float32 of log-normalised RNA X
        [n, len(genes)]."""
        ...


class ScpertTranslator:
    """Kind ``scpert``: :func:`build_net` weights in a translator folder."""

    def __init__(self, net, genes: list[str], proteins: list[str], device: str = "cpu"):
        self.net, self.genes, self.proteins, self.device = net, genes, proteins, device

    def translate(self, X, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        torch, _ = _torch()
        self.net.eval()
        p_parts, g_parts = [], []
        with torch.no_grad():
            for start in range(0, X.shape[0], batch_size):
                block = X[start : start + batch_size]
                block = block.toarray() if sp.issparse(block) else np.asarray(block)
                rows = torch.as_tensor(block, dtype=torch.float32, device=self.device)
                p, g = self.net(rows)
                p_parts.append(p.cpu().numpy())
                g_parts.append(g.cpu().numpy())
        if not p_parts:
            return (
                np.zeros((0, len(self.proteins)), np.float32),
                np.zeros((0, EMBEDDING_DIM), np.float32),
            )
        return np.concatenate(p_parts), np.concatenate(g_parts)


def _load_scpert(folder: Path, meta: dict, device: str) -> ScpertTranslator:
    torch, _ = _torch()
    genes, proteins = _read_names(folder / GENES_TSV), _read_names(folder / PROTEINS_TSV)
    net = build_net(len(genes), len(proteins), meta["params"])
    try:
        net.load_state_dict(torch.load(folder / TRANSLATOR_STATE, map_location=device))
    except (RuntimeError, KeyError) as err:
        raise InputError(
            f"{folder / TRANSLATOR_STATE}: does not fit genes.tsv/proteins.tsv: {err}"
        ) from None
    return ScpertTranslator(net.to(device).eval(), genes, proteins, device)


#: translator kind (``translator.json`` ``kind``) -> loader ``(folder, meta, device)``
TRANSLATOR_KINDS: dict[str, Callable[[Path, dict, str], Translator]] = {"scpert": _load_scpert}


def _read_names(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: missing (a translator folder lists its genes and proteins)")
    names = pd.read_csv(path, sep="\t", dtype=str)["name"].tolist()
    if not names or len(set(names)) != len(names):
        raise InputError(f"{path}: column 'name' must list distinct names")
    return names


def read_meta(folder) -> dict:
    path = Path(folder) / TRANSLATOR_JSON
    if not path.is_file():
        raise InputError(f"{path}: missing (not a translator folder)")
    meta = json.loads(path.read_text())
    if meta.get("kind") not in TRANSLATOR_KINDS:
        raise InputError(
            f"{path}: field 'kind' = {meta.get('kind')!r}, known kinds {sorted(TRANSLATOR_KINDS)}"
        )
    return meta


def load_translator(folder, device: str = "cpu") -> Translator:
    """The translator of a ``translator`` prior folder (or a configured checkpoint folder)."""
    folder = Path(folder)
    meta = read_meta(folder)
    translator = TRANSLATOR_KINDS[meta["kind"]](folder, meta, device)
    if meta.get("embedding_dim", EMBEDDING_DIM) != EMBEDDING_DIM:
        raise InputError(f"{folder / TRANSLATOR_JSON}: embedding_dim must be {EMBEDDING_DIM}")
    return translator


def write_names(path: Path, names) -> None:
    pd.DataFrame({"name": list(names)}).to_csv(path, sep="\t", index=False, lineterminator="\n")


# ---------------------------------------------------------------------------------- training
def input_genes(rna: np.ndarray, genes: list[str], proteins: list[str], n: int) -> list[str]:
    """The ``n`` most variable genes of ``rna`` (log-normalised) plus every protein's gene."""
    order = np.argsort(-rna.var(axis=0), kind="stable")[:n]
    keep = set(np.asarray(genes)[order]) | (set(proteins) & set(genes))
    return [g for g in genes if g in keep]


def heldout_split(n: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the held-out cells (a seeded ``fraction`` of ``n``)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: int(round(fraction * n))]] = True
    return mask


def train_net(
    x: np.ndarray, y: np.ndarray, params: dict, device: str, checkpoint_dir=None, *, net=None
):
    """Fit :func:`build_net` to RNA ``x`` -> protein levels ``y`` (MSE) on the shared trainer;
    returns ``(net, history DataFrame)``. ``net``: start from these weights (fine-tuning,
    :mod:`scpert.priors.protein_sources`) instead of a fresh seeded network."""
    torch, _ = _torch()
    from scpert.generative.trainer import Batch, TrainConfig, Trainer

    if net is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(params["seed"])
            net = build_net(x.shape[1], y.shape[1], params)
    net = net.to(device).train()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    n = len(xt)
    size = min(params["batch_size"], n)

    def batches(step, generator):
        idx = torch.randint(0, n, (size,), generator=generator)
        return Batch({"x": xt[idx], "y": yt[idx]})

    def loss_fn(model, batch, step):
        p_hat, _ = model(batch.rows["x"])
        return torch.nn.functional.mse_loss(p_hat, batch.rows["y"]), {}

    config = TrainConfig(
        steps=params["steps"],
        lr=params["lr"],
        weight_decay=params["weight_decay"],
        lr_schedule="cosine",
        warmup_steps=max(1, params["steps"] // 20),
        grad_clip=1.0,
        seed=params["seed"],
    )
    result = Trainer(net, config, device=device, name="train_translator").fit(batches, loss_fn)
    history = pd.DataFrame(
        {
            "step": np.minimum(
                np.arange(1, len(result.history["loss"]) + 1) * result.every, params["steps"]
            ),
            "loss": result.history["loss"],
        }
    )
    return net.eval(), history


def per_protein_pearson(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Pearson correlation per column (NaN where a column is constant)."""
    a, b = pred - pred.mean(0), true - true.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(0) / den, np.nan)


def heldout_metrics(p_hat: np.ndarray, y: np.ndarray, train_mean: np.ndarray) -> dict:
    """Translator vs the mean-protein baseline (training cells' mean) on held-out cells."""
    mse = float(((p_hat - y) ** 2).mean())
    mse_mean = float(((train_mean[None, :] - y) ** 2).mean())
    r = per_protein_pearson(p_hat, y)
    return {
        "heldout_mse": mse,
        "heldout_mse_mean_baseline": mse_mean,
        "heldout_r2": 1.0 - mse / mse_mean if mse_mean > 0 else float("nan"),
        "heldout_pearson_median": float(np.nanmedian(r)),
    }


# ------------------------------------------------------------------------------- cell prior
@dataclass
class CellProteins:
    """The split-level prior ``protein`` (module docstring): one row per untreated cell."""

    obs_names: list[str]  # processed.h5ad cell ids
    p_hat: np.ndarray  # (n, n_proteins) float32
    g_p: np.ndarray  # (n, E) float32: E = 128 from a translator, the panel size when measured
    q: np.ndarray  # (n,) float32, PQM reliability in (0, 1)
    proteins: list[str]

    def __post_init__(self):
        n = len(self.obs_names)
        if (
            self.p_hat.shape != (n, len(self.proteins))
            or self.g_p.ndim != 2
            or self.g_p.shape[0] != n
            or self.g_p.shape[1] < 1
        ):
            raise ValueError(
                f"CellProteins: p_hat {self.p_hat.shape}, g_p {self.g_p.shape} for {n} cells "
                f"and {len(self.proteins)} proteins"
            )
        if self.q.shape != (n,):
            raise ValueError(f"CellProteins: q has shape {self.q.shape}, expected ({n},)")

    def rows(self, obs_names) -> np.ndarray:
        """Row positions of ``obs_names``; a cell without a row is an error naming it."""
        pos = {c: i for i, c in enumerate(self.obs_names)}
        missing = [c for c in obs_names if c not in pos]
        if missing:
            raise InputError(
                f"protein prior: no row for cell(s) {missing[:3]} (it covers untreated cells)"
            )
        return np.array([pos[c] for c in obs_names], dtype=np.int64)


def write_cell_proteins(cells: CellProteins, path) -> None:
    with open(path, "wb") as fh:
        np.savez(
            fh,
            obs_names=np.asarray(cells.obs_names, dtype=str),
            p_hat=cells.p_hat.astype(np.float32),
            g_p=cells.g_p.astype(np.float32),
            q=cells.q.astype(np.float32),
            proteins=np.asarray(cells.proteins, dtype=str),
        )


def read_cell_proteins(folder) -> CellProteins:
    """The ``protein`` prior of a split (rule ``infer_protein``): :class:`CellProteins`."""
    path = Path(folder) / CELL_PROTEINS
    if not path.is_file():
        raise InputError(f"{path}: missing (rule infer_protein writes it)")
    with np.load(path, allow_pickle=False) as f:
        missing = {"obs_names", "p_hat", "g_p", "q", "proteins"} - set(f.files)
        if missing:
            raise InputError(f"{path}: missing array(s) {sorted(missing)}")
        return CellProteins(
            obs_names=f["obs_names"].astype(str).tolist(),
            p_hat=f["p_hat"].astype(np.float32),
            g_p=f["g_p"].astype(np.float32),
            q=f["q"].astype(np.float32),
            proteins=f["proteins"].astype(str).tolist(),
        )
