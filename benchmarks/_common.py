"""Shared helpers of the benchmark scripts: configuration, devices, timing, FLOP counting, the
matmul peak, diffusers reference models, tables and JSON output. Not a public API."""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from daebench.checkpoint import resolve_device
from daebench.config import deep_update

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "params.schema.yaml"

# The "paper-like" size used when no --configfile is given: CIFAR-10 shapes (32x32x3), a DDPM-style
# U-Net at a third of DDPM's width (64 instead of 128 channels) so that a 2-core CPU can time it.
PAPER_OVERRIDES = {
    "dataset": "cifar10",
    "nets": {
        "z_dim": 512,
        "decoder": {"model_channels": 64, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 2,
                    "attention_resolutions": [16], "dropout": 0.1},
        "encoder": {"model_channels": 64, "channel_mult": [1, 2, 4, 4], "num_res_blocks": 1,
                    "attention_resolutions": []},
        "endpoint": {"model_channels": 64},
        "corrector": {"model_channels": 64, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 2,
                      "attention_resolutions": [], "dropout": 0.0},
    },
}


# --- arguments, devices, environment ---------------------------------------------------------------

def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: all cores, os.cpu_count(); 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny mode for tests: few iterations, small batches")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="write machine-readable results here")
    return p


def setup(args) -> torch.device:
    """Fix the thread count (--quick: 1, robust on a loaded machine) and the seed; return the device."""
    torch.set_num_threads(max(1, args.threads or (1 if args.quick else os.cpu_count() or 1)))
    torch.manual_seed(0)
    return resolve_device(args.device, setting="--device")


def loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return []


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    env = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "torch": torch.__version__,
           "device": str(device), "threads": torch.get_num_threads(), "cpu": cpu_name(),
           "cpu_count": os.cpu_count(), "loadavg_start": loadavg()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        env["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    try:
        import diffusers
        env["diffusers"] = diffusers.__version__
    except ImportError:  # pragma: no cover
        env["diffusers"] = None
    return env


def print_environment(env: dict) -> None:
    extra = f", GPU {env['gpu']}" if "gpu" in env else ""
    print(f"# {env['date']}  torch {env['torch']}  diffusers {env.get('diffusers')}  device {env['device']}{extra}")
    print(f"# CPU {env['cpu']} ({env['cpu_count']} cores), torch threads {env['threads']}, "
          f"load average {env['loadavg_start']}")


# --- configuration ---------------------------------------------------------------------------------

def load_config(configfile: Path | None = None, overrides: dict | None = None) -> dict:
    """params.yaml, then ``configfile`` (a preset) or ``overrides`` merged over it, validated with the
    workflow's schema (defaults filled), as the workflow sees it."""
    from daebench.config import validate

    cfg = yaml.safe_load((REPO / "params.yaml").read_text())
    if configfile is not None:
        deep_update(cfg, yaml.safe_load(Path(configfile).read_text()) or {})
    elif overrides:
        deep_update(cfg, overrides)
    return validate(cfg, SCHEMA, local_data=False)  # networks only: no dataset is read


def image_shape(cfg: dict) -> tuple[int, int]:
    """(image size, channels) of the configured dataset, as prepare_data writes it."""
    from daebench.data.registry import DATASETS

    info = DATASETS[cfg["dataset"]]
    return info.default_image_size, info.channels


def train_slice(cfg: dict, method: str, upto: int | None = None) -> dict:
    """The config slice a training job of ``method`` receives (workflow/rules/common.smk train_slice)."""
    from daebench.config import nets_keys

    core = {k: v for k, v in cfg["methods"][method].items() if k != "label"}
    if upto is not None:
        core["phases"] = core["phases"][: upto + 1]
    out = {"dataset": cfg["dataset"], "data": cfg["data"], "method": core,
           "nets": {k: cfg["nets"][k] for k in nets_keys(core)}, "train": cfg["train"]}
    if "prior" in core:
        out["prior"] = train_slice(cfg, core["prior"])
    return out


def first_method(cfg: dict, family: str, prefer: str | None = None) -> str | None:
    """``prefer`` if the config defines it with this family, else the first method of the family."""
    methods = cfg["methods"]
    if prefer in methods and methods[prefer]["family"] == family:
        return prefer
    return next((n for n, m in methods.items() if m["family"] == family), None)


# --- timing ----------------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: dict[str, Callable[[], object]], device: torch.device, *, warmup: int, iters: int,
                     min_time: float = 0.0) -> dict[str, list[float]]:
    """Seconds per call of each function. Warm-up calls are not timed; then ``iters`` rounds (more, until
    every function has ``min_time`` seconds of samples) call every function once, in an order rotated
    each round, so that load from other processes hits all of them alike."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    sync(device)
    out: dict[str, list[float]] = {n: [] for n in names}
    r = 0
    while r < iters or (min_time > 0 and min(sum(v) for v in out.values()) < min_time and r < 20 * iters):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync(device)
            t0 = time.perf_counter()
            fns[name]()
            sync(device)
            out[name].append(time.perf_counter() - t0)
        r += 1
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> float:
    """Relative interquartile range of timings (0.1 = the middle half lies within +-5 %)."""
    if len(xs) < 4:
        return (max(xs) - min(xs)) / median(xs)
    q = statistics.quantiles(xs, n=4)
    return (q[2] - q[0]) / median(xs)


# --- FLOPs and the matmul peak --------------------------------------------------------------------

class _FlatTracker:
    """Stands in for FlopCounterMode's ModuleTracker: every FLOP goes to "Global". The module tracker's
    hooks break torch.autograd.grad inside the counted code (ScoreVAE's encoder score)."""
    parents = frozenset({"Global"})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (forward and, if fn runs it, backward) by torch's FlopCounterMode:
    matmuls, convolutions and attention (2 FLOPs per multiply-add); elementwise ops are not counted."""
    fc = FlopCounterMode(display=False)
    fc.mod_tracker = _FlatTracker()
    with fc:
        fn()
    return int(fc.get_total_flops())


def matmul_peak(device: torch.device, quick: bool = False) -> dict[str, float]:
    """Achieved FLOP/s of a large square matmul, the practical limit of dense compute on ``device``:
    fp32 on CPU; bf16, fp32 (TF32 off) and TF32 on a GPU. Best of several timed runs after warm-up."""
    def run(n: int, dtype: torch.dtype, reps: int) -> float:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        c = torch.empty(n, n, device=device, dtype=dtype)
        for _ in range(2):
            torch.mm(a, b, out=c)
        sync(device)
        best = math.inf
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            sync(device)
            best = min(best, time.perf_counter() - t0)
        return 2 * n**3 / best

    if device.type == "cpu":
        return {"fp32": run(512 if quick else 2048, torch.float32, 3 if quick else 10)}
    n, reps = (2048, 5) if quick else (8192, 20)
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        fp32 = run(n, torch.float32, reps)
        torch.backends.cuda.matmul.allow_tf32 = True
        tf32 = run(n, torch.float32, reps)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return {"bf16": run(n, torch.bfloat16, reps), "fp32": fp32, "tf32": tf32}


def training_peak(peak: dict[str, float], device: torch.device, amp: str = "none") -> tuple[str, float]:
    """The peak a training step is measured against: fp32 on CPU; on a GPU bf16 under bf16 autocast,
    else TF32 when cuDNN may use it for convolutions, else strict fp32."""
    if device.type == "cuda" and amp == "bf16":
        return "bf16", peak["bf16"]
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32", peak["tf32"]
    return "fp32", peak["fp32"]


# --- models ---------------------------------------------------------------------------------------

def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _groups(ch: int) -> int:
    from daebench.nets.layers import group_norm

    return group_norm(ch).num_groups


def diffusers_config(image_size: int, channels: int, decoder: dict, widths: list[int] | None = None) -> dict:
    """A diffusers ``UNet2DModel`` config mirroring our decoder (nets.decoder): the same levels, ResBlocks
    per level, attention resolutions (one head), scale-shift time conditioning (ADM's AdaGN) and dropout;
    ``widths`` replaces the per-level channel counts."""
    ch, mult = decoder["model_channels"], list(decoder["channel_mult"])
    widths = widths or [m * ch for m in mult]
    res = [image_size // 2**i for i in range(len(mult))]
    attn = set(decoder.get("attention_resolutions", []))
    groups = min(_groups(w) for w in [m * ch for m in mult])
    return {"sample_size": image_size, "in_channels": channels, "out_channels": channels,
            "block_out_channels": tuple(widths), "layers_per_block": decoder["num_res_blocks"],
            "down_block_types": tuple("AttnDownBlock2D" if r in attn else "DownBlock2D" for r in res),
            "up_block_types": tuple("AttnUpBlock2D" if r in attn else "UpBlock2D" for r in reversed(res)),
            "norm_num_groups": groups, "attention_head_dim": None, "resnet_time_scale_shift": "scale_shift",
            "dropout": float(decoder.get("dropout", 0.0)), "add_attention": True}


def diffusers_unet(cfg: dict):
    from diffusers import UNet2DModel

    return UNet2DModel(**cfg)


def diffusers_size(cfg: dict) -> tuple[int, int]:
    """(parameters, forward FLOPs per image) of a UNet2DModel config, counted on the meta device."""
    with torch.device("meta"):
        m = diffusers_unet(cfg)
        x = torch.zeros(1, cfg["in_channels"], cfg["sample_size"], cfg["sample_size"])
        flops = count_flops(lambda: m(x, torch.zeros(1)).sample)
    return num_params(m), flops


def match_diffusers(image_size: int, channels: int, decoder: dict, params: int, flops: int,
                    coarse: bool = False) -> tuple[dict, dict]:
    """A UNet2DModel config like ``diffusers_config`` whose parameter count and forward FLOPs per image are
    both close to (``params``, ``flops``): a grid over two width knobs, a factor on every level and an extra
    factor on the deepest level (where parameters are cheap in FLOPs), minimising the worse of the two
    relative errors (``coarse``: a sparser grid, for --quick). Returns (config, {"param_ratio", "flop_ratio"})."""
    ch, mult = decoder["model_channels"], list(decoder["channel_mult"])
    base = [m * ch for m in mult]
    q = max(8, min(_groups(w) for w in base))
    best, seen = None, set()
    for s in ((1.0, 1.25, 1.5) if coarse else [1 + i / 16 for i in range(17)]):          # 1.0 ... 2.0
        for d in ((1.0, 2.0) if coarse else (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)):
            widths = [max(q, round(w * s / q) * q) for w in base]
            widths[-1] = max(q, round(base[-1] * s * d / q) * q)
            if tuple(widths) in seen:
                continue
            seen.add(tuple(widths))
            cfg = diffusers_config(image_size, channels, decoder, widths)
            p, f = diffusers_size(cfg)
            err = max(abs(p / params - 1), abs(f / flops - 1))
            if best is None or err < best[0]:
                best = (err, cfg, {"param_ratio": p / params, "flop_ratio": f / flops})
    return best[1], best[2]


# --- output ---------------------------------------------------------------------------------------

def fmt(v, digits: int = 3) -> str:
    if isinstance(v, float):
        if v == 0 or math.isnan(v):
            return f"{v:g}"
        mag = abs(v)
        if mag >= 1e9 or mag < 1e-3:
            return f"{v:.{digits}g}"
        return f"{v:,.{max(0, digits - 1 - math.floor(math.log10(mag)))}f}"
    return str(v)


def print_table(rows: list[dict], columns: list[tuple[str, str]], title: str | None = None) -> None:
    """Rows of dicts as an aligned text table; ``columns`` are (key, header)."""
    if title:
        print(f"\n{title}")
    cells = [[h for _, h in columns]] + [[fmt(r.get(k, "")) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for j, row in enumerate(cells):
        print("  ".join(c.rjust(w) if j and i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def si(v: float, unit: str = "") -> str:
    for div, p in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g} {p}{unit}"
    return f"{v:.3g} {unit}"


def write_json(path: Path | None, obj: dict) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    print(f"\nwrote {path}")
