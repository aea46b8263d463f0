"""scDFM (arXiv:2602.07103): paper preset, differential attention, the co-expression graph (training
cells only), perturbation embeddings, the ODE sampler, the objective, fit/predict."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from scpert import steps
from scpert.data import io, schema
from scpert.generative.losses import mmd2_unbiased
from scpert.methods import get_method
from scpert.methods.scdfm import PAPER, TINY
from scpert.methods.scdfm import graph as gene_graph
from scpert.methods.scdfm.model import PADTransformer, PerturbationEncoder, partition_genes
from scpert.methods.scdfm.sample import integrate
from scpert.methods.scppdm.model import ConditionBatch, DrugTable
from scpert.nn.diff_attn import DifferentialAttention, differential_attention, lambda_init
from scpert.steps.methods import training_data

from .conftest import REPO

CONTROL = "control"


# ------------------------------------------------------------------------------ paper preset
def test_paper_preset_equals_appendix_a43():
    expected = {
        "width": 512,
        "depth": 4,
        "heads": 8,
        "dropout": 0.1,
        "lr": 5e-5,
        "lr_min": 1e-6,
        "batch_size": 96,
        "steps": 100_000,
        "mmd_weight": 0.5,
        "mmd_scales": [0.5, 1.0, 2.0, 4.0],
        "knn": 30,
        "gene_mask": True,
        "attention": "differential",
        "sampler": "euler",
        "sampler_steps": 100,
        "train_genes": 5000,
        "subset_genes": 1000,
        "fusion": False,
        "time_distribution": "uniform",
        # the tiny preset's named departures keep the paper's values here
        "standardize": "none",
        "groups_per_step": 1,
        "gene_init": "random",
        "source": "noise",
        "coupling": "independent",
        "generated_cells": 0,
    }
    assert {k: PAPER[k] for k in expected} == expected
    assert set(TINY) == set(PAPER)  # complete presets


def _block_parameters(d: int) -> int:
    """One PAD block by hand: adapter, two differential attentions, MLP x4, adaLN-Zero (9 d)."""
    dh = d // 8 // 2  # paper: 8 heads
    adapter = (2 * d * d + d) + (d * d + d)
    attention = 4 * d * d + d + 4 * dh  # q, k, v, out (+ out bias) and the four lambda vectors
    context_norm = 2 * d
    mlp = (d * 4 * d + 4 * d) + (4 * d * d + d)
    ada = d * 9 * d + 9 * d
    return adapter + 2 * attention + context_norm + mlp + ada


def test_describe_paper_counts_the_pad_transformer():
    counts = get_method("scdfm").describe("paper")
    d = 512
    assert counts["PAD blocks"] == 4 * _block_parameters(d)
    gene_encoder = 5000 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d
    assert counts["gene encoder E_g"] == gene_encoder
    assert counts["value encoder E_v"] == (d + d) + (d * d + d) + 2 * d
    assert 34e6 < sum(counts.values()) < 36e6  # docs/decisions.md: 35.0 M, code ~60 M


# ---------------------------------------------------------------------- differential attention
def _maps(q, k, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return s.softmax(-1)


def test_differential_attention_by_hand():
    g = torch.Generator().manual_seed(0)
    q1, k1, q2, k2 = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(4))
    v = torch.randn(2, 3, 5, 8, generator=g)
    mask = torch.rand(5, 5, generator=g) > 0.4
    mask |= torch.eye(5, dtype=torch.bool)
    expected = (_maps(q1, k1, mask) - 0.7 * _maps(q2, k2, mask)) @ v  # eq. 9
    got = differential_attention(q1, k1, q2, k2, v, 0.7, mask)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # lambda = 0: standard attention of (Q1, K1, V)
    torch.testing.assert_close(
        differential_attention(q1, k1, q2, k2, v, 0.0), _maps(q1, k1) @ v, atol=1e-5, rtol=1e-5
    )


def test_lambda_initialisation_follows_depth():
    assert lambda_init(0) == pytest.approx(0.2)
    assert lambda_init(3) == pytest.approx(0.8 - 0.6 * math.exp(-0.9))
    layer = DifferentialAttention(16, 2, depth=2)
    with torch.no_grad():  # lambda = exp(lq1.lk1) - exp(lq2.lk2) + lambda_init
        for p in (layer.lambda_q1, layer.lambda_k1, layer.lambda_q2, layer.lambda_k2):
            p.fill_(0.5)
    assert layer.lam().item() == pytest.approx(lambda_init(2))


def test_differential_layer_with_lambda_zero_is_standard_attention_per_head():
    torch.manual_seed(0)
    layer = DifferentialAttention(16, 2, depth=1).eval()
    with torch.no_grad():  # lambda = 1 - (1 + lambda_init) + lambda_init = 0
        layer.lambda_q1.zero_()
        layer.lambda_k1.zero_()
        layer.lambda_q2.zero_()
        layer.lambda_k2.zero_()
        layer.lambda_q2[0] = math.sqrt(math.log(1 + layer.lambda_init))
        layer.lambda_k2[0] = math.sqrt(math.log(1 + layer.lambda_init))
    assert abs(layer.lam().item()) < 1e-6
    x, y = torch.randn(3, 6, 16), torch.randn(3, 4, 16)
    dh = 4
    q = layer.to_q(x).reshape(3, 6, 4, dh).transpose(1, 2)
    k = layer.to_k(y).reshape(3, 4, 4, dh).transpose(1, 2)
    v = layer.to_v(y).reshape(3, 4, 2, 2 * dh).transpose(1, 2)
    heads = _maps(q[:, 0::2], k[:, 0::2]) @ v  # per head softmax(Q1 K1^T / sqrt d) V
    heads = F.rms_norm(heads, (2 * dh,), eps=1e-5) * (1 - layer.lambda_init)
    expected = layer.to_out(heads.transpose(1, 2).reshape(3, 6, 16))
    torch.testing.assert_close(layer(x, y), expected, atol=1e-5, rtol=1e-5)


def test_standard_variant_equals_torch_multihead_attention():
    torch.manual_seed(1)
    layer = DifferentialAttention(16, 2, differential=False).eval()
    reference = torch.nn.MultiheadAttention(16, 2, bias=False, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(
            torch.cat([layer.to_q.weight, layer.to_k.weight, layer.to_v.weight])
        )
        reference.out_proj.weight.copy_(layer.to_out.weight)
        layer.to_out.bias.zero_()
    x, y = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    expected, _ = reference(x, y, y, need_weights=False)
    torch.testing.assert_close(layer(x, y), expected, atol=1e-5, rtol=1e-5)


def test_cached_control_keys_give_the_same_output():
    layer = DifferentialAttention(16, 2).eval()
    x, y = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    torch.testing.assert_close(layer(x, kv=layer.keys_values(y)), layer(x, y))


# ------------------------------------------------------------------------------- gene graph
def test_knn_graph_by_hand():
    # g1 = g0, g2 = -g0 (|r| = 1 with both), g3 weakly tied to g0 only
    w = np.array(
        [
            [1.0, 1.0, 1.0, 0.3],
            [1.0, 1.0, 1.0, 0.1],
            [1.0, 1.0, 1.0, 0.2],
            [0.3, 0.1, 0.2, 1.0],
        ]
    )
    adjacency = gene_graph.knn_graph(w, k=1)
    # top-1 per row: g0 -> g1, g1 -> g0, g2 -> g0 (tie with g1: lower index), g3 -> g0
    expected = np.eye(4, dtype=bool)
    for i, j in [(0, 1), (1, 0), (2, 0), (3, 0)]:
        expected[i, j] = expected[j, i] = True
    assert np.array_equal(adjacency, expected)


def test_correlation_is_pearson_of_z_scored_values_and_constant_genes_are_unlinked():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    X[:, 1] = -2 * X[:, 0] + 0.1 * rng.normal(size=50)
    X[:, 3] = 1.5  # constant
    r = gene_graph.correlation(X)
    np.testing.assert_allclose(r[:3, :3], np.corrcoef(X[:, :3].T), atol=1e-12)
    assert np.all(r[3] == 0) and np.all(r[:, 3] == 0)
    adjacency = gene_graph.coexpression_graph(X, k=1)
    assert adjacency[0, 1] and adjacency[1, 0]  # |r| links anti-correlated genes


@pytest.fixture(scope="module")
def processed(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("scdfm")
    steps.preprocess(
        world / "counts.h5ad",
        root / "processed.h5ad",
        {"min_genes": 10, "min_cells": 3, "min_cells_per_condition": 5},
        CONTROL,
    )
    split = {"type": "drug_ood", "seed": 0, "test_fraction": 0.3}
    steps.make_split(
        root / "processed.h5ad", world / "drugs.tsv", root / "split.tsv", split, CONTROL
    )
    steps.select_hvg(
        root / "processed.h5ad",
        root / "split.tsv",
        root / "genes.tsv",
        {"n_top_genes": 120},
        CONTROL,
    )
    return root


def _data(root, world, h5ad=None):
    return training_data(
        h5ad or root / "processed.h5ad",
        root / "split.tsv",
        root / "genes.tsv",
        world / "drugs.tsv",
        CONTROL,
    )


FAST = {
    "width": 16,
    "depth": 1,
    "steps": 2,
    "batch_size": 8,
    "subset_genes": 32,
    "groups_per_step": 2,
}


def test_graph_uses_training_cells_only(processed, world, tmp_path):
    """The graph of a fit is the graph of the split's training cells; scrambling the held-out
    cells of the data changes nothing."""
    adata = io.read_processed(processed / "processed.h5ad", CONTROL)
    split = io.read_split(processed / "split.tsv")
    held_out = ~adata.obs[schema.CONDITION].isin(split.loc[split.split == "train", "condition"])
    held_out &= (adata.obs[schema.DRUG] != CONTROL).to_numpy()
    assert held_out.any()
    model = get_method("scdfm").from_preset("tiny", FAST, seed=0)
    data = _data(processed, world)
    model.fit(data)
    genes = model.genes
    train_cells = adata[~held_out.to_numpy(), genes].X
    expected = gene_graph.coexpression_graph(train_cells, k=30)
    assert np.array_equal(model.adjacency, expected)
    # the held-out cells scrambled: the same graph
    scrambled = adata.copy()
    X = scrambled.X.toarray()
    rows = np.flatnonzero(held_out.to_numpy())
    X[rows] = np.random.default_rng(0).permutation(X[rows].ravel()).reshape(len(rows), -1)
    scrambled.X = X.astype(np.float32)
    scrambled.write_h5ad(tmp_path / "scrambled.h5ad")
    other = get_method("scdfm").from_preset("tiny", FAST, seed=0)
    other.fit(_data(processed, world, tmp_path / "scrambled.h5ad"))
    assert np.array_equal(other.adjacency, model.adjacency)
    # and the whole data's graph differs (the check would notice a leak)
    assert not np.array_equal(gene_graph.coexpression_graph(adata[:, genes].X, k=30), expected)


# ----------------------------------------------------------------- perturbation embeddings
def _table():
    fps = np.zeros((3, 8), dtype=np.uint8)
    fps[0, :2] = fps[1, 2:5] = fps[2, 5:] = 1
    return DrugTable(["dA", "dB", "dC"], fps, ["dA", "dB"])  # dC unseen in training


@pytest.mark.parametrize("mode", ["id", "structure", "id_structure"])
def test_combination_is_the_mean_of_its_components(mode):
    torch.manual_seed(0)
    table = _table()
    enc = PerturbationEncoder(torch.from_numpy(table.fingerprints), 2, 6, mode)
    cond = ConditionBatch.encode(["dA", "dB", "dA+dB"], ["1", "10", "1+10"], table)
    e = enc(cond)
    torch.testing.assert_close(e[2], (e[0] + e[1]) / 2)


def test_unseen_drugs_get_structure_but_no_id_row():
    torch.manual_seed(0)
    table = _table()
    cond = ConditionBatch.encode(["dC", "dA"], ["1", "1"], table)
    assert cond.drug_id[0, 0] == 0  # the shared "unseen" id
    by_id = PerturbationEncoder(torch.from_numpy(table.fingerprints), 2, 6, "id")
    dose_only = by_id.dose(cond.log_dose[..., None])[0, 0]
    torch.testing.assert_close(by_id(cond)[0], dose_only)  # the zero row: dose embedding only
    by_structure = PerturbationEncoder(torch.from_numpy(table.fingerprints), 2, 6, "structure")
    fp = by_structure.structure(torch.from_numpy(table.fingerprints[2]).float())
    dose = by_structure.dose(cond.log_dose[..., None])[0, 0]
    torch.testing.assert_close(by_structure(cond)[0], fp + dose)


# --------------------------------------------------------------------------- ODE sampling
class ConstantVelocity(torch.nn.Module):
    """A stand-in network whose velocity is a constant per gene."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def context(self, c_x, genes, mask, cond):
        return genes

    def velocity(self, x, t, genes):
        return self.c[genes].expand_as(x)


