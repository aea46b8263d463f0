"""scpert.generative and scpert.nn: schedules, parameterisations, DDIM, guidance, EMA, blocks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scpert.generative import (
    EMA,
    STATEXDIFF_MODES,
    DDIMSampler,
    DDPMSampler,
    Guidance,
    ODESampler,
    bernoulli_modes,
    categorical_modes,
    cfg,
    clip_x0,
    conditional,
    convert,
    cosine,
    dual_knob,
    flow,
    from_x0_eps,
    interaction_aware,
    linear_vp,
    losses,
    make_schedule,
    mode,
    nonnegative,
    sample,
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


# -------------------------------------------------------------------------------- samplers
def _oracle(x0: torch.Tensor, kind: str, schedule, seen_modes: list):
    """A denoiser that knows the clean sample: returns the exact target for every mode."""

    def denoise(x_t, t, modes):
        seen_modes.append(list(modes))
        abar = schedule.alphas_cumprod[t].to(x_t)
        _, eps = to_x0_eps(x0, "x0", x_t, abar)
        return torch.stack([from_x0_eps(x0, eps, kind, abar)] * len(modes))

    return denoise


def _ddim(schedule, steps=50, **kw):
    return DDIMSampler(schedule, steps, **kw)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_oracle_recovers_x0(kind, eta):
    g = torch.Generator().manual_seed(1)
    schedule = linear_vp(1000)
    x0 = torch.randn(8, 4, generator=g, dtype=torch.float64)
    x_T = torch.randn(8, 4, generator=g, dtype=torch.float64)
    seen: list = []
    sampler = DDIMSampler(schedule, steps=25, eta=eta, prediction=kind)
    out = sample(sampler, _oracle(x0, kind, schedule, seen), x_T, dual_knob(1.0, 2.0), generator=g)
    assert torch.allclose(out, x0, atol=1e-8)
    assert len(seen) == 25  # one batched call per step
    assert seen[0] == [("drug", "pre"), ("drug",), ("pre",)]


def test_two_ddim_steps_with_a_linear_model_by_hand():
    """eps_hat = 0.5 x_t on a 3-step respaced grid of a 10-step schedule: the first two DDIM
    steps computed by hand from the schedule's abar values (catches a wrong next level)."""
    schedule = linear_vp(10, beta_start=0.1, beta_end=0.3)
    abar = schedule.alphas_cumprod.tolist()
    sampler = DDIMSampler(schedule, steps=3)
    assert sampler.timesteps() == [9, 4, 0]  # round(linspace(9, 0, 3)) = 9, 4.5 -> 4, 0
    x = torch.tensor([[1.0, -2.0]], dtype=torch.float64)

    def model(x_t, t):
        return 0.5 * x_t

    out1 = sampler.step(model, x, 0)
    a9, a4, a0 = abar[9], abar[4], abar[0]
    x0 = (x - math.sqrt(1 - a9) * 0.5 * x) / math.sqrt(a9)
    x4 = math.sqrt(a4) * x0 + math.sqrt(1 - a4) * 0.5 * x
    assert torch.allclose(out1.x0, x0, atol=1e-12) and torch.allclose(out1.x, x4, atol=1e-12)
    out2 = sampler.step(model, out1.x, 1)
    x0b = (x4 - math.sqrt(1 - a4) * 0.5 * x4) / math.sqrt(a4)
    x0_next = math.sqrt(a0) * x0b + math.sqrt(1 - a0) * 0.5 * x4
    assert torch.allclose(out2.x, x0_next, atol=1e-12)
    last = sampler.step(model, out2.x, 2)  # abar' = 1: the final iterate is the x0 prediction
    assert torch.allclose(last.x, last.x0, atol=1e-12)


def _gaussian_eps(mu: float, s: float, schedule):
    """E[eps | x_t] for x0 ~ N(mu, s^2 I): x_t ~ N(a mu, a^2 s^2 + 1 - a^2) and
    E[eps | x_t] = sqrt(1 - abar) (x_t - a mu) / (a^2 s^2 + 1 - a^2)."""

    def denoise(x_t, t, modes):
        abar = schedule.alphas_cumprod[t].to(x_t)[:, None]
        a = abar.sqrt()
        var = abar * s**2 + 1 - abar
        return torch.stack([(1 - abar).sqrt() * (x_t - a * mu) / var] * len(modes))

    return denoise


