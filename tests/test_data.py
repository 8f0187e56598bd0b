"""Tests for daebench.data: the embedded digits set and the checksum-verified downloaders.

Downloads run against a local HTTP server on 127.0.0.1 that serves tiny
archives built here in the real formats (idx .gz files, the CIFAR-10 python
tarball of pickled batches).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import shutil
import socket
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from daebench.data import (
    DATASETS,
    DownloadError,
    IntegrityError,
    LocalDataError,
    download,
    from_tensor,
    load_split,
    needs_download,
    prepare,
    to_tensor,
)
from daebench.data import images as image_io


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def files_under(path: Path) -> list[Path]:
    """Every file below ``path`` (hidden temporaries included); [] if it does not exist."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


# --------------------------------------------------------------------------- digits

@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits")
    prepare("digits", out, seed=0, progress=False)
    return out


def test_registry_lists_the_three_datasets():
    assert {"digits", "mnist", "cifar10"} <= set(DATASETS)
    assert DATASETS["cifar10"].num_classes == 10 and DATASETS["cifar10"].channels == 3
    assert DATASETS["cifar10"].files == {"cifar-10-python.tar.gz": "md5:c58f30108f718f92721af3b95e74349a"}
    assert set(DATASETS["mnist"].files) == {
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}


def test_digits_shapes_dtypes_and_range(digits_dir):
    manifest = json.loads((digits_dir / "manifest.json").read_text())
    assert manifest["dataset"] == "digits"
    assert manifest["source"] == "sklearn embedded"
    assert manifest["image_shape"] == [16, 16, 1]
    assert manifest["counts"] == {"train": 1437, "test": 360}
    assert manifest["num_classes"] == 10 and manifest["label_names"] == [str(i) for i in range(10)]
    assert manifest["seed"] == 0 and manifest["test_fraction"] == 0.2
    for split, n in (("train", 1437), ("test", 360)):
        x, y = load_split(digits_dir, split)
        assert x.shape == (n, 16, 16, 1) and x.dtype == np.uint8
        assert y.shape == (n,) and y.dtype == np.int64
        assert x.min() == 0 and x.max() >= 250  # full 0..255 range is used
        assert set(np.unique(y)) <= set(range(10))
        # Upsampling must be smooth, not nearest-neighbour: 2x2 blocks are not all constant.
        blocks = x[:, ::2, ::2] != x[:, 1::2, 1::2]
        assert blocks.mean() > 0.1


def test_digits_split_is_stratified_and_disjoint(digits_dir):
    xtr, ytr = load_split(digits_dir, "train")
    xte, yte = load_split(digits_dir, "test")
    counts_test = np.bincount(yte, minlength=10)
    counts_all = counts_test + np.bincount(ytr, minlength=10)
    assert (counts_test > 0).all()
    # Each class keeps its share to within one example.
    assert np.all(np.abs(counts_test - 0.2 * counts_all) <= 1)
    # Together the splits are exactly the 1,797 sklearn digits, no image in both.
    from sklearn.datasets import load_digits
    assert len(ytr) + len(yte) == len(load_digits().target) == 1797
    train_rows = {row.tobytes() for row in xtr.reshape(len(xtr), -1)}
    overlap = sum(row.tobytes() in train_rows for row in xte.reshape(len(xte), -1))
    assert overlap <= 2  # sklearn digits contain a couple of exact duplicate images


def test_digits_is_deterministic_and_seed_dependent(digits_dir, tmp_path):
    again = prepare("digits", tmp_path / "a", seed=0, progress=False)
    ref = json.loads((digits_dir / "manifest.json").read_text())
    assert again == ref  # manifest included: nothing time-dependent in it
    for split in ("train", "test"):
        assert (tmp_path / "a" / f"{split}.npz").read_bytes() == (digits_dir / f"{split}.npz").read_bytes()
    other = prepare("digits", tmp_path / "b", seed=1, progress=False)
    assert other["splits"]["test"]["sha256"] != ref["splits"]["test"]["sha256"]
    assert other["counts"] == ref["counts"]


def test_load_split_round_trip_matches_returned_manifest(tmp_path):
    manifest = prepare("digits", tmp_path, seed=3, test_fraction=0.25, image_size=12,
                       max_train=100, max_test=40, progress=False)
    assert manifest["counts"] == {"train": 100, "test": 40}
    assert manifest["image_shape"] == [12, 12, 1]
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest
    x, y = load_split(tmp_path, "test")
    assert x.shape == (40, 12, 12, 1)
    assert np.bincount(y, minlength=10).tolist() == manifest["splits"]["test"]["class_counts"]
    with np.load(tmp_path / "test.npz") as npz:
        np.testing.assert_array_equal(npz["images"], x)
        np.testing.assert_array_equal(npz["labels"], y)
    with pytest.raises(ValueError, match="available"):
        load_split(tmp_path, "validation")
    # No temporaries left next to the outputs.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "test.npz", "train.npz"]


