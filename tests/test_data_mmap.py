"""The paper-scale data path: prepared splits stay uint8 on disk, training memory-maps them and converts each
batch to float on the training device, and the workflow downloads (local job) apart from preprocessing
(a job a cluster may run anywhere)."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from daebench.data import UInt8Images, load_split, prepare, to_tensor
from daebench.data.store import open_npz_member, save_npz, write_manifest
from daebench.train import batch_indices, train_phase


def _writestr_npz(path, **arrays):
    """The writer every prepared dataset so far was written with: each whole .npy built in memory, then stored."""
    with zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(value), allow_pickle=False)
            zf.writestr(info, buf.getvalue())


def test_streamed_npz_has_the_bytes_of_the_old_writer(tmp_path, monkeypatch):
    # Same bytes, same sha256: datasets prepared before stay valid, and preparing again changes nothing.
    from daebench.data import store

    monkeypatch.setattr(store, "_WRITE_BYTES", 1000)  # many chunks per member
    rng = np.random.default_rng(0)
    arrays = {"images": rng.integers(0, 256, (300, 16, 16, 3), dtype=np.uint8),
              "labels": rng.integers(0, 10, 300)}
    _writestr_npz(tmp_path / "old.npz", **arrays)
    save_npz(tmp_path / "new.npz", **arrays)
    assert (tmp_path / "new.npz").read_bytes() == (tmp_path / "old.npz").read_bytes()
    for key, value in arrays.items():
        mapped = open_npz_member(tmp_path / "new.npz", key)
        assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
        np.testing.assert_array_equal(mapped, value)


def test_memory_mapped_split_equals_the_loaded_one(tmp_path):
    prepare("digits", tmp_path, max_train=200, progress=False)
    images, labels = load_split(tmp_path, "train")
    mapped, mapped_labels = load_split(tmp_path, "train", mmap=True)
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.uint8 and mapped.shape == images.shape
    np.testing.assert_array_equal(mapped, images)
    np.testing.assert_array_equal(mapped_labels, labels)


def _tiny_cfg(**kw):
    return {"device": "cpu", "batch_size": 16, "seed": 3, "lr": 1e-3, "warmup_examples": 32, "ema_decay": 0.9,
            "checkpoint_every": 1000, "log_every": 1000, **kw}


class _Denoise:
    """A diffusion-like loss: noise drawn from the step's generator, so the batch order and values matter."""

    def __call__(self, model, x, gen):
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        return {"mse": (model(x + 0.3 * noise) - x).pow(2).mean(dim=(1, 2, 3))}


def test_memory_mapped_batches_equal_in_memory_batches(tmp_path):
    prepare("digits", tmp_path / "d", max_train=300, progress=False)
    images, _ = load_split(tmp_path / "d", "train")
    mapped, _ = load_split(tmp_path / "d", "train", mmap=True)
    in_memory = to_tensor(images)  # the old path: the whole set as float32
    source = UInt8Images(mapped)
    assert source.shape == tuple(in_memory.shape) and len(source) == len(in_memory)
    assert source._file is not None  # rows are read from the file by position, not through the mapping
    # the data_on_device fast path: the uint8 set copied whole to the device (here the CPU), in chunks
    copied = source.to("cpu", chunk_bytes=7 * 256)
    assert isinstance(copied.images, torch.Tensor) and copied.images.dtype == torch.uint8
    for step in (0, 1, 18, 19, 40):  # 300 / 16: steps 18-19 cross an epoch (a new permutation)
        idx = batch_indices(len(images), 16, step, seed=7)
        got = source.batch(idx)
        assert got.dtype == torch.float32 and got.is_contiguous()
        assert torch.equal(got, in_memory[idx]), step  # bit for bit, in the same order
        assert torch.equal(copied.batch(idx), in_memory[idx]), step

    # and the whole training loop: the same weights whichever source it reads
    finals = []
    for name, data in (("float", in_memory), ("mmap", source)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.SiLU(), nn.Conv2d(4, 1, 3, padding=1))
        final = train_phase(model, _Denoise(), data, steps=25, phase_index=0, train_cfg=_tiny_cfg(),
                            ckpt_path=tmp_path / f"{name}.resume.pt", out_path=tmp_path / f"{name}.pt",
                            config={"source": "same"}, progress=False)
        finals.append(final["model"])
    assert finals[0].keys() == finals[1].keys()
    for k in finals[0]:
        assert torch.equal(finals[0][k], finals[1][k]), k


def test_uint8_source_rejects_what_it_cannot_serve():
    with pytest.raises(TypeError, match="uint8"):
        UInt8Images(np.zeros((2, 4, 4, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="NHWC"):
        UInt8Images(np.zeros((2, 4, 4), dtype=np.uint8))


# A child process, so its peak resident memory (VmHWM) is that of the training alone: load_split(mmap=True) ->
# UInt8Images -> train_phase, as `daebench train` does.
_TRAIN_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import torch
    from torch import nn
    from daebench.data import UInt8Images, load_split
    from daebench.train import train_phase

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    data_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    t0 = time.time()
    images, _ = load_split(data_dir, "train", mmap=True)
    loaded = time.time() - t0
    rss_loaded = status("VmRSS")
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 3, 3, padding=1))
    loss = lambda m, x, g: {"mse": (m(x + 0.1 * torch.randn(x.shape, generator=g)) - x).pow(2).mean(dim=(1, 2, 3))}
    cfg = {"device": "cpu", "batch_size": 32, "seed": 0, "lr": 1e-3, "warmup_examples": 0, "ema_decay": 0.9,
           "checkpoint_every": 1000, "log_every": 1000}
    t1 = time.time()
    final = train_phase(model, loss, UInt8Images(images), steps=30, phase_index=0, train_cfg=cfg,
                        ckpt_path=out / "r.pt", out_path=out / "final.pt", config={}, progress=False)
    print(json.dumps({"n": len(images), "bytes": int(images.nbytes), "steps": final["step"],
                      "verify_and_map_s": loaded, "train_s": time.time() - t1, "rss_after_load": rss_loaded,
                      "peak_rss": status("VmHWM"), "rss": status("VmRSS")}))
