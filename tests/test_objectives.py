"""Each paper's core training objective against a hand computation, with a recording network in place of the
model: what the loss feeds the network (x_t, t) and what it regresses onto are computed here from the papers'
closed forms, independently of the code's helpers, so a wrong target, schedule or coefficient shows up as a
number that differs, not only as a run that trains worse."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from daebench.methods import dae, dbae

# --- two-phase DAE (PhaseLoss) ---------------------------------------------------------------------------


class RecordingDAE:
    """encoder(x0) -> a fixed code z; decoder(x_t, t, z) records its inputs and returns a fixed output y."""

    def __init__(self, z: torch.Tensor, y: torch.Tensor):
        self.z, self.y, self.seen = z, y, {}

    def encoder(self, x0):
        self.seen["x0"] = x0.clone()
        return self.z

    def decoder(self, x_t, t, z):
        self.seen.update(x_t=x_t.clone(), t=t.clone(), z=z)
        return self.y


def sc_alpha_sigma(t: np.ndarray, S: float) -> tuple[np.ndarray, np.ndarray]:
    """Shifted cosine SC-S (two-phase paper §3, after Hoogeboom et al.): alpha_t^2 = sigmoid(lambda_t) with
    lambda_t = -2 ln tan(pi t / 2) + 2 ln S, i.e. alpha_t = S / sqrt(S^2 + tan^2(pi t / 2))."""
    tan = np.tan(np.pi * t / 2)
    return S / np.sqrt(S**2 + tan**2), tan / np.sqrt(S**2 + tan**2)


def hand_target(prediction: str, x0, eps, alpha, sigma):
    """y* of the two-phase paper §3: eps, x_0, or v = alpha eps - sigma x_0 (Salimans & Ho 2022)."""
    return {"eps": eps, "x": x0, "v": alpha * eps - sigma * x0}[prediction]


def draws(shape, seed):
    """The loss's random stream: eps first, then t (one generator, so a resumed run replays it)."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.rand(shape[0], generator=g)
    return eps.numpy(), t.double().numpy()


@pytest.mark.parametrize("prediction", ["eps", "x", "v"])
def test_phase_one_feeds_pure_noise_at_t_one_and_regresses_the_hand_target(prediction):
    """Phase 1 (t = 1 only): x_t = eps exactly, t = 1, and y* = eps, x_0 or -x_0 (v at alpha = 0, sigma = 1)."""
    shape = (5, 1, 4, 4)
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    model = RecordingDAE(torch.ones(5, 3), y)
    out = dae.PhaseLoss(prediction, "one", None)(model, x0, torch.Generator().manual_seed(7))
    eps, _ = draws(shape, 7)
    np.testing.assert_array_equal(model.seen["x_t"].numpy(), eps)
    assert torch.equal(model.seen["t"], torch.ones(5))
    assert model.seen["z"] is model.z
    expected = {"eps": eps, "x": x0.numpy(), "v": -x0.numpy()}[prediction]
    want = ((y.numpy() - expected) ** 2).reshape(5, -1).mean(1)
    assert set(out) == {"mse"} and out["mse"].shape == (5,)
    np.testing.assert_allclose(out["mse"].numpy(), want, rtol=1e-6)


@pytest.mark.parametrize("prediction", ["eps", "x", "v"])
@pytest.mark.parametrize("S", [1.0, 4.0])
def test_phase_two_samples_t_on_the_shifted_cosine_and_regresses_the_hand_target(prediction, S):
    """Phase 2 on SC-S: t ~ U(0, 1), x_t = alpha_t x_0 + sigma_t eps with the SC-S alpha_t, the per-example
    mean squared error against y*."""
    shape = (64, 1, 3, 3)
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.zeros(shape, dtype=torch.float64)
    model = RecordingDAE(torch.zeros(64, 2), y)
    loss = dae.phase_loss({"prediction": prediction},
                          {"t": "uniform", "schedule": {"name": "shifted_cosine", "scale": S}})
    out = loss(model, x0, torch.Generator().manual_seed(11))
    eps, t = draws(shape, 11)
    np.testing.assert_allclose(model.seen["t"].double().numpy(), t, rtol=1e-6)
    alpha, sigma = (v[:, None, None, None] for v in sc_alpha_sigma(t, S))
    np.testing.assert_allclose(model.seen["x_t"].numpy(), alpha * x0.numpy() + sigma * eps, atol=1e-5)  # t in float32
    want = (hand_target(prediction, x0.numpy(), eps, alpha, sigma) ** 2).reshape(64, -1).mean(1)
    np.testing.assert_allclose(out["mse"].numpy(), want, rtol=1e-4, atol=1e-8)