@pytest.mark.parametrize("k", [1, 7, 100])
def test_euler_with_k_steps_integrates_a_constant_velocity_exactly(k):
    g = torch.Generator().manual_seed(0)
    c = torch.randn(10, generator=g).double() + 8.0  # positive endpoints: the clamp is inactive
    noise = torch.randn(4, 10, generator=g).double()
    p = {"sampler": "euler", "sampler_steps": k, "subset_genes": 3, "source": "noise"}
    full = torch.ones(10, 10, dtype=torch.bool)
    out = integrate(ConstantVelocity(c), torch.zeros(4, 10).double(), None, noise, full, p, 0)
    torch.testing.assert_close(out, noise + c, atol=1e-12, rtol=0)


def test_control_source_starts_from_the_control_cell_plus_scaled_noise():
    c = torch.full((5,), 2.0)
    c_x = torch.arange(10.0).reshape(2, 5)
    noise = torch.ones(2, 5)
    p = {"sampler": "rk4", "sampler_steps": 2, "subset_genes": 5, "source": "control"}
    full = torch.ones(5, 5, dtype=torch.bool)
    out = integrate(ConstantVelocity(c), c_x, None, noise, full, {**p, "source_noise": 0.5}, 0)
    torch.testing.assert_close(out, c_x + 0.5 + 2.0)