""")


@pytest.mark.slow
def test_two_gigabyte_uint8_set_trains_in_a_fraction_of_its_float32_size(tmp_path):
    n, shape = 163_000, (64, 64, 3)  # 2.0 GB of uint8; 8.0 GB as float32
    t0 = time.time()
    raw = np.lib.format.open_memmap(tmp_path / "raw.npy", mode="w+", dtype=np.uint8, shape=(n, *shape))
    rows = 8192
    # random rows, varied per chunk (one random block, XOR-ed with the chunk number: drawing 2 GB of random
    # bytes would take longer than the test), written chunk by chunk: building it never holds 2 GB either
    block = np.frombuffer(np.random.default_rng(0).bytes(rows * raw[0].nbytes), np.uint8).reshape(rows, *shape)
    for k, start in enumerate(range(0, n, rows)):
        stop = min(n, start + rows)
        np.bitwise_xor(block[:stop - start], np.uint8(k), out=raw[start:stop])
    raw.flush()
    data = tmp_path / "data"
    data.mkdir()
    digest = save_npz(data / "train.npz", images=raw, labels=np.zeros(n, dtype=np.int64))
    del raw
    (tmp_path / "raw.npy").unlink()
    write_manifest(data, {"splits": {"train": {"file": "train.npz", "sha256": digest, "count": n}}})
    built = time.time() - t0
    # a member over 2 GiB * 1.05 carries zip64 sizes in its local header: the memory map must skip them
    assert (data / "train.npz").stat().st_size > 2_000_000_000

    proc = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT, str(data), str(tmp_path)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    float32_bytes = 4 * res["bytes"]
    print(f"\n2 GB uint8 set: built in {built:.1f}s; child: verify+map {res['verify_and_map_s']:.1f}s, "
          f"30 steps {res['train_s']:.1f}s, RSS after load {res['rss_after_load'] / 2**20:.0f} MiB, "
          f"peak RSS {res['peak_rss'] / 2**20:.0f} MiB (float32 set: {float32_bytes / 2**30:.1f} GiB)")
    assert res["n"] == n and res["steps"] == 30 and res["bytes"] == n * 64 * 64 * 3
    # Far below the float32 set (8 GB) and below even the uint8 set (2 GB): only batches were ever read (30 steps:
    # gathering through the mapping instead would have mapped ~2 MB per row here, ~2 GB by now).
    assert res["peak_rss"] < 1.5e9, res
    assert res["peak_rss"] < float32_bytes / 5, res


# --------------------------------------------------------------------------- the workflow's two data jobs

def _dry_run(project, *args):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "2", *args], cwd=project,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout + proc.stderr


def _local_rules(project) -> set[str]:
    """Rules a cluster executor runs beside Snakemake: listed under `localrules:` or marked `localrule: True`."""
    names = set()
    for f in sorted((project / "workflow/rules").glob("*.smk")):
        text = f.read_text()
        for m in re.finditer(r"^localrules:\n((?:[ \t]+\w+,?\n)+)", text, re.MULTILINE):
            names |= set(re.findall(r"\w+", m.group(1)))
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", text, re.MULTILINE | re.DOTALL):
            if re.search(r"^\s+localrule: True", m.group(2), re.MULTILINE):
                names.add(m.group(1))
    return names


def test_download_is_a_local_job_and_preprocessing_a_cluster_job(project):
    local = _local_rules(project)
    assert "download_data" in local and "prepare_data" not in local and "fetch_weights" in local
    out = _dry_run(project, "results/table4.csv", "--config", "dataset=cifar10")
    assert re.search(r"^rule download_data:\n\s+output: resources/downloads/cifar10/download\.json", out, re.MULTILINE)
    prep = re.search(r"^rule prepare_data:\n(.*?)\n\n", out, re.MULTILINE | re.DOTALL).group(1)
    assert "input: resources/downloads/cifar10/download.json" in prep
    assert "python -m daebench download-data --cfg" in out
    # the embedded default downloads nothing: its prepare job keeps exactly the inputs (none) it had
    out = _dry_run(project, "results/table4.csv")
    assert "download_data" not in out and "download-data" not in out
    prep = re.search(r"^rule prepare_data:\n(.*?)\n\n", out, re.MULTILINE | re.DOTALL).group(1)
    assert "input:" not in prep
    # an LSUN read from a local copy downloads nothing either
    out = _dry_run(project, "results/table4.csv", "--config", "dataset=lsun_bedroom128",
                   "dataset_paths={lsun_bedroom128: /data/lsun}")
    assert "download_data" not in out and "/data/lsun" in out