def test_sc_scale_moves_the_signal_to_noise_ratio_by_s_squared():
    """SC-S shifts the log-SNR by 2 ln S: at every t, SNR_S(t) = S^2 SNR_1(t) (the reason SC-4 keeps more
    signal than cosine at the same t)."""
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    def snr(S):
        a = dae.phase_schedule({"schedule": {"name": "shifted_cosine", "scale": S}})(t)
        return a**2 / (1 - a**2)

    np.testing.assert_allclose((snr(4.0) / snr(1.0)).numpy(), 16.0, rtol=1e-9)


# --- DBAE (BridgeLoss) -----------------------------------------------------------------------------------


def vp_bridge_coefficients(t: np.ndarray, beta_d: float, beta_min: float, T: float):
    """(a_t, b_t, c_t) of the VP bridge marginal x_t = a_t x_T + b_t x_0 + sqrt(c_t) eps (DDBM, Zhou et al. 2024,
    Table 1 / the DBAE release): with alpha_t = exp(-beta_d t^2 / 4 - beta_min t / 2), SNR_t = alpha_t^2 /
    sigma_t^2, a_t = (alpha_t / alpha_T) SNR_T / SNR_t, b_t = alpha_t (1 - SNR_T / SNR_t),
    c_t = sigma_t^2 (1 - SNR_T / SNR_t)."""
    alpha = lambda s: np.exp(-0.25 * beta_d * s**2 - 0.5 * beta_min * s)
    snr = lambda s: alpha(s) ** 2 / (1 - alpha(s) ** 2)
    r = snr(T) / snr(t)
    return alpha(t) / alpha(T) * r, alpha(t) * (1 - r), (1 - alpha(t) ** 2) * (1 - r)


def test_bridge_objective_equals_its_gaussian_closed_form():
    """DBAE Algorithm 1 with DDBM weighting, on data x_0 ~ N(0, s0^2 I), a constant endpoint x_T = m and a
    network that outputs F = 0 (so D = c_skip x_t): the per-example loss is w_t mean_k (c_skip x_t - x_0)^2,
    whose expectation is w_t [(c_skip b_t - 1)^2 s0^2 + c_skip^2 (a_t^2 m^2 + c_t)] with, for cov = 0,
    A = a^2 sT^2 + b^2 s0^2 + c, c_skip = b s0^2 / A, c_out^2 = (a^2 sT^2 s0^2 + s0^2 c) / A, w = 1 / c_out^2.
    Every example's mean over 64^2 pixels lands within a few percent of it; their average within 1 %."""
    br = dbae.VPBridge()  # the release's defaults: beta_d 2, beta_min 0.1, T 1, sigma_0 = sigma_T = 0.5
    s0, sT, m = br.sigma_0, br.sigma_T, 2.0
    b, C, H = 256, 1, 64
    x0 = s0 * torch.randn(b, C, H, H, generator=torch.Generator().manual_seed(0))
    seen = {}

    def decoder(inp, c_noise, z):
        seen["c_noise"], seen["x_in"], seen["x_T"] = c_noise.clone(), inp[:, :C].clone(), inp[:, C:].clone()
        return torch.zeros_like(inp[:, :C])

    model = SimpleNamespace(stochastic=False, encoder=lambda x: torch.zeros(x.shape[0], 4),
                            endpoint=lambda z: torch.full((z.shape[0], C, H, H), m), decoder=decoder)
    out = dbae.BridgeLoss(br, tc_weight=0.0)(model, x0, torch.Generator().manual_seed(5))
    assert set(out) == {"bridge"} and out["bridge"].shape == (b,)
    assert torch.all(seen["x_T"] == m)
    t = np.exp(4 * seen["c_noise"].double().numpy())  # c_noise = ln(t) / 4
    assert t.min() >= br.t_min and t.max() <= br.T
    a, bb, c = vp_bridge_coefficients(t, br.beta_d, br.beta_min, br.T)
    A = a**2 * sT**2 + bb**2 * s0**2 + c
    # the network's input is c_in x_t with x_t = a_t x_T + b_t x_0 + sqrt(c_t) eps; the loss draws t, then eps
    g = torch.Generator().manual_seed(5)
    t_drawn = br.t_min + (br.T - br.t_min) * torch.rand(b, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g).double().numpy()
    np.testing.assert_allclose(t, t_drawn.numpy(), rtol=1e-6)
    col = lambda v: v[:, None, None, None]
    x_t = col(a) * m + col(bb) * x0.double().numpy() + col(np.sqrt(c)) * eps
    np.testing.assert_allclose(seen["x_in"].double().numpy(), x_t / col(np.sqrt(A)), rtol=1e-4, atol=1e-5)
    c_skip = bb * s0**2 / A
    w = A / (a**2 * sT**2 * s0**2 + s0**2 * c)
    expected = w * ((c_skip * bb - 1) ** 2 * s0**2 + c_skip**2 * (a**2 * m**2 + c))
    ratio = out["bridge"].double().numpy() / expected
    assert np.all(np.abs(ratio - 1) < 0.12), ratio.min()  # 4096 pixels: relative sd about 2-3 %
    assert abs(ratio.mean() - 1) < 0.01, ratio.mean()