def test_final_state_is_clamped_at_zero_and_genes_are_partitioned():
    c = -5.0 * torch.ones(6)
    p = {"sampler": "heun", "sampler_steps": 3, "subset_genes": 4, "source": "noise"}
    full = torch.ones(6, 6, dtype=torch.bool)
    out = integrate(ConstantVelocity(c), torch.zeros(2, 6), None, torch.zeros(2, 6), full, p, 0)
    assert torch.equal(out, torch.zeros(2, 6))
    parts = partition_genes(10, 4, seed=1)
    assert [len(x) for x in parts] == [4, 3, 3]
    assert sorted(np.concatenate(parts)) == list(range(10))


# -------------------------------------------------------------------------------- objective
def test_training_loss_is_cfm_plus_half_mmd_on_the_endpoint(monkeypatch):
    """The loss the trainer minimises, recomputed by hand on one batch."""
    from scpert.methods.scdfm import train as train_mod

    seen = {}

    class Capture(train_mod.Trainer):
        def fit(self, batch_fn, loss_fn, **kw):
            b = batch_fn(0, torch.Generator().manual_seed(0))
            seen["loss"], seen["terms"] = loss_fn(self.model, b, 0)
            seen["batch"] = b
            raise StopIteration

    monkeypatch.setattr(train_mod, "Trainer", Capture)
    torch.manual_seed(0)
    table = _table()
    # one group, raw values, noise source (the paper's; the tiny preset starts from the control)
    paper_batches = {"standardize": "none", "groups_per_step": 1, "source": "noise"}
    p = (
        get_method("scdfm")
        .from_preset("tiny", {**FAST, **paper_batches, "perturbation_encoder": "id"})
        .params
    )
    net = PADTransformer(p, 40, torch.from_numpy(table.fingerprints), 2)
    obs = pd.DataFrame(
        {
            schema.CELL_LINE: "L1",
            schema.DRUG: ["control"] * 10 + ["dA"] * 10,
            schema.DOSE: ["0"] * 10 + ["1"] * 10,
            schema.PLATE: "p0",
        }
    )
    from scpert.data import pairing

    sets = pairing.CellSets(obs, CONTROL, 8)
    X = np.abs(np.random.default_rng(0).normal(size=(20, 40))).astype(np.float32)
    cond = ConditionBatch.encode(sets.keys[schema.DRUG], sets.keys[schema.DOSE], table)
    with pytest.raises(StopIteration):
        train_mod.fit_network(net, X, sets, cond, torch.ones(40, 40, dtype=bool), p, "cpu", 0)
    b = seen["batch"]
    x1, x0, t = b.rows["x1"], b.rows["x0"], b.rows["t"]
    x_t = (1 - t[:, None]) * x0 + t[:, None] * x1
    genes = b.shared["genes"]
    v = net(x_t, t, b.rows["c_x"], genes, None, cond[b.rows["group"]], b.rows["keep_id"])
    cfm = ((v - (x1 - x0)) ** 2).mean()
    mmd = mmd2_unbiased(x1, x_t + (1 - t[:, None]) * v)
    torch.testing.assert_close(seen["loss"], cfm + 0.5 * mmd)
    assert len(genes) == 32 and np.array_equal(
        x1.numpy(), X[np.ix_(sets_rows(b, X, x1), genes.numpy())]
    )


