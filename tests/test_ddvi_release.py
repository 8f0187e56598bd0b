"""DDVI's release recipe (`ddvi.recipe: release`, methods/ddvi.py RECIPES): each of its pieces against a hand
computation on a tiny model, and the switch against the jobs' parameters in a dry run."""

import pytest
import torch
import yaml

from conftest import snakemake
from daebench.jobs.ddvi import IMPLIED_BY_V1
from daebench.methods import get_ddvi_family
from daebench.methods import priors as P
from daebench.methods.ddvi import RECIPES
from daebench.methods.ddvi_common import Ctx
from daebench.methods.objective import Objective, Stage
from daebench.train.stages import stage_optimizers
from test_ddvi import StdNormal
from test_presets import job_cfgs

NETS = {"hidden": 8, "layers": 1, "context": 3, "denoiser": {"hidden": 16, "layers": 2}}
RELEASE = {"sleep": "wake_sleep", **RECIPES["release"]["method"], "steps": 6}
SQUARE = {"noise": 0.06, "noise_dir": "isotropic"}


def _huber(d):
    a = d.abs()
    return torch.where(a < 1, 0.5 * d.square(), a - 0.5)


def _model(method=RELEASE, dim=6):
    torch.manual_seed(0)
    return get_ddvi_family("ddvi").build(NETS, dim, method, False).double()


def test_the_release_wake_loss_matches_a_hand_computation():
    """recon + kl_weight (KL(q(y_T|x) || N(0, I)) - log p(z)) + chain_weight Huber(y_{t-1} - mu~_t(y_t, z)) at one
    uniform t per example, the chain the deterministic DDIM, mu~ the noising posterior's mean (Ho et al. eq. 7)."""
    from daebench.methods.ddvi import ddim_chain

    model = _model({**RELEASE, "beta": [0.05, 0.3]})
    for p in model.denoiser.parameters():  # steps far from the noising posterior's: the Huber term is not ~0
        torch.nn.init.normal_(p, std=0.8)
    ctx = Ctx(prior=StdNormal(), likelihood="bce", kl_weight=0.003)
    x, n = torch.rand(5, 6, dtype=torch.float64), 5
    method = {**RELEASE, "beta": [0.05, 0.3], "chain_weight": 0.7}
    torch.manual_seed(7)  # the context network's dropout draws from the global generator
    terms = get_ddvi_family("ddvi").stages(method, ctx)[0].fn(model, (x, torch.full((n,), -1)),
                                                              torch.Generator().manual_seed(3))
    torch.manual_seed(7)
    g = torch.Generator().manual_seed(3)
    h = model.encoder(x)
    mu, logvar = h[:, :2], h[:, 2:4].clamp(-12, 8)
    c = model.context_net(x)
    y_T = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g).double()
    ys = ddim_chain(model, y_T, c)
    z = ys[-1]
    t = torch.randint(1, model.T + 1, (n,), generator=g)
    logits = model.decoder(z)
    recon = -(x * torch.nn.functional.logsigmoid(logits) + (1 - x) * torch.nn.functional.logsigmoid(-logits)).mean(1)
    kl_yT = 0.5 * (logvar.exp() + mu.square() - 1 - logvar).sum(1)
    assert torch.allclose(terms["recon"], recon, atol=1e-12)
    assert torch.allclose(terms["kl"], 0.003 * (kl_yT - StdNormal().log_prob(z)), atol=1e-12)
    ab = model.alpha_bar
    want = []
    for i in range(n):
        s = int(t[i])
        beta = model.betas[s - 1]
        y_t, y_prev = ys[model.T - s][i], ys[model.T - s + 1][i]
        mean = (ab[s - 1].sqrt() * beta / (1 - ab[s])) * z[i] + ((1 - beta).sqrt() * (1 - ab[s - 1]) / (1 - ab[s])) * y_t
        want.append(_huber(y_prev - mean).mean())
    want = torch.stack(want)
    assert torch.allclose(terms["chain"], 0.7 * want, atol=1e-12)
    assert float(want.detach().abs().max()) > 1e-3 and bool((t > 1).any())  # a live term, not the t = 1 zero
    assert torch.allclose(want[t == 1], torch.zeros(()).double(), atol=1e-12)  # at t = 1 the step is z itself


