"""ScoreVAE study: the VP SDE's closed forms, the Bayes-rule conditional score, the samplers on a
Gaussian model whose conditional is known, the DSM weighting, and the phase mechanics (frozen prior,
frozen encoder, corrector starting from ScoreVAE)."""
import itertools
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from daebench.diffusion.samplers import sample_vp_ode, sample_vp_sde, time_grid
from daebench.diffusion.schedules import beta_of, log_snr, sigma_from_alpha, t_of_log_snr, vp_linear
from daebench.evaluate import metrics
from daebench.methods import diffdec, get_family, scorevae, vae, vpvae
from daebench.train import train_phase

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def float64(request):
    """Closed-form comparisons run in float64; the training tests (marked float32) in torch's default."""
    if request.node.get_closest_marker("float32"):
        yield
        return
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(torch.float32)


# --- the VP SDE -----------------------------------------------------------------------------------------

def test_vp_linear_beta_and_log_snr_closed_forms():
    t = torch.linspace(0.01, 1.0, 50)
    assert torch.allclose(beta_of(vp_linear, t), 0.1 + 19.9 * t, atol=1e-9)
    a2 = torch.exp(-0.5 * t**2 * 19.9 - t * 0.1)
    assert torch.allclose(log_snr(vp_linear, t), torch.log(a2 / (1 - a2)), atol=1e-9)
    assert torch.allclose(t_of_log_snr(vp_linear, log_snr(vp_linear, t)), t, atol=1e-9)