def test_groups_per_step_z_scores_by_the_controls_and_averages_the_mmd_per_group(monkeypatch):
    """Tiny preset batches: 2 groups x 4 cells, values z-scored by the training controls' mean and
    sd (floored), the MMD the mean of one MMD per group."""
    from scpert.data import pairing
    from scpert.methods.scdfm import train as train_mod

    seen = {}

    class Capture(train_mod.Trainer):
        def fit(self, batch_fn, loss_fn, **kw):
            b = batch_fn(0, torch.Generator().manual_seed(0))
            seen["loss"], seen["batch"] = loss_fn(self.model, b, 0)[0], b
            raise StopIteration

    monkeypatch.setattr(train_mod, "Trainer", Capture)
    torch.manual_seed(0)
    table = _table()
    p = get_method("scdfm").from_preset("tiny", {**FAST, "perturbation_encoder": "id"}).params
    assert p["standardize"] == "control" and p["groups_per_step"] == 2
    net = PADTransformer(p, 40, torch.from_numpy(table.fingerprints), 2)
    obs = pd.DataFrame(
        {
            schema.CELL_LINE: "L1",
            schema.DRUG: ["control"] * 10 + ["dA"] * 10 + ["dB"] * 10,
            schema.DOSE: ["0"] * 10 + ["1"] * 20,
            schema.PLATE: "p0",
        }
    )
    X = np.abs(np.random.default_rng(0).normal(size=(30, 40))).astype(np.float32)
    X[:10, 0] = 1.0  # constant in the controls: sd floored
    scale = train_mod.GeneScale.fit(X[:10], "control")
    np.testing.assert_allclose(scale.mean, X[:10].mean(0), rtol=1e-6)
    assert scale.sd[0] == train_mod.SD_FLOOR
    np.testing.assert_allclose(scale.sd[1:], X[:10, 1:].std(0), rtol=1e-5)
    sets = pairing.CellSets(obs, CONTROL, train_mod.groups_and_cells(p)[1])
    cond = ConditionBatch.encode(sets.keys[schema.DRUG], sets.keys[schema.DOSE], table)
    with pytest.raises(StopIteration):
        train_mod.fit_network(
            net, X, sets, cond, torch.ones(40, 40, dtype=bool), p, "cpu", 0, scale=scale
        )
    b = seen["batch"]
    genes = b.shared["genes"].numpy()
    x1, t, group = b.rows["x1"], b.rows["t"], b.rows["group"]
    assert p["source"] == "control" and p["coupling"] == "independent"
    x0 = b.rows["c_x"] + p["source_noise"] * b.rows["x0"]  # the tiny preset's source
    assert len(x1) == 8 and len(set(group[:4].tolist())) == 1 and len(set(group[4:].tolist())) == 1
    raw = x1.numpy() * scale.sd[genes] + scale.mean[genes]
    for row, g in zip(raw, group.tolist()):  # each row is a cell of its group
        members = np.flatnonzero(obs[schema.DRUG].to_numpy() == sets.keys[schema.DRUG][g])
        assert np.abs(X[np.ix_(members, genes)] - row).max(axis=1).min() < 1e-5
    x_t = (1 - t[:, None]) * x0 + t[:, None] * x1
    v = net(x_t, t, b.rows["c_x"], b.shared["genes"], None, cond[group], b.rows["keep_id"])
    x1_hat = x_t + (1 - t[:, None]) * v
    mmd = (mmd2_unbiased(x1[:4], x1_hat[:4]) + mmd2_unbiased(x1[4:], x1_hat[4:])) / 2
    torch.testing.assert_close(seen["loss"], ((v - (x1 - x0)) ** 2).mean() + 0.5 * mmd)


