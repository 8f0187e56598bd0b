"""Multi-process training (torchrun + DDP, gloo on CPU): two processes at the same global batch train the
same model as one process; a job killed mid-run resumes; `daebench train` relaunches itself under torchrun
when compute.nproc > 1, and only rank 0 writes and logs."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# A deterministic loss (no noise draws), so one and two processes must agree to float rounding.
SCRIPT = textwrap.dedent('''
    import json, os, sys
    from pathlib import Path
    import torch
    from torch import nn
    from daebench.train import train_phase

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 1))

    class Loss:
        def __init__(self, crash_after):
            self.calls, self.crash_after = 0, crash_after

        def __call__(self, model, batch, generator):
            x, y = batch
            self.calls += 1
            if self.crash_after and self.calls > self.crash_after and int(os.environ.get("RANK", 0)) == 1:
                raise RuntimeError("simulated crash of rank 1")
            return {"mse": ((model.body(x) - y) ** 2).mean(1)}

    out, crash_after = Path(sys.argv[1]), int(sys.argv[2])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    y = torch.sin(x).sum(1, keepdim=True)
    torch.manual_seed(0)
    cfg = {"batch_size": 24, "lr": 1e-2, "warmup_examples": 48, "ema_decay": 0.9, "checkpoint_every": 5,
           "log_every": 5, "seed": 1, "device": "cpu"}
    logged = []
    final = train_phase(Net(), Loss(crash_after), (x, y), steps=30, phase_index=0, train_cfg=cfg,
                        ckpt_path=out / "resume.pt", out_path=out / "final.pt", config={"toy": 1}, progress=False,
                        logger=lambda m, s: logged.append((s, m["loss/mse"])))
    if int(os.environ.get("RANK", 0)) == 0:
        (out / "losses.json").write_text(json.dumps(logged))
''')


def launch(script, out, nproc, crash_after=0, timeout=180):
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(script), str(out), str(crash_after)]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] + cmd[1:]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    script = tmp / "toy_train.py"
    script.write_text(SCRIPT)
    return tmp, script


def final_state(out):
    return torch.load(out / "final.pt", weights_only=True)


def assert_close(a, b, atol=1e-5):
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.allclose(a[part][k], b[part][k], atol=atol), (part, k, (a[part][k] - b[part][k]).abs().max())


def test_two_processes_match_one_at_the_same_global_batch(toy):
    tmp, script = toy
    one, two = launch(script, tmp / "one", 1), launch(script, tmp / "two", 2)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = final_state(tmp / "one"), final_state(tmp / "two")
    assert a["step"] == b["step"] == 30
    assert_close(a, b)
    # the logged loss is the mean over both shards, i.e. the one-process loss
    la, lb = (json.loads((tmp / d / "losses.json").read_text()) for d in ("one", "two"))
    assert [s for s, _ in la] == [s for s, _ in lb] == [5, 10, 15, 20, 25, 30]
    assert all(abs(x - y) < 1e-5 * max(1.0, abs(x)) for (_, x), (_, y) in zip(la, lb))
    assert la[-1][1] < la[0][1]  # it learns
    assert not (tmp / "two" / "resume.pt").exists()  # removed once training completed


def test_a_crashed_two_process_job_resumes_to_the_same_weights(toy):
    tmp, script = toy
    ref = launch(script, tmp / "ref", 2)
    assert ref.returncode == 0, ref.stderr[-3000:]
    crashed = launch(script, tmp / "crash", 2, crash_after=17)
    assert crashed.returncode != 0 and "simulated crash of rank 1" in crashed.stderr
    ck = torch.load(tmp / "crash" / "resume.pt", weights_only=True)
    assert ck["step"] == 15  # the last checkpoint rank 0 wrote before rank 1 died
    assert not (tmp / "crash" / "final.pt").exists()
    resumed = launch(script, tmp / "crash", 2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # the rerun started at the checkpoint: its first logged point is the one after step 15
    assert [s for s, _ in json.loads((tmp / "crash" / "losses.json").read_text())] == [20, 25, 30]
    assert_close(final_state(tmp / "ref"), final_state(tmp / "crash"), atol=1e-6)


def test_batch_that_does_not_split_over_the_processes_is_refused(toy, tmp_path):
    _, script = toy
    bad = tmp_path / "bad.py"
    bad.write_text(script.read_text().replace('"batch_size": 24', '"batch_size": 25'))
    proc = launch(bad, tmp_path / "out", 2)
    assert proc.returncode != 0
    assert "train.batch_size 25 (the global batch) does not split evenly over 2 processes" in proc.stderr


@pytest.mark.slow
def test_cli_train_relaunches_under_torchrun_and_matches_one_process(tmp_path):
    """The real DAE loss through `python -m daebench train` with compute.nproc = 2: one MLflow run, one
    checkpoint, and a model whose held-out loss matches the one-process model's. The two runs draw
    different noise for the second half of each batch, so they agree statistically, not bitwise."""
    from daebench.methods import get_family

    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db", OMP_NUM_THREADS="1")
    data_cfg = {"dataset": "digits", "data": {"seed": 0, "test_fraction": 0.2, "max_train": 256, "max_test": 64,
                                              "download_dir": str(tmp_path / "dl"), "base_url": None}}
    subprocess.run([sys.executable, "-m", "daebench", "prepare-data", "--cfg", json.dumps(data_cfg), "--out",
                    str(tmp_path / "data")], env=env, check=True, capture_output=True, cwd=tmp_path)
    method = {"family": "dae", "prediction": "v",
              "phases": [{"name": "main", "t": "uniform", "fraction": 1.0,
                          "schedule": {"name": "shifted_cosine", "scale": 4}}]}
    nets = {"z_dim": 8, "decoder": {"model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                                    "attention_resolutions": [], "dropout": 0.0},
            "encoder": {"model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": []}}
    train = {"examples": 32 * 150, "batch_size": 32, "lr": 1e-3, "warmup_examples": 320, "ema_decay": 0.99,
             "checkpoint_every": 50, "log_every": 25, "seed": 0, "device": "cpu"}
    cfg = {**data_cfg, "method": method, "nets": nets, "train": train}
    outs = {}
    for nproc in (1, 2):
        out = tmp_path / f"nproc{nproc}.pt"
        run_env = dict(env, DAEBENCH_COMPUTE=json.dumps({"nproc": nproc}))
        proc = subprocess.run([sys.executable, "-m", "daebench", "train", "--cfg", json.dumps(cfg), "--method", "m",
                               "--phase-index", "0", "--data", str(tmp_path / "data"), "--checkpoint-dir",
                               str(tmp_path / f"ck{nproc}"), "--out", str(out), "--threads", "1", "--no-progress"],
                              env=run_env, capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert ("running as" in proc.stderr and "torch.distributed.run" in proc.stderr) == (nproc == 2)
        outs[nproc] = torch.load(out, weights_only=True)
    import mlflow

    runs = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).search_experiments()])
    assert len(runs) == 2, "rank 1 must not open a run of its own"
    assert {r.data.params["compute.nproc"] for r in runs} == {"1", "2"}

    from daebench.data import load_split, to_tensor

    x = to_tensor(load_split(tmp_path / "data", "test")[0])
    fam = get_family("dae")
    losses = {}
    for nproc, ck in outs.items():
        torch.manual_seed(0)
        model = fam.build(cfg | {"data_shape": list(x.shape[2:]) + [x.shape[1]]}, x.shape[1], x.shape[2])
        model.load_state_dict(ck["ema"])
        model.eval()
        loss_fn = fam.phase_loss(method, method["phases"][0])
        with torch.no_grad():
            vals = [loss_fn(model, x, torch.Generator().manual_seed(k))["mse"].mean().item() for k in range(8)]
        losses[nproc] = sum(vals) / len(vals)
    untrained = fam.build(cfg, x.shape[1], x.shape[2]).eval()
    with torch.no_grad():
        base = loss_fn(untrained, x, torch.Generator().manual_seed(0))["mse"].mean().item()
    assert losses[1] < 0.5 * base and losses[2] < 0.5 * base, (losses, base)
    assert abs(losses[2] - losses[1]) / losses[1] < 0.1, losses


def test_compute_settings_defaults_match_the_schema_and_errors_name_the_key():
    import yaml

    from daebench import compute

    schema = yaml.safe_load((ROOT / "workflow/schemas/params.schema.yaml").read_text())
    props = schema["properties"]["compute"]["properties"]
    assert {k: v["default"] for k, v in props.items()} == compute.DEFAULTS
    assert compute.from_env({}) == compute.DEFAULTS
    assert compute.from_env({compute.ENV: '{"nproc": 4, "amp": "none"}'})["nproc"] == 4
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['amp_dtype'\]; known: .*'amp'"):
        compute.from_env({compute.ENV: '{"amp_dtype": "bf16"}'})
    with pytest.raises(ValueError, match="amp must be one of"):
        compute.from_env({compute.ENV: '{"amp": "fp8"}'})
    # the GPU fast paths are off on CPU whatever is asked
    on_cpu = compute.effective({**compute.DEFAULTS, "compile": True}, torch.device("cpu"))
    assert on_cpu == {"amp": "none", "tf32": False, "channels_last": False, "compile": False, "nproc": 1,
                      "data_on_device": False}
    on_gpu = compute.effective(compute.DEFAULTS, torch.device("cuda"))
    assert on_gpu["amp"] == "bf16" and on_gpu["channels_last"] and on_gpu["tf32"]
    assert compute.wants_relaunch({"nproc": 2}, {}) and not compute.wants_relaunch({"nproc": 2}, {"WORLD_SIZE": "2"})
    assert not compute.wants_relaunch({"nproc": 1}, {})


def test_changing_compute_settings_reruns_nothing(project):
    """compute.* reaches jobs through DAEBENCH_COMPUTE, never through params (the commands or the `upstream`
    params that carry everything a job depends on): on a finished project, a dry run with every compute key
    changed has nothing to do. The project is finished by Snakemake's own bookkeeping (--touch records each
    job's params, code and input state as a real run does) over placeholder outputs, so no job has to run."""
    def snakemake(*args, env=None):
        proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=project, capture_output=True,
                              text=True, timeout=300, check=False, env=env)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        return proc.stdout + proc.stderr

    target = "results/table4.csv"
    outputs = [f.strip() for line in snakemake("-n", target).splitlines() if line.strip().startswith("output: ")
               for f in line.strip()[len("output: "):].split(",")]
    assert len(outputs) == 19 + 6 + 2 + 1, outputs  # 19 jobs; reconstruct writes 2 files, prepare_data 3, table4 2
    for f in outputs:
        (project / f).parent.mkdir(parents=True, exist_ok=True)
        (project / f).touch()
    snakemake("--cores", "1", "--touch", "--forceall", target)
    assert "Nothing to be done" in snakemake("-n", target)
    (project / "gpu.yaml").write_text("compute: {nproc: 2, amp: none, tf32: false, channels_last: false, "
                                      "compile: true, data_on_device: false}\n")
    env = dict(os.environ, DAEBENCH_COMPUTE=json.dumps({"nproc": 4, "amp": "none"}))
    out = snakemake("-n", target, "--configfile", "gpu.yaml", env=env)
    assert "Nothing to be done" in out, out[-3000:]
    # the control: a key that changes what a job computes reruns the training jobs and everything after them
    (project / "lr.yaml").write_text("train: {lr: 0.0003}\n")
    out = snakemake("-n", target, "--configfile", "lr.yaml")
    assert out.count("reason: Params have changed since last execution") == 3, out[-3000:]
    assert "Nothing to be done" not in out


