"""The benchmark scripts (benchmarks/*.py) in their --quick mode: each runs in a subprocess and writes
JSON with the documented keys and positive, finite figures. Speed itself is not asserted here (a loaded
test machine says nothing about it); benchmarks/README.md records measured figures."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from daebench.nets.layers import Attention, ResBlock, dropout, to_layout
from daebench.nets.unet import Encoder

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def run_script(name: str, tmp_path: Path, *args: str, timeout: float = 300) -> dict:
    out = tmp_path / f"{name}.json"
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--quick", "--device", "cpu", "--json", str(out),
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def assert_positive(d: dict, keys) -> None:
    for k in keys:
        assert positive(d[k]), f"{k} = {d[k]!r} is not a positive finite number (in {sorted(d)})"


def test_train_step(tmp_path):
    res = run_script("train_step", tmp_path, "--sizes", "default")
    assert {"env", "peak_flops_per_s", "mfu_reference", "sizes", "acceptance"} <= set(res)
    assert res["env"]["threads"] >= 1 and res["env"]["torch"]
    assert positive(res["peak_flops_per_s"]["fp32"])
    size = res["sizes"]["default"]
    assert size["image_shape"] == [1, 16, 16]
    cases = {r["case"]: r for r in size["families"]}
    assert {"dae_phase1", "dae_phase2", "dae_eps", "dbae", "scorevae_encoder", "scorevae_corrector", "diffdec",
            "uncond", "vae", "latent_prior", "ddvi", "diffusers_matched_dae", "diffusers_mirror_unet"} <= set(cases)
    for r in cases.values():
        assert_positive(r, ["params", "batch", "step_ms", "images_per_s", "flops_per_step", "flops_per_image",
                            "flops_per_s", "mfu"])
    pairs = {c["name"]: c for c in size["comparisons"]}
    assert set(pairs) == {"dae_vs_diffusers", "unet_vs_diffusers"}
    for c in pairs.values():
        assert_positive(c, ["ratio", "param_ratio_diffusers_over_ours", "flop_ratio_diffusers_over_ours"])
        for side in ("ours", "diffusers"):
            assert_positive(c[side], ["params", "fwd_flops_per_image", "images_per_s", "flops_per_s", "mfu"])
    # the diffusers mirror of our bare U-Net has our parameter count and FLOPs to within 1 %
    mirror = pairs["unet_vs_diffusers"]
    assert abs(mirror["param_ratio_diffusers_over_ours"] - 1) < 0.01
    assert abs(mirror["flop_ratio_diffusers_over_ours"] - 1) < 0.01
    acc = res["acceptance"]
    assert set(acc["ratios"]) == {"default/dae_vs_diffusers", "default/unet_vs_diffusers"}
    # the verdict is the criterion applied to the measured ratios (default --min-ratio 1.0)
    assert acc["pass"] == (acc["ratios"]["default/dae_vs_diffusers"] >= 1.0)
    # on CPU: the matmuls timed in the same rounds as the steps, and the DAE step's share of them
    if res["env"]["device"] == "cpu":
        assert positive(size["matmul_flops_per_s_in_rounds"]["matmul_torch_mm"])
        assert set(acc["dae_step_mfu"]) == {"default/dae_phase2", "default/dae_eps"}
        for v in acc["dae_step_mfu"].values():
            assert positive(v["mfu"]) and positive(v["ratio_to_matmul_torch_mm_in_rounds"])


@pytest.mark.slow
def test_train_step_paper_size(tmp_path):
    res = run_script("train_step", tmp_path, "--sizes", "paper", timeout=600)
    size = res["sizes"]["paper"]
    assert size["image_shape"][0] == 3
    assert all(positive(c["ratio"]) for c in size["comparisons"])


def test_sampling(tmp_path):
    res = run_script("sampling", tmp_path)
    rows = res["rows"]
    assert {r["sampler"] for r in rows} == {"ddim", "bridge"}
    for r in rows:
        assert_positive(r, ["nfe", "seconds", "images_per_s", "images_per_s_x_nfe", "ms_per_image_per_nfe",
                            "flops_per_image", "flops_per_s"])
        assert r["nfe"] <= r["nfe_budget"]
        assert r["images_per_s_x_nfe"] == pytest.approx(r["images_per_s"] * r["nfe"])
    assert_positive(res["flops_per_eval"], ["dae_unet", "dbae_unet", "dbae_endpoint"])


def test_latent_inference(tmp_path):
    res = run_script("latent_inference", tmp_path)
    rows = res["rows"]
    assert rows[0]["method"].startswith("DBAE") and rows[0]["ratio_to_dbae"] == 1.0
    for r in rows:
        assert_positive(r, ["ms_per_image", "ratio_to_dbae", "flops_per_image", "networks"])
    dae = rows[1:]
    assert [r["nfe"] for r in dae] == [2, 4]
    assert all(r["networks"] == 1 + r["nfe"] for r in dae)
    assert set(res["ratio_dae_over_dbae"]) == {"2", "4"} and all(map(positive, res["ratio_dae_over_dbae"].values()))


@pytest.fixture()
def project(tmp_path):
    """A copy of the workflow (no results): dry runs only."""
    proj = tmp_path / "project"
    proj.mkdir()
    for item in ("Snakefile", "params.yaml", "workflow", "envs", "notebooks"):
        src = ROOT / item
        if src.exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, proj / item)
    return proj


def test_pipeline_overhead_dry_run(tmp_path, project):
    res = run_script("pipeline_overhead", tmp_path, "--workdir", str(project), "--dry-run-only")
    assert res["targets"][0] == "results/table4.csv"
    assert {"dbae_all", "scorevae_all", "ddvi_all"} <= set(res["targets"])
    assert_positive(res["dry_run"], ["seconds", "jobs"])
    assert res["dry_run"]["jobs"] > 100  # the whole DAG of a fresh project
    assert res["limit_s"] == 10.0 and res["pass"] == (res["dry_run"]["seconds"] < 10.0)


def test_pipeline_overhead_never_runs_jobs(tmp_path, project):
    # nothing is complete in a fresh copy: the no-op rerun is skipped, and no job runs
    res = run_script("pipeline_overhead", tmp_path, "--workdir", str(project), "--targets", "results/table4.csv")
    assert res["noop_rerun"]["complete_targets"] == []
    assert res["noop_rerun"]["pending_jobs"]["results/table4.csv"] > 0
    assert res["noop_rerun"]["pass"] is None and res["pass"] is False
    assert not (project / "resources").exists() and not (project / "results").exists()


# --- the speed changes in daebench.nets keep the networks' values and checkpoints ----------------------

def _reference_resblock(blk, x, emb, cond):
    """ResBlock.forward as written before the speed work (GroupNorm, then AdaGN step by step, F.dropout)."""
    h = blk.conv1(F.silu(blk.norm1(x)))
    h = blk.norm2(h)
    if blk.emb is not None:
        scale, shift = blk.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = h * (1 + scale) + shift
    if blk.cond is not None:
        h = h * (1 + blk.cond(cond)[:, :, None, None])
    return blk.skip(x) + blk.conv2(F.silu(h))


def _reference_attention(att, x):
    """Attention.forward as written before: 1x1 convolutions and the head split by reshape."""
    b, c, h, w = x.shape
    q, k, v = att.qkv(att.norm(x)).reshape(b, 3 * att.heads, c // att.heads, h * w).transpose(-1, -2).chunk(3, dim=1)
    out = F.scaled_dot_product_attention(q, k, v)
    return x + att.proj(out.transpose(-1, -2).reshape(b, c, h, w))


def _randomise(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # zero-initialised layers would hide differences
    return module


def test_fast_resblock_and_attention_match_the_reference():
    torch.manual_seed(0)
    x, emb, cond = torch.randn(3, 16, 8, 8), torch.randn(3, 32), torch.randn(3, 24)
    for blk in (ResBlock(16, 32, 32, 24), ResBlock(16, 16, 32), ResBlock(16, 32)):
        blk = _randomise(blk).eval()
        want = _reference_resblock(blk, x, emb, cond)
        for inp in (x, to_layout(x)):
            torch.testing.assert_close(blk(inp, emb, cond), want, rtol=1e-5, atol=1e-5)
    for heads in (1, 4):
        att = _randomise(Attention(16, heads))
        want = _reference_attention(att, x)
        torch.testing.assert_close(att(to_layout(x)), want, rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(att(x), want, rtol=1e-5, atol=1e-5)


def test_attention_is_twice_differentiable():
    # ScoreVAE trains through grad_x log q(z | x_t, t): its encoder (attention included) is differentiated twice
    torch.manual_seed(0)
    enc = _randomise(Encoder(3, 8, 4, 16, (1, 2), 1, (8, 4), time_conditioned=True))
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    (g,) = torch.autograd.grad(enc(x, torch.rand(2)).square().sum(), x, create_graph=True)
    g.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


def test_dropout_keeps_its_distribution_and_seed():
    x = torch.ones(200, 50, 4, 4)
    torch.manual_seed(0)
    y = dropout(x, 0.1, True)
    values = y.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.9)
    assert (y > 0).float().mean().item() == pytest.approx(0.9, abs=0.005)
    torch.manual_seed(0)
    assert torch.equal(dropout(x, 0.1, True), y)
    assert dropout(x, 0.1, False) is x and dropout(x, 0.0, True) is x