def test_to_tensor_from_tensor_round_trip(digits_dir):
    x, _ = load_split(digits_dir, "test")
    t = to_tensor(x)
    assert t.dtype == torch.float32 and tuple(t.shape) == (360, 1, 16, 16)
    assert t.min().item() == -1.0 and t.max().item() <= 1.0
    np.testing.assert_array_equal(from_tensor(t), x)
    rgb = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    t = to_tensor(rgb)
    assert tuple(t.shape) == (2, 3, 5, 7)
    assert abs(t[1, 2, 4, 6].item() - (rgb[1, 4, 6, 2] / 127.5 - 1.0)) < 1e-6
    np.testing.assert_array_equal(from_tensor(t), rgb)
    # Out-of-range values clamp; values between levels round.
    out = from_tensor(torch.tensor([-3.0, -1.0, 0.0, 1.0, 4.0, 2 * 100.4 / 255 - 1]).view(1, 1, 1, 6))
    assert out.ravel().tolist() == [0, 0, 128, 255, 255, 100]
    with pytest.raises(TypeError):
        to_tensor(rgb.astype(np.float32))


def test_unknown_dataset_name_lists_known_ones(tmp_path):
    with pytest.raises(ValueError) as err:
        prepare("imagenet1k", tmp_path, progress=False)
    msg = str(err.value)
    assert "imagenet1k" in msg
    for name in DATASETS:
        assert name in msg
    assert not (tmp_path / "manifest.json").exists()


def test_tampered_npz_is_detected(digits_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(digits_dir, copy)
    path = copy / "train.npz"
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF  # inside the image payload
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="train.npz"):
        load_split(copy, "train")
    load_split(copy, "test")  # the untouched split still loads


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_split(tmp_path, "train")


def test_crash_while_writing_leaves_no_complete_looking_file(tmp_path, monkeypatch):
    from daebench.data import store

    calls = {"n": 0}
    real = store._npy_header

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the images array of test.npz
            raise KeyboardInterrupt("simulated crash")
        return real(*args, **kwargs)

    prepare("digits", tmp_path, progress=False)  # an older, complete preparation
    monkeypatch.setattr(store, "_npy_header", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare("digits", tmp_path, seed=5, progress=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    # The old manifest is gone (so the directory reads as unprepared), no temp files remain.
    assert names == ["test.npz", "train.npz"]
    with pytest.raises(FileNotFoundError):
        load_split(tmp_path, "train")


# --------------------------------------------------------------------------- tiny real-format archives

def _idx_gz(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


@pytest.fixture(scope="module")
def tiny_mnist() -> dict:
    rng = np.random.default_rng(1)
    arrays = {
        "train": (rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), np.array([3, 1, 4, 1, 5], np.uint8)),
        "test": (rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), np.array([9, 2, 6], np.uint8)),
    }
    files = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        files[f"{prefix}-images-idx3-ubyte.gz"] = _idx_gz(arrays[split][0])
        files[f"{prefix}-labels-idx1-ubyte.gz"] = _idx_gz(arrays[split][1])
    return {"arrays": arrays, "files": files}


def _cifar_batch(data: np.ndarray, labels: list[int], title: bytes) -> bytes:
    # Keys as the Python 2 pickles in the real archive decode (bytes), protocol 2.
    batch = {b"batch_label": title, b"labels": labels, b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
    return pickle.dumps(batch, protocol=2)


def _targz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type = tarfile.DIRTYPE
        tf.addfile(folder)
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_cifar() -> dict:
    rng = np.random.default_rng(2)
    members, train_x, train_y = {}, [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, 2)]
        members[f"data_batch_{i}"] = _cifar_batch(data, labels, f"training batch {i} of 5".encode())
        train_x.append(data)
        train_y += labels
    test_x = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    test_y = [7, 0, 9]
    members["test_batch"] = _cifar_batch(test_x, test_y, b"testing batch 1 of 1")
    members["batches.meta"] = pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2)
    to_nhwc = lambda d: d.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return {
        "archive": _targz(members),
        "members": members,
        "train": (to_nhwc(np.concatenate(train_x)), np.array(train_y)),
        "test": (to_nhwc(test_x), np.array(test_y)),
    }


@pytest.fixture
def server(file_server):
    return file_server