def test_too_many_groups_per_step_for_the_batch_is_one_clear_error():
    from scpert.methods.scdfm.train import groups_and_cells

    assert groups_and_cells({"groups_per_step": 8, "batch_size": 32}) == (8, 4)
    with pytest.raises(ValueError, match="groups_per_step 8 leaves fewer than 2 cells"):
        groups_and_cells({"groups_per_step": 8, "batch_size": 8})


class GaussianOracle(torch.nn.Module):
    """The exact marginal velocity of the linear path from N(0, I) to N(mu, diag(s^2)) per gene
    (z-space): ``E[x1 - x0 | x_t = x]`` with ``Var x_t = (1 - t)^2 + t^2 s^2``."""

    def __init__(self, mu, s):
        super().__init__()
        self.mu, self.s = mu, s

    def context(self, c_x, genes, mask, cond):
        return genes

    def velocity(self, x, t, genes):
        mu, s2, t = self.mu[genes], self.s[genes] ** 2, t[:, None]
        var = (1 - t) ** 2 + t**2 * s2
        centred = x - t * mu
        return mu + (t * s2 - (1 - t)) / var * centred


def test_oracle_velocity_through_the_sampler_recovers_every_genes_distribution():
    """The whole sampling path (gene partition, z-scoring, time grid 0 -> 1, clamp, mapping
    back) with the exact velocity: each gene's mean and sd come out in expression space, so a
    misaligned gene subset, a reversed time or a wrong scale would show."""
    from scpert.methods.scdfm.train import GeneScale

    g = torch.Generator().manual_seed(0)
    G = 12
    mu = torch.linspace(-1.0, 2.0, G).double()  # z-space target means, all different
    s = torch.linspace(0.3, 1.5, G).double()
    scale = GeneScale(np.linspace(4.0, 9.0, G), np.linspace(0.5, 1.0, G))  # clamp inactive
    p = {"sampler": "rk4", "sampler_steps": 20, "subset_genes": 5, "source": "noise"}
    full = torch.ones(G, G, dtype=torch.bool)
    noise = torch.randn(20_000, G, generator=g).double()
    c_x = torch.zeros(20_000, G).double()
    out = integrate(GaussianOracle(mu, s), c_x, None, noise, full, p, 3, scale).numpy()
    np.testing.assert_allclose(out.mean(0), scale.mean + scale.sd * mu.numpy(), atol=0.03)
    np.testing.assert_allclose(out.std(0), scale.sd * s.numpy(), rtol=0.03)