def test_gpu_fast_paths_train_every_image_method_emulated_on_cpu(monkeypatch, tmp_path):
    """bf16 autocast, channels_last and torch.compile through the training loop for every phase of every
    method of params.yaml, with data_on_device asked (a no-op without CUDA). CPU autocast stands in for
    CUDA's; compile runs TorchDynamo's graph capture with the "eager" backend, since inductor's C++ code
    generation would take minutes here. Checked: the convolutions and linear layers really ran in bf16, terms
    stay finite, weights stay float32, each phase starts from the previous one's checkpoint as the workflow
    chains them, and the result loads into a plain model."""
    import yaml

    from daebench import compute
    from daebench import train as train_mod
    from daebench.config import load
    from daebench.methods import get_family

    real = compute.effective
    on_gpu = real({**compute.DEFAULTS, "compile": True, "data_on_device": True}, torch.device("cuda"))
    assert on_gpu["amp"] == "bf16" and on_gpu["compile"] and on_gpu["channels_last"] and on_gpu["data_on_device"]
    monkeypatch.setattr(compute, "effective", lambda c, d: on_gpu)
    compiled = []
    real_compile = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile",
                        lambda self, **kw: compiled.append(type(self).__name__) or real_compile(self, backend="eager"))
    torch._dynamo.reset()
    smoke = yaml.safe_load((ROOT / "tests/smoke.yaml").read_text())
    cfg = load(ROOT / "params.yaml", ROOT / "workflow/schemas/params.schema.yaml")
    x = torch.rand(16, 1, 16, 16) * 2 - 1
    tc = {**cfg["train"], "batch_size": 4, "warmup_examples": 0, "log_every": 1, "checkpoint_every": 100,
          "device": "cpu"}
    finals = {}
    trained = []
    kinds = set()
    for name, method in cfg["methods"].items():
        # one method per kind of training (the two-phase ablations repeat Table 4's with other schedules)
        kind = (method["family"], method.get("prediction"), tuple(p.get("t") for p in method["phases"]),
                method.get("encoder"), method.get("tc_weight"), method.get("beta"))
        if kind in kinds:
            continue
        kinds.add(kind)
        job = {"dataset": "digits", "method": method, "nets": {**cfg["nets"], **smoke["nets"]},
               "data_shape": [16, 16, 1]}
        if "prior" in method:
            job["prior"] = {"method": cfg["methods"][method["prior"]], "nets": job["nets"]}
        fam = get_family(method["family"])
        prev = None
        for i, phase in enumerate(method["phases"]):
            torch.manual_seed(0)
            model = fam.build(job, 1, 16)
            if "prior" in method and i == 0:  # ScoreVAE's encoder phase starts from its trained prior
                fam.load_prior(model, finals[method["prior"]])
            dtypes = []
            hooks = [m.register_forward_hook(lambda mod, args, out, dtypes=dtypes: dtypes.append(out.dtype))
                     for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
            logged = []
            compiled.clear()
            final = train_mod.train_phase(model, fam.phase_loss(method, phase), x, steps=1, phase_index=i,
                                          train_cfg=tc, ckpt_path=tmp_path / f"{name}{i}.r.pt",
                                          out_path=tmp_path / f"{name}{i}.pt", config={}, progress=False, init=prev,
                                          step_offset=i, logger=lambda m, s, logged=logged: logged.append(m))
            for h in hooks:
                h.remove()
            where = (name, phase["name"])
            assert compiled, where  # the compile path was taken
            assert torch.bfloat16 in dtypes, (where, set(dtypes))  # autocast really ran the layers in bf16
            losses = {k: v for k, v in logged[-1].items() if k.startswith("loss/")}
            assert losses and all(np.isfinite(v) for v in losses.values()), (where, losses)
            assert final["step"] == 1, where
            assert all(v.dtype == torch.float32 for v in final["model"].values() if v.is_floating_point()), where
            assert any(v.dim() == 4 and v.is_contiguous(memory_format=torch.channels_last)
                       and not v.is_contiguous() for v in model.state_dict().values()), where
            fam.build(job, 1, 16).load_state_dict(final["ema"])
            prev = final
            trained.append(where)
        finals[name] = prev
    # every family, prediction type (eps, x, v) and phase kind (t = 1, t uniform, ScoreVAE's two stages)
    assert len(trained) == 15
    assert {cfg["methods"][m].get("prediction") for m, _ in trained} >= {"eps", "x", "v"}
