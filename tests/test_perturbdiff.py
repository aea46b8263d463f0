"""PerturbDiff (arXiv:2602.19685): presets, the MM-DiT blocks, the set loss, covariates, marginal
pretraining and its transfer. The method contract (fit/predict/save/load through the workflow's
seams, for ``perturbdiff`` and ``perturbdiff_ft``) is ``tests/test_method_contract.py``."""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from scpert.data import pairing
from scpert.methods import get_method, get_spec
from scpert.methods.perturbdiff import ARCHITECTURE, PAPER, TINY, required_priors

get_method("perturbdiff")  # imports the package's torch modules

from scpert.methods.perturbdiff.covariates import Vocabularies  # noqa: E402
from scpert.methods.perturbdiff.method import PerturbDiff, build_network  # noqa: E402
from scpert.methods.perturbdiff.model import MMDiTBlock, PerturbDiffNet  # noqa: E402
from scpert.methods.perturbdiff.train import (  # noqa: E402
    check_architecture,
    kept_rows,
    set_loss,
    transfer,
)


# ------------------------------------------------------------------------------------ presets
def test_paper_preset_is_the_papers_model():
    """App. B.2, B.3, C.1 and the public code's sizes (REFERENCE_CODE: cross_dit)."""
    expected = {
        "set_size": 256,
        "width": 512,
        "depth": 8,
        "heads": 8,
        "mlp_ratio": 4.0,
        "block": "sequential",
        "head": "relu",
        "input_scale": 10.0,
        "num_timesteps": 1000,
        "beta_start": 1e-4,
        "beta_end": 0.02,
        "lambda_mse": 1.0,
        "ed_weight": 1.0,
        "p_self_cond": 0.5,
        "p_drop": 0.5,
        "guidance_scale": 1.0,
        "sampler": "ddim",
        "sampler_steps": 100,
        "eta": 0.0,
        "sampler_spacing": "respaced",
        "lr": 2e-4,
        "betas": [0.9, 0.98],
        "weight_decay": 0.01,
        "lr_schedule": "cosine",
        "warmup_steps": 200,
        "lr_floor": 0.1,
        "grad_clip": 1.0,
        "ema_decay": 0.99,
        "ema_every": 10,
        "steps": 20_000,
        "val_every": 2_000,
        "describe_n_genes": 2000,
        "pretrain_lr": 2e-4,
        "pretrain_steps": 0,
        "init": "scratch",
    }
    assert {k: PAPER[k] for k in expected} == expected
    assert set(TINY) == set(PAPER)
    assert get_spec("perturbdiff").presets["paper"] == PAPER


def test_tiny_departs_from_the_paper_only_in_sizes_and_the_measured_departures():
    """Tiny shrinks the model and its schedule; every other difference is one measured in
    docs/decisions.md ("PerturbDiff tiny preset", "PerturbDiff on cell_ood")."""
    sizes = {
        "set_size", "batch_sets", "width", "depth", "heads", "steps", "warmup_steps",
        "val_every", "val_sets", "val_sampler_steps", "sampler_steps", "checkpoint_every",
        "pretrain_steps", "describe_n_genes", "describe_n_drugs", "describe_n_cell_lines",
        "describe_n_plates",
    }  # fmt: skip
    measured = {
        "ema_decay": 0.98,
        "ema_every": 1,
        "mse_reduction": "element_mean",
        "guidance_scale": 0.0,
        "lr": 4e-3,
        "pretrain_lr": 2e-3,
        "drug_features": "morgan_mdt",  # the MDT prior is on in the default config
        "mixed_precision": "auto",
        "output": "control_residual",
        "control_sets": False,
    }
    changed = {k for k in TINY if TINY[k] != PAPER[k]}
    assert changed - sizes == set(measured)
    assert {k: TINY[k] for k in measured} == measured
    assert TINY["num_timesteps"] == 1000 and TINY["p_drop"] == 0.5 and TINY["block"] == "sequential"


def test_paper_parameter_count_is_the_codes_size_and_counts_by_hand():
    """~104 M in the public code at G = 2,000 (App. B.3; REFERENCE_CODE); one MM-DiT block by
    hand: two AdaLN-Zero (d -> 6d), joint qkv (2d -> 6d) with per-head q/k RMSNorm, output
    projection (2d -> 2d), two MLPs d -> 4d -> d."""
    counts = PerturbDiff.describe("paper")
    d, G, head_dim = 512, 2000, 1024 // 8
    block = (
        2 * (d * 6 * d + 6 * d)
        + (2 * d * 6 * d + 6 * d)
        + 2 * head_dim
        + (2 * d * 2 * d + 2 * d)
        + 2 * (d * 4 * d + 4 * d + 4 * d * d + d)
    )
    assert counts["MM-DiT blocks"] == 8 * block
    assert counts["input projections"] == (2 * G * d + d) + (G * d + d)
    assert counts["final layer"] == (d * 2 * d + 2 * d) + (d * G + G)
    assert 95e6 < sum(counts.values()) < 110e6