def test_z_scored_sampling_clamps_at_expression_zero_and_maps_back():
    from scpert.methods.scdfm.train import GeneScale

    scale = GeneScale(np.array([1.0, 2.0, 0.5]), np.array([0.5, 2.0, 1.0]))
    x = torch.tensor([[0.0, 1.0, 3.0]])
    torch.testing.assert_close(scale.to_z(x, [0, 1, 2]), torch.tensor([[-2.0, -0.5, 2.5]]))
    torch.testing.assert_close(scale.from_z(scale.to_z(x, [0, 1, 2]), [0, 1, 2]), x)
    torch.testing.assert_close(scale.zero_in_z([2, 0], x), torch.tensor([-0.5, -2.0]))
    p = {"sampler": "euler", "sampler_steps": 3, "subset_genes": 2, "source": "noise"}
    full = torch.ones(3, 3, dtype=torch.bool)
    noise = torch.tensor([[0.5, -0.25, 1.0]]).double()
    c = torch.tensor([1.0, -3.0, 0.5]).double()  # gene 1 ends below expression 0: clamped
    out = integrate(ConstantVelocity(c), torch.ones(1, 3).double(), None, noise, full, p, 0, scale)
    z = noise + c
    expected = torch.tensor([[1.0 + 0.5 * z[0, 0], 0.0, 0.5 + z[0, 2]]]).double()
    torch.testing.assert_close(out, expected)