@pytest.mark.parametrize("t_end", [0.1, 0.5, 1.0])
def test_vp_perturbation_kernel_has_the_closed_form_moments(t_end):
    """Simulate dx = -beta x / 2 dt + sqrt(beta) dw from fixed x_0: mean alpha_t x_0, variance sigma_t^2."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([-1.0, 0.0, 0.7])
    x = x0.repeat(20_000, 1)
    ts = torch.linspace(0, t_end, 501)
    for s, t in itertools.pairwise(ts):
        beta = 0.1 + 19.9 * s
        x = x - 0.5 * beta * x * (t - s) + (beta * (t - s)).sqrt() * torch.randn(x.shape, generator=g)
    alpha = vp_linear(torch.tensor(t_end))
    # 3.5 standard errors of 20,000 samples
    assert torch.allclose(x.mean(0), alpha * x0, atol=0.025)
    assert torch.allclose(x.var(0), (1 - alpha**2).expand(3), rtol=0.035, atol=2e-3)


def test_likelihood_weighting_is_an_unbiased_importance_sampler():
    """E[w(t) f(t)] under vpvae.sample_t equals 1/2 int beta(t)/sigma_t^2 f(t) dt (paper §3.5 with g^2 = beta)."""
    f = lambda t: torch.cos(3 * t) + 2
    t, w = vpvae.sample_t("likelihood", vp_linear, 400_000, torch.Generator().manual_seed(0), t_min=1e-3)
    mc = (w * f(t)).mean()
    grid = torch.logspace(-3, 0, 200_001)
    integrand = beta_of(vp_linear, grid) / sigma_from_alpha(vp_linear(grid)).square() * f(grid)
    exact = 0.5 * torch.trapezoid(integrand, grid)
    assert abs(mc - exact) / exact < 0.01
    t, w = vpvae.sample_t("simple", vp_linear, 10, torch.Generator().manual_seed(0))
    assert (w == 0.5).all() and (t >= 1e-5).all()



def test_loss_levels_draw_the_log_snr_of_the_named_schedule():
    """loss_levels {shifted_cosine, S}: lambda(t) of the drawn VP times has the quantiles of SC-S's log-SNR,
    lambda_SC(u) = -2 log tan(pi u / 2) + 2 log S, inside the VP range; the weight stays the simple 1/2."""
    n, s = 200_000, 0.25
    t, w = vpvae.sample_t("simple", vp_linear, n, torch.Generator().manual_seed(0), 1e-3,
                          {"name": "shifted_cosine", "scale": s})
    assert (w == 0.5).all() and t.min() >= 1e-3 and t.max() <= 1.0
    lam = log_snr(vp_linear, t).sort().values
    for q in (0.2, 0.5, 0.8):  # lambda decreases in u: the q-quantile of lambda is lambda_SC(1 - q)
        expected = -2 * math.log(math.tan(math.pi * (1 - q) / 2)) + 2 * math.log(s)
        assert abs(float(lam[int(q * n)]) - expected) < 0.05
    with pytest.raises(ValueError, match="needs weighting: simple"):
        vpvae.sample_t("likelihood", vp_linear, 4, torch.Generator(), 1e-3, {"name": "cosine"})


# --- a Gaussian model whose every score is known ----------------------------------------------------------
# x_0 ~ N(0, s^2 I) in D dims, z | x_0 ~ N(a x_0, tau^2 I) coordinate-wise, so (x_t, z) is jointly Gaussian.
S, A, TAU, D = 0.8, 1.5, 0.4, 3


def moments(t):
    alpha = vp_linear(t)
    var_x = alpha**2 * S**2 + 1 - alpha**2
    cov = A * alpha * S**2
    var_z = A**2 * S**2 + TAU**2
    return alpha, var_x, cov, var_z


class ExactPrior(nn.Module):
    """eps_theta(x_t, t) of N(0, s^2 I) data: sigma_t x_t / (alpha_t^2 s^2 + sigma_t^2)."""

    def forward(self, x, t, z=None):
        alpha, var_x, _, _ = moments(t.view(-1, 1))
        return sigma_from_alpha(alpha) * x / var_x


class ExactEncoder(nn.Module):
    """[mu, log var] of p_t(z | x_t); ``c`` adds an x-dependent log-variance c * x_t."""

    def __init__(self, c=0.0):
        super().__init__()
        self.c = c

    def forward(self, x, t):
        _alpha, var_x, cov, var_z = moments(t.view(-1, 1))
        return torch.cat([cov / var_x * x, torch.log(var_z - cov**2 / var_x).expand_as(x) + self.c * x], 1)


class Model(nn.Module):
    def __init__(self, c=0.0):
        super().__init__()
        self.prior, self.encoder, self.corrector, self.schedule = ExactPrior(), ExactEncoder(c), None, vp_linear


def test_autograd_encoder_score_matches_the_closed_form():
    g = torch.Generator().manual_seed(1)
    x, z, t = torch.randn(5, D, generator=g), torch.randn(5, D, generator=g), torch.rand(5, generator=g)
    _alpha, var_x, cov, var_z = moments(t.view(-1, 1))
    k, v0 = cov / var_x, var_z - cov**2 / var_x
    assert torch.allclose(scorevae.encoder_score(ExactEncoder(), x, t, z), k * (z - k * x) / v0, atol=1e-10)
    # with an x-dependent variance v = v0 exp(c x), "full" also differentiates -1/2 log v; "release" does not
    c = 0.3
    v = v0 * torch.exp(c * x)
    quad = k * (z - k * x) / v + 0.5 * c * (z - k * x) ** 2 / v
    assert torch.allclose(scorevae.encoder_score(ExactEncoder(c), x, t, z, log_q="full"), quad - 0.5 * c, atol=1e-10)
    assert torch.allclose(scorevae.encoder_score(ExactEncoder(c), x, t, z, log_q="release"), quad, atol=1e-10)


def test_bayes_rule_conditional_score_equals_the_joint_gaussian_score():
    g = torch.Generator().manual_seed(2)
    x, z, t = torch.randn(6, D, generator=g), torch.randn(6, D, generator=g), 0.02 + 0.98 * torch.rand(6, generator=g)
    alpha, var_x, cov, var_z = moments(t.view(-1, 1))
    # p(x_t | z) = N(cov / var_z z, var_x - cov^2 / var_z)
    score = -(x - cov / var_z * z) / (var_x - cov**2 / var_z)
    eps = scorevae.conditional_eps(Model(), x, t, z, log_q="full", corrector=True)
    assert torch.allclose(-eps / sigma_from_alpha(alpha), score, atol=1e-9)


@pytest.mark.parametrize("sampler", [sample_vp_sde, sample_vp_ode])
def test_samplers_draw_the_known_conditional(sampler):
    """x_0 | z = N(a s^2 z / var_z, s^2 - a^2 s^4 / var_z): both solvers, with the Bayes-rule score."""
    model = Model()
    z = torch.full((4_000, D), 0.9)
    eps_fn = lambda x, t, zz: scorevae.conditional_eps(model, x, t, zz, log_q="full", corrector=False)
    x1 = torch.randn(z.shape, generator=torch.Generator().manual_seed(3))
    out = sampler(vpvae.as_denoiser(eps_fn, vp_linear), x1, time_grid(300, t_min=1e-3), z,
                  torch.Generator().manual_seed(4), schedule=vp_linear)
    var_z = A**2 * S**2 + TAU**2
    mean, var = A * S**2 * 0.9 / var_z, S**2 - A**2 * S**4 / var_z
    assert torch.allclose(out.mean(0), torch.full((D,), mean), atol=0.025)  # ~3.5 standard errors
    assert torch.allclose(out.var(0), torch.full((D,), var), rtol=0.08)


# --- objectives and phases --------------------------------------------------------------------------------

def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(5)
    mu, logvar = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    ref = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(vpvae.kl_standard_normal(mu, logvar), ref)


def test_l2_metric_is_the_per_image_euclidean_norm_in_unit_range():
    g = torch.Generator().manual_seed(6)
    x, y = torch.rand(3, 1, 16, 16, generator=g) * 2 - 1, torch.rand(3, 1, 16, 16, generator=g) * 2 - 1
    ref = torch.linalg.vector_norm(((x + 1) / 2 - (y + 1) / 2).flatten(1), dim=1)
    assert torch.allclose(metrics.l2(x, y), ref)


SMALL = {"model_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": []}
PRIOR_CFG = {"nets": {"decoder": {**SMALL, "dropout": 0.5}},
             "method": {"family": "uncond", "phases": [{"name": "main", "fraction": 1.0,
                                                        "schedule": {"name": "vp_linear"}}]}}


def scorevae_cfg(phases):
    return {"nets": {"z_dim": 4, "encoder": SMALL, "corrector": {**SMALL, "dropout": 0.0}}, "prior": PRIOR_CFG,
            "method": {"family": "scorevae", "prior": "p", "beta": 0.01, "weighting": "likelihood", "log_q": "full",
                       "phases": phases}}


def run_phase(model, loss, tmp_path, name, init=None, steps=3):
    train_cfg = {"batch_size": 8, "lr": 1e-3, "warmup_examples": 0, "ema_decay": 0.9, "checkpoint_every": 100,
                 "log_every": 100, "seed": 0, "device": "cpu"}
    x = torch.rand(16, 1, 8, 8, dtype=torch.float32) * 2 - 1
    return train_phase(model, loss, x, steps=steps, phase_index=0, train_cfg=train_cfg, ckpt_path=tmp_path / f"{name}.r",
                       out_path=tmp_path / f"{name}.pt", config={"name": name}, init=init, progress=False)


@pytest.mark.float32
def test_phases_freeze_the_prior_then_the_encoder_and_the_corrector_starts_at_scorevae(tmp_path):
    phases = [{"name": "encoder", "train": "encoder", "fraction": 0.5},
              {"name": "corrector", "train": "corrector", "fraction": 0.5}]
    torch.manual_seed(0)
    prior = get_family("uncond").build(PRIOR_CFG, 1, 8)
    prior_ckpt = run_phase(prior, get_family("uncond").phase_loss(PRIOR_CFG["method"], PRIOR_CFG["method"]["phases"][0]),
                           tmp_path, "prior")
    cfg1 = scorevae_cfg(phases[:1])
    m1 = scorevae.build(cfg1, 1, 8)
    assert m1.corrector is None  # the encoder phase's checkpoint is plain ScoreVAE
    scorevae.load_prior(m1, prior_ckpt)
    ck1 = run_phase(m1, scorevae.phase_loss(cfg1["method"], phases[0]), tmp_path, "enc")
    for k, v in prior_ckpt["ema"].items():
        assert torch.equal(ck1["model"][f"prior.{k}"], v) and torch.equal(ck1["ema"][f"prior.{k}"], v), k
    cfg2 = scorevae_cfg(phases)
    m2 = scorevae.build(cfg2, 1, 8)
    ck2 = run_phase(m2, scorevae.phase_loss(cfg2["method"], phases[1]), tmp_path, "corr", init=ck1)
    enc = {k: v for k, v in ck1["ema"].items() if k.startswith("encoder.")}
    for k, v in enc.items():  # the frozen encoder is the EMA encoder ScoreVAE is evaluated with
        assert torch.equal(ck2["model"][k], v) and torch.equal(ck2["ema"][k], v), k
    assert any(not torch.equal(v, 0 * v) for k, v in ck2["model"].items() if k.startswith("corrector.out"))
    # an untrained corrector (zero output layer) reproduces ScoreVAE exactly
    fresh = scorevae.build(cfg2, 1, 8)
    fresh.load_state_dict({**ck1["ema"], **{k: v for k, v in fresh.state_dict().items() if k.startswith("corr")}})
    plain = scorevae.build(cfg1, 1, 8)
    plain.load_state_dict(ck1["ema"])
    x, t, z = torch.randn(2, 1, 8, 8), torch.rand(2), torch.randn(2, 4)
    a = scorevae.conditional_eps(fresh.eval(), x, t, z, log_q="full", corrector=True)
    b = scorevae.conditional_eps(plain.eval(), x, t, z, log_q="full", corrector=True)
    assert torch.equal(a, b)


@pytest.mark.float32
def test_baseline_losses_have_named_unreduced_terms():
    nets = {"z_dim": 4, "encoder": SMALL, "decoder": {**SMALL, "dropout": 0.0}}
    method = {"family": "diffdec", "beta": 0.01, "weighting": "simple",
              "phases": [{"name": "main", "fraction": 1.0, "schedule": {"name": "vp_linear"}}]}
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    g = torch.Generator().manual_seed(0)
    terms = diffdec.phase_loss(method, method["phases"][0])(diffdec.build({"nets": nets}, 1, 8), x, g)
    assert set(terms) == {"dsm", "kl"} and all(v.shape == (5,) for v in terms.values())
    method0 = {**method, "beta": 0.0}
    assert set(diffdec.phase_loss(method0, method["phases"][0])(diffdec.build({"nets": nets}, 1, 8), x, g)) == {"dsm"}
    terms = vae.phase_loss({"beta": 0.01}, {})(vae.build({"nets": nets}, 1, 8), x, g)
    assert set(terms) == {"recon", "kl"} and terms["recon"].shape == (5,)
    with pytest.raises(ValueError, match="known: sde, ode"):
        diffdec.cost(method, "inversion", 10, {})


def test_unknown_weighting_and_phase_role_name_the_choices():
    with pytest.raises(ValueError, match="known: simple, likelihood"):
        vpvae.sample_t("uniform", vp_linear, 4, torch.Generator())
    with pytest.raises(ValueError, match="train: one of encoder, corrector"):
        scorevae.phase_loss({"beta": 0.0, "weighting": "simple", "log_q": "full"}, {"name": "x"})
    assert math.isfinite(float(log_snr(vp_linear, torch.tensor(1.0))))


# --- a toy whose prior score is exact: the losses' gradients reach the encoder and it learns a code -------
# Two well-separated Gaussian clusters in R^2 (centres +-(2, 0), std 0.5: 8 standard deviations apart). The
# frozen prior is the closed-form eps of their mixture under the VP SDE (vp_linear), so whatever the encoder
# learns, it learns from the loss code alone (`ScoreVAELoss`, `DiffDecoderLoss`), on small MLPs.
TOY_M, TOY_S, TOY_D = 2.0, 0.5, 2


def toy_clusters(n, generator, dtype=None):
    label = torch.randint(0, 2, (n,), generator=generator)
    centre = torch.zeros(TOY_D, dtype=dtype)
    centre[0] = TOY_M
    x = (2 * label - 1).to(centre.dtype)[:, None] * centre + TOY_S * torch.randn(n, TOY_D, generator=generator,
                                                                                dtype=centre.dtype)
    return x, label


class MixturePrior(nn.Module):
    """eps_theta(x_t, t) = -sigma_t grad log p_t(x_t) of the two-cluster mixture, in closed form."""

    def forward(self, x, t, z=None):
        alpha = vp_linear(t.double()).to(x.dtype).view(-1, 1)
        sigma = sigma_from_alpha(alpha)
        var = alpha**2 * TOY_S**2 + sigma**2
        centre = torch.zeros(TOY_D, dtype=x.dtype)
        centre[0] = TOY_M
        means = torch.stack([alpha * centre, -alpha * centre])  # [2, B, D]
        resp = (-0.5 * (x - means).square().sum(-1) / var.view(1, -1)).softmax(0)[..., None]
        return -sigma * (resp * -(x - means) / var).sum(0)


class TimeMLP(nn.Module):
    """A small MLP on [x, t] (and optionally z): the toy's encoder e(x_t, t) and conditional eps-net."""

    def __init__(self, d_in, d_out, hidden=64, time=True):
        super().__init__()
        self.time = time
        self.net = nn.Sequential(nn.Linear(d_in + time, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, d_out))

    def forward(self, x, t=None, z=None):
        parts = [x] + ([t.view(-1, 1).to(x.dtype)] if self.time else []) + ([z] if z is not None else [])
        return self.net(torch.cat(parts, 1))


