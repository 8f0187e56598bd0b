"""The dataset source ``images`` (src/daebench/data/user_images.py): your own folder of images or .npz.

Round trips compare every prepared pixel with the expected crop / resize of the input computed here from the
arrays the test wrote (transforms.resize_images, the reference kernel); bad input must raise an error naming
the file and leave no output directory.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from daebench.config import ConfigError, validate
from daebench.data import LocalDataError, load_split, prepare, read_manifest
from daebench.data import images as image_io
from daebench.data.registry import DATASETS, needs_download, needs_path
from daebench.data.transforms import quantize, resize_images
from daebench.data.user_images import HINT, ImageSourceError
from daebench.jobs import data as data_jobs

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/params.schema.yaml"
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
LUMA = np.array([0.299, 0.587, 0.114])


def rgb(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array).save(path)
    return path


def centre(x: np.ndarray, side: int) -> np.ndarray:
    """Centre side x side square of an HWC image."""
    h, w = x.shape[:2]
    top, left = (h - side) // 2, (w - side) // 2
    return x[top:top + side, left:left + side]


def resized(x: np.ndarray, size: int) -> np.ndarray:
    """Centre square, antialiased bicubic resize (float64, one rounding): what fit=resize must give."""
    sq = centre(x.astype(np.float64), min(x.shape[:2]))
    return quantize(resize_images(sq[None], size, kernel="bicubic"))[0]


def prepared(out: Path) -> tuple[dict, dict]:
    manifest = read_manifest(out)
    return manifest, {split: load_split(out, split) for split in ("train", "test")}


def match(splits: dict, expected: np.ndarray, labels: np.ndarray) -> None:
    """Every prepared image equals exactly one expected image, with its label; together they are all of them."""
    index = {e.tobytes(): i for i, e in enumerate(expected)}
    assert len(index) == len(expected)  # the inputs are distinct
    seen = []
    for images, got in splits.values():
        assert images.dtype == np.uint8 and images.shape[1:] == expected.shape[1:]
        assert got.dtype == np.int64 and len(got) == len(images)
        for x, y in zip(images, got):
            i = index.get(x.tobytes())
            assert i is not None, "a prepared image equals no expected crop/resize of the input"
            assert y == labels[i]
            seen.append(i)
    assert sorted(seen) == list(range(len(expected)))


@pytest.fixture
def class_folder(tmp_path):
    """Two class subfolders of PNGs of mixed sizes (and a non-image file and a hidden file, both skipped)."""
    rng = np.random.default_rng(1)
    root = tmp_path / "mine"
    sizes = [(10, 12), (12, 10), (16, 16), (9, 11), (14, 9), (8, 8)]
    arrays, labels, names = [], [], []
    for label, cls in enumerate(("b_dogs", "a_cats")[::-1]):  # sorted: a_cats = 0, b_dogs = 1
        for i, (h, w) in enumerate(sizes):
            x = rgb(rng, h, w)
            save_png(root / cls / f"{i:02d}.png", x)
            arrays.append(x)
            labels.append(label)
            names.append(f"{cls}/{i:02d}.png")
    (root / "README.txt").write_text("not an image")
    save_png(root / "a_cats" / ".hidden.png", rgb(rng, 8, 8))
    return {"root": root, "arrays": arrays, "labels": np.array(labels), "names": names}


# --------------------------------------------------------------------------- round trips: a folder

@pytest.mark.parametrize("fit,channels", [("resize", 3), ("crop", 1)])
def test_class_folder_round_trip(class_folder, tmp_path, fit, channels):
    out = tmp_path / "out"
    m = prepare("images", out, path=class_folder["root"], image_size=8, channels=channels, fit=fit, seed=3,
                test_fraction=0.3, progress=False)
    manifest, splits = prepared(out)
    assert m == manifest and manifest["dataset"] == "images"
    assert manifest["label_names"] == ["a_cats", "b_dogs"] and manifest["num_classes"] == 2
    assert manifest["image_shape"] == [8, 8, channels] and manifest["counts"] == {"train": 8, "test": 4}
    assert manifest["splits"]["test"]["class_counts"] == [2, 2]  # stratified by class
    if channels == 3:
        expected = np.stack([resized(x, 8) for x in class_folder["arrays"]])
    else:  # Pillow's luma, then the centre 8x8 square
        luma = [np.asarray(Image.fromarray(x).convert("L"))[..., None] for x in class_folder["arrays"]]
        expected = np.stack([centre(x, 8) for x in luma])
    match(splits, expected, class_folder["labels"])


def test_flat_folder_with_fit_none_keeps_pixels_and_is_one_class(tmp_path):
    rng = np.random.default_rng(2)
    arrays = [rgb(rng, 8, 8) for _ in range(7)]
    for i, x in enumerate(arrays):
        save_png(tmp_path / "flat" / f"img{i}.png", x)
    m = prepare("images", tmp_path / "out", path=tmp_path / "flat", image_size=8, fit="none", progress=False)
    assert m["label_names"] == ["image"] and m["num_classes"] == 1 and m["counts"] == {"train": 6, "test": 1}
    _, splits = prepared(tmp_path / "out")
    match(splits, np.stack(arrays), np.zeros(len(arrays), dtype=np.int64))


def test_caps_are_applied_as_for_the_other_datasets(class_folder, tmp_path):
    full = tmp_path / "full"
    prepare("images", full, path=class_folder["root"], image_size=8, progress=False)
    capped = tmp_path / "capped"
    m = prepare("images", capped, path=class_folder["root"], image_size=8, max_train=3, max_test=1, progress=False)
    assert m["counts"] == {"train": 3, "test": 1} and (m["max_train"], m["max_test"]) == (3, 1)
    for split, n, stream in (("train", 3, 1), ("test", 1, 2)):
        x_full, y_full = load_split(full, split)
        x_cap, y_cap = load_split(capped, split)
        keep = image_io.subset_indices(len(x_full), n, 0, stream)
        np.testing.assert_array_equal(x_cap, x_full[keep])
        np.testing.assert_array_equal(y_cap, y_full[keep])


# --------------------------------------------------------------------------- round trips: an .npz

def _npz_cases():
    rng = np.random.default_rng(4)
    nhwc = rng.integers(0, 256, (9, 8, 8, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2], dtype=np.int32)
    nchw = rng.integers(0, 256, (9, 3, 8, 8), dtype=np.uint8)
    unit = rng.random((9, 12, 10, 3))
    signed = rng.uniform(-1, 1, (9, 1, 11, 11)).astype(np.float32)
    return [
        # (name, arrays, prepare options, expected NHWC uint8, expected labels, label names)
        ("uint8 NHWC, fit none", {"images": nhwc, "labels": labels}, {"fit": "none"}, nhwc, labels,
         ["0", "1", "2"]),
        ("uint8 NCHW, fit none", {"images": nchw}, {"fit": "none"}, nchw.transpose(0, 2, 3, 1), None, ["image"]),
        ("float [0, 1] NHWC, fit resize", {"images": unit, "labels": labels}, {"fit": "resize"},
         np.stack([quantize(resize_images(centre(x * 255.0, 10)[None], 8))[0] for x in unit]), labels,
         ["0", "1", "2"]),
        ("float [-1, 1] NCHW grey -> RGB, fit crop", {"images": signed}, {"fit": "crop", "channels": 3},
         quantize(np.repeat(np.stack([centre((x.astype(np.float64) + 1.0) * 127.5, 8)
                                      for x in signed.transpose(0, 2, 3, 1)]), 3, axis=-1)), None, ["image"]),
        ("uint8 RGB -> luma, fit none", {"images": nhwc}, {"fit": "none", "channels": 1},
         quantize(nhwc.astype(np.float64) @ LUMA[:, None]), None, ["image"]),
    ]


@pytest.mark.parametrize("case", _npz_cases(), ids=lambda c: c[0])
def test_npz_round_trip(tmp_path, case):
    _, arrays, opts, expected, labels, names = case
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays)
    m = prepare("images", tmp_path / "out", path=path, image_size=8, test_fraction=0.3, progress=False, **opts)
    assert m["label_names"] == names and m["num_classes"] == len(names)
    assert m["image_shape"] == list(expected.shape[1:]) and sum(m["counts"].values()) == 9
    if labels is not None:
        assert m["splits"]["test"]["class_counts"] == [1, 1, 1]  # stratified
    _, splits = prepared(tmp_path / "out")
    match(splits, expected, np.zeros(9, dtype=np.int64) if labels is None else labels)


# --------------------------------------------------------------------------- the input's sha256

def _source_sha(out: Path) -> str:
    (record,) = read_manifest(out)["source_checksums"].values()
    assert record["algorithm"] == "sha256"
    return record["checksum"]


def test_manifest_sha256_follows_the_input(class_folder, tmp_path):
    root = class_folder["root"]
    prepare("images", tmp_path / "a", path=root, image_size=8, progress=False)
    prepare("images", tmp_path / "b", path=root, image_size=8, progress=False)
    first = _source_sha(tmp_path / "a")
    assert _source_sha(tmp_path / "b") == first  # the same files: the same digest
    x = class_folder["arrays"][3].copy()
    x[0, 0, 0] ^= 1  # one value of one file
    save_png(root / class_folder["names"][3], x)
    prepare("images", tmp_path / "c", path=root, image_size=8, progress=False)
    changed = _source_sha(tmp_path / "c")
    assert changed != first
    (root / "a_cats" / "00.png").rename(root / "a_cats" / "00b.png")  # same bytes, another name
    prepare("images", tmp_path / "d", path=root, image_size=8, progress=False)
    assert _source_sha(tmp_path / "d") not in (first, changed)

    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    npz = tmp_path / "mine.npz"
    np.savez(npz, images=x)
    prepare("images", tmp_path / "n1", path=npz, image_size=8, progress=False)
    assert _source_sha(tmp_path / "n1") == hashlib.sha256(npz.read_bytes()).hexdigest()
    x[1, 2, 3, 0] ^= 1
    np.savez(npz, images=x)
    prepare("images", tmp_path / "n2", path=npz, image_size=8, progress=False)
    assert _source_sha(tmp_path / "n2") != _source_sha(tmp_path / "n1")


# --------------------------------------------------------------------------- bad input

def _folder(tmp, sizes, nested=False):
    rng = np.random.default_rng(6)
    root = tmp / "in"
    for i, (h, w) in enumerate(sizes):
        save_png(root / ("c" if nested else "") / f"{i:02d}.png", rgb(rng, h, w))
    return root


def _npz(tmp, **arrays):
    path = tmp / "in.npz"
    np.savez(path, **arrays)
    return path


def _ok(n=4, shape=(8, 8, 3)):
    return np.random.default_rng(7).integers(0, 256, (n, *shape), dtype=np.uint8)


def _truncated(tmp):
    root = _folder(tmp, [(8, 8)] * 4)
    data = (root / "02.png").read_bytes()
    (root / "02.png").write_bytes(data[: len(data) // 2])
    return root, {}, root / "02.png", "cannot decode image"


def _garbage(tmp):
    root = _folder(tmp, [(8, 8)] * 4)
    (root / "01.png").write_bytes(b"\x89PNG not really an image")
    return root, {}, root / "01.png", "cannot read image"


def _wide(tmp):
    root = _folder(tmp, [(8, 8)] * 3)
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(root / "03.png")
    return root, {}, root / "03.png", "more than 8 bits per sample"


BAD = {
    "mixed sizes, fit none": lambda t: (_folder(t, [(8, 8), (8, 8), (9, 8), (8, 8)]), {"fit": "none"},
                                        t / "in" / "02.png", "data.images.fit is none"),
    "npz size, fit none": lambda t: (_npz(t, images=_ok(shape=(9, 9, 3))), {"fit": "none"}, t / "in.npz",
                                     "data.images.fit is none"),
    "too small to crop": lambda t: (_folder(t, [(8, 8), (6, 12), (8, 8)]), {"fit": "crop"}, t / "in" / "01.png",
                                    "smaller than data.images.image_size 8"),
    "no images in the folder": lambda t: ((t / "in").mkdir() or (t / "in" / "notes.txt").write_text("x") and t / "in",
                                          {}, t / "in", "holds no image files"),
    "no images in the npz": lambda t: (_npz(t, images=_ok(n=0)), {}, t / "in.npz", "holds no images"),
    "corrupt image": _garbage,
    "truncated image": _truncated,
    "16-bit image": _wide,
    "images and class folders mixed": lambda t: (
        _folder(t, [(8, 8)] * 2) and (_folder(t, [(8, 8)] * 2, nested=True)), {}, t / "in" / "00.png",
        "mixes images at its top level"),
    "empty class folder": lambda t: (_folder(t, [(8, 8)] * 3, nested=True) and ((t / "in" / "d").mkdir() or t / "in"),
                                     {}, t / "in" / "d", "holds no image files"),
    "folders too deep": lambda t: (save_png(t / "in" / "a" / "b" / "x.png", _ok(1)[0]).parents[2], {},
                                   t / "in" / "a" / "b" / "x.png", "more than one folder deep"),
    "int64 images": lambda t: (_npz(t, images=_ok().astype(np.int64)), {}, t / "in.npz", "dtype int64"),
    "float 0..255": lambda t: (_npz(t, images=_ok().astype(np.float32)), {}, t / "in.npz",
                               "must lie in [0, 1] or [-1, 1]"),
    "NaN": lambda t: (_npz(t, images=np.full((4, 8, 8, 3), np.nan)), {}, t / "in.npz", "NaN"),
    "labels of another length": lambda t: (_npz(t, images=_ok(), labels=np.arange(3)), {}, t / "in.npz",
                                           "`labels` has shape (3,), but `images` holds 4 images"),
    "float labels": lambda t: (_npz(t, images=_ok(), labels=np.zeros(4)), {}, t / "in.npz",
                               "labels must be integers"),
    "labels that are ids": lambda t: (_npz(t, images=_ok(), labels=np.array([0, 1, 2, 10**9])), {}, t / "in.npz",
                                      "renumber them"),
    "no images key": lambda t: (_npz(t, pictures=_ok()), {}, t / "in.npz", "has no `images` array"),
    "not an npz": lambda t: ((t / "in.npz").write_bytes(b"garbage") and t / "in.npz", {}, t / "in.npz",
                             "not an .npz file"),
    "an npy named npz": lambda t: (np.save(t / "x.npy", _ok()) or (t / "x.npy").rename(t / "in.npz"), {},
                                   t / "in.npz", "is a single .npy array"),
    "object arrays": lambda t: (_npz(t, images=np.array([None, 1], dtype=object)), {}, t / "in.npz",
                                "no Python objects"),
    "no channel axis": lambda t: (_npz(t, images=_ok(shape=(8, 8, 5))), {}, t / "in.npz", "expected (N, H, W, C)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_the_file_and_writes_nothing(tmp_path, case):
    path, opts, culprit, expected = BAD[case](tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ImageSourceError) as err:
        prepare("images", out, path=path, image_size=8, progress=False, **opts)
    msg = str(err.value)
    assert expected in msg, msg
    assert str(culprit) in msg, msg
    assert isinstance(err.value, ValueError) and isinstance(err.value, LocalDataError)
    assert not out.exists()


def test_bad_input_leaves_an_existing_preparation_as_it_was(class_folder, tmp_path):
    out = tmp_path / "out"
    prepare("images", out, path=class_folder["root"], image_size=8, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (class_folder["root"] / "b_dogs" / "03.png").write_bytes(b"not a png")
    with pytest.raises(ImageSourceError, match="b_dogs/03.png"):
        prepare("images", out, path=class_folder["root"], image_size=8, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_missing_or_absent_path_says_what_to_put_there(tmp_path):
    with pytest.raises(LocalDataError) as err:
        prepare("images", tmp_path / "out", progress=False)
    assert str(err.value) == HINT and "set dataset_paths.images in params.yaml" in HINT
    with pytest.raises(LocalDataError, match="does not exist"):
        prepare("images", tmp_path / "out", path=tmp_path / "nowhere", progress=False)
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(ImageSourceError, match="neither a folder nor a .npz file"):
        prepare("images", tmp_path / "out", path=tmp_path / "x.png", progress=False)
    with pytest.raises(ValueError, match="data.images.fit must be one of resize, crop, none"):
        prepare("images", tmp_path / "out", path=tmp_path, fit="stretch", progress=False)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- config and slices

def check(cfg):
    return validate(copy.deepcopy(cfg), SCHEMA)


def test_registered_as_a_local_dataset():
    info = DATASETS["images"]
    assert info.local and info.hint == HINT and needs_path("images") and not needs_download("images", None)


def test_config_accepts_images_with_a_path_and_rejects_it_clearly_without():
    cfg = copy.deepcopy(PARAMS)
    cfg["dataset"] = "images"
    with pytest.raises(ConfigError) as err:
        check(cfg)
    msg = str(err.value)
    assert "dataset_paths.images: dataset images is read from a local copy and none is given (null)" in msg
    assert HINT in msg
    cfg["dataset_paths"]["images"] = "/data/mine.npz"
    ok = check(cfg)
    assert ok["dataset_paths"]["images"] == "/data/mine.npz"
    assert ok["data"]["images"] == {"image_size": 32, "channels": 3, "fit": "resize"}
    for key, bad, says in (("channels", 2, "data.images.channels: 2 is not allowed"),
                           ("fit", "stretch", "data.images.fit: 'stretch' is not allowed"),
                           ("image_size", 0, "data.images.image_size: 0 is less than the minimum of 1")):
        wrong = copy.deepcopy(cfg)
        wrong["data"]["images"][key] = bad
        with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(".", r"\.")):
            check(wrong)
    defaults = check({"methods": PARAMS["methods"]})  # the block's defaults fill when it is left out
    assert defaults["data"]["images"] == {"image_size": 32, "channels": 3, "fit": "resize"}
    assert defaults["dataset_paths"]["images"] is None


def test_path_and_options_reach_only_the_images_jobs():
    config = check(PARAMS)
    digits = data_jobs.data_slice(config, "digits")
    assert digits == {"dataset": "digits", "data": {k: v for k, v in config["data"].items() if k != "images"}}
    mine = data_jobs.data_slice(config, "images")
    assert mine["path"] is None and mine["data"]["images"] == config["data"]["images"]
    changed = copy.deepcopy(config)
    changed["dataset_paths"]["images"] = "/data/mine"
    changed["data"]["images"]["image_size"] = 16
    assert data_jobs.data_slice(changed, "digits") == digits
    assert data_jobs.data_slice(changed, "celeba64") == data_jobs.data_slice(config, "celeba64")
    new = data_jobs.data_slice(changed, "images")
    assert new["path"] == "/data/mine" and new["data"]["images"]["image_size"] == 16


def test_prepare_job_passes_the_images_options(class_folder, tmp_path):
    config = check({**PARAMS, "dataset": "images", "dataset_paths": {"images": str(class_folder["root"])}})
    config["data"]["images"].update(image_size=8, channels=1, fit="resize")
    cfg = json.loads(json.dumps(data_jobs.prepare_slice(config, "images")))  # as the rule hands it over
    data_jobs.prepare_data(cfg, tmp_path / "out", progress=False)
    manifest = read_manifest(tmp_path / "out")
    assert manifest["image_shape"] == [8, 8, 1] and manifest["label_names"] == ["a_cats", "b_dogs"]


@pytest.mark.slow
def test_smoke_table4_on_a_folder_of_pngs(tmp_path):
    """The smoke Table 4, end to end, on your own images: a folder of PNGs (class subfolders, 12 x 12 grey
    digits) resized to 16 x 16. Every row is scored and the manifest records what was read."""
    import subprocess
    import sys

    import pandas as pd
    from sklearn.datasets import load_digits

    from conftest import copy_workflow, workflow_env

    digits = load_digits()
    src = tmp_path / "my_images"
    for i, (img, label) in enumerate(zip(digits.images[:240], digits.target[:240])):
        small = Image.fromarray((img * 255 / 16).astype(np.uint8)).resize((12, 12), Image.BICUBIC)
        save_png(src / f"class_{label}" / f"{i:04d}.png", np.asarray(small)[..., None])
    project = copy_workflow(tmp_path / "project")
    (project / "mine.yaml").write_text(yaml.safe_dump({
        "dataset": "images", "dataset_paths": {"images": str(src)},
        "data": {"images": {"image_size": 16, "channels": 1, "fit": "resize"}}}))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "results/table4.csv", "--configfile",
                           "tests/smoke.yaml", "mine.yaml"], cwd=project, capture_output=True, text=True, timeout=1200,
                          env=workflow_env(), check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    table = pd.read_csv(project / "results/table4.csv")
    assert len(table) == 6 and set(table["dataset"]) == {"images"}
    assert table[["psnr", "ssim", "fd_domain"]].notna().all().all()
    manifest = read_manifest(project / "resources/data/images")
    assert manifest["image_shape"] == [16, 16, 1]
    sums = [r.get("checksum", "") for r in manifest["source_checksums"].values()]
    assert sums and all(len(c.split(":")[-1]) == 64 for c in sums), manifest["source_checksums"]  # what was read
    assert sorted(manifest["label_names"]) == [f"class_{d}" for d in range(10)]


def test_probe_attributes_on_your_own_images_are_image_statistics_and_classes():
    from daebench.data.attributes import binary_attributes

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    labels = np.repeat([0, 1, 2, 3], 10)
    attrs = binary_attributes(imgs, labels, "images")
    assert set(attrs) == {"thick", "slanted", "wide", "tall", "high", "class_0", "class_1", "class_2", "class_3"}
    assert attrs["class_2"].sum() == 10 and attrs["thick"].sum() == 20  # one-vs-rest; a median split
    assert set(binary_attributes(imgs, np.zeros(40, int), "images")) == {"thick", "slanted", "wide", "tall", "high"}
    with pytest.raises(ValueError, match="not 'celeba64'"):  # CelebA's own 40 labels are not read: no stand-in
        binary_attributes(imgs, labels, "celeba64")


def test_every_study_plans_on_your_own_images(tmp_path):
    """Every study's tables dry-run on `dataset: images` (the slow test above runs Table 4 for real)."""
    import subprocess
    import sys

    from conftest import SMOKE_TABLES, copy_workflow, workflow_env

    src = tmp_path / "imgs"
    for i in range(6):
        save_png(src / f"c{i % 2}" / f"{i}.png", np.full((8, 8, 3), 40 * i, np.uint8))
    project = copy_workflow(tmp_path / "project")
    (project / "mine.yaml").write_text(yaml.safe_dump({"dataset": "images", "dataset_paths": {"images": str(src)}}))
    targets = [t for ts in SMOKE_TABLES.values() for t in ts]
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", *targets, "--configfile", "tests/smoke.yaml",
                           "mine.yaml"], cwd=project, capture_output=True, text=True, timeout=300, env=workflow_env(),
                          check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "resources/data/images/manifest.json" in proc.stdout and "resources/data/digits" not in proc.stdout
