"""Training throughput of every method family, and our networks against a diffusers UNet2DModel.

One training step = the family's loss as the package builds it (methods.<family>.phase_loss on the
model from methods.<family>.build, frozen sub-networks as train.py freezes them), backward, one Adam
step. EMA, data loading and logging are not included. Timed at (a) params.yaml's sizes and (b) a
paper-like size (a --configfile preset, else 32x32x3 with 64-channel nets), next to the machine's
measured matmul FLOP/s (the limit) and diffusers UNet2DModels of matched size trained on the same
batch with the same optimizer and DDPM's eps-prediction MSE. See benchmarks/README.md.
"""
from __future__ import annotations

import copy
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# OpenMP's wait policy is left to the environment, as the training jobs have it: on an idle machine passive
# waiting made every step ~1.6x slower (2 threads: DAE step 78 ms spinning, 129 ms passive); on a CPU other
# processes load, spinning threads can be far slower instead (load 8: 1.81 s spinning, 0.31 s passive). Time
# the other with OMP_WAIT_POLICY=PASSIVE (GNU OpenMP reads it once, when torch loads); the JSON records it.
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C

PRESET = C.REPO / "workflow" / "presets" / "cifar10_32.yaml"

# (case, family, preferred method, phase, what it trains)
FAMILY_CASES = [
    ("dae_phase1", "dae", "dae_2phase_sc4", "phase1", "DAE phase 1 (t = 1, v-pred): encoder + U-Net"),
    ("dae_phase2", "dae", "dae_2phase_sc4", "phase2", "DAE phase 2 (t ~ U, v-pred, SC-4): encoder + U-Net"),
    ("dae_eps", "dae", "dae_baseline", "main", "DAE eps-pred, linear-beta (DiffAE): encoder + U-Net"),
    ("dbae", "dbae", "dbae", "main", "DBAE: encoder + endpoint decoder + bridge U-Net"),
    ("scorevae_encoder", "scorevae", "scorevae", "encoder", "ScoreVAE encoder phase (autograd score, frozen prior)"),
    ("scorevae_corrector", "scorevae", "scorevae", "corrector", "ScoreVAE+ corrector phase (prior, encoder frozen)"),
    ("diffdec", "diffdec", "diffdec", "main", "DiffDecoder: encoder + conditional U-Net"),
    ("uncond", "uncond", "score_prior", "main", "unconditional VP prior: bare U-Net"),
    ("vae", "vae", "vae", "main", "beta-VAE: encoder + mirror decoder"),
]


@dataclass
class Case:
    name: str
    what: str
    method: str
    batch: int
    step: object
    params: int
    trainable: int
    fwd_flops_per_image: int | None = None
    flops_per_step: int = 0
    extra: dict = field(default_factory=dict)


def _adam(params, lr):
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))


# How jobs run (params.yaml `compute`, as train.py applies it): on a GPU bf16 autocast, channels-last
# and TF32 by default; on CPU all off. Set by main() from the config; ours and diffusers alike.
RUN = {"amp": None, "channels_last": False}


def _autocast(device):
    return torch.autocast(device.type, dtype=RUN["amp"], enabled=RUN["amp"] is not None)


def _prepare(model, x, device):
    if RUN["channels_last"]:
        model.to(memory_format=torch.channels_last)
        if isinstance(x, torch.Tensor) and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
    return model, x


