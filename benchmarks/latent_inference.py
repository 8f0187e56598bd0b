"""Cost of the latent of one image: DBAE's encoder -> endpoint decoder (one forward each) against the
DAE's encoder + DDIM inversion (NFE U-Net evaluations), in ms per image, at several NFEs.

The same functions the evaluation uses (methods.<family>.encode and .infer_endpoint: the tractable z and
the endpoint x_T), with the networks of params.yaml (or --configfile) in eval mode under no_grad;
Table 5 of DBAE (results/dbae/table5.csv) measures the same on trained models. See benchmarks/README.md.
"""
from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
from sampling import setup


def main(argv=None) -> int:
    args, b = setup(argv, __doc__.split("\n")[0], nfe_help="comma-separated DDIM inversion steps",
                     batch_help="images per call (ms/image = call time / batch)", repeats=5)
    device, env, cfg, h, c, nfes, batch, repeats, x = b.device, b.env, b.cfg, b.h, b.c, b.nfes, b.batch, b.repeats, b.x

    def dbae_latent():
        with torch.no_grad():
            z = b.dbae.encode(b.dbae_model, x)
            return z, b.dbae.infer_endpoint(b.dbae_model, b.dbae_method, x, z, 1, b.bridge_opts)

    def dae_latent(nfe):
        def run():
            with torch.no_grad():
                z = b.dae.encode(b.dae_model, x)
                return z, b.dae.infer_endpoint(b.dae_model, b.dae_method, x, z, nfe, b.ddim_opts)
        return run

    fns = {"dbae": dbae_latent}
    for nfe in nfes:
        fns[f"dae@{nfe}"] = dae_latent(nfe)
    with torch.no_grad():
        flops = {"dbae": C.count_flops(dbae_latent)}
        f_enc = C.count_flops(lambda: b.dae.encode(b.dae_model, x))
        z = b.dae.encode(b.dae_model, x)
        f_unet = C.count_flops(lambda: b.dae_model.decoder(x, torch.full((batch,), 0.5, device=device), z))
    for nfe in nfes:
        flops[f"dae@{nfe}"] = f_enc + nfe * f_unet
    dbae_latent()
    dae_latent(nfes[0])()  # warm-up, not timed
    load0 = C.loadavg()
    times = C.time_interleaved(fns, device, warmup=0, iters=repeats)
    load1 = C.loadavg()
    t_dbae = C.median(times["dbae"])
    dbae_cost = b.dbae.cost(b.dbae_method, "endpoint", 1, b.bridge_opts)
    rows = [{"method": f"DBAE ({b.dbae_name})", "how": "encoder + endpoint decoder", "nfe": 0,
             "networks": dbae_cost["nfe_encoder"] + dbae_cost["nfe_endpoint"], "ms_per_image": 1e3 * t_dbae / batch,
             "spread": C.spread(times["dbae"]), "ratio_to_dbae": 1.0, "flops_per_image": flops["dbae"] / batch}]
    for nfe in nfes:
        t = C.median(times[f"dae@{nfe}"])
        cost = b.dae.cost(b.dae_method, "inversion", nfe, b.ddim_opts)
        rows.append({"method": f"DAE ({b.dae_name})", "how": f"encoder + DDIM inversion, {nfe} steps", "nfe": nfe,
                     "networks": cost["nfe_encoder"] + cost["nfe_endpoint"], "ms_per_image": 1e3 * t / batch,
                     "spread": C.spread(times[f"dae@{nfe}"]), "ratio_to_dbae": t / t_dbae,
                     "flops_per_image": flops[f"dae@{nfe}"] / batch})
    C.print_table([{**r, "mflop": r["flops_per_image"] / 1e6} for r in rows],
                  [("method", "method"), ("how", "latent (z, x_T) by"), ("networks", "network calls"),
                   ("ms_per_image", "ms/image"), ("spread", "IQR/med"), ("ratio_to_dbae", "x DBAE"),
                   ("mflop", "MFLOP/image")],
                  title=f"latent inference, {cfg['dataset']} {h}x{h}x{c}, batch {batch}, median of {repeats} "
                        f"interleaved runs; load {load0} -> {load1}")
    out = {"env": env, "dataset": cfg["dataset"], "image_shape": [c, h, h], "batch": batch, "repeats": repeats,
           "quick": args.quick, "loadavg": [load0, load1], "rows": rows,
           "ratio_dae_over_dbae": {str(r["nfe"]): r["ratio_to_dbae"] for r in rows[1:]}}
    C.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