class _ReleaseConditionalLinear(torch.nn.Module):  # topwasu/DDVI models/simple.py at 8295f2b, transcribed
    def __init__(self, num_in, num_out, n_steps):
        super().__init__()
        self.lin, self.embed = torch.nn.Linear(num_in, num_out), torch.nn.Embedding(n_steps, num_out)

    def forward(self, x, t):
        return self.lin(x) + self.embed(t)


class _ReleaseWAUX(torch.nn.Module):  # its ConditionalModelWAUX (with_skip) and ConditionalModel (without)
    def __init__(self, d_in, n_steps, d_out, with_skip):
        super().__init__()
        self.lins = torch.nn.ModuleList(_ReleaseConditionalLinear(d_in if i == 0 else 128, 128, n_steps)
                                        for i in range(4))
        self.lin_mean, self.with_skip = torch.nn.Linear(128, d_out), with_skip

    def forward(self, z, t):
        za = torch.relu(self.lins[0](z, t))
        za2 = torch.relu(self.lins[1](za, t))
        za2 = torch.relu(self.lins[2](za2, t)) + (za if self.with_skip else 0)
        return self.lin_mean(torch.relu(self.lins[3](za2, t)))


@pytest.mark.parametrize("skip", [True, False])
def test_the_release_denoiser_style_computes_the_releases_network(skip):
    """nets.denoiser.style: release is ConditionalModelWAUX (the main denoiser: ReLU, layer 1's output added to
    layer 3's) and ConditionalModel (stage 1's: no residual) given the same weights; its step embeddings start in
    U[0, 1) as the release's, where App. E's style starts them at 0."""
    from daebench.nets.mlp import TimeMLP

    torch.manual_seed(0)
    ours = TimeMLP(5, 2, 7, 128, 4, "release", skip=skip).double()
    theirs = _ReleaseWAUX(5, 8, 2, skip).double()
    for i, layer in enumerate(theirs.lins):
        layer.lin.load_state_dict(ours.lins[i].state_dict())
        layer.embed.load_state_dict(ours.embs[i].state_dict())
    theirs.lin_mean.load_state_dict(ours.out.state_dict())
    x, t = torch.randn(6, 5, dtype=torch.float64), torch.tensor([0, 1, 3, 5, 7, 2])
    assert torch.allclose(ours(x, t), theirs(x, t), atol=1e-12)
    other = TimeMLP(5, 2, 7, 128, 4, "release", skip=not skip).double()
    other.load_state_dict(ours.state_dict())
    assert not torch.allclose(other(x, t), theirs(x, t), atol=1e-3)  # the residual is there exactly where it should be
    w = torch.cat([e.weight.detach().flatten() for e in ours.embs])
    assert 0 <= float(w.min()) and float(w.max()) < 1 and float(w.std()) > 0.2
    assert all(float(e.weight.detach().abs().max()) == 0 for e in TimeMLP(5, 2, 7, 128, 4).embs)
    with pytest.raises(ValueError, match="nets.denoiser.style"):
        TimeMLP(5, 2, 7, style="relu")


def test_the_release_wake_loss_needs_the_deterministic_chain():
    with pytest.raises(ValueError, match="chain: ddim"):
        get_ddvi_family("ddvi").stages({**RELEASE, "chain": "ddpm"}, Ctx(prior=StdNormal()))