def test_bridge_loss_weight_is_one_over_c_out_squared_and_c_skip_is_optimal_for_gaussian_endpoints():
    """DDBM's preconditioning: with x_T ~ N(0, sT^2) independent of x_0 ~ N(0, s0^2) (cov = 0), c_skip x_t is
    the best linear estimate of x_0 from x_t alone, and the weighted error of F = 0 is exactly 1 (EDM's unit
    loss at initialisation): w_t E(c_skip x_t - x_0)^2 = 1 for every t."""
    br = dbae.VPBridge()
    t = torch.tensor([1e-3, 0.1, 0.5, 0.9, 0.999], dtype=torch.float64)
    a, b, c = (v.numpy() for v in br.coefficients(t))
    a_h, b_h, c_h = vp_bridge_coefficients(t.numpy(), br.beta_d, br.beta_min, br.T)
    np.testing.assert_allclose(np.stack([a, b, c]), np.stack([a_h, b_h, c_h]), rtol=1e-10)
    p = {k: v.numpy() for k, v in br.precondition(t).items()}
    s0, sT = br.sigma_0, br.sigma_T
    var_xt = a**2 * sT**2 + b**2 * s0**2 + c
    cov_xt_x0 = b * s0**2
    np.testing.assert_allclose(p["c_skip"], cov_xt_x0 / var_xt, rtol=1e-10)  # the regression coefficient
    err = p["c_skip"] ** 2 * var_xt - 2 * p["c_skip"] * cov_xt_x0 + s0**2
    np.testing.assert_allclose(p["weight"] * err, 1.0, rtol=1e-9)
    np.testing.assert_allclose(p["c_noise"], np.log(t.numpy()) / 4, rtol=1e-12)
    assert math.isclose(float(p["c_in"][2]), var_xt[2] ** -0.5, rel_tol=1e-12)


# --- ScoreVAE (ScoreVAELoss: DSM with the Bayes-rule score) ----------------------------------------------


def exact_gaussian_scorevae(d: int):
    """x_0 ~ N(0, I) under the VP SDE: p_t = N(0, I), so the exact prior is eps(x_t, t) = sigma_t x_t; with
    z = x_0, q(z | x_t, t) = p(x_0 | x_t) = N(alpha_t x_t, sigma_t^2 I) is the exact encoder. Bayes' rule for
    scores then gives grad log p(x_t | z) = -x_t + alpha_t (z - alpha_t x_t) / sigma_t^2 = (alpha_t z - x_t) /
    sigma_t^2, i.e. eps_hat = (x_t - alpha_t x_0) / sigma_t = eps: the denoising loss is zero."""
    from daebench.diffusion.schedules import get_schedule, sigma_from_alpha

    schedule = get_schedule("vp_linear")

    def coeffs(t, like):
        alpha = schedule(t.double()).to(like.dtype).view(-1, *([1] * (like.dim() - 1)))
        return alpha, sigma_from_alpha(alpha)

    def prior(x_t, t):
        return coeffs(t, x_t)[1] * x_t

    def encoder(x, t):
        alpha, sigma = coeffs(t, x)
        return torch.cat([(alpha * x).flatten(1), (2 * sigma.log()).expand_as(x).flatten(1)], 1)

    return SimpleNamespace(schedule=schedule, prior=prior, encoder=encoder, corrector=None)