def test_priors_follow_the_parameters():
    assert required_priors({**PAPER}) == ()
    assert required_priors({**PAPER, "drug_features": "morgan_mdt"}) == ("mdt",)
    assert required_priors({**PAPER, "init": "pretrained"}) == ("perturbdiff_marginal",)


# ------------------------------------------------------------------------------------ network
def _small(**over) -> dict:
    return {**TINY, "width": 16, "depth": 2, "heads": 2, "drug_features": "morgan", **over}


def _vocab() -> Vocabularies:
    return Vocabularies(["A", "B"], ["p1", "p2"], ["control", "d1"], [0.0, 1.0], ["d1", "control"])


def _net(p: dict, n_genes: int = 6) -> PerturbDiffNet:
    torch.manual_seed(0)
    fps = torch.tensor([[1.0, 0.0, 1.0], [0.5, 0.0, 0.5]])
    return build_network({**p, "fingerprint_bits": 3}, n_genes, _vocab(), fps, None)


def _cov(n: int) -> dict:
    keys = pd.DataFrame({"cell_line": ["A"] * n, "drug": ["d1"] * n, "dose": ["1"] * n})
    return _vocab().encode(keys, plate=["p1"] * n)


def _randomise(module: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for q in module.parameters():
            q.copy_(torch.randn(q.shape, generator=gen) * 0.3)


def test_mmdit_block_starts_as_the_identity_and_joins_the_streams():
    torch.manual_seed(0)
    block = MMDiTBlock(8, 2, 4.0)
    h_p, h_c, s = torch.randn(3, 5, 8), torch.randn(3, 5, 8), torch.randn(3, 8)
    out_p, out_c = block(h_p, h_c, s)  # AdaLN-Zero: every gate 0 at initialisation
    assert torch.equal(out_p, h_p) and torch.equal(out_c, h_c)
    _randomise(block)
    out_p, _ = block(h_p, h_c, s)
    out_p2, _ = block(h_p, torch.randn(3, 5, 8), s)
    assert not torch.allclose(out_p, out_p2)  # joint attention: the control stream reaches pert
    parallel = MMDiTBlock(8, 2, 4.0, parallel=True)
    parallel.load_state_dict(block.state_dict())
    assert not torch.allclose(parallel(h_p, h_c, s)[0], out_p)


def test_sequential_block_follows_eqs_39_to_43():
    torch.manual_seed(0)
    block = MMDiTBlock(8, 2, 4.0)
    _randomise(block)
    h_p, h_c, s = torch.randn(2, 4, 8), torch.randn(2, 4, 8), torch.randn(2, 8)
    ln = torch.nn.functional.layer_norm
    bp_a, gp_a, gpa, bp_m, gp_m, gpm = block.ada_pert(s)
    bc_a, gc_a, gca, bc_m, gc_m, gcm = block.ada_ctrl(s)

    def mod(h, b, g):
        return ln(h, (8,), eps=1e-6) * (1 + g[:, None]) + b[:, None]

    u = torch.cat([mod(h_p, bp_a, gp_a), mod(h_c, bc_a, gc_a)], -1)
    d_p, d_c = block.attn(u).split(8, -1)
    p1 = h_p + gpa[:, None] * d_p
    c1 = h_c + gca[:, None] * d_c
    p2 = p1 + gpm[:, None] * block.mlp_pert(mod(p1, bp_m, gp_m))
    c2 = c1 + gcm[:, None] * block.mlp_ctrl(mod(c1, bc_m, gc_m))
    out_p, out_c = block(h_p, h_c, s)
    torch.testing.assert_close(out_p, p2)
    torch.testing.assert_close(out_c, c2)


def test_head_is_non_negative_and_dropped_metadata_leave_only_the_control_set():
    net = _net(_small())
    _randomise(net)
    x, ctrl, t = torch.randn(2, 4, 6), torch.rand(2, 4, 6), torch.tensor([10, 500])
    cov = _cov(2)
    other = {**cov, "cell_line": torch.tensor([2, 2]), "drug": torch.tensor([[0], [0]])}
    keep, drop = torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool)
    out = net(x, t, ctrl, cov, keep)
    assert (out >= 0).all()
    assert not torch.allclose(out, net(x, t, ctrl, other, keep))
    torch.testing.assert_close(net(x, t, ctrl, cov, drop), net(x, t, ctrl, other, drop))
    assert not torch.allclose(net(x, t, ctrl, cov, drop), net(x, t, torch.rand(2, 4, 6), cov, drop))


