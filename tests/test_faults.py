"""Faults beyond a killed job: SIGKILL in the middle of a checkpoint write, a non-finite loss, and
truncated data, weights and checkpoint files."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from daebench.checkpoint import CorruptCheckpoint, atomic_save, load_checkpoint
from daebench.data.store import IntegrityError, load_split, read_manifest
from daebench.evaluate import weights
from daebench.train import NonFiniteLoss, train_phase

WRITER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    import torch
    import daebench.checkpoint as T

    path = Path(sys.argv[1])
    T.atomic_save({"step": 1, "w": torch.zeros(4)}, path)
    real_save = torch.save

    def slow_save(obj, f, *a, **k):  # a checkpoint write that takes long enough to be killed in the middle
        real_save(obj, f, *a, **k)
        print("writing", flush=True)
        time.sleep(60)

    torch.save = slow_save
    T.atomic_save({"step": 2, "w": torch.ones(1_000_000)}, path)
''')


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_checkpoint(tmp_path):
    script, ck = tmp_path / "writer.py", tmp_path / "ck" / "model.pt"
    script.write_text(WRITER)
    p = subprocess.Popen([sys.executable, str(script), str(ck)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "writing"
        temps = list(ck.parent.glob(".model.pt.*.tmp*"))
        assert temps and temps[0].stat().st_size > 1_000_000  # the new checkpoint is half way to disk
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        p.kill()
    assert p.returncode == -signal.SIGKILL
    prev = load_checkpoint(ck)
    assert prev["step"] == 1 and torch.equal(prev["w"], torch.zeros(4))
    # the next write (the resumed job) replaces it and clears the killed writer's temp file
    atomic_save({"step": 3}, ck)
    assert load_checkpoint(ck)["step"] == 3
    assert not list(ck.parent.glob(".model.pt.*.tmp*"))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 1)


class BlowsUpAt:
    """A loss whose 'recon' term turns inf at step ``at`` (the lr schedule of a diverging run, in short)."""

    def __init__(self, at):
        self.at, self.calls = at, 0

    def __call__(self, model, x, generator):
        self.calls += 1
        out = model.body(x).squeeze(1) ** 2
        recon = out * float("inf") if self.calls > self.at else out
        return {"recon": recon, "kl": out.abs()}


TRAIN = {"batch_size": 8, "lr": 1e-2, "warmup_examples": 0, "ema_decay": 0.9, "checkpoint_every": 10,
         "log_every": 5, "seed": 0, "device": "cpu"}


def test_non_finite_loss_stops_naming_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path):
    ck, out = tmp_path / "resume.pt", tmp_path / "final.pt"
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(NonFiniteLoss) as err:
        train_phase(Net(), BlowsUpAt(23), x, steps=50, phase_index=0, train_cfg=TRAIN, ckpt_path=ck, out_path=out,
                    config={"k": 1}, progress=False)
    msg = str(err.value)
    assert "non-finite loss at step 23 of phase 0 (term(s): recon)" in msg
    assert f"the last good checkpoint, {ck} (step 20), is kept" in msg
    assert isinstance(err.value, FloatingPointError)
    kept = load_checkpoint(ck)
    assert kept["step"] == 20
    assert all(torch.isfinite(v).all() for part in ("model", "ema") for v in kept[part].values())
    assert not out.exists()


def test_non_finite_loss_before_any_checkpoint_says_so(tmp_path):
    with pytest.raises(NonFiniteLoss, match="non-finite loss at step 2 .*no checkpoint was written yet"):
        train_phase(Net(), BlowsUpAt(2), torch.randn(16, 3), steps=20, phase_index=1, train_cfg=TRAIN,
                    ckpt_path=tmp_path / "r.pt", out_path=tmp_path / "f.pt", config={}, progress=False)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_checkpoint_is_named_with_the_fix(tmp_path):
    ck = tmp_path / "phase1.pt"
    atomic_save({"model": {"w": torch.ones(10_000)}}, ck)
    truncate(ck)
    with pytest.raises(CorruptCheckpoint, match=r"phase1\.pt is not a readable checkpoint \(truncated or corrupted"):
        load_checkpoint(ck)


def test_truncated_prepared_split_is_caught_by_its_checksum(tmp_path):
    cfg = ('{"dataset": "digits", "data": {"seed": 0, "test_fraction": 0.2, "max_train": 64, "max_test": 16, '
           '"download_dir": "dl", "base_url": null}}')
    proc = subprocess.run([sys.executable, "-m", "daebench", "prepare-data", "--cfg", cfg, "--out", str(tmp_path / "d")],
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    split = tmp_path / "d" / read_manifest(tmp_path / "d")["splits"]["train"]["file"]
    truncate(split, 0.9)
    with pytest.raises(IntegrityError, match=r"train\.npz is corrupted or was modified: sha256"):
        load_split(tmp_path / "d", "train")


def test_truncated_metric_weights_fail_their_checksum(tmp_path):
    name = min(weights.WEIGHTS)
    dest = weights.weight_path(tmp_path, name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # a download cut short: the first bytes of a (fake) file, never the registered one
    dest.write_bytes(np.random.default_rng(0).bytes(4096))
    time.sleep(0.01)
    assert weights.available(tmp_path, name) == {name: False}
    with pytest.raises(weights.WeightsMissing) as err:
        weights.require(tmp_path, name)
    assert "corrupt (sha256 mismatch)" in str(err.value) and weights.WEIGHTS[name].sha256 in str(err.value)


FULL_WRITER = textwrap.dedent('''
    import resource, sys
    import numpy as np, pandas as pd
    from daebench.data.store import WriteError, atomic_path

    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        with atomic_path(sys.argv[1]) as tmp:
            pd.DataFrame({"x": np.arange(10_000)}).to_csv(tmp, index=False)
    except WriteError as err:
        print(err.strerror)
''')


def test_a_full_disk_during_an_output_write_names_the_file_and_keeps_the_old_one(tmp_path):
    """RLIMIT_FSIZE (what a full disk or quota looks like to a writer) during a table write: the error names
    the table, the previous table is untouched and no temp file is left beside it."""
    out = tmp_path / "results" / "table.csv"
    out.parent.mkdir()
    out.write_text("x\n1\n")
    script = tmp_path / "full.py"
    script.write_text(FULL_WRITER)
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"could not write {out}: File too large"), proc.stdout
    assert "was left as it was" in proc.stdout and "MiB free" in proc.stdout
    assert out.read_text() == "x\n1\n"
    assert [p.name for p in out.parent.iterdir()] == ["table.csv"]


ENOSPC_TRAINER = textwrap.dedent('''
    import errno, json, subprocess, sys
    from pathlib import Path
    import torch
    from torch import nn
    from daebench.checkpoint import load_checkpoint
    from daebench.data.store import WriteError
    from daebench.train import train_phase

    class Net(nn.Module):  # model + EMA + Adam's two moments: ~1.5 MB per checkpoint
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(300, 300)

    def loss(model, x, generator):
        return {"mse": model.body(x).pow(2).mean(1)}

    d = Path(sys.argv[1])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)], check=True)  # 2 MiB
    ck, out = d / "run.resume.pt", d / "run.pt"
    cfg = {"batch_size": 8, "lr": 1e-3, "warmup_examples": 0, "ema_decay": 0.9, "checkpoint_every": 10,
           "log_every": 5, "seed": 0, "device": "cpu"}
    x = torch.randn(64, 300, generator=torch.Generator().manual_seed(0))
    result = {}
    try:  # the first checkpoint fits; the second, written beside it before the swap, does not
        train_phase(Net(), loss, x, steps=30, phase_index=0, train_cfg=cfg, ckpt_path=ck, out_path=out,
                    config={}, progress=False)
    except WriteError as err:
        result.update(errno=err.errno, message=err.strerror, kept_step=load_checkpoint(ck)["step"],
                      files=sorted(p.name for p in d.iterdir()))
    subprocess.run(["mount", "-o", "remount,size=16m", str(d)], check=True)  # space freed: the rerun resumes
    train_phase(Net(), loss, x, steps=30, phase_index=0, train_cfg=cfg, ckpt_path=ck, out_path=out, config={},
                progress=False)
    result.update(final_step=load_checkpoint(out).get("step"), after=sorted(p.name for p in d.iterdir()))
    print(json.dumps(result))
''')


def test_a_full_file_system_during_a_checkpoint_write_is_named_and_the_rerun_resumes(tmp_path):
    """ENOSPC for real: a training job on a 2 MiB tmpfs (mounted in a private mount namespace: root, or an
    unprivileged user namespace) whose second checkpoint does not fit beside the first. The job stops with
    an error naming the checkpoint, the first checkpoint is intact, no temporary file is left; with room
    again the rerun resumes from it and finishes."""
    import errno
    import shutil as sh

    from conftest import require

    unshare = sh.which("unshare")
    probe = subprocess.run([unshare, "-Urm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {tmp_path}"],
                           capture_output=True, text=True, check=False) if unshare else None
    require(probe is not None and probe.returncode == 0,
            f"a tmpfs mount in a private namespace (unshare -Urm mount -t tmpfs): {probe and probe.stderr.strip()}")
    d = tmp_path / "fs"
    d.mkdir()
    script = tmp_path / "enospc.py"
    script.write_text(ENOSPC_TRAINER)
    proc = subprocess.run([unshare, "-Urm", sys.executable, str(script), str(d)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res.get("errno") == errno.ENOSPC, res
    assert res["message"].startswith(f"could not write {d / 'run.resume.pt'}: No space left on device"), res
    assert "was left as it was" in res["message"] and "free space or raise the limit, then rerun" in res["message"]
    assert res["kept_step"] == 10 and res["files"] == ["run.resume.pt"], res  # the old one whole, no temp beside it
    assert res["final_step"] == 30 and ".tmp" not in " ".join(res["after"]), res


def test_temp_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    from daebench.data.store import atomic_path

    out = tmp_path / "a.npz"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    try:
        live_tmp = tmp_path / f".a.npz.{sleeper.pid}.0badcafe.tmp.npz"
        dead_tmp = tmp_path / f".a.npz.{int(dead.stdout)}.deadbeef.tmp.npz"
        other = tmp_path / ".b.npz.1.deadbeef.tmp.npz"  # another file's temp: not ours to judge
        for f in (live_tmp, dead_tmp, other):
            f.write_bytes(b"partial")
        with atomic_path(out) as tmp:
            assert tmp.name.endswith(".tmp.npz")  # the suffix np.savez and savefig need
            np.savez(tmp, a=np.arange(3))
        assert live_tmp.exists() and other.exists() and not dead_tmp.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, live_tmp.name, other.name])
        assert np.load(out)["a"].tolist() == [0, 1, 2]
    finally:
        sleeper.kill()
        sleeper.wait()
