"""DBAE: the VP bridge (closed-form marginal, preconditioning limits), the bridge sampler with an
exact denoiser, NFE accounting, the DBAE loss and TC estimator, and the latent prior."""
import math

import numpy as np
import pytest
import torch

from daebench.diffusion.bridge import VPBridge, karras_times, nfe_of, sample_bridge, steps_for_nfe
from daebench.methods import dbae, latent_prior
from daebench.methods.family import reconstruct

BR = VPBridge()
F64 = torch.float64


def test_bridge_marginal_matches_the_vp_sde_conditioned_on_its_endpoint():
    """Simulate the VP SDE forward from a fixed x_0 (exact Gaussian transitions 0 -> t -> T), then regress
    x_t on x_T: slope a_t, intercept b_t x_0 and residual variance c_t of the Doob h-transform."""
    g = torch.Generator().manual_seed(0)
    x0, n = 0.7, 400_000
    T = torch.tensor(1.0, dtype=F64)
    for t in (0.05, 0.4, 0.9):
        t = torch.tensor(t, dtype=F64)
        al_t, al_T = BR.log_alpha(t).exp(), BR.log_alpha(T).exp()
        x_t = al_t * x0 + (1 - al_t**2).sqrt() * torch.randn(n, generator=g, dtype=F64)
        r = al_T / al_t
        x_T = r * x_t + (1 - r**2).sqrt() * torch.randn(n, generator=g, dtype=F64)
        design = torch.stack([x_T, torch.ones(n, dtype=F64)], 1)
        slope, intercept = torch.linalg.lstsq(design, x_t[:, None]).solution.squeeze().tolist()
        resid = (x_t - design @ torch.tensor([slope, intercept], dtype=F64)).var().item()
        a, b, c = (float(v) for v in BR.coefficients(t))
        assert slope == pytest.approx(a, abs=0.01)
        assert intercept == pytest.approx(b * x0, abs=0.01)
        assert resid == pytest.approx(c, rel=0.02)


def test_bridge_endpoints_and_sampled_marginal():
    a, b, c = BR.coefficients(torch.tensor([0.0, 1.0], dtype=F64))
    assert a.tolist() == pytest.approx([0.0, 1.0], abs=1e-12) and b.tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    assert c.tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    g = torch.Generator().manual_seed(1)
    x0, x_T = torch.full((200_000, 1), -0.3, dtype=F64), torch.full((200_000, 1), 0.8, dtype=F64)
    t = torch.full((200_000,), 0.5, dtype=F64)
    x_t = BR.sample_marginal(x0, x_T, t, torch.randn(x0.shape, generator=g, dtype=F64))
    a, b, c = (float(v) for v in BR.coefficients(torch.tensor(0.5, dtype=F64)))
    assert x_t.mean().item() == pytest.approx(a * 0.8 - b * 0.3, abs=3e-3)
    assert x_t.var().item() == pytest.approx(c, rel=0.02)


def test_preconditioning_limits():
    p = BR.precondition(torch.tensor([1e-8, 1e-6, 1e-4], dtype=F64))
    # t -> 0: the denoiser becomes the identity on x_t = x_0
    assert p["c_skip"].tolist() == pytest.approx([1, 1, 1], abs=1e-3)
    assert (p["c_out"].diff() > 0).all() and p["c_out"][0] < 1e-3
    # t = T: x_t = x_T carries nothing about x_0 (cov 0), so D is all network, scaled by sigma_0
    pT = BR.precondition(torch.tensor([1.0], dtype=F64))
    assert pT["c_skip"].item() == pytest.approx(0.0, abs=1e-12)
    assert pT["c_out"].item() == pytest.approx(BR.sigma_0)
    assert pT["c_in"].item() == pytest.approx(1 / BR.sigma_T)
    # the network's effective target (x_0 - c_skip x_t) / c_out has unit variance at every t (cov = 0):
    # Var(x_0 - c_skip x_t) = sigma_0^2 - 2 c_skip b sigma_0^2 + c_skip^2 A = c_out^2
    tt = torch.linspace(0.01, 0.99, 9, dtype=F64)
    a, b, c = BR.coefficients(tt)
    q = BR.precondition(tt)
    A = a**2 * BR.sigma_T**2 + b**2 * BR.sigma_0**2 + c
    var = BR.sigma_0**2 - 2 * q["c_skip"] * b * BR.sigma_0**2 + q["c_skip"] ** 2 * A
    torch.testing.assert_close(var / q["c_out"] ** 2, torch.ones_like(tt))


