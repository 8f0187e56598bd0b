"""The train package: the loss contract (`as_stages`), optimizer state in checkpoints (one Adam state per stage; the
single dict of older one-stage checkpoints still loads) and the loop's sections staying short."""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from daebench import train as T
from daebench.checkpoint import atomic_save
from daebench.methods.objective import Objective, Stage
from daebench.train import stages as stages_mod

TRAIN_FILES = sorted(Path(T.__file__).parent.glob("*.py"))  # the train package's modules
CFG = {"batch_size": 8, "lr": 1e-2, "warmup_examples": 16, "ema_decay": 0.9, "checkpoint_every": 5, "log_every": 5,
       "seed": 0, "device": "cpu"}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(3, 2)
        self.dec = nn.Linear(2, 3)


def recon(model, x, generator):
    noise = torch.randn(x.shape, generator=generator)
    return {"mse": (model.dec(model.enc(x + 0.1 * noise)) - x).square().mean(1)}


class TwoStage(Objective):
    def __init__(self):
        self.stages = [Stage("all", recon, ()), Stage("dec", recon, ("dec",))]
        self.trainable = ["enc", "dec"]
        self.seen = []

    def set_progress(self, fraction):
        self.seen.append(fraction)


def test_a_plain_callable_is_one_stage_over_every_trainable_parameter():
    stages, trainable, on_progress = T.as_stages(recon)
    assert [(st.name, st.fn, st.modules) for st in stages] == [("loss", recon, ())]
    assert trainable is None and on_progress is None
    model = Net()
    (opt,) = stages_mod.stage_optimizers(model, stages, 1e-3)
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in model.parameters()]


def test_an_objective_brings_its_stages_trainable_and_progress_hook():
    loss = TwoStage()
    stages, trainable, on_progress = T.as_stages(loss)
    assert [st.name for st in stages] == ["all", "dec"] and trainable == ("enc", "dec")
    on_progress(0.5)
    assert loss.seen == [0.5]
    model = Net()
    opts = stages_mod.stage_optimizers(model, stages, 1e-3)
    assert [len(o.param_groups[0]["params"]) for o in opts] == [4, 2]


def test_the_method_losses_follow_the_contract():
    from daebench.ddvi_study import DDVILoss
    from daebench.methods import get_ddvi_family, scorevae
    from daebench.methods.ddvi_common import Ctx

    stages, trainable, on_progress = T.as_stages(scorevae.ScoreVAELoss("corrector", 0.01, "simple", "full"))
    assert len(stages) == 1 and stages[0].modules == () and trainable == ("corrector",) and on_progress
    ctx = Ctx(prior=None, anneal=True)
    loss = DDVILoss(get_ddvi_family("aaeb"), {"noise": 0.3, "noise_end": 0.75}, ctx)
    stages, trainable, on_progress = T.as_stages(loss)
    assert [st.name for st in stages] == ["recon", "disc", "gen"] and trainable is None
    on_progress(0.25)
    assert ctx.progress == 0.25


@pytest.mark.parametrize("bad, message", [
    (42, (r"train_phase takes a loss: a callable loss\(model, batch, generator\) -> dict of unreduced terms, or "
          r"a methods\.objective\.Objective with a list of stages; got int")),
    (type("Old", (), {"stages": [], "__call__": lambda self, m, x, g: {}})(),
     r"Old has stages but is not a methods\.objective\.Objective"),
    (type("Empty", (Objective,), {"stages": []})(),
     r"Empty\.stages must be a non-empty list of methods\.objective\.Stage"),
    (type("Fns", (Objective,), {"stages": [recon]})(),
     r"Fns\.stages must be a non-empty list of methods\.objective\.Stage"),
])
def test_anything_else_is_a_type_error_naming_what_is_expected(bad, message):
    with pytest.raises(TypeError, match=message):
        T.as_stages(bad)


def _run(tmp_path, name, loss, steps=10, init=None, ckpt=None, phase_index=0):
    torch.manual_seed(0)
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
    return T.train_phase(Net(), loss, x, steps=steps, phase_index=phase_index, train_cfg=CFG,
                         ckpt_path=ckpt or tmp_path / f"{name}.resume.pt", out_path=tmp_path / f"{name}.pt",
                         config={"name": name}, init=init, progress=False)


def _legacy(ck: dict) -> dict:
    """``ck`` as one-stage runs wrote it before: the single Adam's state dict instead of a one-element list."""
    (state,) = ck["optimizer"]
    return {**ck, "optimizer": state}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[part][k], b[part][k]) for part in ("model", "ema") for k in a[part])


def test_checkpoints_hold_one_optimizer_state_per_stage(tmp_path):
    assert len(_run(tmp_path, "one", recon)["optimizer"]) == 1
    assert len(_run(tmp_path, "two", TwoStage())["optimizer"]) == 2


