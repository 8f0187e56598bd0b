"""Device check (issue 15): every CUDA path of the project, in one run that fits a short GPU slot.

    bash benchmarks/device_check.sh            # on the lent GPU machine (<= 8 min); figures under $OUT
    bash benchmarks/device_check.sh --cpu      # the same steps at tiny sizes on CPU (< 90 s; tests/test_benchmarks.py)

Steps, each in its own process with a time cap (a failure is recorded with its traceback and the next step
still runs; the exit code is 1 if any step failed):

1. ``install``        the carried wheels (.whl/, benchmarks/device_wheels.sh) into a venv over the machine's own
                      packages (its torch stays), unless everything is importable already;
2. ``smoke_dag``      the smoke Table 4 DAG (tests/smoke.yaml) through Snakemake, MLflow in a local SQLite store;
                      checks the table and that every run carries system metrics (GPU ones on CUDA);
3. ``train_families`` every method family trained a few hundred steps through ``train.train_phase`` (bf16 autocast,
                      channels-last, TF32 on CUDA), compile off and on; finite terms; weights load into a CPU model;
4. ``preset_timing``  the cifar10_32 preset's training step (images/s, FLOP/s, MFU against a bf16 matmul timed in the
                      same run), eager and compiled, and DDIM / bridge sampling images/s (benchmarks/sampling.py);
5. ``ddp``            ``python -m daebench train`` under torch.distributed.run with one process: NCCL (gloo on CPU).

Every figure goes to ``<out>/<step>.json`` and ``<out>/device_check.json`` (schema in benchmarks/README.md);
a short table is printed last.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SMOKE = REPO / "tests" / "smoke.yaml"
PRESET = REPO / "workflow" / "presets" / "cifar10_32.yaml"
SCHEMA_VERSION = 1

# Time caps in seconds (GPU, CPU). They add up to the whole budget; time a step leaves unused passes to the next.
STEPS = {"install": (60, 3), "smoke_dag": (170, 45), "train_families": (105, 20), "preset_timing": (95, 12),
         "ddp": (40, 10)}
# The modules the check imports beyond the GPU machine's own packages, and the distributions that bring them.
NEEDED = {"snakemake": "snakemake", "mlflow": "mlflow-skinny", "sqlalchemy": "sqlalchemy", "alembic": "alembic",
          "cleanfid": "clean-fid", "jsonschema": "jsonschema", "psutil": "psutil"}
# System metrics every MLflow run must carry (daebench.tracking; mlflow's monitors under "system/").
CPU_METRICS = ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
               "system/process_memory_rss_megabytes")
GPU_METRICS = ("system/gpu_0_utilization_percentage", "system/gpu_0_memory_usage_megabytes",
               "system/process_gpu_0_allocated_megabytes")
# --cpu: the smoke DAG at a tenth of its size, one method and one mode (prepare, classifier, train, reconstruct,
# metrics, table: 6 jobs, each a Python process)
CPU_SMOKE = {"data": {"max_train": 64, "max_test": 8},
             "train": {"examples": 64, "batch_size": 16, "warmup_examples": 16, "checkpoint_every": 2, "log_every": 2},
             "table4": {"methods": ["dae_baseline"], "modes": ["stochastic"], "ddim_steps": 2, "batch_size": 8},
             "metrics": {"classifier": {"steps": 5, "batch_size": 32}}}


class CheckFailed(AssertionError):
    pass


class Record:
    """A step's JSON, rewritten after every change (a step killed at its time cap leaves what it had)."""

    def __init__(self, path: Path, step: str, cpu: bool):
        self.path = path
        self.data: dict = {"step": step, "mode": "cpu" if cpu else "cuda", "status": "running", "checks": []}
        self.save()

    def update(self, **kw) -> None:
        self.data.update(kw)
        self.save()

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.data["checks"].append({"name": name, "ok": bool(ok), "detail": detail})
        self.save()
        print(f"[{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}", flush=True)
        return bool(ok)

    def save(self) -> None:
        from daebench.data.store import atomic_path

        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.data, indent=2, default=_jsonable) + "\n")

    def raise_failed(self) -> None:
        bad = [c["name"] + (f" ({c['detail']})" if c["detail"] else "") for c in self.data["checks"] if not c["ok"]]
        if bad:
            raise CheckFailed("failed checks: " + "; ".join(bad))


def _jsonable(v):
    """json.dumps' fallback for what JSON cannot hold (paths, dtypes, devices): their text."""
    return str(v)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


# ------------------------------------------------------------------------------------------------- shared helpers

def _device(a):
    import torch

    if a.cpu:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device is visible (run with --cpu for the CPU mode)")
    return torch.device("cuda")