def _make_step(model, loss_fn, batch, opts, stage_fns=None):
    gen = torch.Generator().manual_seed(1)
    fns = stage_fns or [loss_fn]
    device = next(model.parameters()).device

    def step():
        for fn, opt in zip(fns, opts):
            with _autocast(device):
                terms = fn(model, batch, gen)
            loss = sum(v.float().mean() for v in terms.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return step


def family_case(cfg: dict, case: str, family: str, prefer: str, phase_name: str, what: str, device, x):
    from daebench.methods import get_family
    from daebench.train import as_stages

    method = C.first_method(cfg, family, prefer)
    if method is None:
        return None
    phases = cfg["methods"][method]["phases"]
    names = [p["name"] for p in phases]
    if phase_name in names:
        idx = names.index(phase_name)
    elif family == "scorevae":
        key = [p.get("train") for p in phases]
        if phase_name not in key:
            return None
        idx = key.index(phase_name)
    else:
        idx = 0
    sl = C.train_slice(cfg, method, idx)
    fam = get_family(family)
    h, c = x.shape[-1], x.shape[1]
    torch.manual_seed(0)
    model, x = _prepare(fam.build(sl, c, h).to(device), x, device)
    loss = fam.phase_loss(sl["method"], sl["method"]["phases"][idx])
    _, trainable, _ = as_stages(loss)
    model.train()
    for name, m in model.named_children():  # as train.train_phase freezes the networks a phase does not train
        if trainable is not None and name not in trainable:
            m.requires_grad_(False).eval()
    params = [q for q in model.parameters() if q.requires_grad]
    opt = _adam(params, cfg["train"]["lr"])
    c_ = Case(case, what, f"{method}/{names[idx]}", x.shape[0], _make_step(model, loss, x, [opt]),
              C.num_params(model), sum(q.numel() for q in params))
    c_.extra["model"] = model
    return c_


def latent_prior_case(cfg: dict, device, batch: int):
    from daebench.methods import latent_prior

    p = cfg["dbae"]["prior"]
    torch.manual_seed(0)
    model = latent_prior.build({"prior": p, "z_dim": cfg["nets"]["z_dim"]}).to(device).train()
    u = torch.randn(batch, cfg["nets"]["z_dim"], device=device)
    opt = _adam(model.parameters(), p["lr"])
    return Case("latent_prior", "DiffAE/DBAE latent DDIM prior (MLP skip net)", "dbae.prior", batch,
                _make_step(model, latent_prior.loss(), u, [opt]), C.num_params(model), C.num_params(model))


def ddvi_case(cfg: dict, device, batch: int, shape: tuple[int, int, int]):
    """DDVI on flat vectors of images of ``shape`` (c, h, w): the image shape builds ddvi.nets.arch cnn."""
    from daebench import ddvi_study
    from daebench.config import ddvi_method

    study = cfg["ddvi"]
    name = C.first_method({"methods": study["methods"]}, "ddvi", "ddvi")
    if name is None:
        return None
    prior = next(iter(study["priors"]))
    sl = {"setting": "unsup", "dataset": cfg["dataset"], "likelihood": "bce",
          "method": ddvi_method(study, name, "unsup"), "nets": study["nets"],
          "train": {**study["train"], "seed": 0}, "prior": {"name": prior, "params": study["priors"][prior]},
          "kde": study["kde"]}
    family, model, ctx = ddvi_study.build(sl, shape)
    dim = shape[0] * shape[1] * shape[2]
    model.to(device).train()
    loss = ddvi_study.DDVILoss(family, sl["method"], ctx)
    children = dict(model.named_children())
    opts = []
    for st in loss.stages:
        mods = [children[m] for m in st.modules] if st.modules else [model]
        opts.append(_adam([q for m in mods for q in m.parameters()], study["train"]["lr"]))
    x = torch.rand(batch, dim, device=device)
    part = torch.full((batch,), -1, dtype=torch.long, device=device)
    return Case("ddvi", f"DDVI ({sl['method'].get('sleep')}, {prior} prior): flat {dim}-d data",
                f"ddvi.{name}/unsup", batch, _make_step(model, None, (x, part), opts, [s.fn for s in loss.stages]),
                C.num_params(model), C.num_params(model))


def diffusers_case(name: str, what: str, dcfg: dict, device, x, lr: float):
    from diffusers import DDPMScheduler

    torch.manual_seed(0)
    model, x = _prepare(C.diffusers_unet(dcfg).to(device).train(), x, device)
    sched = DDPMScheduler(num_train_timesteps=1000)
    sched.alphas_cumprod = sched.alphas_cumprod.to(device)
    opt = _adam(model.parameters(), lr)
    gen = torch.Generator().manual_seed(1)

    def step():
        # diffusers' train_unconditional recipe: t ~ U{0..999}, add_noise, eps-prediction MSE
        b = x.shape[0]
        eps = torch.randn(x.shape, generator=gen).to(device)
        t = torch.randint(0, 1000, (b,), generator=gen).to(device)
        with _autocast(device):
            pred = model(sched.add_noise(x, eps, t), t).sample
        loss = torch.nn.functional.mse_loss(pred.float(), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    _, f = C.diffusers_size(dcfg)
    c_ = Case(name, what, "diffusers.UNet2DModel", x.shape[0], step, C.num_params(model), C.num_params(model), f)
    c_.extra["config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in dcfg.items()}
    return c_


def forward_flops_per_image(case: Case, device, h: int, c: int, z_dim: int) -> int:
    """Forward FLOPs of one image through the networks of a DAE-like model (encoder + U-Net) or a bare U-Net."""
    model = case.extra["model"]
    x = torch.zeros(1, c, h, h, device=device)
    t = torch.full((1,), 0.5, device=device)
    was = model.training
    model.eval()
    with torch.no_grad():
        if hasattr(model, "encoder") and hasattr(model, "decoder"):
            f = C.count_flops(lambda: model.decoder(x, t, model.encoder(x)))
        else:
            f = C.count_flops(lambda: model(x, t))
    model.train(was)
    return f


def onednn_sgemm(device, quick: bool = False) -> dict[str, float] | None:
    """On CPU, FLOP/s of the same square fp32 matmul through oneDNN (the library torch's convolutions run on),
    best of several, beside matmul_peak's torch.mm (MKL). Both are the machine's "matmul rate"; they differ
    where MKL does not pick its best kernels, e.g. AMD CPUs, where MKL's sgemm runs an AVX2 path at about half
    of what the AVX-512 oneDNN kernels (and so our convolutions) reach. None off CPU or without oneDNN."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    n, reps = (512, 3) if quick else (2048, 10)
    a, b = torch.randn(n, n).to_mkldnn(), torch.randn(n, n).to_mkldnn()
    for _ in range(2):
        torch._C._nn.mkldnn_linear(a, b, None)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch._C._nn.mkldnn_linear(a, b, None)
        best = min(best, time.perf_counter() - t0)
    return {"fp32_onednn": 2 * n**3 / best}


def matmul_fns(device, quick: bool) -> dict:
    """Square fp32 matmuls timed inside the interleaved rounds (CPU), so that the step / matmul ratio is
    measured under the same load: torch.mm (the reference of MFU) and, where present, oneDNN's sgemm."""
    if device.type != "cpu":
        return {}
    n = 512 if quick else 2048
    a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    fns = {"matmul_torch_mm": (lambda: torch.mm(a, b, out=out), 2 * n**3)}
    if torch.backends.mkldnn.is_available():
        am, bm = a.to_mkldnn(), b.to_mkldnn()
        fns["matmul_onednn"] = (lambda: torch._C._nn.mkldnn_linear(am, bm, None), 2 * n**3)
    return fns


def run_settings(cfg: dict, device) -> dict:
    """The compute settings a training job on ``device`` uses (daebench.compute.effective), applied here."""
    try:
        from daebench import compute as compute_mod
    except ImportError:  # a package without GPU fast paths: plain fp32
        return {"amp": "none", "tf32": False, "channels_last": False}
    eff = compute_mod.effective(cfg.get("compute") or compute_mod.DEFAULTS, device)
    if device.type == "cuda":
        compute_mod.set_tf32(eff["tf32"])
    RUN["amp"] = compute_mod.AMP_DTYPES.get(eff["amp"])
    RUN["channels_last"] = eff["channels_last"]
    return {k: eff[k] for k in ("amp", "tf32", "channels_last")}


def shrink(cfg: dict) -> dict:
    """--quick: every network at 8-16 channels (same structure), so the script runs in seconds."""
    cfg = copy.deepcopy(cfg)
    for k in ("decoder", "encoder", "corrector", "endpoint"):
        if k in cfg["nets"]:
            cfg["nets"][k]["model_channels"] = min(cfg["nets"][k]["model_channels"], 16)
    cfg["nets"]["z_dim"] = min(cfg["nets"]["z_dim"], 16)
    cfg["dbae"]["prior"]["hidden"] = min(cfg["dbae"]["prior"]["hidden"], 32)
    return cfg


def run_size(label: str, cfg: dict, device, batch: int, args, peak_name: str, peak: float,
             peak_onednn: float | None = None) -> dict:
    h, c = C.image_shape(cfg)
    quick = args.quick
    if quick:
        cfg = shrink(cfg)
    torch.manual_seed(0)
    x = (torch.rand(batch, c, h, h) * 2 - 1).to(device)
    lr = cfg["train"]["lr"]
    print(f"\n=== {label}: dataset {cfg['dataset']} ({h}x{h}x{c}), batch {batch}, decoder "
          f"{cfg['nets']['decoder']['model_channels']} ch x {cfg['nets']['decoder']['channel_mult']}, "
          f"{cfg['nets']['decoder']['num_res_blocks']} ResBlocks/level, attention at "
          f"{cfg['nets']['decoder']['attention_resolutions']}, encoder {cfg['nets']['encoder']['model_channels']} ch x "
          f"{cfg['nets']['encoder']['channel_mult']}, z {cfg['nets']['z_dim']} ===")
    only = set(args.only.split(",")) if args.only else None
    cases: list[Case] = []
    for spec in FAMILY_CASES:
        cs = family_case(cfg, *spec, device, x) if only is None or spec[0] in only else None
        if cs is not None:
            cases.append(cs)
    if only is None or "latent_prior" in only:
        cases.append(latent_prior_case(cfg, device, batch if quick else cfg["dbae"]["prior"]["batch_size"]))
    ddvi = (ddvi_case(cfg, device, batch if quick else cfg["ddvi"]["train"]["batch_size"], (c, h, h))
            if only is None or "ddvi" in only else None)
    if ddvi is not None:
        cases.append(ddvi)
    by = {cs.name: cs for cs in cases}

    # our networks against diffusers at matched size
    dec = cfg["nets"]["decoder"]
    comparisons = []
    if "dae_eps" in by:
        ours = by["dae_eps"]
        ours.fwd_flops_per_image = forward_flops_per_image(ours, device, h, c, cfg["nets"]["z_dim"])
        dcfg, _ = C.match_diffusers(h, c, dec, ours.params, ours.fwd_flops_per_image, coarse=quick)
        theirs = diffusers_case("diffusers_matched_dae", "diffusers UNet2DModel matched to encoder + U-Net",
                                dcfg, device, x, lr)
        cases.append(theirs)
        comparisons.append(("dae_vs_diffusers", ("our DAE step (encoder + U-Net, eps-pred) vs diffusers "
                                                 "UNet2DModel of the same total parameters and FLOPs/image"),
                            ours, theirs))
    if "uncond" in by:
        ours = by["uncond"]
        ours.fwd_flops_per_image = forward_flops_per_image(ours, device, h, c, 0)
        theirs = diffusers_case("diffusers_mirror_unet", "diffusers UNet2DModel, our decoder's config",
                                C.diffusers_config(h, c, dec), device, x, lr)
        cases.append(theirs)
        comparisons.append(("unet_vs_diffusers", ("bare U-Net vs diffusers UNet2DModel of the same config "
                                                  "(eps-pred MSE on both)"), ours, theirs))

    for cs in cases:  # one step each under FlopCounterMode (it also warms up)
        cs.flops_per_step = C.count_flops(cs.step)

    # the paper-like size on CPU takes seconds per step: fewer rounds there unless asked (a GPU keeps the others)
    slow = label != "default" and device.type == "cpu"
    warm, iters = (1, 1) if quick else ((args.paper_warmup, args.paper_iters) if slow else (args.warmup, args.iters))
    mm = matmul_fns(device, quick)
    load0 = C.loadavg()
    times = C.time_interleaved({**{cs.name: cs.step for cs in cases}, **{k: f for k, (f, _) in mm.items()}},
                               device, warmup=warm, iters=iters)
    load1 = C.loadavg()
    # the matmuls' median rate in the same rounds: the step / matmul ratio under the same load
    in_rounds = {k: fl / C.median(times[k]) for k, (_, fl) in mm.items()}
    rows = []
    for cs in cases:
        t = C.median(times[cs.name])
        row = {"case": cs.name, "what": cs.what, "method": cs.method, "params": cs.params,
               "trainable_params": cs.trainable, "batch": cs.batch, "step_ms": 1e3 * t,
               "spread": C.spread(times[cs.name]), "images_per_s": cs.batch / t,
               "flops_per_step": cs.flops_per_step, "flops_per_image": cs.flops_per_step / cs.batch,
               "flops_per_s": cs.flops_per_step / t, "mfu": cs.flops_per_step / t / peak,
               "n_timed": len(times[cs.name])}
        if peak_onednn:
            row["mfu_onednn"] = cs.flops_per_step / t / peak_onednn
        for k, v in in_rounds.items():
            row[f"ratio_to_{k}_in_rounds"] = cs.flops_per_step / t / v
        rows.append(row)
    cols = [("case", "case"), ("method", "method/phase"), ("params", "params (M)"), ("batch", "batch"),
            ("step_ms", "step ms"), ("spread", "IQR/med"), ("images_per_s", "images/s"),
            ("gflop_img", "GFLOP/img"), ("gflops", "GFLOP/s"), ("mfu_pct", f"MFU % ({peak_name})")]
    if peak_onednn:
        cols.append(("mfu_onednn_pct", "% oneDNN sgemm"))
    if "matmul_torch_mm" in in_rounds:
        cols.append(("in_rounds_pct", "% torch.mm in rounds"))
    C.print_table([{**r, "params": r["params"] / 1e6, "gflop_img": r["flops_per_image"] / 1e9,
                    "gflops": r["flops_per_s"] / 1e9, "mfu_pct": 100 * r["mfu"],
                    "mfu_onednn_pct": 100 * r.get("mfu_onednn", 0.0),
                    "in_rounds_pct": 100 * r.get("ratio_to_matmul_torch_mm_in_rounds", 0.0)} for r in rows],
                  cols, title=f"training step, {label} size (median of {iters} interleaved steps after {warm} warm-up; "
                              f"load {load0} -> {load1})")
    if in_rounds:
        print("matmuls timed in the same rounds (median): "
              + ", ".join(f"{k[len('matmul_'):]} {C.si(v, 'FLOP/s')}" for k, v in in_rounds.items()))

    # the acceptance pairs again, alone and tightly interleaved, with more iterations
    pair_iters = 1 if quick else (args.paper_compare_iters if slow else args.compare_iters)
    fns = {}
    for _, _, ours, theirs in comparisons:
        fns[ours.name], fns[theirs.name] = ours.step, theirs.step
    load2 = C.loadavg()
    ptimes = C.time_interleaved(fns, device, warmup=1, iters=pair_iters)
    load3 = C.loadavg()
    comp_rows, comp_out = [], []
    for name, what, ours, theirs in comparisons:
        to, tt = C.median(ptimes[ours.name]), C.median(ptimes[theirs.name])
        entry = {"name": name, "what": what, "ratio": tt / to,
                 "param_ratio_diffusers_over_ours": theirs.params / ours.params,
                 "flop_ratio_diffusers_over_ours": theirs.fwd_flops_per_image / ours.fwd_flops_per_image,
                 "loadavg": [load2, load3], "n_timed": pair_iters}
        for side, cs, t in (("ours", ours, to), ("diffusers", theirs, tt)):
            entry[side] = {"case": cs.name, "params": cs.params, "fwd_flops_per_image": cs.fwd_flops_per_image,
                           "flops_per_step": cs.flops_per_step, "images_per_s": cs.batch / t,
                           "step_ms": 1e3 * t, "spread": C.spread(ptimes[cs.name]),
                           "flops_per_s": cs.flops_per_step / t, "mfu": cs.flops_per_step / t / peak}
            if "config" in cs.extra:
                entry[side]["config"] = cs.extra["config"]
            comp_rows.append({"pair": name, "model": cs.name, "params": cs.params / 1e6,
                              "mflop": cs.fwd_flops_per_image / 1e6, "images_per_s": cs.batch / t,
                              "gflops": cs.flops_per_step / t / 1e9, "mfu_pct": 100 * cs.flops_per_step / t / peak,
                              "ratio": tt / to if side == "ours" else ""})
        comp_out.append(entry)
    C.print_table(comp_rows, [("pair", "comparison"), ("model", "model"), ("params", "params (M)"),
                              ("mflop", "fwd MFLOP/img"), ("images_per_s", "images/s"), ("gflops", "GFLOP/s"),
                              ("mfu_pct", "MFU %"), ("ratio", "ours/diffusers")],
                  title=f"ours vs diffusers, {label} size (median of {pair_iters} interleaved steps; load {load2} -> "
                        f"{load3})")
    for e in comp_out:
        if e["name"] == "dae_vs_diffusers":
            print(f"matched diffusers config: block_out_channels {e['diffusers']['config']['block_out_channels']}; "
                  f"params {e['param_ratio_diffusers_over_ours']:.3f}x ours, FLOPs/img "
                  f"{e['flop_ratio_diffusers_over_ours']:.3f}x ours")
    return {"dataset": cfg["dataset"], "image_shape": [c, h, h], "batch_size": batch, "quick": quick,
            "nets": cfg["nets"], "warmup": warm, "iters": iters, "loadavg": [load0, load1],
            "matmul_flops_per_s_in_rounds": in_rounds, "families": rows, "comparisons": comp_out}


def main(argv=None) -> int:
    p = C.base_parser(__doc__.split("\n")[0])
    p.add_argument("--configfile", type=Path, default=None,
                   help=f"preset for the paper-like size (default: {PRESET.relative_to(C.REPO)} if it exists, "
                        "else built-in 32x32x3 with 64-channel nets)")
    p.add_argument("--sizes", default="default,paper", help="comma-separated: default, paper")
    p.add_argument("--batch", type=int, default=None, help="batch at the default size (default: train.batch_size)")
    p.add_argument("--paper-batch", type=int, default=None,
                   help="batch at the paper-like size (default: 4 on CPU, train.batch_size of the preset on GPU)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per case")
    p.add_argument("--iters", type=int, default=10, help="timed interleaved rounds (families table)")
    p.add_argument("--compare-iters", type=int, default=20, help="timed interleaved rounds (ours vs diffusers)")
    p.add_argument("--paper-warmup", type=int, default=1, help="--warmup at the paper-like size on CPU")
    p.add_argument("--paper-iters", type=int, default=3, help="--iters at the paper-like size on CPU")
    p.add_argument("--paper-compare-iters", type=int, default=8, help="--compare-iters at the paper-like size on CPU")
    p.add_argument("--only", default=None, metavar="CASES",
                   help="comma-separated cases to run (e.g. dae_eps,uncond: the two comparisons); default all: "
                        + ",".join([c[0] for c in FAMILY_CASES] + ["latent_prior", "ddvi"]))
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless every ours/diffusers ratio is >= --min-ratio")
    p.add_argument("--min-ratio", type=float, default=1.0)
    args = p.parse_args(argv)
    device = C.setup(args)
    compute = run_settings(C.load_config(), device)
    env = C.environment(device)
    env["compute"] = compute
    env["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    C.print_environment(env)
    peak = C.matmul_peak(device, args.quick)
    peak_name, peak_val = C.training_peak(peak, device, compute.get("amp", "none"))
    peak.update(onednn_sgemm(device, args.quick) or {})
    peak_onednn = peak.get("fp32_onednn") if peak_name == "fp32" else None
    print("matmul peak: " + ", ".join(f"{k} {C.si(v, 'FLOP/s')}" for k, v in peak.items())
          + f"  (MFU below is against {peak_name}" + (", torch.mm; '% oneDNN sgemm' against fp32_onednn)"
                                                      if peak_onednn else ")"))
    out = {"env": env, "peak_flops_per_s": peak, "mfu_reference": peak_name, "sizes": {}}
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for size in sizes:
        if size == "default":
            cfg = C.load_config()
            batch = 4 if args.quick else (args.batch or cfg["train"]["batch_size"])
            out["sizes"]["default"] = run_size("default", cfg, device, batch, args, peak_name, peak_val,
                                             peak_onednn)
            out["sizes"]["default"]["config_source"] = "params.yaml"
        elif size == "paper":
            src = args.configfile or (PRESET if PRESET.exists() else None)
            cfg = C.load_config(src) if src else C.load_config(overrides=C.PAPER_OVERRIDES)
            batch = 2 if args.quick else (args.paper_batch or (cfg["train"]["batch_size"] if device.type == "cuda" else 4))
            out["sizes"]["paper"] = run_size("paper-like", cfg, device, batch, args, peak_name, peak_val,
                                           peak_onednn)
            out["sizes"]["paper"]["config_source"] = str(src) if src else "built-in PAPER_OVERRIDES"
        else:
            raise SystemExit(f"unknown size {size!r}; known: default, paper")
    ratios = {f"{s}/{c['name']}": c["ratio"] for s, r in out["sizes"].items() for c in r["comparisons"]}
    primary = {k: v for k, v in ratios.items() if k.endswith("dae_vs_diffusers")}
    out["acceptance"] = {
        "criterion": f"ours/diffusers images/s >= {args.min_ratio} for the DAE training step (encoder + U-Net) "
                     "against a diffusers UNet2DModel of matched parameters and FLOPs/image, at every size",
        "ratios": ratios, "primary": primary,
        "pass": bool(primary) and all(v >= args.min_ratio for v in primary.values()),
        "pass_all_pairs": bool(ratios) and all(v >= args.min_ratio for v in ratios.values())}
    # the DAE step against the matmul rates (the CPU speed target of issue 15: >= 55 % at the default size)
    mfu = {}
    for size, r in out["sizes"].items():
        for row in r["families"]:
            if row["case"] in ("dae_phase2", "dae_eps"):
                mfu[f"{size}/{row['case']}"] = {k: row[k] for k in row
                                                if k == "mfu" or k == "mfu_onednn" or k.startswith("ratio_to_")}
    out["acceptance"]["dae_step_mfu"] = mfu
    for k, v in mfu.items():
        print(f"{k}: MFU {100 * v['mfu']:.1f} % of {peak_name} (torch.mm)"
              + (f", {100 * v['mfu_onednn']:.1f} % of oneDNN sgemm" if "mfu_onednn" in v else "")
              + "".join(f", {100 * x:.1f} % of {n[len('ratio_to_matmul_'):-len('_in_rounds')]} in the same rounds"
                        for n, x in v.items() if n.startswith("ratio_to_")))
    out["loadavg_end"] = C.loadavg()
    print("\nacceptance (" + out["acceptance"]["criterion"] + "): "
          + ", ".join(f"{k} {v:.3f}x" for k, v in ratios.items())
          + f" -> {'PASS' if out['acceptance']['pass'] else 'FAIL'}"
          + f" (all pairs incl. bare U-Net: {'pass' if out['acceptance']['pass_all_pairs'] else 'fail'})")
    C.write_json(args.json, out)
    return 1 if args.check and not out["acceptance"]["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