def _ddim_gaussian_closed_form(x_T, mu, s, abars):
    """DDIM with the exact posterior-mean eps on Gaussian data keeps the standardised value
    u = (x - a mu) / sqrt(v) up to a factor per step: u' = u (a' a s^2 + s' s_t) / sqrt(v v')."""
    a, v = math.sqrt(abars[0]), abars[0] * s**2 + 1 - abars[0]
    u = (x_T - a * mu) / math.sqrt(v)
    for prev, nxt in zip(abars[:-1], abars[1:]):
        a_t, s_t = math.sqrt(prev), math.sqrt(1 - prev)
        a_n, s_n = math.sqrt(nxt), math.sqrt(1 - nxt)
        v_t, v_n = prev * s**2 + 1 - prev, nxt * s**2 + 1 - nxt
        u = u * (a_n * a_t * s**2 + s_n * s_t) / math.sqrt(v_t * v_n)
    return mu + s * u  # abar = 1 at the end: v = s^2


@pytest.mark.parametrize("steps", [4, 25])
def test_ddim_on_gaussian_data_matches_the_closed_form(steps):
    mu, s = 1.5, 0.3
    schedule = linear_vp(1000)
    x_T = torch.randn(64, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    sampler = DDIMSampler(schedule, steps=steps)
    out = sample(sampler, _gaussian_eps(mu, s, schedule), x_T, conditional(["c"]))
    abars = [schedule.alphas_cumprod[t].item() for t in sampler.timesteps()] + [1.0]
    assert torch.allclose(out, _ddim_gaussian_closed_form(x_T, mu, s, abars), atol=1e-9)


def test_ddim_on_gaussian_data_approaches_the_pf_ode_map():
    """The PF-ODE keeps u exactly, so x0 = mu + s u_T; DDIM's error shrinks as steps grow."""
    mu, s = 1.5, 0.3
    schedule = linear_vp(1000)
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    abar_T = schedule.alphas_cumprod[-1].item()
    exact = mu + s * (x_T - math.sqrt(abar_T) * mu) / math.sqrt(abar_T * s**2 + 1 - abar_T)
    errors = [
        (
            sample(
                DDIMSampler(schedule, k), _gaussian_eps(mu, s, schedule), x_T, conditional(["c"])
            )
            - exact
        )
        .abs()
        .max()
        .item()
        for k in (10, 50, 250)
    ]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02
    out = sample(
        DDIMSampler(schedule, 250), _gaussian_eps(mu, s, schedule), x_T, conditional(["c"])
    )
    assert out.mean().item() == pytest.approx(mu, abs=0.05)
    assert out.std().item() == pytest.approx(s, abs=0.03)


def test_ddpm_posterior_step_by_hand():
    schedule = linear_vp(10, beta_start=0.1, beta_end=0.3)
    abar = schedule.alphas_cumprod.tolist()
    x = torch.tensor([[0.7, -0.4]], dtype=torch.float64)
    x0 = torch.tensor([[0.2, 0.1]], dtype=torch.float64)
    for variance in ("small", "large"):
        sampler = DDPMSampler(schedule, prediction="x0", variance=variance)
        noise = torch.randn(1, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        out = sampler.step(lambda x_t, t: x0, x, 0, generator=torch.Generator().manual_seed(0))
        a, a_prev = abar[9], abar[8]
        beta = 1 - a / a_prev
        mean = (
            math.sqrt(a_prev) * beta / (1 - a) * x0
            + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a) * x
        )
        var = beta * (1 - a_prev) / (1 - a) if variance == "small" else beta
        assert torch.allclose(out.x, mean + math.sqrt(var) * noise, atol=1e-12)
    last = DDPMSampler(schedule, prediction="x0").step(lambda x_t, t: x0, x, 9)
    assert torch.allclose(last.x, x0, atol=1e-12)  # no noise, abar' = 1


@pytest.mark.parametrize("kind", KINDS)
def test_ddpm_with_oracle_recovers_x0(kind):
    g = torch.Generator().manual_seed(6)
    schedule = linear_vp(100)
    x0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    x_T = torch.randn(5, 3, generator=g, dtype=torch.float64)
    out = sample(
        DDPMSampler(schedule, prediction=kind),
        _oracle(x0, kind, schedule, []),
        x_T,
        conditional(["c"]),
        generator=g,
    )
    assert torch.allclose(out, x0, atol=1e-8)


def test_timestep_spacings():
    assert DDIMSampler(linear_vp(1000), steps=5).timesteps() == [999, 749, 500, 250, 0]
    truncated = DDIMSampler(linear_vp(1000), steps=100, spacing="truncated")
    assert truncated.timesteps() == list(range(99, -1, -1))  # PerturbDiff's code
    assert len(DDIMSampler(linear_vp(10), steps=10).timesteps()) == 10
    with pytest.raises(ValueError, match="steps"):
        DDIMSampler(linear_vp(10), steps=11)
    with pytest.raises(ValueError, match="spacing"):
        DDIMSampler(linear_vp(10), steps=2, spacing="leading")


def test_ddim_clips_the_predicted_clean_sample():
    schedule = linear_vp(1000)
    x0 = torch.tensor([[10.0, -1.0]], dtype=torch.float64)
    x_T = torch.randn(1, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = sample(
        DDIMSampler(schedule, steps=10),
        _oracle(x0, "eps", schedule, []),
        x_T,
        conditional(["c"]),
        x0_transform=clip_x0(5.0),
    )
    assert torch.allclose(out, torch.tensor([[5.0, -1.0]], dtype=torch.float64), atol=1e-8)
    out = sample(
        DDIMSampler(schedule, steps=10),
        _oracle(-x0, "eps", schedule, []),
        x_T,
        conditional(["c"]),
        x0_transform=nonnegative,
    )
    assert torch.allclose(out, torch.tensor([[0.0, 1.0]], dtype=torch.float64), atol=1e-8)


def test_ddim_eta0_is_deterministic_and_sensitive_to_the_model():
    schedule = linear_vp(100)
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))

    def shrink(x, t, modes):  # a fixed eps-predictor: eps_hat = 0.5 x_t
        return torch.stack([0.5 * x] * len(modes))

    sampler = DDIMSampler(schedule, steps=10)
    a = sample(sampler, shrink, x_T, conditional(["c"]))
    b = sample(sampler, shrink, x_T, conditional(["c"]))
    assert torch.equal(a, b)
    assert not torch.allclose(a, x_T)