def _env(device) -> dict:
    import _common as C
    import torch

    env = C.environment(device)
    env["python"] = sys.version.split()[0]
    env["executable"] = sys.executable
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["capability"] = list(torch.cuda.get_device_capability(device))
        env["memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    return env


def _sync(device) -> None:
    import _common as C

    C.sync(device)


def _prepare_digits(work: Path, cfg: dict, max_train: int) -> Path:
    """The embedded digits as the workflow's prepare_data job writes them (no network)."""
    from daebench.data import prepare

    out = work / "digits"
    if not (out / "manifest.json").exists():
        d = cfg["data"]
        prepare("digits", out, download_dir=work / "downloads", seed=d["seed"], test_fraction=d["test_fraction"],
                base_url=None, max_train=max_train, max_test=64)
    return out


def _phase_index(cfg: dict, method: str, phase: str) -> int | None:
    """Index of ``phase`` in ``method`` (by name, or ScoreVAE's phases by what they train), None if absent."""
    phases = cfg["methods"][method]["phases"]
    for key in ("name", "train"):
        names = [p.get(key) for p in phases]
        if phase in names:
            return names.index(phase)
    return None


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` capturing its output as text; the caller checks the return code."""
    return subprocess.run(cmd, check=False, capture_output=True, text=True, **kw)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# ------------------------------------------------------------------------------------------------- step: smoke_dag

def _job_counts(text: str) -> dict[str, int]:
    if "Job stats:" not in text:
        return {}
    table = text.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def step_smoke_dag(a, rec: Record) -> None:
    import pandas as pd
    import torch

    from daebench.tracking import client

    cuda = not a.cpu and torch.cuda.is_available()
    rec.update(env={"python": sys.version.split()[0], "torch": torch.__version__, "cuda": cuda})
    proj = Path(tempfile.mkdtemp(prefix="smoke-", dir=a.work))
    for item in ("Snakefile", "params.yaml", "workflow", "envs", "tests/smoke.yaml"):
        dst = proj / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (REPO / item).is_dir() else shutil.copy)(REPO / item, dst)
    configs = ["tests/smoke.yaml"]
    if a.cpu:
        import yaml

        (proj / "device_check_cpu.yaml").write_text(yaml.safe_dump(CPU_SMOKE))
        configs.append("device_check_cpu.yaml")
    db = proj / "mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "MLFLOW_EXPERIMENT_NAME": "device_check",
           # a point per second, so that jobs of a few seconds get several (daebench.tracking reads these)
           "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1", "MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING": "1"}
    cores = 2 if a.cpu else max(4, os.cpu_count() or 4)
    base = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", *configs]
    if cuda:  # jobs share the one GPU, four at a time (the profile's gpu=1 would serialise 17 small jobs)
        base += ["--resources", "gpu=4"]
    target = "results/table4.csv"
    dry = _run(base + ["-n", "-p", target], cwd=proj, env=env, timeout=120)
    counts = _job_counts(dry.stdout + dry.stderr)
    rec.update(project=str(proj), configfiles=configs, command=" ".join(base[1:] + [target]), jobs=counts,
               shell_commands=len(re.findall(r"^\s*python -m daebench", dry.stdout, re.MULTILINE)))
    if not rec.check("dry run", dry.returncode == 0 and counts.get("total", 0) > 0, _tail(dry.stderr, 15)
                     if dry.returncode else f"{counts.get('total')} jobs"):
        rec.raise_failed()
    t0 = time.time()
    proc = _run(base + ["--show-failed-logs", target], cwd=proj, env=env)
    wall = time.time() - t0
    (Path(a.out) / "smoke_dag_snakemake.log").write_text(proc.stdout + proc.stderr)
    rec.update(wall_s=round(wall, 1), snakemake_rc=proc.returncode)
    if not rec.check("snakemake run", proc.returncode == 0, f"{wall:.0f} s" if proc.returncode == 0
                     else _tail(proc.stdout + proc.stderr, 40)):
        rec.raise_failed()
    # Snakemake's own per-job timings (the benchmark: directive)
    per_rule: dict[str, list[float]] = {}
    for tsv in (proj / "logs" / "benchmarks").rglob("*.tsv"):
        rows = pd.read_csv(tsv, sep="\t")
        per_rule.setdefault(tsv.relative_to(proj / "logs" / "benchmarks").parts[0], []).append(float(rows["s"].iloc[-1]))
    rec.update(job_seconds={k: {"n": len(v), "sum": round(sum(v), 1), "max": round(max(v), 1)}
                            for k, v in sorted(per_rule.items())})

    table = pd.read_csv(proj / target)
    shutil.copy(proj / target, Path(a.out) / "smoke_table4.csv")
    cols = [c for c in ("method", "mode", "psnr", "ssim", "mse", "fd_domain", "featdist_domain") if c in table]
    rows = table[cols].to_dict("records")
    rec.update(table4=rows)
    t4 = CPU_SMOKE["table4"]
    expect = len(t4["methods"]) * len(t4["modes"]) if a.cpu else 6
    rec.check("table4 rows", len(rows) == expect, f"{len(rows)} rows, expected {expect}")
    rec.check("table4 finite PSNR/SSIM", all(_finite(r["psnr"]) and _finite(r["ssim"]) for r in rows))

    c = client(f"sqlite:///{db}")
    exp = c.get_experiment_by_name("device_check")
    runs = c.search_runs([exp.experiment_id], max_results=1000) if exp else []
    required = GPU_METRICS if cuda else CPU_METRICS
    summary = []
    for r in runs:
        sysm = {k: v for k, v in r.data.metrics.items() if k.startswith("system/")}
        summary.append({"name": r.data.tags.get("mlflow.runName"), "rule": r.data.tags.get("rule"),
                        "status": r.info.status, "system_metrics": sysm,
                        "system_points": len(c.get_metric_history(r.info.run_id, required[0]))
                        if required[0] in sysm else 0,
                        "missing": [k for k in required if k not in sysm]})
    rec.update(mlflow_runs=summary, required_system_metrics=list(required))
    train_runs = [s for s in summary if s["rule"] == "train"]
    n_train = counts.get("train_phase", 0)
    rec.check("MLflow: a run per training job", len(train_runs) == n_train, f"{len(train_runs)} of {n_train}")
    rec.check("MLflow: every run FINISHED", bool(summary) and all(s["status"] == "FINISHED" for s in summary),
              ", ".join(f"{s['name']}: {s['status']}" for s in summary if s["status"] != "FINISHED"))
    # the invocation's parent run (rule: workflow) is bookkeeping: no system metrics; the jobs nest under it
    jobs = [s for s in summary if s["rule"] != "workflow"]
    parents = {r.info.run_id for r in runs if r.data.tags.get("rule") == "workflow"}
    nested = [r for r in runs if r.data.tags.get("rule") != "workflow"
              and r.data.tags.get("mlflow.parentRunId") in parents]
    rec.check("MLflow: every job's run nested under the workflow's run", len(parents) == 1 and len(nested) == len(jobs),
              f"{len(parents)} workflow runs, {len(nested)} of {len(jobs)} job runs nested")
    lacking = [f"{s['name']} lacks {s['missing']}" for s in jobs if s["missing"]]
    rec.check(f"MLflow: {'GPU' if cuda else 'CPU'} system metrics in every job's run", bool(jobs) and not lacking,
              "; ".join(lacking[:5]))
    if cuda:
        def peak(key):
            vals = [s["system_metrics"].get(key) for s in train_runs if key in s["system_metrics"]]
            return max(vals) if vals else None
        rec.update(gpu_metrics_train={k.split("/", 1)[1]: peak(k) for k in
                                      sorted({k for s in train_runs for k in s["system_metrics"] if "gpu" in k})})
    rec.update(summary=f"{counts.get('total')} jobs in {wall:.0f} s; {len(rows)} table rows; "
                       f"{len(summary) - len(lacking)}/{len(summary)} runs with {'GPU' if cuda else 'CPU'} metrics")
    rec.raise_failed()


# ------------------------------------------------------------------------------------------------- step: train_families

def _train_one(a, rec, device, cfg, item: dict, x_images, work: Path) -> dict:
    """Train one family/phase with train_phase for ``item['steps']`` steps, then load its weights on CPU."""
    import _common as C
    import torch

    from daebench import compute as compute_mod
    from daebench.checkpoint import load_checkpoint
    from daebench.data import to_tensor
    from daebench.train import as_stages, train_phase

    comp = {**compute_mod.DEFAULTS, "compile": item["compile"]}
    steps, batch = item["steps"], item["batch"]
    log_every = max(1, steps // 4)
    logged: list[tuple[int, dict]] = []
    if item["family"] in ("latent_prior", "ddvi"):
        build, loss, data, sl = _flat_case(cfg, item["family"], x_images)
        phase_index = 0
    else:
        from daebench.methods import get_family

        fam = get_family(item["family"])
        method = C.first_method(cfg, item["family"], item["prefer"])
        phase_index = _phase_index(cfg, method, item["phase"])
        sl = C.train_slice(cfg, method, phase_index)
        h, c = x_images.shape[1], x_images.shape[3]

        def build():
            return fam.build(sl, c, h)
        loss = fam.phase_loss(sl["method"], sl["method"]["phases"][phase_index])
        from daebench.data import UInt8Images

        data = UInt8Images(x_images)  # as the train job: uint8 rows, converted on the device
        item["method"] = f"{method}/{sl['method']['phases'][phase_index]['name']}"
    torch.manual_seed(0)
    model = build()
    train_cfg = {**sl["train"], "device": device.type, "batch_size": batch, "warmup_examples": 10 * batch,
                 "checkpoint_every": steps + 1, "log_every": log_every}
    out = work / f"{item['case']}_{'compiled' if item['compile'] else 'eager'}.pt"
    _sync(device)
    t0 = time.perf_counter()
    train_phase(model, loss, data, steps=steps, phase_index=phase_index, train_cfg=train_cfg,
                ckpt_path=work / f"{out.stem}.resume.pt", out_path=out, config=sl,
                logger=lambda m, s: logged.append((s, m)), progress=False, compute=comp)
    _sync(device)
    secs = time.perf_counter() - t0
    losses = [{k: v for k, v in m.items() if k.startswith("loss/")} for _, m in logged]
    item.update(seconds=round(secs, 2), steps_per_s=round(steps / secs, 1), images_per_s=round(steps * batch / secs, 1),
                effective=compute_mod.effective(comp, device), loss_first=losses[0] if losses else None,
                loss_last=losses[-1] if losses else None,
                finite=bool(losses) and all(_finite(v) for m in losses for v in m.values()))
    # the checkpoint on CPU: a fresh model of the same config takes both weight sets strictly, and its loss is finite
    ck = load_checkpoint(out)
    cpu_model = build()
    cpu_model.load_state_dict(ck["model"])
    cpu_model.load_state_dict(ck["ema"])
    if isinstance(data, tuple):
        xb = tuple(t[:4].cpu() for t in data)
    elif isinstance(data, torch.Tensor):
        xb = data[:4].cpu()
    else:
        xb = to_tensor(x_images[:4])
    fns = [st.fn for st in as_stages(loss)[0]]
    terms = {}
    for fn in fns:
        terms.update({k: float(v.float().mean()) for k, v in fn(cpu_model, xb, torch.Generator().manual_seed(0)).items()})
    item.update(cpu_loaded=True, cpu_terms=terms, cpu_finite=all(_finite(v) for v in terms.values()))
    del model, cpu_model
    out.unlink(missing_ok=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return item


def _flat_case(cfg: dict, family: str, x_images):
    """(build, loss, data, slice) of the non-image families: DiffAE/DBAE's latent prior on standard-normal codes
    (what it sees after standardisation) and DDVI (unsupervised, first prior) on the flattened digits in [0, 1]."""
    import torch

    if family == "latent_prior":
        from daebench.methods import latent_prior

        p = cfg["dbae"]["prior"]
        pcfg = {"prior": p, "z_dim": cfg["nets"]["z_dim"]}
        sl = {"prior": p, "train": {**cfg["train"], "lr": p["lr"], "ema_decay": p["ema_decay"]}}
        data = torch.randn(1024, cfg["nets"]["z_dim"], generator=torch.Generator().manual_seed(0))
        return (lambda: latent_prior.build(pcfg)), latent_prior.loss(), data, sl
    import _common as C

    from daebench import ddvi_study
    from daebench.config import ddvi_method

    study = cfg["ddvi"]
    name = C.first_method({"methods": study["methods"]}, "ddvi", "ddvi")
    prior = next(iter(study["priors"]))
    sl = {"setting": "unsup", "dataset": cfg["dataset"], "likelihood": "bce",
          "method": ddvi_method(study, name, "unsup"), "nets": study["nets"],
          "train": {**study["train"], "seed": 0, "ema_decay": cfg["train"]["ema_decay"]},
          "prior": {"name": prior, "params": study["priors"][prior]}, "kde": study["kde"]}
    x = torch.from_numpy(x_images.reshape(len(x_images), -1)).float() / 255.0
    dim = x.shape[1]
    holder = {}

    def build():
        family_, model, ctx = ddvi_study.build(sl, dim)
        holder["loss"] = ddvi_study.DDVILoss(family_, sl["method"], ctx)
        return model

    build()
    part = torch.full((len(x),), -1, dtype=torch.long)
    return build, holder["loss"], (x, part), sl


def step_train_families(a, rec: Record) -> None:
    import _common as C
    import torch
    import train_step as TS

    from daebench.data import load_split

    device = _device(a)
    rec.update(env=_env(device))
    cfg = C.load_config()  # params.yaml: the default-size networks
    if a.cpu:
        cfg = TS.shrink(cfg)
    work = Path(tempfile.mkdtemp(prefix="families-", dir=a.work))
    images, _ = load_split(_prepare_digits(Path(a.work), cfg, 64 if a.cpu else 1024), "train")
    steps, batch = (2, 4) if a.cpu else (300, cfg["train"]["batch_size"])
    image_cases = [{"case": s[0], "family": s[1], "prefer": s[2], "phase": s[3], "what": s[4]} for s in TS.FAMILY_CASES]
    flat = [{"case": f, "family": f, "prefer": None, "phase": None, "what": w} for f, w in
            (("latent_prior", "DiffAE/DBAE latent DDIM prior"), ("ddvi", "DDVI unsup, first prior"))]
    # compile off for every family first; compile on (minutes of compilation in all) in order of importance until
    # the step's time runs short. On CPU compute.effective turns compile off, so one family shows that path.
    plan = [dict(c, compile=False) for c in image_cases + flat]
    on = image_cases[:1] if a.cpu else [image_cases[i] for i in (1, 3, 0, 4, 5, 6, 7, 8, 2)] + flat
    plan += [dict(c, compile=True) for c in on]
    results = []
    rec.update(steps=steps, batch=batch, nets=cfg["nets"], results=results)
    for item in plan:
        item.update(steps=steps, batch=batch if item["family"] != "latent_prior" else 4 * batch)
        need = 60 if item["compile"] and not a.cpu else 3  # a compilation takes tens of seconds
        if time.time() + need > a.deadline:
            results.append({**item, "status": "skipped", "detail": "the step's time cap"})
            rec.save()
            continue
        t0 = time.time()
        try:
            _train_one(a, rec, device, cfg, item, images, work)
            item["status"] = "ok" if item["finite"] and item["cpu_finite"] else "failed"
        except Exception as exc:  # noqa: BLE001 - one family's failure is recorded; the others still run
            item.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                        traceback=_tail(traceback.format_exc(), 25), seconds=round(time.time() - t0, 1))
            print(traceback.format_exc(), file=sys.stderr, flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        results.append(item)
        rec.save()
        print(f"{item['case']:>20} compile={item['compile']!s:5} {item['status']:7} "
              f"{item.get('seconds', 0):7.1f} s  {item.get('loss_last') or item.get('error', '')}", flush=True)
    ran = [r for r in results if r["status"] != "skipped"]
    bad = [f"{r['case']}{' (compiled)' if r['compile'] else ''}: {r.get('error', 'non-finite terms')}"
           for r in ran if r["status"] != "ok"]
    rec.check("every family trains with finite terms and loads on CPU", not bad, "; ".join(bad))
    rec.check("every family ran with compile off", all(r["status"] != "skipped" for r in results if not r["compile"]))
    n_on = sum(1 for r in ran if r["compile"])
    n_skip = sum(1 for r in results if r["status"] == "skipped")
    rec.update(summary=f"{len(ran) - len(bad)}/{len(ran)} runs ok ({n_on} with compile on, {n_skip} skipped "
                       f"for time), {steps} steps each")
    rec.raise_failed()


# ------------------------------------------------------------------------------------------------- step: preset_timing

def step_preset_timing(a, rec: Record) -> None:
    import _common as C
    import sampling
    import torch
    import train_step as TS

    device = _device(a)
    cfg = C.load_config(PRESET)
    if a.cpu:
        cfg = TS.shrink(cfg)
    compute = TS.run_settings(cfg, device)  # bf16 autocast, channels-last, TF32 as a training job on this device
    env = _env(device)
    env["compute"] = compute
    peak = C.matmul_peak(device, quick=a.cpu)
    peak_name, peak_val = C.training_peak(peak, device, compute["amp"])
    h, c = C.image_shape(cfg)
    batch = 2 if a.cpu else cfg["train"]["batch_size"]
    warm, iters = (1, 1) if a.cpu else (3, 10)
    rec.update(env=env, config=str(PRESET.relative_to(REPO)), shrunk=a.cpu, image_shape=[c, h, h], batch=batch,
               peak_flops_per_s=peak, mfu_reference=peak_name, warmup=warm, iters=iters, rows=[])
    torch.manual_seed(0)
    x = (torch.rand(batch, c, h, h) * 2 - 1).to(device)
    specs = {s[0]: s for s in TS.FAMILY_CASES}
    for name in ("dae_phase2", "dbae"):
        eager = TS.family_case(cfg, *specs[name], device, x)
        flops = C.count_flops(eager.step)  # one step, counted eagerly (it is also a warm-up)
        fns = {"eager": eager.step}
        compile_s = None
        # compile: on a GPU only (compute.effective turns it off on CPU), if the step has time for it (about a
        # minute of compilation) and for the sampling after it
        if device.type == "cuda" and time.time() + 120 < a.deadline:
            comp = TS.family_case(cfg, *specs[name], device, x)
            for m in comp.extra["model"].children():
                m.compile()  # as train.train_phase does
            _sync(device)
            t0 = time.perf_counter()
            comp.step()  # compilation (forward and backward graphs)
            _sync(device)
            compile_s = time.perf_counter() - t0
            fns["compiled"] = comp.step
        times = C.time_interleaved(fns, device, warmup=warm, iters=iters)
        for mode, ts in times.items():
            t = C.median(ts)
            row = {"case": name, "method": eager.method, "mode": mode, "params": eager.params, "batch": batch,
                   "step_ms": 1e3 * t, "spread": C.spread(ts), "images_per_s": batch / t, "flops_per_step": flops,
                   "flops_per_image": flops / batch, "flops_per_s": flops / t, "mfu": flops / t / peak_val,
                   "n_timed": len(ts)}
            if mode == "compiled":
                row["compile_s"] = compile_s
            rec.data["rows"].append(row)
        if "compiled" not in times:
            rec.data["rows"].append({"case": name, "mode": "compiled", "status": "skipped",
                                     "detail": "not on CPU" if device.type == "cpu" else "the step's time cap"})
        rec.save()
        del eager, fns
        if device.type == "cuda":
            torch.cuda.empty_cache()
    sjson = Path(a.out) / "preset_sampling.json"
    argv = ["--device", device.type, "--configfile", str(PRESET), "--json", str(sjson)]
    argv += ["--quick"] if a.cpu else ["--nfe", "10,50", "--batch", str(batch), "--repeats", "3"]
    sampling.main(argv)
    s = json.loads(sjson.read_text())
    rec.update(sampling=[{k: r[k] for k in ("sampler", "nfe_budget", "nfe", "batch", "seconds", "images_per_s",
                                            "images_per_s_x_nfe", "flops_per_s")} for r in s["rows"]])
    timed = [r for r in rec.data["rows"] if "images_per_s" in r]
    rec.check("training step timed", bool(timed) and all(_finite(r["images_per_s"]) and r["images_per_s"] > 0
                                                         and r["flops_per_step"] > 0 for r in timed))
    rec.check("sampling timed", bool(s["rows"]) and all(r["images_per_s"] > 0 for r in s["rows"]))
    head = ", ".join(f"{r['case']} {r['mode']} {r['images_per_s']:.4g} img/s MFU {100 * r['mfu']:.1f}%"
                     for r in timed)
    best = {r["sampler"]: r["images_per_s"] for r in s["rows"] if r["nfe_budget"] == max(x["nfe_budget"] for x in s["rows"])}
    rec.update(summary=head + "; sampling @NFE " + str(max(x["nfe_budget"] for x in s["rows"])) + ": "
               + ", ".join(f"{k} {v:.4g} img/s" for k, v in best.items()))
    rec.raise_failed()


# ------------------------------------------------------------------------------------------------- step: ddp

def step_ddp(a, rec: Record) -> None:
    """``python -m daebench train`` as one torch.distributed.run process; the worker below records the DDP
    wrapper train.py builds."""
    import _common as C
    import torch
    import train_step as TS

    from daebench import compute as compute_mod
    from daebench.checkpoint import load_checkpoint

    cuda = not a.cpu and torch.cuda.is_available()
    if not a.cpu and not cuda:
        raise RuntimeError("no CUDA device is visible")
    cfg = C.load_config()
    if a.cpu:
        cfg = TS.shrink(cfg)
    work = Path(tempfile.mkdtemp(prefix="ddp-", dir=a.work))
    data = _prepare_digits(Path(a.work), cfg, 64 if a.cpu else 1024)
    method = "dae_baseline"
    sl = C.train_slice(cfg, method)
    sl["train"].update(examples=(4 if a.cpu else 100) * sl["train"]["batch_size"], checkpoint_every=1000,
                       log_every=2 if a.cpu else 25, device="cpu" if a.cpu else "cuda")
    out = work / "model.pt"
    argv = ["train", "--cfg", json.dumps(sl), "--method", method, "--phase-index", "0", "--data", str(data),
            "--out", str(out), "--checkpoint-dir", str(work / "ckpt"), "--no-progress"]
    (work / "argv.json").write_text(json.dumps(argv))
    report = work / "worker.json"
    # what compute.torchrun_argv runs for compute.nproc > 1, with this script's worker as the program
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", __file__,
           "--step", "ddp_worker", "--out", str(work), "--work", str(work)] + (["--cpu"] if a.cpu else [])
    env = {**os.environ, compute_mod.ENV: json.dumps({"nproc": 1}), "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db",
           "MLFLOW_EXPERIMENT_NAME": "device_check_ddp", "NCCL_DEBUG": "WARN"}
    t0 = time.time()
    proc = _run(cmd, env=env, timeout=None if math.isinf(a.deadline) else max(5.0, a.deadline - time.time()))
    rec.update(command=" ".join(cmd[1:6]) + " <worker> python -m daebench " + " ".join(argv[:1]),
               seconds=round(time.time() - t0, 1), rc=proc.returncode, output_tail=_tail(proc.stdout + proc.stderr, 25))
    w = json.loads(report.read_text()) if report.exists() else {}
    rec.update(worker=w)
    ok = proc.returncode == 0 and w.get("status") == "ok"
    if not rec.check("torchrun job", ok, "" if ok else w.get("error") or _tail(proc.stderr, 20)):
        rec.raise_failed()
    wrapped = w.get("ddp", [])
    want = "nccl" if cuda else "gloo"
    rec.check("train_phase wrapped the model in DistributedDataParallel", bool(wrapped),
              "" if wrapped else "no DDP at world size 1: train.py wraps only when WORLD_SIZE > 1, so one "
                                 "process never runs the DDP path (see benchmarks/README.md, device_check)")
    rec.check(f"process group backend {want}", w.get("backend") == want, f"backend {w.get('backend')}")
    ok_ckpt = out.exists()
    if ok_ckpt:
        from daebench.methods import get_family

        ck = load_checkpoint(out)
        h, _, c = json.loads((data / "manifest.json").read_text())["image_shape"]
        get_family("dae").build(sl, c, h).load_state_dict(ck["model"])
    rec.check("checkpoint written and loads on CPU", ok_ckpt)
    rec.update(summary=f"backend {w.get('backend')}, world size {w.get('world_size')}, "
                       f"DDP {'used' if wrapped else 'NOT used'}, {rec.data['seconds']} s")
    rec.raise_failed()


def step_ddp_worker(a, rec: Record) -> None:
    import torch.distributed as dist
    from torch.nn import parallel

    wrapped: list[dict] = []

    class RecordingDDP(parallel.DistributedDataParallel):
        """train.py's DDP wrapper, noting that it was built and over which process group."""

        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            wrapped.append({"device_ids": [str(d) for d in (self.device_ids or [])],
                            "backend": dist.get_backend(self.process_group)})

    parallel.DistributedDataParallel = RecordingDDP  # train_phase imports it from torch.nn.parallel when it runs
    from daebench import cli, compute

    argv = json.loads((Path(a.work) / "argv.json").read_text())
    info = {"rank_env": {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}}
    orig = compute.init_distributed

    def init_and_note(device):
        out = orig(device)
        if dist.is_initialized():
            info.update(backend=dist.get_backend(), world_size=dist.get_world_size())
        return out

    compute.init_distributed = init_and_note  # train.py calls it as compute_mod.init_distributed
    rc = cli.main(argv)
    info.update(ddp=wrapped, cli_rc=rc)
    (Path(a.out) / "worker.json").write_text(json.dumps({**info, "status": "ok"}, indent=2))
    rec.update(**info)


WORKERS = {"smoke_dag": step_smoke_dag, "train_families": step_train_families, "preset_timing": step_preset_timing,
           "ddp": step_ddp, "ddp_worker": step_ddp_worker}


def run_worker(a) -> int:
    sys.path.insert(0, str(HERE))
    out = Path(a.out)
    rec = Record(out / f"{a.step}.json", a.step, a.cpu)
    try:
        if a.step in (a.inject_failure or "").split(","):
            raise RuntimeError(f"injected failure in step {a.step} (--inject-failure)")
        WORKERS[a.step](a, rec)
        rec.update(status="ok")
        return 0
    except BaseException as exc:  # noqa: BLE001 - recorded in the step's JSON, then the exit code says it
        rec.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:4000],
                   traceback=_tail(traceback.format_exc(), 40))
        traceback.print_exc()
        if a.step == "ddp_worker":
            (out / "worker.json").write_text(json.dumps({"status": "failed", "error": rec.data["error"]}))
        return 1


# ------------------------------------------------------------------------------------------------- the driver

def _missing(python: str) -> list[str]:
    code = ("import importlib.util, json, sys; "
            f"print(json.dumps([m for m in {sorted(NEEDED)!r} if importlib.util.find_spec(m) is None]))")
    proc = _run([python, "-c", code], timeout=60)
    if proc.returncode:
        raise RuntimeError(f"{python} cannot run: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def install(a, rec: Record) -> str:
    """The Python the later steps run with: this one if it has every needed module, else a venv over this
    Python's packages (its torch stays) with the carried wheels installed offline."""
    venv = Path(a.venv)
    vpy = venv / "bin" / "python"
    missing = _missing(sys.executable)
    rec.update(python=sys.executable, missing_here=missing)
    if not missing and a.install != "always":
        rec.update(summary="everything importable already; nothing installed", installed=[])
        return sys.executable
    if vpy.exists() and not _missing(str(vpy)) and a.install != "always":
        rec.update(summary=f"reusing {venv}", installed=[])
        return str(vpy)
    wheels = sorted(Path(a.wheels).glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"missing {missing} and no wheels in {a.wheels}/: run benchmarks/device_wheels.sh where "
                           "PyPI is reachable and carry .whl (run tool: carry ['.whl'])")
    t0 = time.time()
    proc = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    pip = [str(vpy), "-m", "pip"]
    if proc.returncode:  # no ensurepip: a venv without pip, driven by this Python's pip
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
        pip = [sys.executable, "-m", "pip", "--python", str(vpy)]
    # resolved against the machine's packages; what is missing (or too old) comes from the carried wheels only
    cmd = pip + ["install", "--no-index", "--find-links", str(a.wheels), "--disable-pip-version-check",
                 *sorted(set(NEEDED.values()))]
    proc = _run(cmd)
    (Path(a.out) / "install_pip.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"pip install from {a.wheels} failed:\n{_tail(proc.stdout + proc.stderr, 25)}")
    done = re.findall(r"^Successfully installed (.*)$", proc.stdout, re.MULTILINE)
    still = _missing(str(vpy))
    rec.update(venv=str(venv), wheels_carried=len(wheels), installed=done[0].split() if done else [],
               seconds=round(time.time() - t0, 1), missing_after=still)
    if still:
        raise RuntimeError(f"still missing after the install: {still}")
    rec.update(summary=f"{len(rec.data['installed'])} packages into {venv} in {rec.data['seconds']} s")
    return str(vpy)


def _run_step(a, name: str, python: str, timeout: float, env: dict) -> dict:
    out = Path(a.out)
    cmd = [python, str(Path(__file__).resolve()), "--step", name, "--out", str(out), "--work", a.work,
           "--deadline", str(time.time() + timeout - 3)] + (["--cpu"] if a.cpu else [])
    if a.inject_failure:
        cmd += ["--inject-failure", a.inject_failure]
    t0 = time.time()
    timed_out = False
    with open(out / f"{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:  # the whole process group: snakemake's jobs, torchrun's worker
            timed_out = True
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = proc.returncode
    path = out / f"{name}.json"
    res = json.loads(path.read_text()) if path.exists() else {"step": name, "checks": []}
    res["seconds"] = round(time.time() - t0, 1)
    res["cap_s"] = round(timeout, 1)
    if timed_out:
        res.update(status="failed", error=f"timed out after {timeout:.0f} s (the step's time cap)")
    elif rc != 0 and res.get("status") != "failed":
        res.update(status="failed", error=f"exit code {rc}")
    if res.get("status") == "failed" and "traceback" not in res:
        res["traceback"] = _tail((out / f"{name}.log").read_text(errors="replace"), 30)
    path.write_text(json.dumps(res, indent=2, default=_jsonable) + "\n")
    return res


def _machine() -> dict:
    info = {"python": sys.version.split()[0], "cpu_count": os.cpu_count(), "host": os.uname().nodename}
    if shutil.which("nvidia-smi"):
        proc = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
        info["nvidia_smi"] = proc.stdout.strip()
    return info


def driver(a) -> int:
    start = time.time()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    a.work = a.work or tempfile.mkdtemp(prefix="daebench-device-check-")
    Path(a.work).mkdir(parents=True, exist_ok=True)
    steps = [s for s in STEPS if s in a.steps.split(",")]
    unknown = sorted(set(a.steps.split(",")) - set(STEPS))
    if unknown:
        raise SystemExit(f"unknown step(s) {unknown}; known: {', '.join(STEPS)}")
    caps = {s: STEPS[s][1 if a.cpu else 0] * a.time_scale for s in steps}
    deadline = start + sum(caps.values())
    summary = {"schema": SCHEMA_VERSION, "mode": "cpu" if a.cpu else "cuda", "machine": _machine(),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget_s": round(sum(caps.values()), 1),
               "work": a.work, "steps": {}}
    python = sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(HERE)] + [p for p in
                                        env.get("PYTHONPATH", "").split(os.pathsep) if p])
    for i, name in enumerate(steps):
        # this step's cap plus whatever the earlier steps left unused
        timeout = deadline - time.time() - sum(caps[s] for s in steps[i + 1:])
        print(f"\n=== {name} (cap {timeout:.0f} s) ===", flush=True)
        if name == "install":
            rec = Record(out / "install.json", "install", a.cpu)
            t0 = time.time()
            try:
                if "install" in (a.inject_failure or "").split(","):
                    raise RuntimeError("injected failure in step install (--inject-failure)")
                python = install(a, rec)
                rec.update(status="ok")
            except Exception as exc:  # noqa: BLE001 - a failed install is recorded; the next steps still run
                rec.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:4000],
                           traceback=_tail(traceback.format_exc(), 30))
                traceback.print_exc()
            rec.update(seconds=round(time.time() - t0, 1), cap_s=round(timeout, 1))
            if python != sys.executable:  # Snakemake's jobs run `python -m daebench`: the venv's
                env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
            res = rec.data
        else:
            res = _run_step(a, name, python, timeout, env)
        summary["steps"][name] = {k: res.get(k) for k in ("status", "seconds", "cap_s", "summary", "error")}
        print(f"--- {name}: {res.get('status')} in {res.get('seconds')} s"
              + (f": {res.get('error')}" if res.get("status") != "ok" else ""), flush=True)
    summary["seconds"] = round(time.time() - start, 1)
    summary["ok"] = all(s["status"] == "ok" for s in summary["steps"].values())
    (out / "device_check.json").write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n")
    print_table(summary)
    return 0 if summary["ok"] else 1


def print_table(summary: dict) -> None:
    print(f"\ndevice check ({summary['mode']}, {summary['machine'].get('nvidia_smi') or 'no GPU'}): "
          f"{summary['seconds']} s of a {summary['budget_s']} s budget -> {'PASS' if summary['ok'] else 'FAIL'}")
    rows = [(n, s["status"], f"{s['seconds']}", f"{s['cap_s']}",
             (s.get("summary") or "") if s["status"] == "ok" else (s.get("error") or "").splitlines()[0][:160])
            for n, s in summary["steps"].items()]
    head = ("step", "status", "s", "cap s", "figures / error")
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(4)]
    print("  ".join(h.ljust(w[i]) if i < 4 else h for i, h in enumerate(head)))
    print("  ".join("-" * x for x in w) + "  " + "-" * 15)
    for r in rows:
        print("  ".join(str(c).ljust(w[i]) if i < 4 else str(c) for i, c in enumerate(r)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="the same steps at tiny sizes on CPU (< 90 s)")
    p.add_argument("--out", default=os.environ.get("OUT") or "device_check_out", help="where the JSON goes ($OUT)")
    p.add_argument("--work", default=None, help="scratch directory (projects, checkpoints); default: a temp dir")
    p.add_argument("--wheels", default=str(REPO / ".whl"), help="the carried wheels (benchmarks/device_wheels.sh)")
    p.add_argument("--venv", default=os.path.join(tempfile.gettempdir(), "daebench-device-venv"),
                   help="venv the wheels are installed into when something is missing")
    p.add_argument("--install", choices=("auto", "always"), default="auto",
                   help="auto: install only if a needed module is missing")
    p.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of the steps, run in order")
    p.add_argument("--time-scale", type=float, default=1.0, help="multiply every step's time cap (slow machines)")
    p.add_argument("--inject-failure", default=None, metavar="STEPS",
                   help="comma-separated steps made to fail at their start (tests the isolation of steps)")
    p.add_argument("--step", default=None, help=argparse.SUPPRESS)  # internal: run one step in this process
    p.add_argument("--deadline", type=float, default=math.inf, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.step:
        return run_worker(a)
    return driver(a)


if __name__ == "__main__":
    sys.exit(main())
