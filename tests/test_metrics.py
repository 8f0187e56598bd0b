"""Metric protocol tests: per-image metrics against scikit-image, the weights
registry/fetcher, the domain-feature metrics, and the LPIPS/FID plumbing with
stand-in weights (the real ones cannot be downloaded in CI)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import socket
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from daebench.data import DownloadError
from daebench.evaluate import domain_classifier, features, fid, image_format, metrics, perceptual, weights
from daebench.evaluate.weights import WeightFile, WeightsMissing

# --------------------------------------------------------------------------- helpers


def _images(kind: str, b: int, c: int, hw: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        x = torch.rand(b, c, hw, hw, generator=g) * 2 - 1
        y = (x + 0.4 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    else:  # smooth gradients and a low-frequency pattern, plus mild noise
        r = torch.linspace(-1, 1, hw)
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        base = []
        for i in range(b):
            chans = [0.6 * xx * (1 - 0.2 * k) + 0.3 * torch.sin(3.0 * (yy + 0.3 * i + 0.2 * k)) for k in range(c)]
            base.append(torch.stack(chans))
        x = torch.stack(base).clamp(-1, 1)
        y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    return x, y


def _hwc01(t: torch.Tensor) -> np.ndarray:
    return ((t.double() + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # These tensors are tiny: intra-op threads only add synchronisation, and on a shared
    # (oversubscribed) runner OpenMP spinning made this module >10x slower.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    u8 = (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    perm = np.random.RandomState(0).permutation(len(u8))
    tr, te = perm[:1437], perm[1437:]
    return u8[tr], d.target[tr], u8[te], d.target[te]


@pytest.fixture(scope="module")
def classifier(digits):
    xtr, ytr, xte, yte = digits
    return domain_classifier.train_classifier(
        xtr, ytr, steps=200, batch_size=128, lr=3e-3, seed=0, progress=False, test_images=xte, test_labels=yte
    )


@pytest.fixture
def no_network(monkeypatch):
    """Fail loudly if metric code tries to reach anything but localhost."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"network access attempted: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def _register(monkeypatch, name: str, path, url: str = "http://127.0.0.1/unused") -> None:
    """Point the registry entry `name` at a stand-in file (its real sha256)."""
    sha = weights.sha256_file(path)
    entry = WeightFile(url=url, sha256=sha, filename=os.path.basename(path), used_by="test")
    monkeypatch.setitem(weights.WEIGHTS, name, entry)


# --------------------------------------------------------------------------- per-image metrics


@pytest.mark.parametrize("kind", ["random", "structured"])
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("hw", [16, 32])
def test_pixel_metrics_match_skimage(kind, c, hw):
    x, y = _images(kind, 3, c, hw, seed=hw + c)
    s, p, m = metrics.ssim(x, y), metrics.psnr(x, y), metrics.mse(x, y)
    assert s.shape == p.shape == m.shape == (3,)
    for i in range(3):
        a, b = _hwc01(x[i]), _hwc01(y[i])
        ref_s = structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1
        )
        assert abs(float(s[i]) - ref_s) < 1e-4
        assert abs(float(p[i]) - peak_signal_noise_ratio(a, b, data_range=1.0)) < 1e-4
        assert abs(float(m[i]) - mean_squared_error(a, b)) < 1e-6


def test_ssim_is_per_channel_mean_not_nhwc_confused():
    # Distort one channel only: a correct NCHW implementation sees 2 perfect channels
    # out of 3; treating W as the channel axis (the DBAE release bug) would not.
    x, _ = _images("structured", 2, 3, 16, seed=1)
    y = x.clone()
    y[:, 2] = (y[:, 2] + 0.5 * torch.randn_like(y[:, 2])).clamp(-1, 1)
    s = metrics.ssim(x, y)
    one = metrics.ssim(x[:, 2:3], y[:, 2:3])
    assert torch.allclose(s, (2 + one) / 3)


def test_identical_images_are_finite_and_perfect():
    x, _ = _images("random", 4, 3, 16, seed=3)
    assert torch.allclose(metrics.ssim(x, x), torch.ones(4, dtype=torch.float64))
    assert torch.all(metrics.mse(x, x) == 0)
    p = metrics.psnr(x, x)
    assert torch.all(p == metrics.PSNR_MAX_DB)
    mixed = torch.cat([x[:2], x[2:] * 0.9])
    assert torch.isfinite(metrics.psnr(x, mixed).mean())