def test_principal_loadings_by_hand():
    # correlation of two perfectly correlated genes and an independent one: eigenvalues 2, 1, 0
    corr = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    loadings = gene_graph.principal_loadings(corr, 4)
    raw = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # v sqrt(lambda), largest entry > 0
    raw = np.c_[raw, np.zeros((3, 2))]  # rank 2: columns 3-4 are zero
    np.testing.assert_allclose(loadings, raw / np.sqrt((raw**2).mean()), atol=1e-12)


def sets_rows(b, X, x1):
    """Rows of ``X`` whose gene subset equals each row of ``x1`` (the drawn perturbed cells)."""
    genes = b.shared["genes"].numpy()
    sub = X[:, genes]
    return [int(np.flatnonzero((sub == row.numpy()).all(axis=1))[0]) for row in x1]


# ------------------------------------------------------------------------ fit and predict
def test_fit_lowers_the_loss_and_predicts_deterministically(processed, world):
    data = _data(processed, world)
    model = get_method("scdfm").from_preset("tiny", {"steps": 150, "generated_cells": 6}, seed=0)
    model.fit(data)
    cfm = model.history["history"]["cfm"]
    assert np.mean(cfm[-3:]) < 0.8 * np.mean(cfm[:3])  # flow matching learns
    adata = io.read_processed(processed / "processed.h5ad", CONTROL)[:, model.genes]
    split = io.read_split(processed / "split.tsv")
    controls = adata[(adata.obs[schema.DRUG] == CONTROL).to_numpy()]
    test = split[split.split == "test"].head(4)
    plates = [adata.obs.loc[adata.obs.condition == c, "plate"].iloc[0] for c in test.condition]
    conditions = pd.DataFrame(
        {
            "condition": test["condition"],
            "cell_line": test["cell_line"],
            "drug": test["drug"],
            "dose": test["dose"].astype(str),
            "plate": plates,
            "n_cells": 12,
        }
    )
    pred = model.predict(controls, conditions, seed=1)
    again = model.predict(controls, conditions, seed=1)
    assert np.array_equal(pred.X, again.X) and (pred.X >= 0).all()
    assert pred.uns["sampler"] == "ode_heun"  # the tiny preset: Heun K = 2
    # generated_cells (6) model samples per row, repeated round-robin over its 12 cells
    first = pred[pred.obs.condition == test["condition"].iloc[0]].X
    assert len(np.unique(first, axis=0)) == 6
    np.testing.assert_array_equal(first[6:], first[:6])


def test_configured_ablations_cover_section_4_5():
    import yaml

    from scpert.methods import get_spec

    methods = yaml.safe_load((REPO / "config/scdfm_ablations.yaml").read_text())["methods"]
    spec = get_spec("scdfm")
    changed = {}
    for name, entry in methods.items():
        assert entry["base"] == "scdfm"
        params = spec.resolve("tiny", entry["params"], key=f"methods.{name}")
        changed[name] = {k for k in params if params[k] != TINY[k]}
    assert changed == {
        "scdfm_no_gene_mask": {"gene_mask"},
        "scdfm_standard_attention": {"attention"},
        "scdfm_no_mmd": {"mmd_weight"},
    }


def test_ot_coupling_pairs_each_source_with_its_nearest_target_within_its_group():
    from scpert.methods.scdfm.train import couple

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(12, 5, generator=g)
    perm = torch.cat([torch.randperm(4, generator=g) + 4 * k for k in range(3)])  # within groups
    x1 = x0[perm] + 0.01 * torch.randn(12, 5, generator=g)
    paired = couple(x0, x1, 4, "ot")
    torch.testing.assert_close(paired, x0, atol=0.05, rtol=0)
    assert sorted(map(tuple, paired.tolist())) == sorted(map(tuple, x1.tolist()))  # same targets
    assert torch.equal(couple(x0, x1, 4, "independent"), x1)
    # groups of 3 cannot reach across the group boundary: the targets of group 0 stay there
    assert torch.equal(couple(x0, x1, 3, "ot")[:3].sort(0)[0], x1[:3].sort(0)[0])
    with pytest.raises(ValueError, match="coupling"):
        couple(x0, x1, 4, "sinkhorn")
