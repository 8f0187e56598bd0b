"""Crash and resume: a training job killed with SIGKILL resumes from its last checkpoint and, on
CPU, ends with exactly the weights of an uninterrupted run; no partial output is left behind."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

METHOD = {"family": "dae", "prediction": "v",
          "phases": [{"name": "phase1", "t": "one", "fraction": 0.25},
                     {"name": "phase2", "t": "uniform", "fraction": 0.75,
                      "schedule": {"name": "shifted_cosine", "scale": 4}}]}
NETS = {"z_dim": 8,
        "decoder": {"model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [],
                    "dropout": 0.1},
        "encoder": {"model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": []}}
TRAIN = {"examples": 4 * 32 * 40, "batch_size": 32, "lr": 5e-4, "warmup_examples": 320, "ema_decay": 0.99,
         "checkpoint_every": 10, "log_every": 10, "seed": 3, "device": "cpu"}


def cli(*args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "daebench", *args], env=env, cwd=kw.pop("cwd"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db", PYTHONUNBUFFERED="1")
    data_cfg = {"dataset": "digits", "data": {"seed": 0, "test_fraction": 0.2, "max_train": 128, "max_test": 16,
                                              "download_dir": str(tmp / "dl"), "base_url": None}}
    p = cli("prepare-data", "--cfg", json.dumps(data_cfg), "--out", str(tmp / "data"), env=env, cwd=tmp)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out
    return tmp, env


def train_args(tmp, out, ckpt_dir, index=1, init=None):
    cfg = {"dataset": "digits", "method": {**METHOD, "phases": METHOD["phases"][: index + 1]}, "nets": NETS,
           "train": TRAIN}
    args = ["train", "--cfg", json.dumps(cfg), "--method", "m", "--phase-index", str(index), "--data",
            str(tmp / "data"), "--checkpoint-dir", str(ckpt_dir),
            "--out", str(out), "--threads", "1", "--no-progress"]
    return args + (["--init", str(init)] if init else [])


@pytest.fixture(scope="module")
def phase1(workspace):
    """Phase 1 trained once for the module: the initialisation of the phase-2 runs that are killed or starved."""
    tmp, env = workspace
    path = tmp / "phase1.pt"
    run_ok(train_args(tmp, path, tmp / "ck0", index=0), env, tmp)
    return path


def start_until_checkpoint(args, env, cwd, resume_file, poll=0.05):
    """Start a training job and return it once its first resume checkpoint is on disk (or it ended)."""
    p = cli(*args, env=env, cwd=cwd)
    deadline = time.time() + 300
    while not resume_file.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(poll)
    return p


def run_ok(args, env, cwd):
    p = cli(*args, env=env, cwd=cwd)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    return out


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(workspace, phase1):
    tmp, env = workspace
    again = tmp / "phase1_again.pt"
    run_ok(train_args(tmp, again, tmp / "ck1", index=0), env, tmp)
    a, b = torch.load(phase1, weights_only=True), torch.load(again, weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), "same seed, different weights"
    # Reference: phase 2 uninterrupted.
    ref = tmp / "ref.pt"
    run_ok(train_args(tmp, ref, tmp / "ck_ref", init=phase1), env, tmp)
    # Interrupted: SIGKILL once a mid-run checkpoint exists, then rerun the same command.
    out, ck = tmp / "resumed.pt", tmp / "ck_kill"
    resume_file = ck / "resumed.resume.pt"
    p = start_until_checkpoint(train_args(tmp, out, ck, init=phase1), env, tmp, resume_file)
    time.sleep(0.3)
    assert p.poll() is None, "training finished before it could be killed; make it longer"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not out.exists(), "a killed job must not leave its final output"
    killed_at = torch.load(resume_file, weights_only=True)["step"]
    assert 0 < killed_at < 120
    log = run_ok(train_args(tmp, out, ck, init=phase1), env, tmp)
    assert f"resumed from {resume_file} at step" in log
    resumed_step = int(log.split(" at step ")[1].split("/")[0])
    assert resumed_step >= killed_at > 0
    assert not resume_file.exists()  # cleaned up once the final output is written
    a, b = torch.load(ref, weights_only=True), torch.load(out, weights_only=True)
    assert a["step"] == b["step"] == 120
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs after resume"


# The training CLI with its tracking run held up where it logs the finished checkpoint: a job killed there
# has written its final output, which Snakemake deletes as the output of a failed job.
STALL_AT_LOG = """
import sys, time, pathlib
from daebench.tracking import journal, runs
marker = pathlib.Path(sys.argv.pop(1))
def stall(self, path, model_name, *a, **k):
    marker.touch()
    time.sleep(600)