def test_pixel_metrics_reject_bad_shapes():
    x = torch.zeros(2, 1, 10, 10)
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(x, x)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.mse(torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 15))
    with pytest.raises(ValueError, match="NCHW"):
        metrics.psnr(torch.zeros(16, 16, 3), torch.zeros(16, 16, 3))


def test_image_format_round_trip(digits):
    u8 = digits[0][:10]
    f = image_format.to_float_nchw(u8)
    assert f.shape == (10, 1, 16, 16) and f.min() >= -1 and f.max() <= 1
    assert np.array_equal(image_format.to_uint8_nhwc(f), u8)
    # numpy floats are NCHW in [-1, 1] too (a reconstruction file's arrays): the same uint8 images
    assert np.array_equal(image_format.to_uint8_nhwc(f.numpy()), u8)
    assert np.array_equal(image_format.float_nchw_array(u8), f.numpy())
    with pytest.raises(ValueError, match="NCHW with 1 or 3 channels"):  # float NHWC is not guessed
        image_format.to_uint8_nhwc(u8.astype(np.float32))
    with pytest.raises(TypeError, match="dtype"):
        image_format.to_uint8_nhwc(u8.astype(np.int16))


# --------------------------------------------------------------------------- domain features


def test_classifier_accuracy(classifier):
    _, info = classifier
    assert info["test_accuracy"] > 0.9, info
    assert info["config"]["feature_dim"] == 128 and info["config"]["num_classes"] == 10