def test_the_release_sleep_is_three_huber_updates_of_context_net_and_denoiser_on_prior_samples():
    """sleep_loss: release: Huber(eps_phi(y_t, c(x~), t) - eps) averaged over the latent dimensions, no KL at y_T,
    ``sleep_updates`` updates of the context network and the denoiser (the encoder no longer computes c)."""
    from daebench.methods.ddvi import release_sleep_terms

    model = _model()
    prior = P.StructuredPrior("square", SQUARE, {"samples": 300, "bandwidths": [0.05], "seed": 0})
    ctx = Ctx(prior=prior, likelihood="bce", kl_weight=0.003)
    stages = get_ddvi_family("ddvi").stages(RELEASE, ctx)
    assert [(s.name, s.modules, s.repeat) for s in stages][1] == ("sleep", ("context_net", "denoiser"), 3)
    z, x_t = torch.randn(4, 2, dtype=torch.float64), torch.rand(4, 6, dtype=torch.float64)
    torch.manual_seed(1)
    got = release_sleep_terms(model, x_t, z, torch.Generator().manual_seed(5))
    assert set(got) == {"sleep_diff"}
    torch.manual_seed(1)
    c = model.context_net(x_t)
    g = torch.Generator().manual_seed(5)
    t = torch.randint(1, model.T + 1, (4,), generator=g)
    ab = model.alpha_bar[t].double().unsqueeze(1)
    eps = torch.randn(z.shape, generator=g).double()
    pred = model.eps(ab.sqrt() * z + (1 - ab).sqrt() * eps, c, t)
    assert torch.allclose(got["sleep_diff"], _huber(pred - eps).mean(1), atol=1e-12)

    opts = stage_optimizers(model, stages, 1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    terms = stages[1].fn(model, (torch.rand(8, 6, dtype=torch.float64), torch.full((8,), -1)),
                         torch.Generator().manual_seed(0))
    opts[1].zero_grad()
    sum(v.mean() for v in terms.values()).backward()
    opts[1].step()
    changed = {n.split(".")[0] for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"context_net", "denoiser"}


def test_a_frozen_decoder_gets_no_update_until_its_fraction_of_training_is_over():
    model = _model({**RELEASE, "decoder_frozen": 0.5})
    ctx = Ctx(prior=StdNormal(), likelihood="bce", kl_weight=0.003)
    stages = get_ddvi_family("ddvi").stages({**RELEASE, "decoder_frozen": 0.5}, ctx)
    opt = stage_optimizers(model, stages, 1e-2)[0]
    batch = (torch.rand(8, 6, dtype=torch.float64), torch.full((8,), -1))
    changed = []
    for progress in (0.2, 0.6):
        ctx.progress = progress
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt.zero_grad(set_to_none=True)
        sum(v.mean() for v in stages[0].fn(model, batch, torch.Generator().manual_seed(0)).values()).backward()
        opt.step()
        changed.append({n.split(".")[0] for n, p in model.named_parameters() if not torch.equal(p, before[n])})
    assert changed[0] == {"encoder", "context_net", "denoiser"}           # gradients still flow through it
    assert changed[1] == {"encoder", "context_net", "denoiser", "decoder"}


def test_the_training_loop_runs_a_repeated_stage_that_many_times_per_step(tmp_path):
    from daebench.train import train_phase

    calls = {"a": 0, "b": 0}
    net = torch.nn.Linear(2, 1)

    def stage(name):
        def fn(model, batch, g):
            calls[name] += 1
            return {name: model(batch).square().mean(1)}
        return fn

    class Loss(Objective):
        def __init__(self):
            self.stages = [Stage("a", stage("a"), ()), Stage("b", stage("b"), (), 3)]

    train = {"batch_size": 4, "lr": 1e-3, "warmup_examples": 0, "ema_decay": 0.9, "checkpoint_every": 100,
             "log_every": 5, "seed": 0, "device": "cpu"}
    train_phase(torch.nn.Sequential(net), Loss(), torch.rand(16, 2), steps=5, phase_index=0, train_cfg=train,
                ckpt_path=tmp_path / "r.pt", out_path=tmp_path / "o.pt", config={}, progress=False)
    assert calls == {"a": 5, "b": 15}


def test_stage1_trains_encoder_and_decoder_through_a_context_free_chain_and_is_loaded_once_finished(tmp_path,
                                                                                                   monkeypatch):
    """The release's first model: its stage updates the encoder, the decoder and the context-free denoiser (not
    the main denoiser or context network); the job trains it into the model once, and a finished one on disk is
    loaded, not retrained."""
    from daebench.ddvi_study import DDVILoss
    from daebench.jobs import ddvi as jobs
    from daebench.tracking import NullRun

    method = {**RELEASE, "stage1": {**RELEASE["stage1"], "steps": 4, "examples": 64, "pretrain_examples": 0}}
    torch.manual_seed(0)
    fam = get_ddvi_family("ddvi")
    model = fam.build(NETS, 6, method, False)
    prior = P.StructuredPrior("square", SQUARE, {"samples": 300, "bandwidths": [0.05], "seed": 0})
    ctx = Ctx(prior=prior, likelihood="bce")
    terms = DDVILoss(fam, method, ctx, stage="stage1").stages[0].fn(
        model, (torch.rand(8, 6), torch.full((8,), -1)), torch.Generator().manual_seed(0))
    assert set(terms) == {"recon", "kl", "prior_diff"}
    cfg = {"method": method, "train": {"examples": 64, "batch_size": 16, "lr": 1e-2, "warmup_examples": 0,
                                       "ema_decay": 0.9, "checkpoint_every": 100, "log_every": 2, "seed": 0,
                                       "device": "cpu"}}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = tmp_path / "m.stage1.pt"
    data = (torch.rand(32, 6), torch.full((32,), -1))
    jobs._train_stage1(cfg, fam, model, ctx, data, NullRun(), "ddvi", out, progress=False)
    changed = {n.split(".")[0] for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"encoder", "decoder", "prior_denoiser"} and out.exists()
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}

    fresh = fam.build(NETS, 6, method, False)
    monkeypatch.setattr("daebench.train.train_phase", lambda *a, **k: pytest.fail("stage 1 trained again"))
    jobs._train_stage1(cfg, fam, fresh, ctx, data, NullRun(), "ddvi", out, progress=False)
    assert all(torch.equal(p, trained[n]) for n, p in fresh.named_parameters())