def test_control_residual_output_adds_each_tokens_control_cell_before_the_head():
    """``output: control_residual``: relu(B_ctrl,j + pre-activation); ``absolute``: relu of the
    pre-activation, same weights."""
    absolute = _net(_small(output="absolute"))
    _randomise(absolute)
    residual = _net(_small(output="control_residual"))
    residual.load_state_dict(absolute.state_dict())
    x, ctrl, t = torch.randn(2, 4, 6), torch.rand(2, 4, 6) * 3, torch.tensor([10, 500])
    cov, keep = _cov(2), torch.ones(2, dtype=torch.bool)
    pre = {}
    absolute.final.linear.register_forward_hook(lambda m, i, o: pre.setdefault("out", o))
    assert (absolute(x, t, ctrl, cov, keep) == torch.relu(pre["out"])).all()
    torch.testing.assert_close(residual(x, t, ctrl, cov, keep), torch.relu(pre["out"] + ctrl))
    assert PAPER["output"] == "absolute"


# ------------------------------------------------------------------------------------ losses
class _Fixed(torch.nn.Module):
    """A 'network' returning a fixed prediction (to check the loss arithmetic)."""

    def __init__(self, pred):
        super().__init__()
        self.pred = pred

    def forward(self, *args):
        return self.pred


def _energy(x: np.ndarray, y: np.ndarray) -> float:
    """Eq. 32 by explicit double sums: 2 E|X - Y| - E|X - X'| - E|Y - Y'|."""

    def mean_dist(a, b):
        return np.mean([np.linalg.norm(u - v) for u in a for v in b])

    return 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)


def test_set_loss_is_energy_distance_plus_mse_over_unpadded_cells():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 4, 3, generator=gen, dtype=torch.float64)
    pred = torch.rand(2, 4, 3, generator=gen, dtype=torch.float64)
    weight = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.float64)  # set 2: 2 padded
    p = {**TINY, "lambda_mse": 0.7, "ed_weight": 1.0, "mse_reduction": "cell_sum"}
    total, terms = set_loss(_Fixed(pred), p, x0, x0, None, None, None, None, weight, False)
    a, b = x0.numpy(), pred.numpy()
    ed = (_energy(a[0], b[0]) + _energy(a[1, :2], b[1, :2])) / 2
    sq = ((b - a) ** 2).sum(-1)
    mse = (sq[0].sum() + sq[1, :2].sum()) / 6  # (1/m) sum_j ||x_j - x^_j||^2 over real cells
    assert terms["ed"].item() == pytest.approx(ed, rel=1e-9)
    assert terms["mse"].item() == pytest.approx(mse, rel=1e-9)
    assert total.item() == pytest.approx(ed + 0.7 * mse, rel=1e-9)
    half = set_loss(
        _Fixed(pred), {**p, "ed_weight": 0.5}, x0, x0, None, None, None, None, weight, False
    )
    assert half[0].item() == pytest.approx(0.5 * ed + 0.7 * mse, rel=1e-9)


# ------------------------------------------------------------------------------------ data
def test_vocabulary_encodes_unseen_values_as_row_zero_and_doses_to_the_nearest():
    vocab = Vocabularies(
        ["A"], ["p1"], ["control", "d1"], [0.0, 1.0, 10.0], ["d1", "d2", "control"]
    )
    keys = pd.DataFrame({"cell_line": ["A", "Z"], "drug": ["d1", "d2+d1"], "dose": ["1.2", "8+0"]})
    cov = vocab.encode(keys, plate=["p1", "p9"])
    assert cov["cell_line"].tolist() == [1, 0]
    assert cov["plate"].tolist() == [1, 0]
    assert cov["drug"].tolist() == [[2, 0], [0, 2]]  # d2 unseen: identity row 0
    assert cov["feature"].tolist() == [[0, -1], [1, 0]]  # but its structure row exists
    assert cov["dose"].tolist() == [[2, 0], [3, 1]]  # 1.2 -> 1, 8 -> 10, 0 -> 0
    assert cov["slot"].tolist() == [[True, False], [True, True]]