def test_a_legacy_single_dict_optimizer_state_loads(tmp_path):
    """A finished phase-1 checkpoint of the old format starts phase 2 as the new format does (Adam's moments
    carried over), and an old-format resume file resumes exactly."""
    phase1 = _run(tmp_path, "p1", recon)
    new = _run(tmp_path, "p2new", recon, init=phase1, phase_index=1)
    old = _run(tmp_path, "p2old", recon, init=_legacy(torch.load(tmp_path / "p1.pt", weights_only=True)),
               phase_index=1)
    assert _same(new, old)
    fresh = _run(tmp_path, "p2fresh", recon, init={**phase1, "trainable": ["other"]}, phase_index=1)
    assert not _same(new, fresh)  # the moments did matter
    # resume from an old-format checkpoint written at step 5 of the same configuration
    ckpt = tmp_path / "mid.resume.pt"
    mid = _run(tmp_path, "mid", recon, steps=5)
    atomic_save(_legacy({**mid, "config_json": '{"name": "full"}'}), ckpt)
    full = _run(tmp_path, "full", recon)
    resumed = _run(tmp_path, "full", recon, ckpt=ckpt)
    assert _same(full, resumed)
    opts = [torch.optim.Adam(Net().parameters())]
    T.load_optimizer_state(opts, _legacy(full)["optimizer"])
    assert len(opts[0].state) == 4


def test_an_optimizer_state_of_another_stage_count_is_an_error():
    opts = stages_mod.stage_optimizers(Net(), T.as_stages(TwoStage())[0], 1e-3)
    with pytest.raises(ValueError, match=r"optimizer state of 1 stage\(s\), this loss has 2"):
        T.load_optimizer_state(opts, opts[0].state_dict())


def test_every_function_of_the_train_package_is_at_most_80_lines():
    lengths = {n.name: n.end_lineno - n.lineno + 1 for f in TRAIN_FILES for n in ast.walk(ast.parse(f.read_text()))
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert "train_phase" in lengths
    assert {k: v for k, v in lengths.items() if v > 80} == {}


def test_progress_in_a_log_file_is_one_line_per_log_point(tmp_path):
    """Not a terminal (a job's log): each redraw is its own line, at the log points; no carriage returns."""
    from daebench.progress import tqdm

    log = tmp_path / "train.log"
    with open(log, "w") as f:
        bar = tqdm(range(100), desc="train phase 0", file=f, log_every=25)
        for i in bar:
            if (i + 1) % 25 == 0:
                bar.set_postfix({"mse": f"{1 / (i + 1):.4g}"}, refresh=False)
    text = log.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    # each stamped as the logging lines are (asctime: 2026-12-06 22:03:28,162)
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} train phase 0:", line) for line in lines), lines
    assert [line[24:].split(" [")[0] for line in lines[:5]] == [
        "train phase 0: 0/100 (  0%)", "train phase 0: 25/100 ( 25%)", "train phase 0: 50/100 ( 50%)",
        "train phase 0: 75/100 ( 75%)", "train phase 0: 100/100 (100%)"]
    assert len(lines) == 5 and re.search(r"\[\d\d:\d\d<\d\d:\d\d, .*it/s, mse=0\.01\]$", lines[-1]), lines[-1]


EAGER_CHECK = r'''
import sys
import torch
from daebench.compute import eager_optimizer

def run(make):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))
    opt = make(net.parameters())
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(1))
    for _ in range(6):
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()], opt.state_dict()

CASES = ((torch.optim.Adam, {"lr": 1e-2, "betas": (0.9, 0.999)}), (torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1}))
ours = [run(lambda p, cls=cls, kw=kw: eager_optimizer(cls, p, **kw)) for cls, kw in CASES]
assert "torch._dynamo" not in sys.modules  # both runs: construction, steps, state_dict
for (cls, kw), (params, state) in zip(CASES, ours):
    theirs, theirs_state = run(lambda p, cls=cls, kw=kw: cls(p, **kw))
    assert all(torch.equal(a, b) for a, b in zip(params, theirs)), cls  # torch's update, bit for bit
    assert state["param_groups"] == theirs_state["param_groups"]
    assert all(torch.equal(state["state"][i][k], theirs_state["state"][i][k])
               for i in theirs_state["state"] for k in theirs_state["state"][i])
    again = eager_optimizer(cls, [torch.nn.Parameter(torch.zeros(3))], **kw)
    assert isinstance(again, cls)
print("ok")
'''


def test_eager_optimizers_skip_dynamo_and_update_like_torch():
    """compute.eager_optimizer: no torch._dynamo import (1.5 s of every small training job), the same
    parameters and optimizer state as torch's Adam / AdamW after six steps."""
    out = subprocess.run([sys.executable, "-c", EAGER_CHECK], capture_output=True, text=True, timeout=300, check=False,
                         env={k: v for k, v in os.environ.items() if k != "DAEBENCH_COMPUTE"})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_grad_clip_bounds_the_global_norm_each_update_sees(tmp_path):
    """train_cfg.grad_clip (a method's optim.grad_clip) clips the gradient's global norm before every Adam
    update; without it the same steps see norms well above that."""
    seen = []

    def record(opt, args, kwargs):
        seen.append(float(torch.linalg.vector_norm(torch.stack(
            [p.grad.norm() for g in opt.param_groups for p in g["params"] if p.grad is not None]))))

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(record)
    try:
        torch.manual_seed(0)
        x = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
        for name, clip in (("free", None), ("clipped", 1e-3)):
            T.train_phase(Net(), recon, x, steps=5, phase_index=0, train_cfg={**CFG, "grad_clip": clip},
                          ckpt_path=tmp_path / f"{name}.resume.pt", out_path=tmp_path / f"{name}.pt",
                          config={"name": name}, progress=False)
    finally:
        handle.remove()
    free, clipped = seen[:5], seen[5:]
    assert len(clipped) == 5 and min(free) > 10 * 1e-3
    assert max(clipped) <= 1e-3 * (1 + 1e-4)
