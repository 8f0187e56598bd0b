"""Sampling throughput: the DAE's DDIM sampler and DBAE's bridge sampler at several NFEs.

Both decode a batch from its latent z as the evaluation does (methods.dae.decode: x_T ~ N(0, I), then
DDIM with x0 clipping; methods.dbae.decode: x_T = endpoint decoder(z), then the Karras-step Heun bridge
sampler of diffusion/bridge.py), with the networks of params.yaml (or --configfile) in eval mode.
Weights are freshly initialised: the cost does not depend on them. See benchmarks/README.md.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C


def build(cfg: dict, family: str, prefer: str, device, c: int, h: int):
    from daebench.methods import get_family

    method = C.first_method(cfg, family, prefer)
    if method is None:
        raise SystemExit(f"the config defines no {family} method")
    sl = C.train_slice(cfg, method)
    torch.manual_seed(0)
    fam = get_family(family)
    model = fam.build(sl, c, h).to(device).eval().requires_grad_(False)
    return fam, sl["method"], model, method


def setup(argv, description: str, *, nfe_help: str, batch_help: str, repeats: int):
    """What sampling.py and latent_inference.py share: their options, then device, config (shrunk under
    --quick), the NFE list, batch, repeats, the DAE and DBAE methods with fresh networks, their sampler
    options and a random batch. Returns (args, bundle)."""
    from types import SimpleNamespace

    p = C.base_parser(description)
    p.add_argument("--configfile", type=Path, default=None, help="preset merged over params.yaml (sizes)")
    p.add_argument("--nfe", default="10,20,50,100", help=nfe_help)
    p.add_argument("--batch", type=int, default=32, help=batch_help)
    p.add_argument("--repeats", type=int, default=repeats, help="timed interleaved rounds (median reported)")
    args = p.parse_args(argv)
    device = C.setup(args)
    env = C.environment(device)
    C.print_environment(env)
    cfg = C.load_config(args.configfile)
    h, c = C.image_shape(cfg)
    if args.quick:
        from train_step import shrink
        cfg = shrink(cfg)
    batch = 2 if args.quick else args.batch
    dae, dae_method, dae_model, dae_name = build(cfg, "dae", "dae_baseline", device, c, h)
    dbae, dbae_method, dbae_model, dbae_name = build(cfg, "dbae", "dbae", device, c, h)
    return args, SimpleNamespace(
        device=device, env=env, cfg=cfg, h=h, c=c, batch=batch,
        nfes=[2, 4] if args.quick else [int(n) for n in args.nfe.split(",")],
        repeats=1 if args.quick else args.repeats,
        dae=dae, dae_method=dae_method, dae_model=dae_model, dae_name=dae_name,
        dbae=dbae, dbae_method=dbae_method, dbae_model=dbae_model, dbae_name=dbae_name,
        ddim_opts={"clip_x0": cfg["table4"]["clip_x0"]}, bridge_opts=dict(cfg["dbae"]["sampler"]),
        x=(torch.rand(batch, c, h, h) * 2 - 1).to(device))


def main(argv=None) -> int:
    args, b = setup(argv, __doc__.split("\n")[0], nfe_help="comma-separated network-evaluation budgets",
                     batch_help="images per sampler call", repeats=3)
    device, env, cfg, h, c, nfes, batch, repeats, x = b.device, b.env, b.cfg, b.h, b.c, b.nfes, b.batch, b.repeats, b.x
    with torch.no_grad():
        z_dae, z_dbae = b.dae.encode(b.dae_model, x), b.dbae.encode(b.dbae_model, x)

    def ddim(nfe):
        def run():
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                return b.dae.decode(b.dae_model, b.dae_method, z_dae, nfe, g, b.ddim_opts, shape=x.shape)
        return run

    def bridge(nfe):
        def run():
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                return b.dbae.decode(b.dbae_model, b.dbae_method, z_dbae, nfe, g, b.bridge_opts)
        return run

    # FLOPs of one network evaluation on the batch (the samplers' own arithmetic is elementwise)
    t1 = torch.full((batch,), 0.5, device=device)
    with torch.no_grad():
        f_unet = C.count_flops(lambda: b.dae_model.decoder(x, t1, z_dae))
        f_bridge_net = C.count_flops(lambda: b.dbae_model.decoder(torch.cat([x, x], 1), t1, z_dbae))
        f_endpoint = C.count_flops(lambda: b.dbae_model.endpoint(z_dbae))

    fns, meta = {}, {}
    for nfe in nfes:
        fns[f"ddim@{nfe}"] = ddim(nfe)
        meta[f"ddim@{nfe}"] = ("ddim", nfe, b.dae.cost(b.dae_method, "stochastic", nfe, b.ddim_opts)["nfe_decode"],
                               f_unet)
        fns[f"bridge@{nfe}"] = bridge(nfe)
        meta[f"bridge@{nfe}"] = ("bridge", nfe, b.dbae.cost(b.dbae_method, "endpoint", nfe, b.bridge_opts)["nfe_decode"],
                                 f_bridge_net)
    # warm-up at the smallest budget (kernels, allocator), not timed
    ddim(nfes[0])()
    bridge(nfes[0])()
    load0 = C.loadavg()
    times = C.time_interleaved(fns, device, warmup=0, iters=repeats)
    load1 = C.loadavg()
    rows = []
    for name, (sampler, budget, nfe, f_eval) in meta.items():
        t = C.median(times[name])
        flops = nfe * f_eval + (f_endpoint if sampler == "bridge" else 0)
        rows.append({"sampler": sampler, "nfe_budget": budget, "nfe": nfe, "batch": batch, "seconds": t,
                     "spread": C.spread(times[name]), "images_per_s": batch / t,
                     "images_per_s_x_nfe": batch * nfe / t, "ms_per_image_per_nfe": 1e3 * t / (batch * nfe),
                     "flops_per_image": flops / batch, "flops_per_s": flops / t})
    C.print_table([{**r, "gflops": r["flops_per_s"] / 1e9} for r in rows],
                  [("sampler", "sampler"), ("nfe_budget", "NFE budget"), ("nfe", "NFE used"), ("batch", "batch"),
                   ("seconds", "s/batch"), ("spread", "IQR/med"), ("images_per_s", "images/s"),
                   ("images_per_s_x_nfe", "images/s x NFE"), ("ms_per_image_per_nfe", "ms/(image NFE)"),
                   ("gflops", "GFLOP/s")],
                  title=f"sampling, {cfg['dataset']} {h}x{h}x{c}, DAE {b.dae_name} (DDIM, clip_x0 "
                        f"{b.ddim_opts['clip_x0']}) / DBAE {b.dbae_name} ({b.bridge_opts.get('solver', 'heun')}, churn "
                        f"{b.bridge_opts.get('churn', 0.0)}); median of {repeats} interleaved runs; load {load0} -> "
                        f"{load1}")
    print("NFE used: DDIM takes NFE steps of one U-Net call; the Heun bridge sampler fits 2 calls per step "
          "(Euler last step) into the budget, so its NFE is odd.")
    out = {"env": env, "dataset": cfg["dataset"], "image_shape": [c, h, h], "batch": batch, "repeats": repeats,
           "quick": args.quick, "dae_method": b.dae_name, "dbae_method": b.dbae_name, "ddim": b.ddim_opts,
           "bridge": b.bridge_opts, "flops_per_eval": {"dae_unet": f_unet / batch, "dbae_unet": f_bridge_net / batch,
                                                     "dbae_endpoint": f_endpoint / batch},
           "loadavg": [load0, load1], "rows": rows}
    C.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