def gaussian_denoiser(scale):
    """Exact E[x_0 | x_t, x_T] when x_0 | x_T ~ N(x_T / 2, scale^2) (per dimension)."""

    def fn(x_t, t, cond):
        x_T = cond
        a, b, c = (float(v) for v in BR.coefficients(t[0].double()))
        m = 0.5 * x_T
        return m + b * scale**2 / (b**2 * scale**2 + c) * (x_t - a * x_T - b * m)

    return fn


def test_bridge_ode_lands_on_the_endpoint_conditioned_mean():
    x_T = torch.randn(2000, 1, generator=torch.Generator().manual_seed(0), dtype=F64)
    errs = []
    for steps in (25, 200):
        out = sample_bridge(gaussian_denoiser(0.3), x_T, karras_times(steps), x_T, bridge=BR, clip_x0=False)
        errs.append((out - 0.5 * x_T).abs().mean().item())
    assert errs[1] < 0.02 and errs[1] < errs[0] / 2


def test_bridge_sde_samples_the_endpoint_conditioned_distribution():
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(4000, 1, generator=g, dtype=F64)
    out = sample_bridge(gaussian_denoiser(0.3), x_T, karras_times(100), x_T, g, bridge=BR, churn=0.33, clip_x0=False)
    r = out - 0.5 * x_T
    assert abs(r.mean().item()) < 0.02
    assert r.std().item() == pytest.approx(0.3, rel=0.08)


@pytest.mark.parametrize("solver,churn", [("heun", 0.0), ("euler", 0.0), ("heun", 0.3), ("euler", 0.5)])
def test_nfe_accounting_counts_network_calls(solver, churn):
    calls = []

    def model(x, t, cond):
        calls.append(1)
        return torch.zeros_like(x)

    for budget in (1, 2, 10, 20, 51):
        calls.clear()
        steps = steps_for_nfe(budget, solver, churn)
        sample_bridge(model, torch.ones(2, 1), karras_times(steps), None, torch.Generator().manual_seed(0),
                      bridge=BR, solver=solver, churn=churn)
        assert len(calls) == nfe_of(steps, solver, churn)
        assert len(calls) <= max(budget, nfe_of(1, solver, churn))
    assert [steps_for_nfe(n, "heun", 0.0) for n in (10, 20, 50, 100)] == [5, 10, 25, 50]


def test_karras_times():
    ts = karras_times(10)
    assert ts[0] == pytest.approx(1 - 1e-4) and ts[-2] == pytest.approx(1e-4) and ts[-1] == 0
    assert (ts.diff() < 0).all()


def tiny_cfg(encoder="stochastic", tc=0.0):
    method = {"family": "dbae", "encoder": encoder, "tc_weight": tc, "bridge": {},
              "phases": [{"name": "main", "fraction": 1.0}]}
    nets = {"z_dim": 4, "decoder": {"model_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
                                    "attention_resolutions": [], "dropout": 0.0},
            "encoder": {"model_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": []},
            "endpoint": {"model_channels": 8}}
    return {"nets": nets, "method": method}


