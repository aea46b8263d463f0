"""scpert.latent: SCimilarity architecture and checkpoint layout, gene alignment, fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from scpert import steps
from scpert.data import schema
from scpert.data.preprocess import preprocess_counts
from scpert.latent import (
    CheckpointError,
    LatentModel,
    adapt_to_genes,
    align_to_genes,
    architecture,
    load_model,
    lognorm,
    read_gene_order,
    save_model,
    scimilarity_input,
)
from scpert.latent.finetune import LabelBatches, semihard_triplet_loss
from scpert.runtime import write_tsv

from .conftest import REPO, make_raw

GENE_ORDER = REPO / "resources/genes/scimilarity_gene_order.tsv"
TEST_COUNTS = REPO / "tests/data/scimilarity_test_counts_60x1000.h5ad"


# ---------------------------------------------------------------------------- architecture
def test_state_dict_keys_follow_scimilarity():
    model = LatentModel([f"g{i}" for i in range(10)], latent_dim=4, hidden_dim=[8, 6])
    enc = list(model.encoder.state_dict())
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    expected = (
        ["network.0.1.weight", "network.0.1.bias"]
        + [f"network.0.2.{k}" for k in bn]
        + ["network.0.3.weight", "network.1.1.weight", "network.1.1.bias"]
        + [f"network.1.2.{k}" for k in bn]
        + ["network.1.3.weight", "network.2.weight", "network.2.bias"]
    )
    assert enc == expected
    net = model.encoder.network
    assert net[0][0].p == 0.4 and net[1][0].p == 0.5  # input dropout, hidden dropout
    assert net[0][1].in_features == 10 and net[2].out_features == 4
    dec = model.decoder.network  # mirrors the encoder: 4 -> 6 -> 8 -> 10, no dropout first
    assert isinstance(dec[0][0], torch.nn.Linear) and dec[0][0].out_features == 6
    assert dec[1][0].p == 0.5 and dec[1][1].out_features == 8 and dec[2].out_features == 10


def test_embeddings_are_unit_norm():
    torch.manual_seed(0)
    model = LatentModel([f"g{i}" for i in range(12)], latent_dim=5, hidden_dim=[7])
    z = model.embed(np.abs(np.random.default_rng(0).normal(size=(9, 12))))
    assert z.shape == (9, 5)
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-6)


# ----------------------------------------------------------------------- checkpoint layout
def _known_state(n_genes: int, hidden: list[int], latent: int, decoder: bool) -> dict:
    """A state dict in SCimilarity's layout with deterministic, non-trivial values."""
    rng = np.random.default_rng(7 if decoder else 3)
    sizes = [latent, *reversed(hidden), n_genes] if decoder else [n_genes, *hidden, latent]
    state = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        lin = f"network.{i}." if last else f"network.{i}.{0 if decoder and i == 0 else 1}."
        state[lin + "weight"] = torch.tensor(rng.normal(0, 0.3, (b, a)), dtype=torch.float32)
        state[lin + "bias"] = torch.tensor(rng.normal(0, 0.1, b), dtype=torch.float32)
        if last:
            continue
        j = 1 if decoder and i == 0 else 2
        bn = f"network.{i}.{j}."
        state[bn + "weight"] = torch.tensor(rng.uniform(0.5, 1.5, b), dtype=torch.float32)
        state[bn + "bias"] = torch.tensor(rng.normal(0, 0.1, b), dtype=torch.float32)
        state[bn + "running_mean"] = torch.tensor(rng.normal(0, 0.2, b), dtype=torch.float32)
        state[bn + "running_var"] = torch.tensor(rng.uniform(0.5, 2.0, b), dtype=torch.float32)
        state[bn + "num_batches_tracked"] = torch.tensor(100)
        state[f"network.{i}.{j + 1}.weight"] = torch.tensor([0.25], dtype=torch.float32)  # PReLU
    return state


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A fake published model folder: 6 genes -> [5, 4] -> 3."""
    folder = tmp_path / "model_v1.1"
    folder.mkdir()
    genes = ["A1BG", "CD3E", "MS4A1", "LYZ", "GAPDH", "ACTB"]
    enc = _known_state(6, [5, 4], 3, decoder=False)
    torch.save({"state_dict": enc}, folder / "encoder.ckpt")
    torch.save({"state_dict": _known_state(6, [5, 4], 3, decoder=True)}, folder / "decoder.ckpt")
    (folder / "layer_sizes.json").write_text(json.dumps({k: list(v.shape) for k, v in enc.items()}))
    (folder / "gene_order.tsv").write_text("\n".join(genes) + "\n")
    return folder


def _reference_embedding(state: dict, x: np.ndarray) -> np.ndarray:
    """SCimilarity's encoder in eval mode, by hand in float64."""
    h = x.astype(np.float64)
    for i in range(2):
        w, b = state[f"network.{i}.1.weight"].double().numpy(), state[f"network.{i}.1.bias"]
        h = h @ w.T + b.double().numpy()
        g = {
            k: state[f"network.{i}.2.{k}"].double().numpy()
            for k in ("weight", "bias", "running_mean", "running_var")
        }
        h = (h - g["running_mean"]) / np.sqrt(g["running_var"] + 1e-5) * g["weight"] + g["bias"]
        h = np.where(h > 0, h, 0.25 * h)
    h = h @ state["network.2.weight"].double().numpy().T + state["network.2.bias"].double().numpy()
    return h / np.linalg.norm(h, axis=1, keepdims=True)


