"""DDVI's CIFAR-10 encoder / decoder (`ddvi_denoising_diffusion_variational_inference` App. E; nets/conv.py),
selected by ``ddvi.nets.arch: cnn``: shapes, App. E's channels, the NHWC order of the flat vectors, every
family's training step and evaluation on CIFAR-shaped data, the mlp default unchanged, and the job slices."""
import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from daebench import ddvi_study
from daebench.config import ConfigError, load, validate
from daebench.jobs import ddvi as ddvi_jobs
from daebench.methods import ddvi_common, get_ddvi_family
from daebench.nets.conv import ConvDecoder, ConvEncoder
from daebench.nets.mlp import mlp

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/params.schema.yaml"
CIFAR = (3, 32, 32)
D = 3 * 32 * 32
NETS = {"hidden": 16, "layers": 1, "context": 3, "denoiser": {"hidden": 16, "layers": 2},
        "made": {"hidden": 16, "layers": 2}, "aux": {"hidden": 16, "layers": 1}}
METHODS = {
    "aevb": {"family": "aevb", "kl_weight": 0.01, "anneal": True, "prior_weight": 5},
    "aevb_iaf": {"family": "aevb_iaf", "flows": 2, "kl_weight": 0.01, "anneal": True, "prior_weight": 5},
    "haevb": {"family": "haevb", "kl_weight": 0.01, "anneal": True},
    "aaeb": {"family": "aaeb", "noise": 0.3, "noise_end": 0.75},
    "ddvi": {"family": "ddvi", "steps": 3, "beta": [0.05, 0.3], "sleep": "wake_sleep", "kl_weight": 0.003},
    "ddvi_latent": {"family": "ddvi", "steps": 3, "beta": [0.05, 0.3], "sleep": "latent", "kl_weight": 0.5},
}


def count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def job_cfg(method: dict, setting: str = "unsup", arch: str = "cnn") -> dict:
    return {"setting": setting, "likelihood": "bce", "method": method, "nets": {**NETS, "arch": arch},
            "semi": {"labels": 4, "label_seed": 0},
            "prior": {"name": "pinwheel", "params": {"arms": 10, "radial_std": 0.3, "tangential_std": 0.05,
                                                     "rate": 0.25}},
            "kde": {"samples": 500, "bandwidths": [0.05], "seed": 0},
            "train": {"batch_size": 4, "lr": 1e-3, "warmup_examples": 0, "ema_decay": 0.0,
                      "checkpoint_every": 10**6, "log_every": 10**6, "seed": 0, "device": "cpu"}}


# --- the networks ----------------------------------------------------------------------------------------
def test_cnn_maps_flat_cifar_vectors_to_codes_and_back():
    enc, dec = ConvEncoder(CIFAR, 17), ConvDecoder(2, CIFAR)
    assert enc(torch.rand(5, D)).shape == (5, 17)
    assert dec(torch.randn(5, 2)).shape == (5, D)
    e, d = ddvi_common.encoder_decoder({**NETS, "arch": "cnn"}, CIFAR, 14)
    assert isinstance(e, ConvEncoder) and isinstance(d, ConvDecoder)
    assert e(torch.rand(2, D)).shape == (2, 14) and d(torch.randn(2, 2)).shape == (2, D)