# --------------------------------------------------------------------------- downloads

def test_cifar10_download_parse_and_manifest(server, tiny_cifar, tmp_path):
    archive = tiny_cifar["archive"]
    server.files["/mirror/cifar-10-python.tar.gz"] = archive
    out, dl = tmp_path / "out", tmp_path / "dl"
    manifest = prepare("cifar10", out, download_dir=dl, base_url=server.url + "/mirror",
                       checksums={"cifar-10-python.tar.gz": md5(archive)}, progress=False)
    assert server.requests == ["/mirror/cifar-10-python.tar.gz"]
    for split in ("train", "test"):
        x, y = load_split(out, split)
        np.testing.assert_array_equal(x, tiny_cifar[split][0])
        np.testing.assert_array_equal(y, tiny_cifar[split][1])
        assert x.dtype == np.uint8 and y.dtype == np.int64
    assert manifest["image_shape"] == [32, 32, 3]
    assert manifest["counts"] == {"train": 10, "test": 3}
    assert manifest["label_names"][:2] == ["airplane", "automobile"]
    assert manifest["split"] == "official" and manifest["test_fraction"] is None
    assert manifest["source"] == server.url + "/mirror/cifar-10-python.tar.gz"
    assert manifest["source_checksums"]["cifar-10-python.tar.gz"] == {
        "url": server.url + "/mirror/cifar-10-python.tar.gz", "algorithm": "md5",
        "checksum": md5(archive)}
    assert files_under(dl) == [dl / "cifar10" / "cifar-10-python.tar.gz"]


def test_download_step_then_preparation_without_network(server, tiny_cifar, tmp_path):
    # The workflow's two jobs: download (submit node) and preparation (anywhere, no network).
    archive = tiny_cifar["archive"]
    server.files["/mirror/cifar-10-python.tar.gz"] = archive
    dl = tmp_path / "dl"
    kw = {"download_dir": dl, "base_url": server.url + "/mirror",
          "checksums": {"cifar-10-python.tar.gz": md5(archive)}, "progress": False}
    with pytest.raises(DownloadError, match=r"cifar-10-python\.tar\.gz is missing and preprocessing does not "
                                            r"download.*rule download_data"):
        prepare("cifar10", tmp_path / "out", download=False, **kw)
    assert server.requests == [] and not (tmp_path / "out" / "manifest.json").exists()
    records = download("cifar10", **kw)
    assert server.requests == ["/mirror/cifar-10-python.tar.gz"] and records["cifar-10-python.tar.gz"]["downloaded"]
    offline = prepare("cifar10", tmp_path / "out", download=False, **kw)
    assert server.requests == ["/mirror/cifar-10-python.tar.gz"]  # preparation read the downloaded file
    online = prepare("cifar10", tmp_path / "out2", **kw)  # what one job that also downloads writes
    assert offline == online
    assert needs_download("cifar10") and needs_download("mnist") and needs_download("lsun_bedroom128")
    assert not needs_download("lsun_bedroom128", "/data/lsun") and not needs_download("digits")
    assert not needs_download("celeba64", "/data/celeba")
    with pytest.raises(ValueError, match="'digits' has nothing to download"):
        download("digits", download_dir=dl)


def test_mnist_download_parse_pad_and_sha256_override(server, tiny_mnist, tmp_path):
    checksums = {}
    for name, payload in tiny_mnist["files"].items():
        server.files[f"/{name}"] = payload
        checksums[name] = "sha256:" + hashlib.sha256(payload).hexdigest()
    out = tmp_path / "out"
    manifest = prepare("mnist", out, download_dir=tmp_path / "dl", base_url=server.url,
                       checksums=checksums, progress=False)
    assert len(server.requests) == 4
    assert manifest["image_shape"] == [32, 32, 1]
    for split in ("train", "test"):
        x, y = load_split(out, split)
        images, labels = tiny_mnist["arrays"][split]
        assert x.shape == (len(labels), 32, 32, 1)
        np.testing.assert_array_equal(x[:, 2:30, 2:30, 0], images)  # 28 -> 32 by zero padding
        assert not x[:, :2].any() and not x[:, 30:].any()
        assert not x[:, :, :2].any() and not x[:, :, 30:].any()
        np.testing.assert_array_equal(y, labels.astype(np.int64))
    assert manifest["source_checksums"]["t10k-labels-idx1-ubyte.gz"]["algorithm"] == "sha256"
    # Native size on request, reusing the verified downloads.
    server.requests.clear()
    native = prepare("mnist", tmp_path / "out28", download_dir=tmp_path / "dl", image_size=28,
                     base_url=server.url, checksums=checksums, progress=False)
    assert native["image_shape"] == [28, 28, 1] and server.requests == []