class ToyScoreVAE(nn.Module):
    def __init__(self, z_dim=2, hidden=64):
        super().__init__()
        self.prior, self.corrector, self.schedule = MixturePrior(), None, vp_linear
        self.encoder = TimeMLP(TOY_D, 2 * z_dim, hidden)


class ToyDiffDecoder(nn.Module):
    def __init__(self, stochastic, z_dim=2):
        super().__init__()
        self.stochastic = stochastic
        self.encoder = TimeMLP(TOY_D, 2 * z_dim if stochastic else z_dim, time=False)
        self.decoder = TimeMLP(TOY_D + z_dim, TOY_D, 128)


def probe_accuracy(z, label):
    """Held-out accuracy of a least-squares linear classifier on z."""
    feats = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1)
    w = torch.linalg.lstsq(feats, (2 * label - 1).to(z.dtype)[:, None]).solution
    return float(((feats @ w).squeeze(1) > 0).long().eq(label).float().mean())


def train_toy(model, loss, steps, lr=2e-3, batch=64, seed=0):
    """Adam on the trainable networks (ScoreVAE: the encoder; the prior is fixed). One thread: these nets are
    so small that more threads only add synchronisation (several-fold slower on a busy machine)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.encoder.parameters() if isinstance(model, ToyScoreVAE) else model.parameters(), lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            x, _ = toy_clusters(batch, g)
            terms = loss(model, x, g)
            opt.zero_grad()
            sum(v.mean() for v in terms.values()).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.float32
@pytest.mark.parametrize("weighting,log_q", [("simple", "release"), ("likelihood", "full")])
def test_scorevae_encoder_learns_the_clusters_of_an_exact_mixture_prior(weighting, log_q):
    """Only the DSM term through grad_x log q(z|x_t,t) can make z informative (the KL pulls q to N(0, I)):
    after 1,200 steps q(z|x_0) keeps well over a nat, and a linear probe on a *sample* z finds the cluster."""
    model = ToyScoreVAE()
    train_toy(model, scorevae.ScoreVAELoss("encoder", 0.01, weighting, log_q), 1200)
    x, label = toy_clusters(1000, torch.Generator().manual_seed(99))
    with torch.no_grad():
        mu, logvar = scorevae._posterior0(model, x)
        z = vpvae.sample_z(mu, logvar, torch.Generator().manual_seed(1))
    assert vpvae.kl_standard_normal(mu, logvar).mean() > 1.0  # nats; a collapsed encoder keeps ~0
    assert probe_accuracy(z, label) > 0.97


@pytest.mark.float32
@pytest.mark.parametrize("encoder", ["stochastic", "deterministic"])
def test_diffdecoder_at_beta_0_learns_the_clusters(encoder):
    model = ToyDiffDecoder(stochastic=encoder == "stochastic")
    train_toy(model, diffdec.DiffDecoderLoss(0.0, "likelihood", vp_linear), 600)
    x, label = toy_clusters(1000, torch.Generator().manual_seed(99))
    with torch.no_grad():
        mu, logvar = diffdec.posterior(model, x)
        z = mu if logvar is None else vpvae.sample_z(mu, logvar, torch.Generator().manual_seed(1))
    if logvar is not None:
        assert vpvae.kl_standard_normal(mu, logvar).mean() > 1.0
    assert probe_accuracy(z, label) > 0.97


@pytest.mark.parametrize("log_q", ["release", "full"])
@pytest.mark.parametrize("weighting", ["simple", "likelihood"])
def test_encoder_gradient_through_grad_log_q_matches_finite_differences(weighting, log_q):
    """d loss / d phi, where phi reaches the loss through z ~ q(z|x_0, 0) and through
    grad_x log q(z|x_t, t) (double backprop), equals central differences (float64, fixed noise)."""
    torch.manual_seed(0)
    model = ToyScoreVAE(hidden=8)
    x, _ = toy_clusters(6, torch.Generator().manual_seed(3), dtype=torch.float64)
    loss = scorevae.ScoreVAELoss("encoder", 0.01, weighting, log_q)

    def total():
        return sum(v.mean() for v in loss(model, x, torch.Generator().manual_seed(11)).values())

    total().backward()
    checked = 0
    for name, p in model.encoder.named_parameters():
        for idx in [(0,) * p.dim(), (-1,) * p.dim()]:
            h = 1e-6
            with torch.no_grad():
                p[idx] += h
                up = total()
                p[idx] -= 2 * h
                down = total()
                p[idx] += h
            fd = (up - down) / (2 * h)
            assert torch.allclose(p.grad[idx], fd, rtol=1e-5, atol=1e-7 * (1 + abs(float(fd)))), (name, idx)
            checked += 1
    assert checked == 12


@pytest.mark.float32
def test_diffdecoder_deterministic_encoder_is_the_release_autoencoder():
    """encoder: deterministic (release cifar_ae, variational = False): z = E(x_0), no KL, beta must be 0."""
    nets = {"z_dim": 4, "encoder": SMALL, "decoder": {**SMALL, "dropout": 0.0}}
    method = {"family": "diffdec", "beta": 0.0, "weighting": "simple", "encoder": "deterministic",
              "phases": [{"name": "main", "fraction": 1.0, "schedule": {"name": "vp_linear"}}]}
    model = diffdec.build({"nets": nets, "method": method}, 1, 8)
    assert model.encoder.head.out_features == 4 and not model.stochastic
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    terms = diffdec.phase_loss(method, method["phases"][0])(model, x, torch.Generator().manual_seed(0))
    assert set(terms) == {"dsm"}
    assert torch.equal(diffdec.encode(model, x), model.encoder(x))
    with pytest.raises(ValueError, match="set beta: 0"):
        diffdec.phase_loss({**method, "beta": 0.01}, method["phases"][0])
    with pytest.raises(ValueError, match="known: stochastic, deterministic"):
        diffdec.build({"nets": nets, "method": {**method, "encoder": "exact"}}, 1, 8)


def test_encoder_heads_mean_pools_flatten_keeps_where():
    """head: mean pools the last feature map (DiffAE); flatten feeds it whole to the Linear (ScoreVAE App. B,
    flatten-linear): the Linear grows by the map's area, and the code then depends on where a feature lies."""
    from daebench.nets.unet import Encoder

    kw = {"in_channels": 1, "image_size": 16, "z_dim": 8, "model_channels": 8, "channel_mult": (1, 2, 4),
          "time_conditioned": True}
    torch.manual_seed(0)
    mean, flat = Encoder(**kw), Encoder(**kw, head="flatten")
    n = {k: sum(p.numel() for p in e.parameters()) for k, e in (("mean", mean), ("flatten", flat))}
    cur, area = 8 * 4, (16 // 4) ** 2  # channels and area of the last map (two halvings)
    assert n["flatten"] - n["mean"] == cur * (area - 1) * 8
    assert flat.head.in_features == cur * area and mean.head.in_features == cur
    # the same last feature map with its 4 x 4 positions permuted: pooling cannot tell, flattening can
    h = torch.randn(2, cur, 4, 4)
    perm = h.flatten(2)[:, :, torch.randperm(area)].view_as(h)
    pooled = [mean.head(torch.nn.functional.silu(mean.norm(a)).mean(dim=(2, 3))) for a in (h, perm)]
    flattened = [flat.head(torch.nn.functional.silu(flat.norm(a)).flatten(1)) for a in (h, perm)]
    assert torch.allclose(*pooled, atol=1e-6) and not torch.allclose(*flattened, atol=1e-3)
    assert flat(torch.randn(2, 1, 16, 16), torch.full((2,), 0.3)).shape == (2, 8)
    with pytest.raises(ValueError, match="unknown encoder head 'max'"):
        Encoder(**kw, head="max")


@pytest.mark.float32
def test_the_study_encoders_flatten_by_default_and_mean_pooling_is_an_option():
    """From params.yaml as a job receives it: ScoreVAE's, the beta-VAE's and DiffDecoder's encoders end in
    flatten-linear (the paper's App. B, the releases' enc_pool); encoder_head: mean shrinks the Linear by
    (area - 1) x channels x outputs and nothing else."""
    from daebench.config import load
    from daebench.jobs.training import train_slice

    config = load(ROOT / "params.yaml", ROOT / "workflow/schemas/params.schema.yaml")
    for method in ("scorevae", "vae", "diffdec", "diffdec_b0"):
        cfg = train_slice(config, "digits", method)
        assert cfg["method"]["encoder_head"] == "flatten", method  # filled at validation, so in the job's slice
        fam = get_family(cfg["method"]["family"])
        enc = cfg["nets"]["encoder"]
        cur, area = enc["model_channels"] * enc["channel_mult"][-1], (16 // 2 ** (len(enc["channel_mult"]) - 1)) ** 2
        if method == "scorevae":
            cfg["prior"]["nets"]["decoder"] = {**cfg["prior"]["nets"]["decoder"], "model_channels": 8}
        flat = fam.build(cfg, 1, 16)
        pooled = fam.build({**cfg, "method": {**cfg["method"], "encoder_head": "mean"}}, 1, 16)
        outs = flat.encoder.head.out_features
        assert flat.encoder.head.in_features == cur * area and pooled.encoder.head.in_features == cur, method
        n = [sum(p.numel() for p in m.parameters()) for m in (flat, pooled)]
        assert n[0] - n[1] == (area - 1) * cur * outs, method
    assert "encoder_head" not in train_slice(config, "digits", "dae_2phase_sc4")["method"]  # DiffAE's pooling stays


class ImageMixturePrior(nn.Module):
    """The closed-form eps of two images' mixture, +-pattern plus N(0, s^2) per pixel, under the VP SDE."""

    def __init__(self, pattern):
        super().__init__()
        self.pattern = pattern

    def forward(self, x, t, z=None):
        alpha = vp_linear(t.double()).to(x.dtype).view(-1, 1, 1, 1)
        sigma = sigma_from_alpha(alpha)
        var = alpha**2 * TOY_S**2 + sigma**2
        means = torch.stack([alpha * self.pattern, -alpha * self.pattern])  # [2, B, C, H, W]
        resp = (-0.5 * (x - means).square().flatten(2).sum(-1) / var.view(1, -1)).softmax(0)[..., None, None, None]
        return -sigma * (resp * -(x - means) / var).sum(0)


@pytest.mark.float32
def test_scorevae_with_its_flatten_head_encoder_learns_an_image_mixture():
    """The toy above with the study's own time-dependent U-Net encoder and its default flatten-linear head: on
    8 x 8 images +-pattern (a left/right split, zero mean over the image, so pooled features see no sign) plus
    noise, the DSM term alone makes z keep the cluster."""
    from daebench.nets.unet import Encoder

    pattern = torch.zeros(1, 8, 8)
    pattern[..., :4], pattern[..., 4:] = 0.5, -0.5

    def clusters(n, g):
        label = torch.randint(0, 2, (n,), generator=g)
        return (2 * label - 1).float().view(-1, 1, 1, 1) * pattern + TOY_S * torch.randn(n, 1, 8, 8, generator=g), label

    torch.manual_seed(0)
    model = nn.Module()
    model.prior, model.corrector, model.schedule = ImageMixturePrior(pattern), None, vp_linear
    model.encoder = Encoder(1, 8, 4, model_channels=8, channel_mult=(1, 2), time_conditioned=True,
                            head=vpvae.ENCODER_HEAD)
    loss, g = scorevae.ScoreVAELoss("encoder", 0.01, "simple", "release"), torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.encoder.parameters(), lr=2e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(400):
            terms = loss(model, clusters(64, g)[0], g)
            opt.zero_grad()
            sum(v.mean() for v in terms.values()).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    x, label = clusters(500, torch.Generator().manual_seed(99))
    with torch.no_grad():
        mu, logvar = scorevae._posterior0(model, x)
        z = vpvae.sample_z(mu, logvar, torch.Generator().manual_seed(1))
    # a collapsed encoder keeps ~0 nats; naming the cluster takes log 2 = 0.69
    assert vpvae.kl_standard_normal(mu, logvar).mean() > 0.5
    assert probe_accuracy(z, label) > 0.95


@pytest.mark.float32
def test_encoder_score_and_its_gradient_run_in_float32_under_bf16_autocast():
    """compute.amp bf16 wraps training in autocast; ScoreVAE's decoder is the encoder's input gradient and its
    loss differentiates that again, so encoder_score leaves autocast: under CPU bf16 autocast the score and the
    encoder's parameter gradient through it equal the float32 ones exactly; bf16 itself would be far off."""
    from daebench.nets.unet import Encoder

    torch.manual_seed(0)
    enc = Encoder(1, 8, 2 * 4, model_channels=8, channel_mult=(1, 2), time_conditioned=True).float()
    x, t, z = torch.randn(3, 1, 8, 8), torch.full((3,), 0.4), torch.randn(3, 4)

    def score_and_grad(autocast: bool):
        enc.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            s = scorevae.encoder_score(enc, x, t, z, log_q="release", create_graph=True)
        s.square().sum().backward()
        return s.detach(), enc.head.weight.grad.clone()

    (s32, g32), (s_amp, g_amp) = score_and_grad(False), score_and_grad(True)
    assert s_amp.dtype == torch.float32
    assert torch.equal(s32, s_amp) and torch.equal(g32, g_amp)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what autocast would have given: visibly different
        xb = x.detach().requires_grad_(True)
        mu, logvar = vpvae.posterior(enc(xb, t))
        (sb,) = torch.autograd.grad((-0.5 * (z - mu).square() / logvar.exp()).sum(), xb)
    assert (sb.float() - s32).abs().max() > 1e-4 * s32.abs().max()


# --- the prior row of Table 1 ---------------------------------------------------------------------------

class GaussianDataEps(nn.Module):
    """The exact eps of data N(0, s^2 I) under the VP SDE: E[eps | x_t] = sigma_t x_t / (alpha_t^2 s^2 + sigma_t^2)."""

    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x, t, z=None):
        alpha = vp_linear(t.double()).to(x.dtype).view(-1, 1, 1, 1)
        sigma = sigma_from_alpha(alpha)
        return sigma * x / (alpha**2 * self.s**2 + sigma**2)


def test_prior_samples_and_heldout_eps_mse_of_an_exact_prior_match_the_closed_form():
    """uncond.sample draws from the model's distribution (here N(0, s^2)); uncond.heldout_eps_mse is the
    training loss on given images, whose expectation for the exact eps is the posterior variance of eps,
    E_t[alpha_t^2 s^2 / (alpha_t^2 s^2 + sigma_t^2)], t ~ U(t_min, 1) (integrated here by quadrature)."""
    from daebench.methods import uncond

    s, method = 0.5, {"phases": [{"name": "main", "schedule": {"name": "vp_linear"}}]}
    model, g = GaussianDataEps(s), torch.Generator().manual_seed(0)
    x = uncond.sample(model, method, 4000, (1, 2, 2), 200, g, {"t_min": 1e-3, "denoise": True}, "sde")
    assert x.shape == (4000, 1, 2, 2)
    assert abs(float(x.std()) - s) < 0.02 and abs(float(x.mean())) < 0.02
    x0 = s * torch.randn(20000, 1, 2, 2, generator=g)
    mse = uncond.heldout_eps_mse(model, method, x0, g)
    assert mse.shape == (20000,)
    t = torch.linspace(vpvae.T_MIN_TRAIN, 1.0, 20001, dtype=torch.float64)
    a2 = vp_linear(t) ** 2
    expected = float(torch.trapezoid(a2 * s**2 / (a2 * s**2 + 1 - a2), t) / (1 - vpvae.T_MIN_TRAIN))
    assert abs(float(mse.mean()) - expected) < 4 * float(mse.std()) / len(mse) ** 0.5, (float(mse.mean()), expected)