def test_cnn_channels_are_app_e():
    """App. E: encoder (16, 32, 64, 128) + a linear layer; decoder Linear 2 -> 64, then (64, 32, 16, 3)."""
    enc, dec = ConvEncoder(CIFAR, 4), ConvDecoder(2, CIFAR)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128] and convs[0].in_channels == 3
    assert [m for m in enc.modules() if isinstance(m, nn.Linear)] == [enc.linear]
    assert (enc.linear.in_features, enc.linear.out_features) == (128, 4)  # 32 -> 32 -> 15 -> 6 -> 1
    tconvs = [m for m in dec.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [c.out_channels for c in tconvs] == [64, 32, 16, 3] and tconvs[0].in_channels == 64
    (lin,) = [m for m in dec.modules() if isinstance(m, nn.Linear)]
    assert (lin.in_features, lin.out_features) == (2, 64)
    assert not isinstance(dec.convs[-1], (nn.ReLU, nn.BatchNorm2d))  # logits out: the Bernoulli decoder's


def test_cnn_reads_and_writes_the_flat_vectors_in_the_datas_nhwc_order():
    """ddvi_study.load_data flattens the stored NHWC arrays: the encoder must see the image, not a scramble."""
    torch.manual_seed(0)
    enc, dec = ConvEncoder(CIFAR, 4).eval(), ConvDecoder(2, CIFAR).eval()
    img = torch.rand(3, *CIFAR)                                   # NCHW
    flat = img.permute(0, 2, 3, 1).reshape(3, -1)                 # NHWC, flattened, as the study stores it
    torch.testing.assert_close(enc(flat), enc.linear(enc.convs(img).flatten(1)))
    z = torch.randn(3, 2)
    out = dec.convs(dec.linear(z).reshape(3, 64, 1, 1))           # NCHW
    torch.testing.assert_close(dec(z), out.permute(0, 2, 3, 1).reshape(3, -1))


def test_cnn_needs_the_image_shape_and_32x32():
    with pytest.raises(ValueError, match="cnn needs the data's image shape"):
        ddvi_common.encoder_decoder({**NETS, "arch": "cnn"}, D, 4)
    with pytest.raises(ValueError, match="makes 32x32 images; the data are 28x28"):
        ConvDecoder(2, (1, 28, 28))
    with pytest.raises(ValueError, match="unknown ddvi.nets.arch 'resnet'"):
        ddvi_common.encoder_decoder({**NETS, "arch": "resnet"}, CIFAR, 4)
    assert ConvEncoder((1, 32, 32), 4)(torch.rand(2, 32 * 32)).shape == (2, 4)  # channels come from the data


@pytest.mark.parametrize("name", sorted(METHODS))
def test_mlp_default_builds_the_modules_it_built_before(name):
    """No arch (every existing config) or arch mlp: exactly the MLPs of before, weights included, whether the
    data's size comes as a flat dimension or as the image shape."""
    method = METHODS[name]
    fam = get_ddvi_family(method["family"])
    built = []
    for nets, dim in ((NETS, D), ({**NETS, "arch": "mlp"}, D), (NETS, CIFAR)):
        torch.manual_seed(0)
        built.append(fam.build(nets, dim, method, False))
    base = built[0]
    enc_out = base.encoder[-1].out_features
    assert count(base.encoder) == count(mlp(D, 16, 1, enc_out)) and count(base.decoder) == count(mlp(2, 16, 1, D))
    torch.manual_seed(0)
    enc, dec = mlp(D, 16, 1, enc_out), mlp(2, 16, 1, D)
    assert repr(base.encoder) == repr(enc) and repr(base.decoder) == repr(dec)
    for a, b in zip(base.encoder.state_dict().values(), enc.state_dict().values()):
        torch.testing.assert_close(a, b)  # the encoder is built first from the same seed: same init
    for other in built[1:]:
        assert repr(other) == repr(base) and count(other) == count(base)
        for a, b in zip(base.state_dict().values(), other.state_dict().values()):
            torch.testing.assert_close(a, b)


# --- every family on CIFAR-shaped data -------------------------------------------------------------------
@pytest.mark.parametrize("setting", ["unsup", "semi"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_family_trains_a_step_with_the_cnn_on_cifar_shaped_data(name, setting):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = job_cfg(METHODS[name], setting)
        family, model, ctx = ddvi_study.build(cfg, CIFAR)
        assert isinstance(model.encoder, ConvEncoder) and isinstance(model.decoder, ConvDecoder)
        g = torch.Generator().manual_seed(0)
        x = torch.rand(4, D, generator=g)
        part = torch.tensor([-1, 3, -1, 7]) if setting == "semi" else torch.full((4,), -1)
        loss = ddvi_study.DDVILoss(family, cfg["method"], ctx)
        children = dict(model.named_children())
        before = (model.encoder.convs[0].weight.clone(), model.decoder.convs[-1].weight.clone())
        model.train()
        for st in loss.stages:
            params = [p for m in ([children[n] for n in st.modules] or [model]) for p in m.parameters()]
            opt = torch.optim.Adam(params, lr=1e-3)
            terms = st.fn(model, (x, part), g)
            assert terms and all(bool(torch.isfinite(v).all()) for v in terms.values()), (st.name, terms)
            opt.zero_grad()
            sum(v.mean() for v in terms.values()).backward()
            opt.step()
        assert not torch.equal(before[0], model.encoder.convs[0].weight)   # gradients reach the CNN encoder ...
        assert not torch.equal(before[1], model.decoder.convs[-1].weight)  # ... and the decoder
        model.eval()
        with torch.no_grad():
            z = family.encode(model, x, g)
            assert z.shape == (4, 2) and bool(torch.isfinite(z).all())
            if family.elbo is not None:
                res = family.elbo(model, (x, torch.full((4,), -1)), ctx, g)
                assert all(bool(torch.isfinite(v).all()) for v in res.values()), res
            assert ddvi_common.mean_x(model.decoder(z), "bce").shape == (4, D)
    finally:
        torch.set_num_threads(threads)


def test_ddvi_with_the_cnn_runs_through_the_training_loop(tmp_path):
    """train_phase (EMA, checkpoint, non-finite checks) with BatchNorm's running statistics: the EMA model gets
    the trained model's buffers, so evaluation (eval mode) uses statistics of the training data."""
    from daebench.train import train_phase

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = job_cfg(METHODS["ddvi"])
        family, model, ctx = ddvi_study.build(cfg, CIFAR)
        x = torch.rand(12, D, generator=torch.Generator().manual_seed(1))
        final = train_phase(model, ddvi_study.DDVILoss(family, cfg["method"], ctx), (x, torch.full((12,), -1)),
                            steps=2, phase_index=0, train_cfg=cfg["train"], ckpt_path=tmp_path / "r.pt",
                            out_path=tmp_path / "o.pt", config={}, progress=False)
    finally:
        torch.set_num_threads(threads)
    ema = final["ema"]
    assert int(ema["encoder.convs.1.num_batches_tracked"]) > 0
    torch.testing.assert_close(ema["encoder.convs.1.running_mean"], model.encoder.convs[1].running_mean)
    assert all(bool(torch.isfinite(v.float()).all()) for v in ema.values())


# --- config and job slices ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def config():
    return load(ROOT / "params.yaml", SCHEMA)


def test_arch_is_absent_by_default_and_validated(config):
    assert "arch" not in config["ddvi"]["nets"]  # so no existing job's slice, nor the whole config, changes
    for arch in ("mlp", "cnn"):
        cfg = copy.deepcopy(config)
        cfg["ddvi"]["nets"]["arch"] = arch
        assert validate(cfg, SCHEMA)["ddvi"]["nets"]["arch"] == arch
    cfg = copy.deepcopy(config)
    cfg["ddvi"]["nets"]["arch"] = "resnet"
    with pytest.raises(ConfigError, match="ddvi.nets.arch"):
        validate(cfg, SCHEMA)


def test_arch_reaches_only_the_image_settings_slices_and_only_when_cnn(config):
    runs = [("unsup", "pinwheel", "ddvi"), ("semi", "square", "aaeb"), ("cluster", "mixture", "aevb")]
    base = {r: ddvi_jobs.ddvi_job_slice(config, *r, 0) for r in runs}
    assert all("arch" not in s["nets"] for s in base.values())
    mlp_cfg, cnn_cfg = copy.deepcopy(config), copy.deepcopy(config)
    mlp_cfg["ddvi"]["nets"]["arch"] = "mlp"
    cnn_cfg["ddvi"]["nets"]["arch"] = "cnn"
    for r in runs:
        assert json.dumps(ddvi_jobs.ddvi_job_slice(mlp_cfg, *r, 0), sort_keys=True) == json.dumps(base[r], sort_keys=True)
        cnn = ddvi_jobs.ddvi_job_slice(cnn_cfg, *r, 0)
        if r[0] == "cluster":  # genotype features: the MLPs (App. E), the slice as it was
            assert cnn == base[r]
        else:
            assert cnn["nets"] == {**base[r]["nets"], "arch": "cnn"}
            assert {k: v for k, v in cnn.items() if k != "nets"} == {k: v for k, v in base[r].items() if k != "nets"}
    assert cnn_cfg["ddvi"]["nets"]["arch"] == "cnn"  # the slice builder leaves the config alone


def test_the_job_builds_the_cnn_for_the_manifests_image_shape(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"image_shape": [32, 32, 3], "layout": "NHWC"}))
    cnn = {"nets": {"arch": "cnn"}}
    assert ddvi_jobs._data_shape(cnn, tmp_path, D) == CIFAR
    assert ddvi_jobs._data_shape({"nets": {}}, tmp_path, D) == D      # mlp: the flat dimension, as before
    assert ddvi_jobs._data_shape({"nets": {"arch": "mlp"}}, Path("/nonexistent"), 7) == 7
    with pytest.raises(ValueError, match="does not match the 1024-d training vectors"):
        ddvi_jobs._data_shape(cnn, tmp_path, 1024)