runs.Run.log_checkpoint = journal.JournalRun.log_checkpoint = stall
from daebench.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_a_kill_while_the_run_is_still_logging_resumes_rather_than_restarts(workspace, tmp_path):
    tmp, env = workspace
    out, ck, marker = tmp_path / "late.pt", tmp_path / "ck", tmp_path / "logging"
    args = train_args(tmp, out, ck, index=0)
    p = subprocess.Popen([sys.executable, "-c", STALL_AT_LOG, str(marker), *args], env=env, cwd=tmp,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not marker.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), p.communicate()[0][-3000:]
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    out.unlink()  # as Snakemake does with the output of a job that failed
    resume_file = ck / "late.resume.pt"
    assert resume_file.exists(), "the resume file went before the job's closing work was done"
    log = run_ok(args, env, tmp)
    assert f"resumed from {resume_file} at step" in log, log[-3000:]
    assert out.exists() and not resume_file.exists()


def test_checkpoint_with_other_config_is_not_resumed(workspace, tmp_path):
    from daebench.checkpoint import atomic_save
    from daebench.methods import dae
    from daebench.train import train_phase

    model = dae.build({"nets": NETS}, 1, 16)
    x = torch.rand(64, 1, 16, 16) * 2 - 1
    ck = tmp_path / "r.pt"
    cfg = dict(TRAIN, examples=32 * 4)
    atomic_save({"model": {}, "ema": {}, "optimizer": {}, "step": 3, "config_json": "something else"}, ck)
    loss = dae.phase_loss(METHOD, METHOD["phases"][0])
    final = train_phase(model, loss, x, steps=4, phase_index=0, train_cfg=cfg, ckpt_path=ck,
                        out_path=tmp_path / "o.pt", config={"a": 1}, progress=False)
    assert final["step"] == 4 and (tmp_path / "o.pt").exists() and not ck.exists()


def test_ema_update_matches_hand_computed_values():
    """ema <- ema + (1 - d)(model - ema) with d = min(decay, (1 + step) / (10 + step)); buffers are copied
    (values, not aliases)."""
    from daebench.train import ema_update

    def net():
        return torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))

    model, ema = net(), net()
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.fill_(1.0)
            pm.fill_(3.0)
        model[1].running_mean.fill_(0.25)
        model[1].num_batches_tracked.fill_(7)
    ema_update(ema, model, decay=0.999, step=0)      # warm-up: d = min(0.999, 1/10) = 0.1
    for pe in ema.parameters():
        assert torch.allclose(pe, torch.full_like(pe, 2.8), rtol=0, atol=1e-6)
    assert torch.equal(ema[1].running_mean, torch.full((3,), 0.25)) and int(ema[1].num_batches_tracked) == 7
    model[1].running_mean.fill_(-1.0)                 # copied, not shared
    assert torch.equal(ema[1].running_mean, torch.full((3,), 0.25))
    ema_update(ema, model, decay=0.5, step=100)       # d = min(0.5, 101/110) = 0.5: halfway from 2.8 to 3
    for pe in ema.parameters():
        assert torch.allclose(pe, torch.full_like(pe, 2.9), rtol=0, atol=1e-6)
    assert torch.equal(ema[1].running_mean, torch.full((3,), -1.0))


@pytest.mark.slow
def test_disk_full_during_a_checkpoint_write_names_it_and_keeps_the_previous_one(workspace, phase1):
    """A file-size limit (RLIMIT_FSIZE, what a full disk or quota looks like to a writer) imposed on a running
    training job once it has a checkpoint: the next checkpoint write fails with an error naming the file,
    the previous checkpoint still loads, no temp file is left, and a rerun without the limit resumes."""
    import resource

    from daebench.checkpoint import load_checkpoint

    tmp, env = workspace
    # MLflow to a file store: its files stay small, so the limit hits the checkpoint, not the tracking database
    env = dict(env, MLFLOW_TRACKING_URI=(tmp / "mlruns_full").as_uri(), MLFLOW_ALLOW_FILE_STORE="true")
    out, ck = tmp / "full.pt", tmp / "ck_full"
    resume_file = ck / "full.resume.pt"
    p = start_until_checkpoint(train_args(tmp, out, ck, init=phase1), env, tmp, resume_file, poll=0.02)
    size = resume_file.stat().st_size
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.prlimit(p.pid, resource.RLIMIT_FSIZE, (size // 2, hard))
    log, _ = p.communicate(timeout=300)
    assert p.returncode == 1, log[-3000:]
    assert f"could not write {resume_file}: File too large" in log, log[-3000:]
    assert "Traceback" not in log  # the path and the fix, not a stack
    assert not out.exists()
    kept = load_checkpoint(resume_file)
    assert 0 < kept["step"] < 120
    assert not [f.name for f in ck.iterdir() if f.name != resume_file.name], "a temp file was left behind"
    log = run_ok(train_args(tmp, out, ck, init=phase1), env, tmp)
    assert f"resumed from {resume_file} at step {kept['step']}/" in log
    assert torch.load(out, weights_only=True)["step"] == 120