def test_self_conditioning_feeds_back_the_previous_x0_prediction():
    schedule = linear_vp(100)
    x_T = torch.randn(2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    seen, predicted = [], []

    def denoise(x_t, t, modes, self_cond):
        seen.append(None if self_cond is None else self_cond.clone())
        return torch.stack(
            [0.1 * x_t + (0 if self_cond is None else 0.01 * self_cond)] * len(modes)
        )

    sample(
        DDIMSampler(schedule, 4),
        denoise,
        x_T,
        conditional(["c"]),
        self_conditioning=True,
        callback=lambda i, out: predicted.append(out.x0.clone()),
    )
    assert seen[0] is None and len(seen) == 4
    for fed, previous in zip(seen[1:], predicted[:-1]):
        assert torch.equal(fed, previous)


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_ode_solvers_converge_at_their_order(method, order):
    """dx/dt = a x from x(0) = x0: x(1) = x0 exp(a); the error shrinks ~2^order per doubling."""
    a = -1.3
    x0 = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    exact = x0 * math.exp(a)

    def velocity(x_t, t, modes):
        assert t.dtype == torch.float64 and t.min() >= 0 and t.max() <= 1
        return torch.stack([a * x_t] * len(modes))

    errors = [
        (sample(ODESampler(k, method), velocity, x0, conditional(["c"])) - exact).abs().max().item()
        for k in (4, 8, 16)
    ]
    for coarse, fine in zip(errors, errors[1:]):
        assert 2**order * 0.8 < coarse / fine < 2**order * 1.25, errors


def test_ode_sampler_endpoint_and_final_transform():
    def velocity(x_t, t, modes):  # the exact field of the linear path towards x1 = -1
        return torch.stack([(-1.0 - x_t) / (1 - t[:, None]).clamp(min=1e-9)] * len(modes))

    x0 = torch.tensor([[2.0]], dtype=torch.float64)
    steps = []
    out = sample(
        ODESampler(5, "euler"),
        velocity,
        x0,
        conditional(["c"]),
        x0_transform=nonnegative,
        callback=lambda i, o: steps.append(o.x0),
    )
    assert out.item() == 0.0  # -1 clamped at 0 at the end
    assert all(e.item() == 0.0 for e in steps)  # each step's endpoint x + (1 - t) v = -1 -> 0


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


# ---------------------------------------------------------------------------- flow matching
def test_flow_matching_path_velocity_and_endpoint():
    g = torch.Generator().manual_seed(7)
    x0, x1 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    t = flow.sample_time(6, g)
    assert ((t >= 0) & (t < 1)).all()
    x_t = flow.path_sample(x0, x1, t)
    assert torch.allclose(x_t, (1 - t[:, None]) * x0 + t[:, None] * x1)
    u = flow.target_velocity(x0, x1)
    # with the exact velocity the one-step endpoint is the data point, from any t
    assert torch.allclose(flow.endpoint(x_t, t, u), x1, atol=1e-6)
    ln = flow.sample_time(20000, torch.Generator().manual_seed(0), "logit_normal")
    assert ln.median().item() == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match="time distribution"):
        flow.sample_time(2, distribution="beta")