def test_fake_checkpoint_loads_and_reproduces_embeddings(checkpoint):
    model = load_model(checkpoint)
    assert model.genes == read_gene_order(checkpoint / "gene_order.tsv")
    assert model.hidden_dim == [5, 4] and model.latent_dim == 3
    x = np.abs(np.random.default_rng(1).normal(1.0, 1.0, size=(7, 6))).astype(np.float32)
    state = torch.load(checkpoint / "encoder.ckpt", weights_only=True)["state_dict"]
    np.testing.assert_allclose(model.embed(x), _reference_embedding(state, x), atol=1e-6)
    # reconstruction goes through the decoder checkpoint unchanged
    dec = torch.load(checkpoint / "decoder.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(model.decoder.state_dict()["network.2.weight"], dec["network.2.weight"])
    assert model.reconstruct(model.embed(x)).shape == (7, 6)


def test_saved_model_round_trips_bitwise(checkpoint, tmp_path):
    model = load_model(checkpoint)
    save_model(model, tmp_path / "copy", {"origin": "test"})
    again = load_model(tmp_path / "copy")
    x = np.random.default_rng(2).uniform(0, 3, size=(5, 6)).astype(np.float32)
    assert np.array_equal(model.embed(x), again.embed(x))
    assert json.loads((tmp_path / "copy/latent.json").read_text()) == {"origin": "test"}
    sizes = json.loads((tmp_path / "copy/layer_sizes.json").read_text())
    assert sizes["network.0.1.weight"] == [5, 6] and sizes["network.0.2.num_batches_tracked"] == []


def test_architecture_sorts_layers_numerically():
    sizes = {f"network.{i}.1.weight": [10, 10] for i in range(11)}
    sizes["network.0.1.weight"] = [10, 300]
    sizes["network.11.weight"] = [128, 10]
    sizes["network.3.2.weight"] = [10]  # BatchNorm: 1-D, ignored
    arch = architecture(sizes, "layer_sizes.json")
    assert arch == {"n_genes": 300, "hidden_dim": [10] * 11, "latent_dim": 128}


def test_checkpoint_errors_name_the_file(checkpoint):
    (checkpoint / "gene_order.tsv").write_text("A\nB\n")
    with pytest.raises(CheckpointError, match="gene_order.tsv: 2 genes, but the encoder"):
        load_model(checkpoint)
    (checkpoint / "decoder.ckpt").unlink()
    (checkpoint / "gene_order.tsv").write_text("\n".join("ABCDEF") + "\n")
    with pytest.raises(CheckpointError, match="decoder.ckpt: file is missing"):
        load_model(checkpoint)


def test_adapted_model_equals_checkpoint_on_zero_filled_input(checkpoint):
    full = load_model(checkpoint)
    genes = ["LYZ", "NOT_IN_ORDER", "A1BG", "ACTB"]  # reordered, one unknown, two absent
    adapted = adapt_to_genes(full, genes)
    x = np.random.default_rng(4).uniform(0, 3, size=(8, len(genes))).astype(np.float32)
    aligned = align_to_genes(x, genes, full.genes).toarray()
    np.testing.assert_allclose(adapted.embed(x), full.embed(aligned), atol=1e-6)
    recon_full = full.reconstruct(full.embed(aligned))
    recon = adapted.reconstruct(adapted.embed(x))
    np.testing.assert_allclose(recon[:, [0, 2, 3]], recon_full[:, [3, 0, 5]], atol=1e-5)
    assert np.all(recon[:, 1] == 0)  # a gene the checkpoint never reconstructed starts at 0


# ----------------------------------------------------------------------- alignment, real data
def test_alignment_against_scimilarity_gene_order():
    data = ad.read_h5ad(TEST_COUNTS)
    order = read_gene_order(GENE_ORDER)
    assert len(order) == 28231
    genes = list(data.var_names)
    X = scimilarity_input(data.X, genes, order)
    assert X.shape == (60, 28231)
    present = [g for g in genes if g in set(order)]
    assert len(present) == 845  # 155 of the 1,000 genes are outside SCimilarity's order
    counts = data.X.toarray().astype(np.float64)
    totals = counts.sum(axis=1)  # library size over every measured gene (lognorm first)
    dense = X.toarray()
    for gene in ("CD3E", "LYZ", "MALAT1"):
        if gene not in genes:
            continue
        col = order.index(gene)
        expected = np.log1p(counts[:, genes.index(gene)] / totals * 1e4)
        np.testing.assert_allclose(dense[:, col], expected, rtol=1e-5)
    absent = [order.index(g) for g in order[:2000] if g not in set(genes)]
    assert not dense[:, absent].any()  # zero fill
    assert X.nnz == sum(int((counts[:, genes.index(g)] > 0).sum()) for g in present)


def test_lognorm_by_hand():
    out = lognorm(sp.csr_matrix(np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0]])))
    np.testing.assert_allclose(out.toarray()[0], np.log1p([2500.0, 7500.0, 0.0]), rtol=1e-6)
    assert out[1].nnz == 0