def test_dbae_loss_terms_and_gradients_reach_all_three_networks():
    cfg = tiny_cfg(tc=0.5)
    torch.manual_seed(0)
    model = dbae.build(cfg, 1, 16)
    x = torch.rand(6, 1, 16, 16) * 2 - 1
    terms = dbae.phase_loss(cfg["method"], cfg["method"]["phases"][0])(
        model, x, torch.Generator().manual_seed(0))
    assert set(terms) == {"bridge", "tc"} and all(v.shape == (6,) for v in terms.values())
    sum(v.mean() for v in terms.values()).backward()
    for part in (model.encoder, model.endpoint, model.decoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    with pytest.raises(ValueError, match="needs q\\(z\\|x\\)"):
        dbae.phase_loss(tiny_cfg("deterministic", 0.5)["method"], {})


def test_dbae_reconstruct_shapes_and_encoder_sigma_range():
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = dbae.build(cfg, 1, 16).eval()
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    mu, sigma = dbae.posterior(model, x)
    assert mu.shape == (3, 4) and ((sigma > 0.01) & (sigma < math.exp(5) + 0.02)).all()
    out = reconstruct(dbae.FAMILY, model, cfg["method"], x, "endpoint", 5, torch.Generator(), {"solver": "heun"})
    assert out.shape == x.shape and out.abs().max() <= 1
    with pytest.raises(ValueError, match="known: endpoint"):
        reconstruct(dbae.FAMILY, model, cfg["method"], x, "inversion", 5, torch.Generator(), {})
    assert dbae.cost(cfg["method"], "endpoint", 10, {"solver": "heun"}) == {"nfe_encoder": 1, "nfe_endpoint": 1,
                                                                          "nfe_decode": 9}


def test_sampler_defaults_are_the_schemas():
    """The defaults a sampler block without some keys decodes with (PPL passes only clip_x0, whatever the family)
    are dbae.sampler's in the schema."""
    from pathlib import Path

    import yaml

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/params.schema.yaml").read_text())
    props = schema["properties"]["dbae"]["properties"]["sampler"]["properties"]
    assert dbae.SAMPLER_DEFAULTS == {k: v["default"] for k, v in props.items()}

def test_total_correlation_estimate_matches_the_gaussian_closed_form():
    """Codes mu ~ N(0, S) with posterior noise s^2: q(z) = N(0, S + s^2 I), whose TC is
    1/2 (sum_k log C_kk - log det C). Independent mu: TC = 0; duplicated mu (z_2 = z_1 + noise): 0.51."""
    g = torch.Generator().manual_seed(0)
    m, s = 2048, 0.5
    sigma = torch.full((m, 2), s)
    mu_ind = torch.randn(m, 2, generator=g)
    shared = torch.randn(m, 1, generator=g)
    mu_dup = torch.cat([shared, shared], 1)
    c = torch.tensor([[1 + s**2, 1.0], [1.0, 1 + s**2]], dtype=F64)
    exact_dup = 0.5 * (torch.log(torch.diag(c)).sum() - torch.logdet(c)).item()
    tc = {}
    for name, mu in (("ind", mu_ind), ("dup", mu_dup)):
        z = mu + s * torch.randn(m, 2, generator=g)
        tc[name] = dbae.total_correlation(z, mu, sigma).mean().item()
    assert tc["ind"] == pytest.approx(0.0, abs=0.1)
    assert tc["dup"] == pytest.approx(exact_dup, abs=0.1)


def test_latent_prior_standardisation_round_trips_and_survives_a_checkpoint():
    z = torch.randn(500, 6, generator=torch.Generator().manual_seed(0)) * torch.arange(1, 7) + 3
    prior = latent_prior.build({"prior": {"hidden": 16, "layers": 2}, "z_dim": 6})
    prior.fit_standardisation(z)
    u = prior.standardise(z)
    torch.testing.assert_close(u.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(u.std(0), torch.ones(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(prior.unstandardise(u), z)
    again = latent_prior.build({"prior": {"hidden": 16, "layers": 2}, "z_dim": 6})
    again.load_state_dict(prior.state_dict())
    torch.testing.assert_close(again.z_mean, z.mean(0))
    samples = latent_prior.sample(again, 4, 3, torch.Generator().manual_seed(0))
    assert samples.shape == (4, 6) and torch.isfinite(samples).all()


def test_latent_prior_learns_a_bimodal_distribution():
    """A fitted prior's samples land on both modes of a two-mode code distribution, the larger mode keeping the
    larger share, in the codes' units (undone standardisation). A Gaussian target would not tell a trained
    prior from one that returns its input noise (unstandardised noise has the codes' mean and scale already);
    here that sampler puts most samples in the empty middle, between the modes."""
    import tempfile
    from pathlib import Path

    from daebench.train import train_phase

    g = torch.Generator().manual_seed(0)
    modes = torch.tensor([[4.0, -1.0], [-2.0, 3.0]])
    n, share_a, sd = 4000, 0.7, 0.3
    which = (torch.rand(n, generator=g) >= share_a).long()  # 0: mode A (70 %), 1: mode B
    z = modes[which] + sd * torch.randn(n, 2, generator=g)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small MLP: extra threads only contend with the other jobs on the machine
    try:
        torch.manual_seed(0)
        prior = latent_prior.build({"prior": {"hidden": 64, "layers": 3}, "z_dim": 2})
        prior.fit_standardisation(z)
        d = Path(tempfile.mkdtemp())
        tc = {"batch_size": 256, "lr": 2e-3, "warmup_examples": 0, "ema_decay": 0.99, "checkpoint_every": 1000,
              "log_every": 1000, "seed": 0, "device": "cpu"}
        final = train_phase(prior, latent_prior.loss(), prior.standardise(z), steps=800, phase_index=0,
                            train_cfg=tc, ckpt_path=d / "r.pt", out_path=d / "o.pt", config={}, progress=False)
        prior.load_state_dict(final["ema"])  # evaluation uses the EMA weights, as the pipeline does
        m = 4000
        s = latent_prior.sample(prior.eval(), m, 50, torch.Generator().manual_seed(1))
    finally:
        torch.set_num_threads(threads)
    assert np.isfinite(s.numpy()).all()

    def near(samples):
        """Per sample: 0 / 1 for within 1.0 (3.3 sd) of mode A / B, -1 for neither."""
        dist = torch.cdist(samples, modes)
        return torch.where(dist.min(1).values < 1.0, dist.argmin(1), -1)

    hit = near(s)
    on_a, on_b = (hit == 0).float().mean().item(), (hit == 1).float().mean().item()
    assert on_a + on_b > 0.9, (on_a, on_b)
    # The share of mode A. The loss is DiffAE's L1 on eps: the network learns the conditional median of the
    # noise, not its mean, which pulls DDIM's paths towards the majority mode (measured: 0.83-0.87 for 0.7 at
    # 600-3000 steps, 0.72 with an L2 loss; 0.52 for an even mixture). So: above the true 0.7 by at most 0.22,
    # which both a prior blind to the weights (0.5) and one collapsed onto mode A (1.0) fail. Sampling noise
    # (binomial, sqrt(0.2 / 4000) = 0.007) is small beside either margin.
    assert 0.7 - 0.04 < on_a / (on_a + on_b) < 0.7 + 0.22, (on_a, on_b)
    for k in (0, 1):  # each mode's samples sit at its centre; the median pull narrows them, never to a point
        assert s[hit == k].mean(0).tolist() == pytest.approx(modes[k].tolist(), abs=0.15)
        assert all(0.02 < v < 1.3 * sd for v in s[hit == k].std(0).tolist()), s[hit == k].std(0)
    # what the trained network adds: its noise alone, unstandardised, lands between the modes
    noise = prior.unstandardise(torch.randn(m, 2, generator=torch.Generator().manual_seed(1)))
    assert (near(noise) >= 0).float().mean().item() < 0.5


# --- the tractable latent's evaluation: the attribute probe (Table 1) and TAD / ATTRS (Table 3) ---------
def _attributes(n=400, seed=0):
    """Two balanced, independent binary attributes: a (alternating) and b (in pairs)."""
    i = np.arange(n)
    return (i % 2).astype(np.int64), ((i // 2) % 2).astype(np.int64), np.random.default_rng(seed)


def test_tad_counts_a_dimension_that_alone_determines_an_attribute():
    """Dimension 0 is attribute a plus small noise (AUROC 1 on every fold), the others constant (AUROC 0.5):
    a is captured with gap 1 - 0.5, so TAD 0.5 and ATTRS 1; b, seen by no dimension (AUROC <= ~0.55 < 0.75),
    is not. A second dimension as good as the first closes the gap (TAD 0, still 1 attribute); an attribute
    that duplicates a explains all of a's entropy (> 20 %), so neither counts."""
    from daebench.evaluate.representation import entropy_reduction, tad

    a, b, rng = _attributes()
    n = len(a)
    z = np.zeros((n, 3))
    z[:, 0] = a + 0.1 * rng.standard_normal(n)
    out = tad(z, {"a": a, "b": b})
    assert out["tad"] == pytest.approx(0.5) and out["attrs"] == 1.0 and out["tad_std"] == pytest.approx(0.0)
    assert out["attributes"] == ["a", "b"] and out["entropy_reduction"] == {"a": 0.0, "b": 0.0}
    z2 = z.copy()
    z2[:, 1] = a + 0.1 * rng.standard_normal(n)
    assert tad(z2, {"a": a, "b": b})["tad"] == pytest.approx(0.0) and tad(z2, {"a": a, "b": b})["attrs"] == 1.0
    dup = tad(z, {"a": a, "a_again": a.copy(), "b": b})
    assert dup["tad"] == 0.0 and dup["attrs"] == 0.0
    assert entropy_reduction(np.stack([a, a, b], 1)).tolist() == pytest.approx([1.0, 1.0, 0.0])
    # a dimension that determines b too: both captured, each with a gap of about 0.5 (the second best is now
    # the other attribute's dimension, an AUROC of 0.5 up to the sampling noise of two independent attributes)
    z[:, 2] = -b + 0.1 * rng.standard_normal(n)  # the sign does not matter
    both = tad(z, {"a": a, "b": b})
    assert both["attrs"] == 2.0 and both["tad"] == pytest.approx(1.0, abs=0.06)


def test_attribute_probe_on_separable_and_on_uninformative_codes():
    """Codes that determine everything: a class per quadrant, a binary attribute = the sign of z_0, a continuous
    one linear in z_1: accuracy, AUROC and AP 1, Pearson r 1 and MSE 0. A continuous attribute z_0 + noise of
    variance 3 (z_0 of unit variance) has r = 1 / sqrt(1 + 3) = 0.5. A binary attribute independent of the
    codes has AP near its base rate, 0.5."""
    from daebench.evaluate.representation import linear_probe

    rng = np.random.default_rng(0)

    def split(n):
        z = rng.standard_normal((n, 2))
        z += np.sign(z) * 0.5  # a margin around both axes: the quadrants are linearly separable
        y = (z[:, 0] > 0).astype(int) + 2 * (z[:, 1] > 0).astype(int)
        return z, y, {"pos": (z[:, 0] > 0).astype(int), "coin": rng.integers(0, 2, n)}, \
            {"lin": 3 * z[:, 1] - 1, "noisy": z[:, 0] / np.std(z[:, 0]) + np.sqrt(3) * rng.standard_normal(n)}

    za, ya, ba, ca = split(4000)
    zb, yb, bb, cb = split(4000)
    out = linear_probe(za, zb, ya, yb, {"pos": ba["pos"]}, {"pos": bb["pos"]}, {"lin": ca["lin"]}, {"lin": cb["lin"]})
    assert out["class_accuracy"] == 1.0 and out["class_auroc"] == pytest.approx(1.0)
    assert out["ap"] == pytest.approx(1.0) and out["pearson_r"] == pytest.approx(1.0)
    assert out["mse"] == pytest.approx(0.0, abs=1e-12)
    noisy = linear_probe(za, zb, ya, yb, {"coin": ba["coin"]}, {"coin": bb["coin"]}, {"noisy": ca["noisy"]},
                         {"noisy": cb["noisy"]})
    # sampling error of r at n = 4000: ~ (1 - r^2) / sqrt(n) = 0.012; of the AP of a coin: ~ 0.01
    assert noisy["pearson_r"] == pytest.approx(0.5, abs=0.05)
    assert noisy["ap"] == pytest.approx(bb["coin"].mean(), abs=0.05)
    assert noisy["per_attribute"]["pearson_r"]["noisy"] == noisy["pearson_r"]