def test_present_file_with_correct_checksum_is_not_downloaded(server, tiny_cifar, tmp_path):
    archive = tiny_cifar["archive"]
    dl = tmp_path / "dl"
    (dl / "cifar10").mkdir(parents=True)
    (dl / "cifar10" / "cifar-10-python.tar.gz").write_bytes(archive)  # a manually placed copy
    server.files["/cifar-10-python.tar.gz"] = b"must not be fetched"
    prepare("cifar10", tmp_path / "out", download_dir=dl, base_url=server.url,
            checksums={"cifar-10-python.tar.gz": md5(archive)}, progress=False)
    assert server.requests == []
    np.testing.assert_array_equal(load_split(tmp_path / "out", "test")[1], tiny_cifar["test"][1])


def test_present_file_with_wrong_checksum_is_replaced(server, tiny_cifar, tmp_path):
    archive = tiny_cifar["archive"]
    dest = tmp_path / "dl" / "cifar10" / "cifar-10-python.tar.gz"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(archive[:100])
    server.files["/cifar-10-python.tar.gz"] = archive
    prepare("cifar10", tmp_path / "out", download_dir=tmp_path / "dl", base_url=server.url,
            checksums={"cifar-10-python.tar.gz": md5(archive)}, progress=False)
    assert server.requests == ["/cifar-10-python.tar.gz"]
    assert dest.read_bytes() == archive


def _assert_failed_cleanly(err: pytest.ExceptionInfo, tmp_path: Path, url: str, *needles: str):
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and url in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert files_under(tmp_path / "dl") == []
    assert files_under(tmp_path / "out") == []