# ----------------------------------------------------------------------------- fine-tuning
def test_semihard_triplets_by_hand():
    # anchor 0 and positive 1 (label 0, different plates); negatives 2 (semi-hard) and 3 (easy)
    z = torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.0, 0.32], [5.0, 5.0]])
    labels, studies = torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 0, 0])
    loss, n = semihard_triplet_loss(
        z, labels, studies, margin=0.05, generator=torch.Generator().manual_seed(0)
    )
    assert n == 1
    assert loss.item() == pytest.approx(0.3 - 0.32 + 0.05, abs=1e-6)
    # no semi-hard negative: nothing to learn from
    far = z.clone()
    far[2] = torch.tensor([3.0, 3.0])
    loss, n = semihard_triplet_loss(far, labels, studies, 0.05, torch.Generator().manual_seed(0))
    assert n == 0 and loss.item() == 0.0


def test_label_batches_sample_p_labels_times_k_cells():
    labels = np.repeat(np.arange(10), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    batch = next(LabelBatches(labels, labels_per_batch=4, cells_per_label=3, seed=0))
    assert len(batch) == 12
    counts = np.unique(labels[batch], return_counts=True)[1]
    assert len(counts) == 4 and set(counts) == {3}


def _processed_split(tmp_path):
    adata = preprocess_counts(make_raw(n_genes=30, cells=8), control="control")
    conditions = adata.obs[schema.CONDITION].astype(str).unique()
    split = pd.DataFrame(
        {"condition": conditions, "split": ["test" if "dF" in c else "train" for c in conditions]}
    )
    paths = {
        "h5ad": tmp_path / "processed.h5ad",
        "split": tmp_path / "split.tsv",
        "genes": tmp_path / "genes.tsv",
    }
    adata.write_h5ad(paths["h5ad"])
    write_tsv(split, paths["split"])
    genes = list(adata.var_names[::2])
    write_tsv(pd.DataFrame({"gene": genes}), paths["genes"])
    return paths, adata, genes


def test_run_finetune_latent_trains_on_training_cells(tmp_path):
    paths, adata, genes = _processed_split(tmp_path)
    settings = {
        "preset": "tiny",
        "params": {
            "hidden_dim": [16],
            "steps": 60,
            "lr": 3e-3,
            "labels_per_batch": 8,
            "cells_per_label": 4,
        },
    }
    steps.finetune_latent(
        paths, tmp_path / "latent/model", settings, "control", seed=0, device="cpu", threads=1
    )
    model = load_model(tmp_path / "latent/model")
    assert model.genes == genes and model.hidden_dim == [16] and model.latent_dim == 128
    meta = json.loads((tmp_path / "latent/model/latent.json").read_text())
    train = adata.obs[schema.CONDITION].astype(str).str.contains("dF")
    assert meta["n_cells"] == int((~train).sum())  # test conditions (drug dF) never seen
    assert meta["origin"] == "initialised" and meta["history"]["steps"] == 60
    x = adata[:, genes].X.toarray()
    untrained = LatentModel(genes, 128, [16])
    untrained.eval()
    err = np.mean((model.reconstruct(model.embed(x)) - x) ** 2)
    err0 = np.mean((untrained.reconstruct(untrained.embed(x)) - x) ** 2)
    assert err < 0.5 * err0


def test_run_finetune_latent_starts_from_a_checkpoint(tmp_path):
    paths, adata, genes = _processed_split(tmp_path)
    folder = tmp_path / "ckpt"
    source = LatentModel(list(adata.var_names[:20]) + ["OTHER"], latent_dim=8, hidden_dim=[12])
    save_model(source, folder)
    settings = {
        "preset": "tiny",
        "params": {"steps": 2, "labels_per_batch": 4, "cells_per_label": 2},
    }
    steps.finetune_latent(
        {**paths, "checkpoint": folder}, tmp_path / "out", settings, "control", seed=0, device="cpu"
    )
    model = load_model(tmp_path / "out")
    assert model.genes == genes
    assert model.hidden_dim == [12] and model.latent_dim == 8  # the checkpoint's architecture
    assert json.loads((tmp_path / "out/latent.json").read_text())["origin"].startswith(
        "SCimilarity checkpoint"
    )