def test_kept_rows_keep_a_share_of_each_condition_and_the_controls():
    obs = pd.DataFrame(
        {
            "drug": ["control"] * 3 + ["a"] * 40 + ["b"] * 10,
            "condition": ["c|control|0"] * 3 + ["c|a|1"] * 40 + ["c|b|1"] * 10,
        }
    )
    p = {**TINY, "perturbed_fraction": 0.05, "control_sets": True}
    rows = kept_rows(obs, "control", p, seed=0)
    drugs = obs["drug"].to_numpy()[rows]
    assert (drugs == "control").sum() == 3
    assert (drugs == "a").sum() == math.ceil(0.05 * 40) and (drugs == "b").sum() == 1
    assert np.array_equal(rows, kept_rows(obs, "control", p, seed=0))
    full = kept_rows(obs, "control", {**p, "perturbed_fraction": 1.0, "control_sets": False}, 0)
    assert np.array_equal(full, np.arange(3, 53))


def test_cell_sets_of_chosen_rows():
    obs = pd.DataFrame(
        {
            "cell_line": ["A"] * 6,
            "drug": ["control"] * 4 + ["d"] * 2,
            "dose": ["0"] * 4 + ["1"] * 2,
            "plate": ["p"] * 6,
        }
    )
    sets = pairing.CellSets(obs, "control", 3, ("cell_line", "plate"), rows=np.arange(4))
    assert len(sets) == 1 and sorted(sets.members[0]) == [0, 1, 2, 3]
    both = pairing.CellSets(obs, "control", 3, rows=np.arange(6))
    assert both.keys["drug"].tolist() == ["control", "d"]


# ------------------------------------------------------------------------ pretraining transfer
def test_transfer_maps_embedding_rows_by_name_and_copies_the_rest():
    p = _small()
    prior_vocab = Vocabularies(["B", "X"], ["p2"], ["control"], [0.0], ["d1", "control"])
    fps = torch.tensor([[1.0, 0.0, 1.0], [0.5, 0.0, 0.5]])
    torch.manual_seed(5)
    prior = build_network({**p, "fingerprint_bits": 3}, 6, prior_vocab, fps, None)
    _randomise(prior)
    net = _net(p)
    copied = transfer(net, prior.state_dict(), prior_vocab, _vocab(), reinit_io=False)
    lines_new, lines_old = net.covariates.cell_line.weight, prior.covariates.cell_line.weight
    torch.testing.assert_close(lines_new[2], lines_old[1])  # "B": row 2 here, row 1 there
    torch.testing.assert_close(lines_new[0], lines_old[0])  # unseen row
    torch.testing.assert_close(net.covariates.drug.weight[1], prior.covariates.drug.weight[1])
    torch.testing.assert_close(net.blocks[1].attn.qkv.weight, prior.blocks[1].attn.qkv.weight)
    torch.testing.assert_close(net.input_pert.weight, prior.input_pert.weight)
    assert copied["table rows"] == 1 + 1 + 1 + 1  # B, p2, control, dose 0
    fresh = _net(p)
    before = fresh.input_pert.weight.clone()
    transfer(fresh, prior.state_dict(), prior_vocab, _vocab(), reinit_io=True)
    torch.testing.assert_close(fresh.input_pert.weight, before)


def test_architecture_mismatch_is_one_clear_error():
    check_architecture(PAPER, dict(PAPER), "prior/model.pt", "methods.perturbdiff_ft")
    assert "width" in ARCHITECTURE
    with pytest.raises(Exception, match=r"prior/model.pt: .*width = 512.*perturbdiff_pretrain"):
        check_architecture(PAPER, {**PAPER, "width": 64}, "prior/model.pt", "methods.x")


def test_atlas_cells_join_pretraining_in_the_splits_genes(tmp_path):
    from scpert.steps.pretrain import _atlas

    atlas = ad.AnnData(
        X=np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]], np.float32),
        obs=pd.DataFrame({"cell_line": ["T", "T"], "plate": ["b1", "b2"]}, index=["c1", "c2"]),
        var=pd.DataFrame(index=["g1", "g2", "g3"]),
    )
    path = tmp_path / "atlas.h5ad"
    atlas.write_h5ad(path)
    X, obs = _atlas(path, ["g3", "gx", "g1"], "control")
    assert X.toarray().tolist() == [[3.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    assert obs["plate"].tolist() == ["atlas:b1", "atlas:b2"]
    assert set(obs["drug"]) == {"control"}
    with pytest.raises(Exception, match="fewer than half"):
        _atlas(path, ["g1", "x1", "x2", "x3"], "control")