@pytest.mark.parametrize("damage", ["flipped_byte", "truncated"])
def test_corrupted_download_raises_and_leaves_nothing(server, tiny_cifar, tmp_path, damage):
    archive = tiny_cifar["archive"]
    if damage == "flipped_byte":
        bad = bytearray(archive)
        bad[len(bad) // 2] ^= 0x01
        served = bytes(bad)
    else:
        served = archive[: len(archive) // 3]
    server.files["/cifar-10-python.tar.gz"] = served
    url = server.url + "/cifar-10-python.tar.gz"
    with pytest.raises(DownloadError) as err:
        prepare("cifar10", tmp_path / "out", download_dir=tmp_path / "dl", base_url=server.url,
                checksums={"cifar-10-python.tar.gz": md5(archive)}, progress=False)
    _assert_failed_cleanly(err, tmp_path, url, md5(archive), md5(served), "mismatch",
                           str(tmp_path / "dl" / "cifar10" / "cifar-10-python.tar.gz"))


def test_truncated_archive_that_passes_its_checksum_is_rejected(server, tiny_cifar, tmp_path):
    # E.g. a wrong checksum in a config: the archive itself must still be checked.
    served = tiny_cifar["archive"][:-300]
    server.files["/cifar-10-python.tar.gz"] = served
    with pytest.raises(DownloadError) as err:
        prepare("cifar10", tmp_path / "out", download_dir=tmp_path / "dl", base_url=server.url,
                checksums={"cifar-10-python.tar.gz": md5(served)}, progress=False)
    _assert_failed_cleanly(err, tmp_path, server.url + "/cifar-10-python.tar.gz",
                           "truncated or corrupted")


def test_transfer_cut_short_raises_and_leaves_nothing(server, tiny_cifar, tmp_path):
    archive = tiny_cifar["archive"]
    server.files["/cifar-10-python.tar.gz"] = archive
    server.lying_length.add("/cifar-10-python.tar.gz")
    with pytest.raises(DownloadError) as err:
        prepare("cifar10", tmp_path / "out", download_dir=tmp_path / "dl", base_url=server.url,
                checksums={"cifar-10-python.tar.gz": md5(archive)}, progress=False)
    msg = str(err.value)
    assert "truncated" in msg or "cut off" in msg
    _assert_failed_cleanly(err, tmp_path, server.url + "/cifar-10-python.tar.gz")


def test_network_error_names_where_to_put_a_manual_copy(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as err:
        prepare("mnist", tmp_path / "out", download_dir=tmp_path / "dl",
                base_url=f"http://127.0.0.1:{port}/", progress=False)
    msg = str(err.value)
    assert "Network" in msg
    assert str(tmp_path / "dl" / "mnist" / "train-images-idx3-ubyte.gz") in msg
    assert "f68b3c2dcbeaaa9fbdd348bbdeb94873" in msg  # the pinned torchvision md5
    assert files_under(tmp_path / "dl") == [] and files_under(tmp_path / "out") == []


def test_http_404_is_a_download_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        prepare("cifar10", tmp_path / "out", download_dir=tmp_path / "dl", base_url=server.url,
                progress=False)


def test_malicious_pickle_in_archive_is_not_executed(server, tiny_cifar, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    members = dict(tiny_cifar["members"])
    members["data_batch_1"] = pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2)
    archive = _targz(members)
    server.files["/cifar-10-python.tar.gz"] = archive
    with pytest.raises(DownloadError, match="refusing to unpickle"):
        prepare("cifar10", tmp_path / "out", download_dir=tmp_path / "dl", base_url=server.url,
                checksums={"cifar-10-python.tar.gz": md5(archive)}, progress=False)
    assert not marker.exists()


def test_checksum_override_for_unknown_file_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz"):
        prepare("cifar10", tmp_path / "out", download_dir=tmp_path / "dl",
                checksums={"cifar10.tgz": "0" * 32}, progress=False)


# --------------------------------------------------------------------------- local copies: image folders,
# CelebA, FFHQ, LSUN (LMDB, downloaded from a local server), downsampled ImageNet


def _png(a: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def _expected(a: np.ndarray, size: int) -> np.ndarray:
    """What the reader should make of one RGB image, by the documented recipe and none of the reader's code:
    the central square (top (h - s) // 2, left (w - s) // 2, side s = min(h, w)), then PIL's antialiased
    bicubic resize (Keys a = -0.5, support stretched by the scale) on each channel as a float image (mode
    "F", float32: no intermediate rounding, as in the reader's float64 filter), rounded half to even once."""
    from PIL import Image

    h, w = a.shape[:2]
    s = min(h, w)
    crop = a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    if s == size:
        return crop
    chans = [np.asarray(Image.fromarray(crop[..., c].astype(np.float32))
                        .resize((size, size), Image.Resampling.BICUBIC)) for c in range(3)]
    return np.clip(np.rint(np.stack(chans, -1).astype(np.float64)), 0, 255).astype(np.uint8)


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The documented seeded split: round(test_fraction * n) test items, the first of a permutation drawn
    from default_rng([seed, 0]); both parts sorted."""
    perm = np.random.default_rng([seed, 0]).permutation(n)
    n_test = round(test_fraction * n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory) -> dict:
    """Nine lossless images in nested folders, mixed sizes and orientations, plus a non-image file."""
    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("faces")
    shapes = [(24, 24), (30, 20), (20, 30), (24, 24), (16, 16), (40, 24), (24, 24), (32, 32), (24, 24)]
    arrays = {}
    for i, (h, w) in enumerate(shapes):
        rel = f"{i // 4:02d}/{i:05d}.png"
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(_png(a))
        arrays[rel] = a
    (root / "LICENSE.txt").write_text("not an image")
    return {"root": root, "arrays": arrays, "names": sorted(arrays)}


def test_image_folder_reads_sorted_crops_resizes_and_splits(face_folder, tmp_path):
    out = tmp_path / "out"
    manifest = prepare("ffhq128", out, path=str(face_folder["root"]), image_size=16, test_fraction=0.25, seed=3,
                       progress=False)
    names, arrays = face_folder["names"], face_folder["arrays"]
    train_idx, test_idx = _split(len(names), 0.25, 3)
    assert manifest["counts"] == {"train": 7, "test": 2} and manifest["split"] == "seeded"
    assert manifest["image_shape"] == [16, 16, 3] and manifest["test_fraction"] == 0.25
    assert str(face_folder["root"].resolve()) in manifest["source"] and "(9 images)" in manifest["source"]
    for split, idx in (("train", train_idx), ("test", test_idx)):
        x, y = load_split(out, split)
        want = np.stack([_expected(arrays[names[i]], 16) for i in idx])
        # PIL's float32 intermediate image vs the reader's float64 may move a value across .5: 1 level, rarely
        assert np.abs(x.astype(int) - want.astype(int)).max() <= 1
        assert (x != want).mean() < 0.01
        assert not y.any() and y.dtype == np.int64
    # the 16x16 image is only cropped (square already, no resize)
    i16 = names.index("01/00004.png")
    x_all = {int(i): load_split(out, s)[0][k] for s, idx in (("train", train_idx), ("test", test_idx))
             for k, i in enumerate(idx)}
    np.testing.assert_array_equal(x_all[i16], arrays["01/00004.png"])


def test_image_folder_is_deterministic_and_the_zip_reads_the_same(face_folder, tmp_path):
    a = prepare("ffhq128", tmp_path / "a", path=face_folder["root"], image_size=8, test_fraction=0.3, progress=False)
    b = prepare("ffhq128", tmp_path / "b", path=face_folder["root"], image_size=8, test_fraction=0.3, progress=False)
    assert a["splits"] == b["splits"]  # same sha256
    c = prepare("ffhq128", tmp_path / "c", path=face_folder["root"], image_size=8, test_fraction=0.3, seed=1,
                progress=False)
    assert c["splits"]["test"]["sha256"] != a["splits"]["test"]["sha256"]
    archive = tmp_path / "ffhq.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel in reversed(face_folder["names"]):  # member order must not matter
            zf.write(face_folder["root"] / rel, f"images/{rel}")
    z = prepare("ffhq128", tmp_path / "z", path=archive, image_size=8, test_fraction=0.3, progress=False)
    assert z["splits"]["train"]["sha256"] == a["splits"]["train"]["sha256"]
    assert z["splits"]["test"]["sha256"] == a["splits"]["test"]["sha256"]


def test_caps_are_applied_before_decoding_as_prepare_would(face_folder, tmp_path, monkeypatch):
    full = tmp_path / "full"
    prepare("ffhq128", full, path=face_folder["root"], image_size=8, test_fraction=0.3, progress=False)
    decoded = []
    real = image_io._decode
    monkeypatch.setattr(image_io, "_decode", lambda data, name, crop: decoded.append(name) or real(data, name, crop))
    capped = tmp_path / "capped"
    m = prepare("ffhq128", capped, path=face_folder["root"], image_size=8, test_fraction=0.3, max_train=3,
                max_test=1, progress=False)
    assert m["counts"] == {"train": 3, "test": 1} and len(decoded) == 4
    for split, n, stream in (("train", 3, 1), ("test", 1, 2)):
        x_full, _ = load_split(full, split)
        x_cap, _ = load_split(capped, split)
        np.testing.assert_array_equal(x_cap, x_full[image_io.subset_indices(len(x_full), n, 0, stream)])


def test_missing_local_copy_says_what_to_put_where(tmp_path):
    with pytest.raises(LocalDataError) as err:
        prepare("ffhq128", tmp_path / "out", path=None, progress=False)
    msg = str(err.value)
    assert "dataset_paths.ffhq128" in msg and "images1024x1024" in msg and "thumbnails128x128" in msg
    with pytest.raises(LocalDataError, match="dataset_paths.celeba64") as err:
        prepare("celeba64", tmp_path / "out", progress=False)
    assert "img_align_celeba" in str(err.value) and "list_eval_partition.txt" in str(err.value)
    with pytest.raises(LocalDataError, match="does not exist") as err:
        prepare("celeba64", tmp_path / "out", path=str(tmp_path / "nowhere"), progress=False)
    assert str(tmp_path / "nowhere") in str(err.value) and "img_align_celeba" in str(err.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(LocalDataError, match="holds no"):
        prepare("ffhq128", tmp_path / "out", path=tmp_path / "empty", progress=False)
    assert files_under(tmp_path / "out") == []
    assert issubclass(LocalDataError, DownloadError)


def test_undecodable_image_is_named(face_folder, tmp_path):
    root = tmp_path / "imgs"
    shutil.copytree(face_folder["root"], root)
    (root / "00" / "00002.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(LocalDataError, match="00/00002.png"):
        prepare("ffhq128", tmp_path / "out", path=root, image_size=8, progress=False)


def test_celeba_official_split_and_diffae_crop(tmp_path):
    root = tmp_path / "celeba" / "img_align_celeba"
    root.mkdir(parents=True)
    lines = []
    for i in range(1, 7):
        a = np.full((218, 178, 3), 10, np.uint8)
        a[57:185, 25:153] = (40 * i, 255 - 40 * i, 7)  # the crop box: uniform, distinct per image
        name = f"{i:06d}.jpg" if i % 2 else f"{i:06d}.png"
        (root / name).write_bytes(_png(a, "JPEG" if i % 2 else "PNG"))
        lines.append(f"{name} {[0, 0, 1, 2, 0, 2][i - 1]}")
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    m = prepare("celeba64", tmp_path / "out", path=root, image_size=16, progress=False)
    assert m["counts"] == {"train": 3, "test": 2} and m["split"].startswith("official")
    assert m["test_fraction"] is None and m["image_shape"] == [16, 16, 3]
    x, _ = load_split(tmp_path / "out", "test")  # images 4 and 6
    for k, i in enumerate((4, 6)):
        np.testing.assert_allclose(x[k].reshape(-1, 3).mean(0), (40 * i, 255 - 40 * i, 7), atol=3)
        assert np.ptp(x[k].reshape(-1, 3), axis=0).max() <= 6  # nothing of the border: inside the box only
    # without the partition file: a seeded split of test_fraction
    (tmp_path / "celeba" / "list_eval_partition.txt").unlink()
    m = prepare("celeba64", tmp_path / "out2", path=root, image_size=16, test_fraction=0.5, progress=False)
    assert m["split"] == "seeded" and m["counts"] == {"train": 3, "test": 3}


# ----- LSUN: an LMDB of encoded images, as bedroom_train_lmdb.zip on a local server


@pytest.fixture(scope="module")
def tiny_lsun(tmp_path_factory) -> dict:
    import lmdb  # a dependency (pyproject), not optional
    rng = np.random.default_rng(9)
    root = tmp_path_factory.mktemp("lsun")
    db = root / "bedroom_train_lmdb"
    env = lmdb.open(str(db), map_size=1 << 24)
    arrays = {}
    with env.begin(write=True) as txn:
        for i in range(6):
            key = hashlib.sha1(str(i).encode()).hexdigest()  # LSUN's keys: hex ids
            a = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
            txn.put(key.encode(), _png(a, "WEBP" if i % 2 else "PNG"))  # LSUN stores WebP
            arrays[key] = a
    env.close()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(db.iterdir()):
            zf.write(f, f"bedroom_train_lmdb/{f.name}")
    return {"db": db, "arrays": arrays, "keys": sorted(arrays), "archive": buf.getvalue()}


def test_lsun_downloads_extracts_once_and_reads_the_lmdb(server, tiny_lsun, tmp_path):
    server.files["/lsun/bedroom_train_lmdb.zip"] = tiny_lsun["archive"]
    dl = tmp_path / "dl"
    m = prepare("lsun_bedroom128", tmp_path / "out", download_dir=dl, base_url=server.url + "/lsun", image_size=8,
                test_fraction=0.34, progress=False)
    assert server.requests == ["/lsun/bedroom_train_lmdb.zip"]
    rec = m["source_checksums"]["bedroom_train_lmdb.zip"]
    assert rec["checksum"] == hashlib.sha256(tiny_lsun["archive"]).hexdigest() and "not verified" in rec["note"]
    assert m["counts"] == {"train": 4, "test": 2} and m["image_shape"] == [8, 8, 3]
    train_idx, _ = _split(6, 0.34, 0)
    x, _ = load_split(tmp_path / "out", "train")
    keys, arrays = tiny_lsun["keys"], tiny_lsun["arrays"]
    want = np.stack([_expected(arrays[keys[i]], 8) for i in train_idx])
    assert np.abs(x.astype(int) - want.astype(int)).max() <= 1 and (x != want).mean() < 0.01
    assert (dl / "lsun_bedroom128" / "bedroom_train_lmdb" / "data.mdb").is_file()
    # again: the verified archive and its extracted LMDB are reused, nothing is fetched
    server.requests.clear()
    m2 = prepare("lsun_bedroom128", tmp_path / "out2", download_dir=dl, base_url=server.url + "/lsun", image_size=8,
                 test_fraction=0.34, progress=False)
    assert server.requests == [] and m2["splits"] == m["splits"]
    # a local LMDB given by path reads the same, with no download
    m3 = prepare("lsun_bedroom128", tmp_path / "out3", path=tiny_lsun["db"], image_size=8, test_fraction=0.34,
                 progress=False)
    assert m3["splits"]["train"]["sha256"] == m["splits"]["train"]["sha256"] and m3["source_checksums"] == {}
    # the workflow's split: the download step fetches and extracts, preparation then reads without network
    dl2 = tmp_path / "dl2"
    with pytest.raises(DownloadError, match="preprocessing does not download"):
        prepare("lsun_bedroom128", tmp_path / "out4", download_dir=dl2, image_size=8, download=False, progress=False)
    download("lsun_bedroom128", download_dir=dl2, base_url=server.url + "/lsun", progress=False)
    assert (dl2 / "lsun_bedroom128" / "bedroom_train_lmdb" / "data.mdb").is_file()
    server.requests.clear()
    m4 = prepare("lsun_bedroom128", tmp_path / "out4", download_dir=dl2, image_size=8, test_fraction=0.34,
                 download=False, progress=False)
    assert server.requests == [] and m4["splits"] == m["splits"]


def test_lsun_archive_without_an_lmdb_is_rejected(server, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bedroom_train_lmdb/readme.txt", "no database here")
    server.files["/bedroom_train_lmdb.zip"] = buf.getvalue()
    with pytest.raises(LocalDataError, match="no data.mdb"):
        prepare("lsun_bedroom128", tmp_path / "out", download_dir=tmp_path / "dl", base_url=server.url,
                progress=False)


# ----- downsampled ImageNet 32x32


def _imagenet_batch(n: int, rng, npz: bool, mean: bool) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A batch file in the official layout: data uint8 (N, 3072) = R, G, B planes; labels 1-based."""
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(1, 1001, n)
    data = images.transpose(0, 3, 1, 2).reshape(n, 3072)
    payload = {"data": data, "labels": labels.tolist()}
    if mean:
        payload["mean"] = data.mean(0)
    if npz:
        buf = io.BytesIO()
        np.savez(buf, **payload)
        return buf.getvalue(), images, labels - 1
    return pickle.dumps(payload, protocol=2), images, labels - 1


@pytest.fixture(scope="module")
def tiny_imagenet32(tmp_path_factory) -> dict:
    rng = np.random.default_rng(11)
    out = {"npz": {}, "pickle": {}}
    for kind in out:
        train = [_imagenet_batch(2 + i % 2, rng, kind == "npz", True) for i in range(10)]
        val = _imagenet_batch(3, rng, kind == "npz", False)
        ext = ".npz" if kind == "npz" else ""
        files = {f"train_data_batch_{i + 1}{ext}": b[0] for i, b in enumerate(train)}
        files[f"val_data{ext}"] = val[0]
        out[kind] = {"files": files,
                     "train": (np.concatenate([b[1] for b in train]), np.concatenate([b[2] for b in train])),
                     "test": (val[1], val[2])}
    return out


def _check_imagenet(out: Path, ref: dict) -> None:
    for split in ("train", "test"):
        x, y = load_split(out, split)
        np.testing.assert_array_equal(x, ref[split][0])
        np.testing.assert_array_equal(y, ref[split][1])


def test_imagenet32_npz_zips_as_downloaded(tiny_imagenet32, tmp_path):
    ref = tiny_imagenet32["npz"]
    root = tmp_path / "imagenet32"
    root.mkdir()
    for zname, prefix in (("Imagenet32_train_npz.zip", "train"), ("Imagenet32_val_npz.zip", "val")):
        with zipfile.ZipFile(root / zname, "w") as zf:
            for name, payload in ref["files"].items():
                if name.startswith(prefix):
                    zf.writestr(f"{zname[:-4]}/{name}", payload)
    m = prepare("imagenet32", tmp_path / "out", path=root, progress=False)
    _check_imagenet(tmp_path / "out", ref)
    assert m["split"].startswith("official") and m["num_classes"] == 1000 and m["counts"] == {"train": 25, "test": 3}
    assert m["image_shape"] == [32, 32, 3]


def test_imagenet32_extracted_pickles(tiny_imagenet32, tmp_path):
    ref = tiny_imagenet32["pickle"]
    root = tmp_path / "Imagenet32_train"
    root.mkdir()
    for name, payload in ref["files"].items():
        (root / name).write_bytes(payload)
    prepare("imagenet32", tmp_path / "out", path=root, progress=False)
    _check_imagenet(tmp_path / "out", ref)


def test_imagenet32_missing_or_bad_files_are_named(tiny_imagenet32, tmp_path):
    with pytest.raises(LocalDataError, match="dataset_paths.imagenet32") as err:
        prepare("imagenet32", tmp_path / "out", progress=False)
    assert "Imagenet32_train_npz.zip" in str(err.value)
    root = tmp_path / "partial"
    root.mkdir()
    for name, payload in tiny_imagenet32["npz"]["files"].items():
        if name not in ("train_data_batch_7.npz", "val_data.npz"):
            (root / name).write_bytes(payload)
    with pytest.raises(LocalDataError, match="lacks train_data_batch_7, val_data"):
        prepare("imagenet32", tmp_path / "out", path=root, progress=False)
    (root / "train_data_batch_7.npz").write_bytes(tiny_imagenet32["npz"]["files"]["train_data_batch_7.npz"])
    buf = io.BytesIO()
    np.savez(buf, data=np.zeros((2, 12288), np.uint8), labels=np.array([1, 2]))  # an Imagenet64 batch
    (root / "val_data.npz").write_bytes(buf.getvalue())
    with pytest.raises(LocalDataError, match="12288"):
        prepare("imagenet32", tmp_path / "out", path=root, progress=False)
    assert files_under(tmp_path / "out") == []