def test_flow_matching_euler_transports_noise_to_a_point_mass():
    """The marginal velocity of a point mass at c on the linear path is (c - x_t) / (1 - t);
    Euler from noise lands on c."""
    c = torch.tensor([[3.0, -1.0]], dtype=torch.float64)

    def velocity(x_t, t, modes):
        return torch.stack([(c - x_t) / (1 - t[:, None])] * len(modes))

    noise = torch.randn(10, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    out = sample(ODESampler(7, "euler"), velocity, noise, conditional(["c"]))
    assert torch.allclose(out, c.expand_as(out), atol=1e-9)


def test_time_embedding_scale():
    emb = TimestepEmbedder(8, frequency_dim=6, time_scale=1000.0)
    ref = TimestepEmbedder(8, frequency_dim=6)
    ref.load_state_dict(emb.state_dict())
    t = torch.tensor([0.25, 0.5])
    assert torch.allclose(emb(t), ref(t * 1000))


# ---------------------------------------------------------------------------------- losses
def _pairwise(x, y):
    return [[math.dist(a, b) for b in y.tolist()] for a in x.tolist()]


def test_energy_distance_against_the_explicit_formula():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.randn(5, 3, generator=g, dtype=torch.float64) + 0.7
    mean = lambda m: sum(map(sum, m)) / (len(m) * len(m[0]))  # noqa: E731
    expected = 2 * mean(_pairwise(x, y)) - mean(_pairwise(x, x)) - mean(_pairwise(y, y))
    assert losses.energy_distance(x, y).item() == pytest.approx(expected, rel=1e-10)
    assert losses.energy_distance(x, y, scale=0.5).item() == pytest.approx(expected / 2)
    assert losses.energy_distance(x, x).item() == pytest.approx(0.0, abs=1e-7)
    # differentiable even with coincident points (a zero distance has a zero subgradient)
    y = torch.cat([x[:2], y]).requires_grad_(True)
    losses.energy_distance(x, y).backward()
    assert torch.isfinite(y.grad).all()


def test_energy_distance_batched_and_weighted_against_the_explicit_formula():
    """Leading dimensions are set pairs; weights define the empirical measures (a weight-0 cell,
    e.g. a padded slot of a cell set, takes no part)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    y = torch.randn(3, 5, 4, generator=g, dtype=torch.float64) + 0.5
    wx = torch.tensor([[1.0] * 6, [1, 1, 1, 1, 0, 0], [2, 1, 1, 1, 1, 0]], dtype=torch.float64)
    wy = torch.tensor([[1.0] * 5, [1, 1, 1, 0, 0], [1.0] * 5], dtype=torch.float64)
    got = losses.energy_distance(x, y, x_weights=wx, y_weights=wy)
    assert got.shape == (3,)
    for b in range(3):
        px, py = (wx[b] / wx[b].sum()).tolist(), (wy[b] / wy[b].sum()).tolist()

        def expect(a, pa, c, pc):
            d = _pairwise(a, c)
            return sum(pa[i] * pc[j] * d[i][j] for i in range(len(pa)) for j in range(len(pc)))

        want = 2 * expect(x[b], px, y[b], py) - expect(x[b], px, x[b], px)
        want -= expect(y[b], py, y[b], py)
        assert got[b].item() == pytest.approx(want, rel=1e-10)
    # unit weights are the unweighted V-statistic; zero weights drop the rows
    assert got[0].item() == pytest.approx(losses.energy_distance(x[0], y[0]).item(), rel=1e-8)
    assert got[1].item() == pytest.approx(
        losses.energy_distance(x[1, :4], y[1, :3]).item(), rel=1e-8
    )


def test_mmd_against_the_explicit_unbiased_formula():
    g = torch.Generator().manual_seed(10)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.randn(5, 4, generator=g, dtype=torch.float64) * 1.5 + 0.3
    d2 = lambda a, b: sum((p - q) ** 2 for p, q in zip(a, b))  # noqa: E731
    xs, ys = x.tolist(), y.tolist()
    off = sorted(d2(a, b) for i, a in enumerate(xs) for j, b in enumerate(xs) if i != j)
    m = off[len(off) // 2 - 1]  # 30 values: torch's median is the lower middle one
    assert losses.median_bandwidth(x).item() == pytest.approx(m)

    def k(a, b):  # k_mix with sigma_l^2 = s_l m (scDFM App. A.2)
        return sum(math.exp(-d2(a, b) / (2 * s * m)) for s in (0.5, 1, 2, 4)) / 4

    n, q = len(xs), len(ys)
    kxx = sum(k(a, b) for i, a in enumerate(xs) for j, b in enumerate(xs) if i != j) / (n * (n - 1))
    kyy = sum(k(a, b) for i, a in enumerate(ys) for j, b in enumerate(ys) if i != j) / (q * (q - 1))
    kxy = sum(k(a, b) for a in xs for b in ys) / (n * q)
    expected = kxx + kyy - 2 * kxy
    assert losses.mmd2_unbiased(x, y).item() == pytest.approx(expected, rel=1e-10)
    # unbiased: two samples of one distribution give values around 0, some negative
    same = [
        losses.mmd2_unbiased(torch.randn(20, 3, generator=g), torch.randn(20, 3, generator=g))
        for _ in range(30)
    ]
    assert min(same) < 0 < max(same) and abs(float(torch.stack(same).mean())) < 0.02
    with pytest.raises(ValueError, match="2 samples"):
        losses.mmd2_unbiased(x[:1], y)


def test_cosine_margin_triplet_by_hand():
    target = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    predicted = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # cos: 0.7071, 1
    mismatched = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # cos: 1, 0
    # rows: max(0, 1 - 0.7071 + 0.1) = 0.3929; max(0, 0 - 1 + 0.1) = 0
    got = losses.cosine_margin_triplet(predicted, mismatched, target, margin=0.1)
    assert got.item() == pytest.approx((1 - 1 / math.sqrt(2) + 0.1) / 2, rel=1e-6)
    weighted = losses.cosine_margin_triplet(
        predicted, mismatched, target, 0.1, weight=torch.tensor([0.5, 1.0])
    )
    assert weighted.item() == pytest.approx(0.5 * (1 - 1 / math.sqrt(2) + 0.1) / 2, rel=1e-6)


# ------------------------------------------------------------------------- condition modes
def _binomial_bounds(n: int, p: float, z: float = 4.5) -> tuple[float, float]:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - z * sd, n * p + z * sd


def test_bernoulli_modes_have_the_scppdm_frequencies():
    n = 40000
    sample_ = bernoulli_modes(n, {"pre": 0.1, "drug": 0.1}, torch.Generator().manual_seed(11))
    counts = {m: 0 for m in (mode("drug", "pre"), mode("drug"), mode("pre"), mode())}
    for m in sample_.modes():
        counts[m] += 1
    expected = {mode("drug", "pre"): 0.81, mode("drug"): 0.09, mode("pre"): 0.09, mode(): 0.01}
    for m, p in expected.items():
        lo, hi = _binomial_bounds(n, p)
        assert lo < counts[m] < hi, (m, counts[m])
    # independence: keeping pre says nothing about keeping drug
    keep_pre, keep_drug = sample_.keep["pre"], sample_.keep["drug"]
    lo, hi = _binomial_bounds(int(keep_pre.sum()), 0.9)
    assert lo < int((keep_pre & keep_drug).sum()) < hi
    with pytest.raises(ValueError, match="drop probability"):
        bernoulli_modes(3, {"pre": 1.5})


def test_categorical_modes_have_the_statexdiff_frequencies():
    n = 40000
    sample_ = categorical_modes(n, STATEXDIFF_MODES, generator=torch.Generator().manual_seed(12))
    modes = sample_.modes()
    for m, p in STATEXDIFF_MODES.items():
        lo, hi = _binomial_bounds(n, p)
        assert lo < sum(x == m for x in modes) < hi, m
    assert set(sample_.keep) == {"cell", "drug"}
    with pytest.raises(ValueError, match="sum to 1"):
        categorical_modes(3, {mode("a"): 0.5})