def test_recipe_release_sets_every_release_value_in_the_jobs_params(project):
    """`ddvi.recipe: release` in a dry run: each DDVI method's training slice carries every value of the recipe
    (Table 8's DDVI without the sleep term keeps sleep: none), the priors take the release's shapes and every
    method (baselines too) its networks' width, the baselines' own keys stay; without it no recipe key reaches a
    slice and the width is the study's."""
    targets = [f"results/ddvi/runs/unsup/{p}/{m}/seed0.json" for p in ("pinwheel", "swiss_roll", "square")
               for m in ("ddvi", "ddvi_nosleep", "aevb")]
    plain = snakemake(["-n", "-p", "--forceall", *targets], project)
    recipe = snakemake(["-n", "-p", "--forceall", *targets, "--config", "ddvi={recipe: release}"], project)
    assert plain.returncode == 0 and recipe.returncode == 0, (plain.stderr + recipe.stderr)[-3000:]
    runs = {(c["prior"]["name"], c["method"]["label"]): c for c in job_cfgs(recipe.stdout, "ddvi-train")}
    base = {(c["prior"]["name"], c["method"]["label"]): c for c in job_cfgs(plain.stdout, "ddvi-train")}
    assert len(runs) == len(base) == 9
    want = RECIPES["release"]
    for (prior, label), c in runs.items():
        assert c["prior"]["params"] == {**base[(prior, label)]["prior"]["params"], **want["priors"][prior]}
        plain_nets = base[(prior, label)]["nets"]
        assert c["nets"] == {**plain_nets, "hidden": 1000,
                             "denoiser": {**plain_nets["denoiser"], "style": "release", "layers": 4}} != plain_nets
        m = {**IMPLIED_BY_V1["method"], **c["method"]}  # a slice leaves out keys at their version-1 values
        if m["family"] == "ddvi":
            for key, value in want["method"].items():
                if key != "sleep":
                    assert m[key] == value, (label, key)
            assert m["sleep"] == base[(prior, label)]["method"]["sleep"]
        else:
            assert c["method"] == base[(prior, label)]["method"]
    study_nets = yaml.safe_load((project / "params.yaml").read_text())["ddvi"]["nets"]
    for c in base.values():
        assert c["nets"]["hidden"] == study_nets["hidden"] and "style" not in c["nets"]["denoiser"]
        assert not set(c["method"]) & {"wake_loss", "sleep_loss", "sleep_updates", "context_net", "stage1",
                                        "decoder_frozen"}