@pytest.mark.parametrize("log_q", ["full", "release"])
def test_scorevae_dsm_vanishes_with_the_exact_prior_and_encoder(log_q):
    from daebench.methods import scorevae

    d, b = 8, 32
    model = exact_gaussian_scorevae(d)
    x0 = torch.randn(b, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loss = scorevae.ScoreVAELoss("encoder", beta=0.5, weighting="simple", log_q=log_q)
    out = loss(model, x0, torch.Generator().manual_seed(1))
    assert set(out) == {"dsm", "kl"}
    # z ~ q(z | x_0, t = 0) = N(x_0, e^-30) (log sigma_0^2 = -inf, clamped), so eps_hat misses eps by
    # alpha_t (z - x_0) / sigma_t, at most ~1e-4 at the smallest t; a wrong sign or factor in Bayes' rule
    # leaves an error of order |eps|^2 = d per example
    assert out["dsm"].max() < 1e-6, out["dsm"].max()
    # KL(N(x_0, e^-30 I) || N(0, I)) = 1/2 sum_k (e^-30 + x_0k^2 - 1 + 30), times beta
    want = 0.5 * 0.5 * (math.exp(-30) + x0.square() - 1 + 30).sum(1)
    torch.testing.assert_close(out["kl"], want, rtol=1e-9, atol=1e-9)


def test_scorevae_bayes_rule_adds_the_encoder_score_in_eps_units():
    """eps_hat = eps_prior - sigma_t grad_x log q(z | x_t, t): with the exact pieces above and any z, the
    hand value sigma_t x_t - sigma_t alpha_t (z - alpha_t x_t) / sigma_t^2."""
    from daebench.diffusion.schedules import sigma_from_alpha
    from daebench.methods import scorevae

    d = 6
    model = exact_gaussian_scorevae(d)
    g = torch.Generator().manual_seed(3)
    x_t, z = torch.randn(4, d, generator=g, dtype=torch.float64), torch.randn(4, d, generator=g, dtype=torch.float64)
    t = torch.tensor([0.05, 0.3, 0.6, 0.95], dtype=torch.float64)
    alpha = model.schedule(t).view(-1, 1)
    sigma = sigma_from_alpha(alpha)
    want = sigma * x_t - alpha * (z - alpha * x_t) / sigma
    got = scorevae.conditional_eps(model, x_t, t, z, log_q="full", corrector=False)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


# --- DDVI (the sleep term; the wake term's chain and split: tests/test_ddvi.py) ----------------------------


def test_ddvi_sleep_term_denoises_the_dreamt_code_and_matches_torch_kl_at_y_T():
    """L_diff (DDVI eq. 11) for z and x~: the denoiser sees y_t = sqrt(abar_t) z + sqrt(1 - abar_t) eps at a
    t in 1..T, regresses eps, and the endpoint term is KL(r(y_T | z) || q_phi(y_T | x~)) -- here checked
    against torch.distributions."""
    from torch.distributions import Normal, kl_divergence

    from daebench.methods import ddvi
    from daebench.methods.ddvi_common import Z_DIM

    T, n = 5, 16
    ab = torch.cumprod(1 - torch.linspace(0.05, 0.3, T), 0)
    alpha_bar = torch.cat([torch.ones(1), ab])
    g0 = torch.Generator().manual_seed(0)
    mu, logvar, c = (torch.randn(n, Z_DIM, generator=g0), 0.3 * torch.randn(n, Z_DIM, generator=g0),
                     torch.randn(n, 3, generator=g0))
    pred = torch.randn(n, Z_DIM, generator=g0)
    seen = {}

    def eps(y, ctx, t):
        seen.update(y=y, c=ctx, t=t)
        return pred

    model = SimpleNamespace(T=T, alpha_bar=alpha_bar, q_T=lambda x: (mu, logvar, c), eps=eps)
    z = torch.randn(n, Z_DIM, generator=g0)
    out = ddvi.sleep_terms(model, torch.zeros(n, 4), z, torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)  # the term's own draws: t, then eps
    t = torch.randint(1, T + 1, (n,), generator=g)
    e = torch.randn(z.shape, generator=g)
    assert torch.equal(seen["t"], t) and seen["c"] is c
    a = alpha_bar[t].unsqueeze(1)
    torch.testing.assert_close(seen["y"], a.sqrt() * z + (1 - a).sqrt() * e)
    torch.testing.assert_close(out["sleep_diff"], (pred - e).square().sum(1))
    r_T = Normal(alpha_bar[T].sqrt() * z, (1 - alpha_bar[T]).sqrt())
    q_T = Normal(mu, (0.5 * logvar).exp())
    torch.testing.assert_close(out["sleep_kl_T"], kl_divergence(r_T, q_T).sum(1), rtol=1e-5, atol=1e-5)
