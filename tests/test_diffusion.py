"""Closed-form checks of schedules, parameterisations and DDIM (two-phase DAE paper §3, supp. §9)."""
import itertools
import math

import pytest
import torch

from daebench.diffusion import parameterization as param
from daebench.diffusion.samplers import sample_ddim, sample_ddim_inversion, time_grid
from daebench.diffusion.schedules import (
    SCHEDULES,
    cosine,
    get_schedule,
    inverted,
    linear_beta,
    linear_beta_alpha_bar,
    shifted_cosine,
    sigma_from_alpha,
)

T = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)


@pytest.mark.parametrize("S", [0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
def test_shifted_cosine_matches_paper_formula(S):
    t = T[1:-1]  # the formula has tan(pi t / 2) in a log: finite inside (0, 1)
    expected = torch.sqrt(torch.sigmoid(-2 * torch.log(torch.tan(math.pi * t / 2)) + 2 * math.log(S)))
    torch.testing.assert_close(shifted_cosine(t, S), expected, rtol=1e-12, atol=1e-12)
    assert shifted_cosine(torch.tensor([0.0, 1.0], dtype=torch.float64), S).tolist() == [1.0, 0.0]


def test_sc1_is_cosine():
    torch.testing.assert_close(shifted_cosine(T, 1.0), torch.cos(math.pi * T / 2), rtol=0, atol=1e-12)
    torch.testing.assert_close(get_schedule("shifted_cosine", 1)(T), cosine(T), rtol=0, atol=1e-12)


def test_larger_S_spends_less_time_at_high_noise():
    a = [shifted_cosine(T[1:-1], S) for S in (1.0, 2.0, 4.0, 8.0)]
    for lo, hi in itertools.pairwise(a):
        assert (hi > lo).all()


def test_linear_beta_matches_product_formula():
    betas = [1e-4 + (0.02 - 1e-4) * j / 999 for j in range(1000)]
    for k in (0, 1, 10, 500, 999, 1000):
        prod = 1.0
        for b in betas[:k]:
            prod *= 1 - b
        got = linear_beta(torch.tensor([k / 1000], dtype=torch.float64)).item()
        assert got == pytest.approx(math.sqrt(prod), rel=1e-10), k
    ab = linear_beta_alpha_bar()
    assert ab[0] == 1 and ab.shape == (1001,)
    assert float(ab[-1]) == pytest.approx(4.04e-5, rel=0.02)  # DDPM's well-known alpha_bar_T


def test_linear_beta_is_monotone_between_grid_points():
    a = linear_beta(torch.linspace(0, 1, 5001, dtype=torch.float64))
    assert (a[1:] <= a[:-1]).all()


def test_inverted_schedule_formula():
    torch.testing.assert_close(inverted(T), torch.sqrt(2 / math.pi * torch.arccos(torch.sqrt(T))))
    assert inverted(torch.tensor([0.0, 1.0], dtype=torch.float64)).tolist() == pytest.approx([1.0, 0.0])


def test_constant_beta_is_the_product_formula_on_the_grid():
    k = torch.arange(0, 1001, 50, dtype=torch.float64)
    a = get_schedule("constant_beta")(k / 1000)
    torch.testing.assert_close(a, torch.sqrt((1 - 0.008) ** k))


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_is_vp_and_decreasing(name):
    a = get_schedule(name, 4.0)(T)
    # constant-beta ends at sqrt(0.992^1000) = 0.018 (DiffAE's latent schedule), the others below 0.01
    assert a[0] == pytest.approx(1.0) and a[-1] < 0.02
    assert (a[1:] <= a[:-1] + 1e-12).all()
    torch.testing.assert_close(a**2 + sigma_from_alpha(a) ** 2, torch.ones_like(a))


def test_schedule_factory_errors_name_known():
    with pytest.raises(ValueError, match="known schedules: linear_beta, cosine, shifted_cosine, inverted"):
        get_schedule("sigmoid")
    with pytest.raises(ValueError, match="positive scale"):
        get_schedule("shifted_cosine")
    from daebench.tables import schedule_label

    assert schedule_label("shifted_cosine", 4) == "sc4" and schedule_label("linear_beta") == "linear_beta"


@pytest.mark.parametrize("prediction", param.PREDICTIONS)
def test_prediction_conversions_round_trip(prediction):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(16, 3, 4, 4, generator=g, dtype=torch.float64), torch.randn(16, 3, 4, 4, generator=g, dtype=torch.float64)
    alpha = torch.rand(16, 1, 1, 1, generator=g, dtype=torch.float64) * 0.98 + 0.01
    sigma = sigma_from_alpha(alpha)
    x_t = alpha * x0 + sigma * eps
    f = param.target(prediction, x0, eps, alpha, sigma)
    x0_hat, eps_hat = param.to_x0_eps(prediction, f, x_t, alpha, sigma)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, eps)
    torch.testing.assert_close(param.from_x0_eps(prediction, x0_hat, eps_hat, alpha, sigma), f)
    # score of the paper's §3 for each type equals -eps / sigma
    torch.testing.assert_close(param.score(prediction, f, x_t, alpha, sigma), -eps / sigma)


def test_v_target_at_t1_is_minus_x0():
    x0, eps = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    one, zero = torch.ones(1), torch.zeros(1)
    torch.testing.assert_close(param.target("v", x0, eps, zero, one), -x0)


def gaussian_denoiser(mu, s2, schedule):
    """Exact E[x0 | x_t] and E[eps | x_t] for data x0 ~ N(mu, s2 I)."""

    def fn(x_t, t, cond):
        a = schedule(t.double()).view(-1, *[1] * (x_t.dim() - 1)).to(x_t.dtype)
        sig = sigma_from_alpha(a)
        var = a**2 * s2 + sig**2
        resid = x_t - a * mu
        return mu + a * s2 / var * resid, sig * resid / var

    return fn


@pytest.mark.parametrize("name,scale", [("linear_beta", None), ("shifted_cosine", 4.0), ("cosine", None)])
def test_ddim_inversion_then_sampling_returns_input(name, scale):
    sched = get_schedule(name, scale)
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(1, 1, 4, 4, generator=g, dtype=torch.float64) * 0.5
    s2 = 0.3
    fn = gaussian_denoiser(mu, s2, sched)
    x0 = mu + math.sqrt(s2) * torch.randn(8, 1, 4, 4, generator=g, dtype=torch.float64)
    errs = []
    for K in (200, 1000):
        ts = time_grid(K)
        x_T = sample_ddim_inversion(fn, x0, ts, schedule=sched)
        back = sample_ddim(fn, x_T, ts, schedule=sched)
        errs.append((back - x0).abs().max().item())
    # DDIM inversion reuses eps(x_t) for the step to x_{t+dt}: a first-order scheme, so the
    # round-trip error shrinks like 1/K (about 5x from 200 to 1000 steps) and vanishes in the limit.
    assert errs[1] < 0.015, errs
    assert errs[0] / errs[1] > 3.5, errs
    # the inverted latent is (approximately) a standard normal for Gaussian data
    x_T = sample_ddim_inversion(fn, mu + math.sqrt(s2) * torch.randn(4000, 1, 4, 4, generator=g, dtype=torch.float64),
                                time_grid(100), schedule=sched)
    assert x_T.std().item() == pytest.approx(1.0, abs=0.05)


def test_ddim_sampling_gaussian_data_has_data_moments():
    sched = get_schedule("shifted_cosine", 1.0)
    mu, s2 = torch.full((1, 1, 2, 2), 0.3, dtype=torch.float64), 0.25
    fn = gaussian_denoiser(mu, s2, sched)
    x_T = torch.randn(20000, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = sample_ddim(fn, x_T, time_grid(100), schedule=sched)
    assert x.mean().item() == pytest.approx(0.3, abs=0.02)
    assert x.var().item() == pytest.approx(s2, rel=0.05)


def test_cond_travels_to_model():
    seen = []

    def fn(x, t, cond):
        seen.append(cond)
        return x, torch.zeros_like(x)

    sample_ddim(fn, torch.zeros(2, 1, 2, 2), time_grid(3), cond="z", schedule=cosine)
    assert seen == ["z"] * 3


def test_clip_x0_keeps_samples_in_range_and_is_inert_when_nothing_clips():
    sched = get_schedule("linear_beta")

    def wild(x_t, t, cond):  # overshooting x0 estimate, consistent eps
        a = sched(t.double()).view(-1, 1, 1, 1).to(x_t.dtype)
        x0 = 3.0 * torch.tanh(x_t)
        return x0, (x_t - a * x0) / sigma_from_alpha(a).clamp_min(1e-12)

    x_T = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    clipped = sample_ddim(wild, x_T, time_grid(20), schedule=sched, clip_x0=True)
    free = sample_ddim(wild, x_T, time_grid(20), schedule=sched)
    assert clipped.abs().max() <= 1.0 + 1e-9 < free.abs().max()
    fn = gaussian_denoiser(torch.zeros(1, 1, 4, 4, dtype=torch.float64), 0.01, sched)
    torch.testing.assert_close(sample_ddim(fn, x_T, time_grid(20), schedule=sched, clip_x0=True),
                               sample_ddim(fn, x_T, time_grid(20), schedule=sched))
