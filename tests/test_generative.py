"""scpert.generative and scpert.nn: schedules, parameterisations, DDIM, guidance, EMA, blocks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scpert.generative import (
    EMA,
    DDIMSampler,
    Guidance,
    cfg,
    conditional,
    convert,
    cosine,
    dual_knob,
    from_x0_eps,
    interaction_aware,
    linear_vp,
    make_schedule,
    mode,
    to_x0_eps,
)
from scpert.nn import FiLM, GDAttnBlock, TimestepEmbedder, sinusoidal_embedding

KINDS = ("eps", "v", "x0")


# ------------------------------------------------------------------------------ schedules
def test_linear_vp_matches_ddpm_betas():
    s = linear_vp(1000)
    assert s.num_timesteps == 1000
    assert s.betas[0].item() == pytest.approx(1e-4)
    assert s.betas[-1].item() == pytest.approx(0.02)
    assert s.alphas_cumprod[1].item() == pytest.approx((1 - 1e-4) * (1 - s.betas[1].item()))
    # DDPM's linear schedule leaves almost no signal at T: abar_T ~ 4.0e-5
    assert s.alphas_cumprod[-1].item() == pytest.approx(4.04e-5, rel=0.01)


def test_cosine_matches_improved_ddpm_formula():
    T, s_off = 1000, 0.008
    s = cosine(T, s=s_off)

    def f(t):
        return math.cos((t / T + s_off) / (1 + s_off) * math.pi / 2) ** 2

    for t in (0, 10, 500, 900):  # abar at index t is the level after t+1 noising steps
        assert s.alphas_cumprod[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert s.betas.max().item() <= 0.999
    assert bool((s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]).all())


def test_make_schedule_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown noise schedule 'sigmoid'"):
        make_schedule("sigmoid")


def test_add_noise_per_row_levels():
    s = linear_vp(100)
    x0 = torch.ones(2, 3)
    noise = torch.full((2, 3), 2.0)
    t = torch.tensor([0, 99])
    xt = s.add_noise(x0, noise, t)
    for row, ti in enumerate(t):
        a = s.alphas_cumprod[ti].item()
        assert xt[row, 0].item() == pytest.approx(math.sqrt(a) + 2 * math.sqrt(1 - a), rel=1e-6)


# ------------------------------------------------------------------------ parameterisation
def test_v_target_by_hand():
    abar = torch.tensor([0.64])  # a = 0.8, s = 0.6
    x0, eps = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, 3.0]])
    v = from_x0_eps(x0, eps, "v", abar)
    assert torch.allclose(v, torch.tensor([[0.8 * 0.5 - 0.6 * 1.0, 0.8 * 3.0 + 0.6 * 2.0]]))


@pytest.mark.parametrize("kind", KINDS)
def test_parameterisations_round_trip(kind):
    g = torch.Generator().manual_seed(0)
    s = cosine(1000)
    x0 = torch.randn(16, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(16, 5, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (16,), generator=g)
    abar = s.alphas_cumprod[t]
    x_t = s.add_noise(x0, eps, t)
    target = from_x0_eps(x0, eps, kind, abar)
    x0_back, eps_back = to_x0_eps(target, kind, x_t, abar)
    assert torch.allclose(x0_back, x0, atol=1e-8)
    assert torch.allclose(eps_back, eps, atol=1e-8)
    for other in KINDS:
        there = convert(target, kind, other, x_t, abar)
        assert torch.allclose(convert(there, other, kind, x_t, abar), target, atol=1e-8)


def test_unknown_parameterisation_is_rejected():
    with pytest.raises(ValueError, match="unknown prediction type 'score'"):
        to_x0_eps(torch.zeros(1, 1), "score", torch.zeros(1, 1), torch.tensor([0.5]))


# ------------------------------------------------------------------------------------ DDIM
def _oracle(x0: torch.Tensor, kind: str, schedule, seen_modes: list):
    """A denoiser that knows the clean sample: returns the exact target for every mode."""

    def denoise(x_t, t, modes):
        seen_modes.append(list(modes))
        abar = schedule.alphas_cumprod[t].to(x_t)
        _, eps = to_x0_eps(x0, "x0", x_t, abar)
        return torch.stack([from_x0_eps(x0, eps, kind, abar)] * len(modes))

    return denoise


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_oracle_recovers_x0(kind, eta):
    g = torch.Generator().manual_seed(1)
    schedule = linear_vp(1000)
    x0 = torch.randn(8, 4, generator=g, dtype=torch.float64)
    x_T = torch.randn(8, 4, generator=g, dtype=torch.float64)
    seen: list = []
    sampler = DDIMSampler(schedule, steps=25, eta=eta, prediction=kind)
    out = sampler.sample(_oracle(x0, kind, schedule, seen), x_T, dual_knob(1.0, 2.0), generator=g)
    assert torch.allclose(out, x0, atol=1e-8)
    assert len(seen) == 25  # one batched call per step
    assert seen[0] == [("drug", "pre"), ("drug",), ("pre",)]


def test_ddim_clips_the_predicted_clean_sample():
    schedule = linear_vp(1000)
    x0 = torch.tensor([[10.0, -1.0]], dtype=torch.float64)
    x_T = torch.randn(1, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = DDIMSampler(schedule, steps=10, clip_x0=5.0).sample(
        _oracle(x0, "eps", schedule, []), x_T, conditional(["c"])
    )
    assert torch.allclose(out, torch.tensor([[5.0, -1.0]], dtype=torch.float64), atol=1e-8)


def test_ddim_timesteps_span_the_schedule():
    sampler = DDIMSampler(linear_vp(1000), steps=5)
    assert sampler.timesteps() == [999, 749, 500, 250, 0]
    assert len(DDIMSampler(linear_vp(10), steps=10).timesteps()) == 10
    with pytest.raises(ValueError, match="steps"):
        DDIMSampler(linear_vp(10), steps=11)


def test_ddim_eta0_is_deterministic_and_sensitive_to_the_model():
    schedule = linear_vp(100)
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))

    def shrink(x, t, modes):  # a fixed eps-predictor: eps_hat = 0.5 x_t
        return torch.stack([0.5 * x] * len(modes))

    sampler = DDIMSampler(schedule, steps=10)
    a = sampler.sample(shrink, x_T, conditional(["c"]))
    b = sampler.sample(shrink, x_T, conditional(["c"]))
    assert torch.equal(a, b)
    assert not torch.allclose(a, x_T)


# -------------------------------------------------------------------------------- guidance
def _outputs(n_modes, g):
    return torch.randn(n_modes, 6, 3, generator=g)


def test_zero_guidance_equals_conditional_prediction():
    g = torch.Generator().manual_seed(3)
    out = _outputs(3, g)
    rule = dual_knob(0.0, 0.0)
    assert rule.modes[0] == mode("pre", "drug")
    assert torch.equal(rule.combine(out), out[0])
    out2 = _outputs(2, g)
    assert torch.equal(cfg(0.0, ["cell", "drug"]).combine(out2), out2[0])
    assert torch.equal(conditional(["x"]).combine(out2[:1]), out2[0])


def test_dual_knob_by_hand_with_per_sample_strengths():
    g = torch.Generator().manual_seed(4)
    out = _outputs(3, g)
    s_d = torch.linspace(0.0, 2.0, 6)
    got = dual_knob(1.0, s_d).combine(out)
    expected = (2.0 + s_d)[:, None] * out[0] - 1.0 * out[1] - s_d[:, None] * out[2]
    assert torch.allclose(got, expected, atol=1e-6)


def test_interaction_aware_cfg_is_a_weighted_mode_combination():
    g = torch.Generator().manual_seed(5)
    rule = interaction_aware(1.0, 1.5, 2.0)
    out = _outputs(4, g)
    by_mode = dict(zip(rule.modes, out))
    v0, vc, vd = by_mode[mode()], by_mode[mode("cell")], by_mode[mode("cell", "drug")]
    vd_only = by_mode[mode("drug")]
    expected = (
        v0 + 1.0 * (vc - v0) + 1.5 * (vd_only - v0) + 2.0 * (vd - vc - vd_only + v0)
    )  # StateXDiff eq. 13
    assert torch.allclose(rule.combine(out), expected, atol=1e-5)
    assert sum(rule.weights.values()) == pytest.approx(1.0)


def test_guidance_rejects_wrong_number_of_outputs():
    with pytest.raises(ValueError, match="expected 3 mode outputs"):
        dual_knob(1.0, 1.0).combine(torch.zeros(2, 1, 1))
    with pytest.raises(ValueError):
        Guidance({})


# ------------------------------------------------------------------------------------- EMA
def test_ema_by_hand():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.5, every=2)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)  # call 1: skipped (every=2)
    assert ema.shadow["weight"].item() == 1.0
    ema.update(model)  # call 2: 0.5 * 1 + 0.5 * 3
    assert ema.shadow["weight"].item() == 2.0
    target = nn.Linear(1, 1, bias=False)
    ema.copy_to(target)
    assert target.weight.item() == 2.0
    restored = EMA(target, decay=0.9)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.5 and restored.calls == 2


# -------------------------------------------------------------------------------------- nn
def test_sinusoidal_embedding_by_hand():
    emb = sinusoidal_embedding(torch.tensor([0.0, 1.0]), 4, max_period=100.0)
    # freqs = 100^(-k/2) for k = 0, 1 -> 1, 0.1
    expected = torch.tensor(
        [[1, 1, 0, 0], [math.cos(1), math.cos(0.1), math.sin(1), math.sin(0.1)]]
    )
    assert torch.allclose(emb, expected.float(), atol=1e-6)
    assert TimestepEmbedder(8, frequency_dim=6)(torch.tensor([3, 5])).shape == (2, 8)


def test_film_by_hand():
    film = FiLM(1, 2)
    with torch.no_grad():
        film.to_scale_shift.weight.copy_(torch.tensor([[1.0], [2.0], [0.0], [1.0]]))
        film.to_scale_shift.bias.zero_()
    out = film(torch.tensor([[3.0, 4.0]]), torch.tensor([[2.0]]))
    # gamma = (2, 4), beta = (0, 2)
    assert torch.allclose(out, torch.tensor([[6.0, 18.0]]))


def test_gd_attn_block_uses_the_condition():
    torch.manual_seed(0)
    block = GDAttnBlock(width=8, heads=2, cond_dim=5, tokens=4, cond_tokens=2).eval()
    tokens = torch.randn(3, 4, 8)
    c1, c2 = torch.randn(3, 5), torch.randn(3, 5)
    out = block(tokens, c1)
    assert out.shape == (3, 4, 8)
    assert not torch.allclose(out, block(tokens, c2))
    assert torch.allclose(out[1:2], block(tokens[1:2], c1[1:2]), atol=1e-6)  # rows independent
    with pytest.raises(ValueError, match="not divisible"):
        GDAttnBlock(width=6, heads=4, cond_dim=2, tokens=1)