def test_classifier_training_is_seeded(digits):
    xtr, ytr = digits[0][:256], digits[1][:256]
    a, _ = domain_classifier.train_classifier(xtr, ytr, steps=5, batch_size=32, seed=3, progress=False)
    b, _ = domain_classifier.train_classifier(xtr, ytr, steps=5, batch_size=32, seed=3, progress=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k



def test_classifier_on_a_memory_mapped_split_equals_the_in_memory_one(digits, tmp_path):
    """The classifier job reads the train split memory-mapped (paper-scale sets) and converts batch by batch:
    the same weights as training on the loaded array."""
    xtr, ytr = digits[0][:256], digits[1][:256]
    np.save(tmp_path / "x.npy", xtr)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert isinstance(mapped, np.memmap)
    a, ia = domain_classifier.train_classifier(xtr, ytr, steps=5, batch_size=32, seed=3, progress=False)
    b, ib = domain_classifier.train_classifier(mapped, ytr, steps=5, batch_size=32, seed=3, progress=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert ia["train_accuracy"] == ib["train_accuracy"]

# A Frechet distance is computed through a matrix square root whose round-off scales with the
# statistics (scipy's sqrtm of a rank-deficient covariance is accurate to ~sqrt(machine eps) of its
# norm, and differs between CPU vendors' BLAS), so "zero" is judged relative to that scale.
FD_RTOL = 1e-6


def _fd_scale(m1, s1, m2, s2) -> float:
    """tr S1 + tr S2 + |m1|^2 + |m2|^2: the size of the terms whose difference a Frechet distance is."""
    m1, s1, m2, s2 = (np.asarray(a, dtype=np.float64) for a in (m1, s1, m2, s2))
    return float(np.trace(s1) + np.trace(s2) + m1 @ m1 + m2 @ m2)


def _noisy(x: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = torch.arange(-4, 5, dtype=torch.float32)
    k = torch.exp(-0.5 * (r / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (4, 4, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, 4, 4), mode="replicate"), k.view(1, 1, -1, 1))


def test_frechet_distance_domain_zero_and_monotone(digits, classifier):
    model, _ = classifier
    real = image_format.to_float_nchw(digits[0][:300])
    f = domain_classifier.domain_features(model, real).double().numpy()
    scale = _fd_scale(f.mean(0), np.cov(f, rowvar=False), f.mean(0), np.cov(f, rowvar=False))
    assert abs(domain_classifier.frechet_distance_domain(real, real, model)) <= FD_RTOL * scale
    # uint8 NHWC and float NCHW inputs are the same images
    assert abs(domain_classifier.frechet_distance_domain(digits[0][:300], real, model)) <= FD_RTOL * scale
    fd_noise = [domain_classifier.frechet_distance_domain(real, _noisy(real, s), model) for s in (0.1, 0.3, 0.6)]
    fd_blur = [domain_classifier.frechet_distance_domain(real, _blur(real, s), model) for s in (0.6, 1.2, 2.0)]
    assert 0 < fd_noise[0] < fd_noise[1] < fd_noise[2], fd_noise
    assert 0 < fd_blur[0] < fd_blur[1] < fd_blur[2], fd_blur


def test_frechet_bootstrap_replicates_are_the_distance_of_each_resample(digits, classifier):
    from daebench.evaluate import stats

    model, _ = classifier
    real = image_format.to_float_nchw(digits[0][:120])
    fake = _blur(real, 1.0)
    f1 = domain_classifier.domain_features(model, real).double().numpy()
    # with full-rank covariances (300 images, 128 features) tr sqrtm(S1 S2) from symmetric eigenvalues equals
    # scipy's sqrtm (clean-fid's) to round-off
    r300 = image_format.to_float_nchw(digits[0][:300])
    g1 = domain_classifier.domain_features(model, r300).double().numpy()
    g2 = domain_classifier.domain_features(model, _blur(r300, 1.0)).double().numpy()
    assert fid.frechet_distance_eig(g1, g2) == pytest.approx(fid.frechet_distance(g1, g2), rel=1e-6)
    # against the closed form for f2 = c f1 + m, where sqrtm(S1 S2) = c S1: ||mean(f1) (1 - c) - m||^2 +
    # (1 - c)^2 tr S1; with fewer images than features (a smoke run's 32: singular covariances) and more
    for g in (f1[:30], f1, g1):
        c, m = 0.7, np.linspace(-0.2, 0.3, g.shape[1])
        exact = np.sum((g.mean(0) * (1 - c) - m) ** 2) + (1 - c) ** 2 * np.trace(np.cov(g, rowvar=False))
        assert fid.frechet_distance_eig(g, c * g + m) == pytest.approx(exact, rel=1e-9), len(g)
    idx = stats.bootstrap_indices(120, 50, 3)
    value, reps = domain_classifier.frechet_distance_domain(real, fake, model, resamples=idx)
    assert value == pytest.approx(domain_classifier.frechet_distance_domain(real, fake, model))
    assert reps.shape == (50,)
    # replicate 7 is the distance between the 7th resample of the originals and the same resample of the blurs
    again = domain_classifier.frechet_distance_domain(real[idx[7]], fake[idx[7]], model)
    assert reps[7] == pytest.approx(again, rel=1e-5, abs=1e-6)
    assert np.std(reps) > 0 and np.quantile(reps, 0.025) < value < np.quantile(reps, 0.975)


def test_scoring_keeps_per_image_values_and_the_chance_level(digits, classifier, tmp_path):
    import json

    from daebench.evaluate.scoring import derangement, score_reconstructions

    model, _ = classifier
    x = image_format.to_float_nchw(digits[0][:40])
    y = _noisy(x, 0.2)
    np.savez(tmp_path / "r.npz", original=x.numpy(), recon=y.numpy(),
             meta=json.dumps({"ddim_steps": 5, "nfe": 5, "seconds": 1.0, "mlflow_run_id": None}))
    domain_classifier.save_classifier(tmp_path / "c.pt", model, {})
    out = score_reconstructions(tmp_path / "r.npz", tmp_path / "c.pt", tmp_path / "no_weights",
                                {"resamples": 100, "seed": 5})
    per, chance = out["per_image"], out["chance"]
    assert per["psnr"] == pytest.approx(metrics.psnr(x, y).tolist())
    assert np.mean(per["ssim"]) == pytest.approx(out["metrics"]["ssim"])
    p = derangement(40, 5)
    assert not (p == np.arange(40)).any() and sorted(p) == list(range(40))
    # chance: each original against another image's reconstruction
    assert chance["mse"] == pytest.approx(metrics.mse(x, y[torch.from_numpy(p)]).tolist())
    assert np.mean(per["mse"]) < np.mean(chance["mse"])  # these reconstructions use their image
    assert len(per["featdist_domain"]) == 40 and len(out["bootstrap"]["fd_domain"]) == 100
    assert out["bootstrap"] == {**out["bootstrap"], "n": 40, "resamples": 100, "seed": 5}


def _cleanfid_folder_fd(tmp_path, real, fake, extractor, **kw) -> float:
    """The reference: clean-fid's compute_fid on two folders holding one .npy per uint8 NHWC image (the
    pipeline's former path), with the same feature extractor."""
    from cleanfid import fid as cfid

    dirs = []
    for name, arr in (("real", real), ("fake", fake)):
        d = tmp_path / name
        d.mkdir(parents=True)
        for i, img in enumerate(arr):
            np.save(d / f"{i:07d}.npy", img)
        dirs.append(str(d))
    return float(cfid.compute_fid(*dirs, custom_feat_extractor=extractor, num_workers=0, verbose=False,
                                  use_dataparallel=False, **kw))


def _spy_extractor(monkeypatch) -> list:
    """Records, per batch, the feature extractor the in-memory clean-fid path runs."""
    seen, real_fn = [], fid.cleanfid_features

    def spy(arr, extractor, **kw):
        def counted(batch):
            seen.append(extractor)
            return extractor(batch)

        return real_fn(arr, counted, **kw)

    monkeypatch.setattr(fid, "cleanfid_features", spy)
    return seen


def test_frechet_distance_domain_equals_cleanfid_on_the_torch_network(digits, classifier, tmp_path):
    """The numpy path (domain_numpy: the checkpoint read without torch, the forward pass in numpy) gives
    clean-fid's compute_fid on folders of the same images (one .npy each), run with the torch classifier as
    custom_feat_extractor and an identity resize: the reference library on the reference network."""
    from daebench.evaluate import domain_numpy

    model, _ = classifier
    real, fake = image_format.to_uint8_nhwc(digits[0][:300]), image_format.to_uint8_nhwc(digits[2][:300])
    domain_classifier.save_classifier(tmp_path / "c.pt", model, {})
    value = domain_numpy.frechet_distance_domain(real, fake, domain_numpy.load_features(tmp_path / "c.pt"))

    @torch.no_grad()
    def extractor(batch):  # clean-fid hands over float [0, 255] NCHW
        return model.features(torch.round(batch.float()) / 127.5 - 1.0)

    ref = _cleanfid_folder_fd(tmp_path, real, fake, extractor, mode="clean", custom_fn_resize=lambda img: img,
                              batch_size=128, device=torch.device("cpu"))
    # float32 convolutions summed in another order: features agree to ~1e-6, the distance to ~1e-5
    assert value > 0 and value == pytest.approx(ref, rel=2e-5), (value, ref)


@pytest.mark.parametrize("channels,size", [(1, 16), (3, 32), (1, 36), (3, 64)])
def test_numpy_features_equal_the_torch_forward(channels, size):
    """domain_numpy's forward pass is DomainClassifier.features (random weights, every resolution the
    classifier config supports: 2-4 poolings, a 9-px map pooled at 36 px, 1 and 3 channels), and 1-channel images
    fed to a 3-channel network are repeated, as the torch path does."""
    from daebench.evaluate import domain_numpy
    from daebench.nets.classifier import DomainClassifier, classifier_config

    torch.manual_seed(size)
    model = DomainClassifier(classifier_config(channels, size, 10)).eval()
    with torch.no_grad():  # non-trivial GroupNorm affine parameters, not the init's 1 and 0
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    x = torch.rand(5, channels, size, size) * 2.4 - 1.2  # beyond [-1, 1]: both clamp
    ref = model.features(x.clamp(-1, 1)).detach().numpy()
    got = domain_numpy.ClassifierFeatures.from_model(model)(x.numpy(), batch_size=2)
    assert got.shape == ref.shape == (5, 128) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-5)
    if channels == 3:
        grey = domain_numpy.ClassifierFeatures.from_model(model)(x[:, :1].numpy())
        np.testing.assert_allclose(grey, model.features(x[:, :1].clamp(-1, 1).repeat(1, 3, 1, 1)).detach().numpy(),
                                   rtol=1e-4, atol=2e-5)


def test_tensorfile_reads_what_torch_saves_and_refuses_code(tmp_path):
    """tensorfile.read_tensors (no torch) returns what torch.load does, as numpy: every dtype the format
    names, views with an offset and strides into a shared storage, 0-d tensors, nested containers; a file
    that pickles anything else is refused rather than run."""
    import pickle

    from daebench.evaluate.tensorfile import read_tensors

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = {"f32": base, "view": base[1:, ::2], "t": base.t(), "f64": torch.randn(3, dtype=torch.float64),
           "f16": torch.randn(2, 2).half(), "bf16": torch.randn(5).bfloat16(), "i64": torch.arange(5),
           "i8": torch.tensor([-3, 4], dtype=torch.int8), "u8": torch.tensor([250], dtype=torch.uint8),
           "bool": torch.tensor([True, False]), "scalar": torch.tensor(2.5),
           "nested": {"list": [torch.ones(2), 3, "x"], "cfg": {"widths": [16, 32]}}}
    torch.save(obj, tmp_path / "a.pt")
    got = read_tensors(tmp_path / "a.pt")
    ref = torch.load(tmp_path / "a.pt", weights_only=True)
    for k in ("f32", "view", "t", "f64", "f16", "i64", "i8", "u8", "bool", "scalar"):
        assert got[k].dtype == ref[k].numpy().dtype and np.array_equal(got[k], ref[k].numpy()), k
    assert np.array_equal(got["bf16"], ref["bf16"].float().numpy()) and got["bf16"].dtype == np.float32
    assert np.array_equal(got["nested"]["list"][0], np.ones(2)) and got["nested"]["list"][1:] == [3, "x"]
    assert got["nested"]["cfg"] == {"widths": [16, 32]}

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"evil": Payload()}, tmp_path / "b.pt", pickle_protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_tensors(tmp_path / "b.pt")
    (tmp_path / "c.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a torch zip"):
        read_tensors(tmp_path / "c.pt")


def test_scoring_a_reconstruction_imports_no_torch(digits, classifier, tmp_path):
    """The metrics job without the ImageNet weights (the default here) runs without torch: its start-up is
    its imports (issue 29), and torch alone is over a second of them."""
    import json
    import subprocess
    import sys

    model, _ = classifier
    x = image_format.to_float_nchw(digits[0][:24])
    np.savez(tmp_path / "r.npz", original=x.numpy(), recon=_noisy(x, 0.2).numpy(),
             meta=json.dumps({"ddim_steps": 5, "nfe": 5, "seconds": 1.0, "mlflow_run_id": None}))
    domain_classifier.save_classifier(tmp_path / "c.pt", model, {})
    code = ("import json, sys; from daebench.evaluate.scoring import score_reconstructions; "
            f"r = score_reconstructions({str(tmp_path / 'r.npz')!r}, {str(tmp_path / 'c.pt')!r}, "
            f"{str(tmp_path / 'none')!r}, {{'resamples': 20, 'seed': 0}}); "
            "print(json.dumps({'torch': 'torch' in sys.modules, 'fd': r['metrics']['fd_domain']}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    timeout=120).stdout.strip().splitlines()[-1])
    assert out["torch"] is False
    assert out["fd"] == pytest.approx(domain_classifier.frechet_distance_domain(x, _noisy(x, 0.2), model), rel=1e-12)


def test_feature_distance_domain(digits, classifier):
    model, _ = classifier
    x = image_format.to_float_nchw(digits[2][:50])
    d0 = domain_classifier.feature_distance_domain(x, x, model)
    assert d0.shape == (50,) and float(d0.abs().max()) < 1e-5
    d1 = domain_classifier.feature_distance_domain(x, _noisy(x, 0.5), model)
    assert float(d1.min()) > 0 and float(d1.max()) <= 2.0
    assert domain_classifier.domain_features(model, x).shape == (50, 128)
    # 3-channel input to a 1-channel classifier: grey RGB gives the same features
    grey_rgb = domain_classifier.domain_features(model, x.repeat(1, 3, 1, 1))
    assert torch.allclose(grey_rgb, domain_classifier.domain_features(model, x), atol=1e-5)


def test_classifier_save_load_round_trip(tmp_path, digits, classifier):
    model, info = classifier
    path = tmp_path / "clf" / "classifier.pt"
    domain_classifier.save_classifier(path, model, info)
    payload = torch.load(path, weights_only=True)  # no pickled code
    assert set(payload) >= {"state_dict", "config"}
    loaded = domain_classifier.load_classifier(path)
    assert loaded.info["test_accuracy"] == info["test_accuracy"]
    x = image_format.to_float_nchw(digits[2][:32])
    assert torch.equal(domain_classifier.domain_features(model, x), domain_classifier.domain_features(loaded, x))


def test_column_descriptions_cover_table_columns():
    cols = {"psnr", "ssim", "mse", "lpips", "fid_tf", "fid_cf", "fd_domain", "featdist_domain"}
    assert set(features.COLUMN_DESCRIPTIONS) == cols
    assert "NOT an FID" in features.COLUMN_DESCRIPTIONS["fd_domain"]
    assert "NOT LPIPS" in features.COLUMN_DESCRIPTIONS["featdist_domain"]


# --------------------------------------------------------------------------- weights registry


def test_registry_entries_are_complete():
    assert set(weights.WEIGHTS) == {"alexnet", "inception_tf", "inception_cf", "vgg16"}
    for name, wf in weights.WEIGHTS.items():
        assert wf.url.startswith("https://") and wf.url.endswith(wf.filename), name
        assert len(wf.sha256) == 64 and int(wf.sha256, 16) >= 0, name
    # torch-hub naming convention: the hash suffix in the name is the sha256 prefix
    assert weights.WEIGHTS["alexnet"].sha256.startswith("7be5be79")
    assert weights.WEIGHTS["inception_tf"].sha256.startswith("6726825d")
    assert weights.WEIGHTS["vgg16"].sha256.startswith("397923af")


def test_packaged_lpips_linear_layers_match_registry():
    import lpips

    for linear in (weights.LPIPS_LINEAR, weights.LPIPS_LINEAR_VGG):
        path = os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", linear.filename)
        assert weights.sha256_file(path) == linear.sha256


@pytest.mark.usefixtures("no_network")
def test_metrics_raise_weights_missing_naming_the_file(tmp_path):
    x = torch.zeros(2, 3, 32, 32)
    cases = [
        (lambda: perceptual.lpips_distance(x, x, tmp_path), "alexnet-owt-7be5be79.pth"),
        (lambda: perceptual.lpips_distance(x, x, tmp_path, net="vgg"), "vgg16-397923af.pth"),
        (lambda: fid.fid_tf(x, x, tmp_path), "weights-inception-2015-12-05-6726825d.pth"),
        (lambda: fid.fid_cf(x, x, tmp_path), "inception-2015-12-05.pt"),
    ]
    for call, filename in cases:
        with pytest.raises(WeightsMissing) as err:
            call()
        msg = str(err.value)
        assert filename in msg and str(tmp_path) in msg and "python -m daebench" in msg
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or created


def test_available_detects_corruption_and_caches(tmp_path, monkeypatch):
    blob = tmp_path / "tiny.bin"
    blob.write_bytes(b"pretend weights" * 100)
    _register(monkeypatch, "tiny", blob)
    assert weights.available(tmp_path, ["tiny"]) == {"tiny": True}
    assert weights.available(tmp_path)["alexnet"] is False

    # Verified hashes are reused while size and mtime are unchanged (in-process and via sidecar).
    def boom(path, chunk=0):
        raise AssertionError("re-hashed an unchanged file")

    monkeypatch.setattr(weights, "sha256_file", boom)
    assert weights.available(tmp_path, ["tiny"])["tiny"] is True
    monkeypatch.setattr(weights, "_VERIFIED", {})
    assert weights.available(tmp_path, ["tiny"])["tiny"] is True
    monkeypatch.undo()

    # Same size, different bytes, new mtime -> rehashed and rejected.
    _register(monkeypatch, "tiny", blob)
    st = blob.stat()
    blob.write_bytes(b"corrupt weights" * 100)
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert weights.available(tmp_path, ["tiny"]) == {"tiny": False}
    msg = weights.missing_message(tmp_path, ["tiny"])
    assert "tiny.bin" in msg and "corrupt" in msg
    with pytest.raises(WeightsMissing):
        weights.require(tmp_path, ["tiny"])


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    hits = 0

    def do_GET(self):
        type(self).hits += 1
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_dir(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = type("H", (_CountingHandler,), {"hits": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.usefixtures("no_network")
def test_fetch_weights_from_local_server(tmp_path, http_dir, monkeypatch):
    served, base, handler = http_dir
    payload = os.urandom(3 * (1 << 20) + 123)  # several read blocks
    (served / "tiny.bin").write_bytes(payload)
    good = WeightFile(f"{base}/tiny.bin", hashlib.sha256(payload).hexdigest(), "tiny.bin", "test")
    monkeypatch.setattr(weights, "WEIGHTS", {"tiny": good})
    dest = tmp_path / "weights"

    paths = weights.fetch_weights(dest, progress=False)
    assert paths["tiny"].read_bytes() == payload
    assert weights.available(dest) == {"tiny": True}
    assert handler.hits == 1
    weights.fetch_weights(dest, ["tiny"], progress=False)  # already verified: no second download
    assert handler.hits == 1

    # Wrong checksum: clear error, and no partial or final file left behind.
    bad = WeightFile(f"{base}/tiny.bin", "0" * 64, "other.bin", "test")
    monkeypatch.setattr(weights, "WEIGHTS", {"other": bad})
    with pytest.raises(DownloadError, match="Checksum mismatch for other.bin"):
        weights.fetch_weights(dest, progress=False)
    assert not any("other" in p.name for p in dest.iterdir()), list(dest.iterdir())

    # Missing upstream file: a clear HTTP error, again without leftovers.
    gone = WeightFile(f"{base}/gone.bin", "0" * 64, "gone.bin", "test")
    monkeypatch.setattr(weights, "WEIGHTS", {"gone": gone})
    with pytest.raises(DownloadError, match="HTTP 404"):
        weights.fetch_weights(dest, progress=False)
    assert not any("gone" in p.name for p in dest.iterdir())


# --------------------------------------------------------------------------- LPIPS / FID plumbing


@pytest.mark.usefixtures("no_network")
def test_lpips_loads_backbone_from_weights_dir(tmp_path, monkeypatch):
    import torchvision

    torch.manual_seed(0)
    # Only the conv trunk is read, so a features-only state dict stands in for the 233 MB file.
    trunk = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items() if "features" in k}
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(trunk, path)
    _register(monkeypatch, "alexnet", path)
    monkeypatch.setattr(perceptual, "_LPIPS_CACHE", {})

    x, y = _images("structured", 3, 1, 16, seed=5)  # 1-channel 16x16: repeated to RGB, upsampled to 32
    d = perceptual.lpips_distance(x, y, tmp_path, device="cpu")
    assert d.shape == (3,) and torch.all(d > 0)
    assert torch.allclose(perceptual.lpips_distance(x, x, tmp_path, device="cpu"), torch.zeros(3), atol=1e-6)
    (model,) = perceptual._LPIPS_CACHE.values()
    # the plumbing against the lpips package driven by hand: grey -> RGB, bilinear 16 -> 32, [-1, 1] as is
    import torch.nn.functional as F

    up = lambda t: F.interpolate(t.repeat(1, 3, 1, 1), size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(d, model(up(x), up(y), normalize=False).flatten(), rtol=1e-6, atol=1e-7)
    # a distance: more noise, farther (a swapped direction or a similarity in its place fails here)
    near, far = (perceptual.lpips_distance(x, _noisy(x, s), tmp_path, device="cpu") for s in (0.05, 0.5))
    assert torch.all(far > near) and torch.all(near > 0), (near, far)
    got = model.net.state_dict()
    for k, v in got.items():
        assert torch.equal(v, trunk["features." + k.split(".", 1)[1]]), k


class _FakeLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("proj", torch.randn(48, 16, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.adaptive_avg_pool2d(x, 4).flatten(1) @ self.proj
        return torch.cat([f, torch.zeros(x.shape[0], 2048 - 16)], dim=1)


class _FakeInception(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = _FakeLayers()

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.layers((x - 128) / 128)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.usefixtures("no_network")
def test_fid_cf_loads_inception_from_weights_dir(tmp_path, monkeypatch):
    from cleanfid import downloads_helper
    from cleanfid import fid as cfid

    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.script(_FakeInception()).save(str(path))
    _register(monkeypatch, "inception_cf", path)
    monkeypatch.setattr(fid, "_CF_CACHE", {})

    def no_download(*a, **k):
        raise AssertionError("clean-fid tried to download")

    monkeypatch.setattr(downloads_helper, "check_download_inception", no_download)
    # The stand-in's features live in 16 dims; skip the 2048x2048 sqrtm (~30 s on 2 cores).
    real_fd = cfid.frechet_distance
    scale = []

    def fd16(m1, s1, m2, s2):
        m1, s1, m2, s2 = m1[:16], s1[:16, :16], m2[:16], s2[:16, :16]
        scale.append(_fd_scale(m1, s1, m2, s2))
        return real_fd(m1, s1, m2, s2)

    monkeypatch.setattr(cfid, "frechet_distance", fd16)  # the reference (clean-fid's folder path)
    ours = fid.frechet_distance

    def ours16(f1, f2):
        f1, f2 = f1[:, :16], f2[:, :16]
        scale.append(_fd_scale(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False)))
        return ours(f1, f2)

    monkeypatch.setattr(fid, "frechet_distance", ours16)

    x, _ = _images("structured", 6, 1, 16, seed=7)
    v0, mode = fid.fid_cf(x, x, tmp_path, device="cpu")
    assert mode == "clean" and abs(v0) <= FD_RTOL * scale[-1], (v0, scale[-1])
    seen = _spy_extractor(monkeypatch)
    v1, _ = fid.fid_cf(x, _noisy(x, 0.5), tmp_path, device="cpu")
    assert np.isfinite(v1) and v1 > 0
    # in memory = clean-fid's folder path on the same images (PIL bicubic resize to 299 included)
    u8 = [image_format.to_rgb_uint8(image_format.to_uint8_nhwc(a)) for a in (x, _noisy(x, 0.5))]
    ref = _cleanfid_folder_fd(tmp_path / "ref", *u8, seen[0], mode="clean", batch_size=64, device=torch.device("cpu"))
    assert v1 == pytest.approx(ref, rel=1e-9, abs=1e-12), (v1, ref)


@pytest.mark.usefixtures("no_network")
def test_fid_tf_loads_inception_from_weights_dir(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as fe
    import torch_fidelity.metric_fid as mf

    # Randomly initialised weights of torch-fidelity's exact architecture.
    with monkeypatch.context() as mp:
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        torch.manual_seed(0)
        state = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    path = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    del state
    _register(monkeypatch, "inception_tf", path)

    real_metric = mf.fid_statistics_to_metric

    scale = []

    def small(s1, s2, verbose):  # 16 of the 2048 dims: eigvals of 2048x2048 takes ~20 s on 2 cores
        cut = lambda s: {"mu": s["mu"][:16], "sigma": s["sigma"][:16, :16]}
        c1, c2 = cut(s1), cut(s2)
        scale.append(_fd_scale(c1["mu"], c1["sigma"], c2["mu"], c2["sigma"]))
        return real_metric(c1, c2, verbose)

    monkeypatch.setattr(mf, "fid_statistics_to_metric", small)
    x, _ = _images("structured", 3, 1, 16, seed=9)
    v0, mode = fid.fid_tf(x, x, tmp_path, device="cpu")
    assert mode == "inception-v3-compat" and abs(v0) <= FD_RTOL * scale[-1], (v0, scale[-1])
    v1, _ = fid.fid_tf(image_format.to_uint8_nhwc(x), _noisy(x, 0.5), tmp_path, device="cpu")
    assert np.isfinite(v1) and v1 > 0
    near, _ = fid.fid_tf(x, _noisy(x, 0.05), tmp_path, device="cpu")
    assert v1 > near > abs(v0), (v1, near, v0)  # more noise, farther: the direction of a distance
