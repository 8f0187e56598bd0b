"""Parameter counts of the networks each paper-scale preset builds, beside the sizes the papers report.

For every preset in workflow/presets/ (params.yaml overlaid with the preset, validated and defaulted as
the workflow does), the methods of the result targets the preset names on its ``# targets:`` line are
built with the package's own factories (``methods.get_family(...).build``, ``get_ddvi_family``, the
latent prior's ``build``) on the meta device, so no memory is allocated and nothing is trained, and the
parameters of each network (each child module of the built model) are counted.

Paper sizes (None where a paper reports none):
- two-phase DAE paper, supplementary Tables 6 (decoders) and 7 (encoders), row "Size (MB)": checkpoint
  sizes, read as float32 parameters, params = MB x 10^6 / 4. DBAE's Table 8 confirms the reading: DiffAE's
  128x128 score network (the configuration of Table 6's Bedroom 128 column, 427 MB -> 106.8M) has 105M.
- DBAE App. C.4 (Table 8, FFHQ 128): DiffAE 129M = score network 105M + encoder 24M; DBAE 161M, its
  endpoint decoder 32M.
- ScoreVAE and DDVI report no parameter counts.

    python benchmarks/param_counts.py [--presets cifar10_32 ffhq128] [--json out.json] [--markdown out.md]
                                      [--flops [--tflops 150]]

``--flops`` adds a rough training cost per method: forward FLOPs per example of each network
(torch's FlopCounterMode, batch 1, meta tensors), x3 for a trained network (forward + backward), x1
for a frozen one (x5 for ScoreVAE's encoder in its own phase: the score is a gradient, trained through),
times the examples of each phase; GPU-hours at ``--tflops`` sustained. Evaluation is not included.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import yaml

from daebench.config import deep_update

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "workflow" / "presets"
SCHEMA = REPO / "workflow" / "schemas" / "params.schema.yaml"

MB = 1e6 / 4  # float32 parameters per MB of checkpoint
TWO_PHASE = {  # dataset -> (decoder MB, encoder MB): two-phase paper supp. Tables 6 and 7, "Size (MB)"
    "cifar10": (265, 224), "celeba64": (316, 224), "lsun_bedroom128": (427, 96), "imagenet32": (296, 224)}
DBAE_C4 = "DBAE App. C.4 Table 8 (FFHQ 128)"


def paper_size(dataset: str, method: dict, network: str) -> tuple[float | None, str]:
    """(parameters the papers report for this network of this method on this dataset, where) or (None, why)."""
    fam = method["family"]
    if fam == "dae" and dataset in TWO_PHASE:
        dec, enc = TWO_PHASE[dataset]
        mb = {"decoder": dec, "encoder": enc, "total": dec + enc}.get(network)
        if mb is not None:
            table = {"decoder": "Table 6", "encoder": "Table 7", "total": "Tables 6+7"}[network]
            return mb * MB, f"two-phase {table}: {mb} MB"
    if dataset == "ffhq128" and fam == "dae":  # DiffAE, the DBAE study's comparator
        sizes = {"decoder": 105e6, "encoder": 24e6, "total": 129e6}
        if network in sizes:
            return sizes[network], f"{DBAE_C4}: DiffAE {'score network' if network == 'decoder' else network}"
    if dataset == "ffhq128" and fam == "dbae":
        sizes = {"endpoint": 32e6, "total": 161e6}
        if network in sizes:
            return sizes[network], f"{DBAE_C4}: DBAE {'decoder' if network == 'endpoint' else network}"
    paper = {"dae": "two-phase / DiffAE", "dbae": "DBAE", "uncond": "ScoreVAE", "scorevae": "ScoreVAE",
             "diffdec": "ScoreVAE", "vae": "ScoreVAE", "latent_prior": "DBAE"}.get(fam, "DDVI")
    return None, f"not reported ({paper})"


# --------------------------------------------------------------------------- configuration

def preset_targets(path: Path) -> list[str]:
    """The result files a preset is meant for: its ``# targets: a b c`` header line."""
    for line in path.read_text().splitlines():
        if line.startswith("# targets:"):
            return line.split(":", 1)[1].split()
    raise ValueError(f"{path} has no '# targets:' header line")


def load_config(preset: Path) -> dict:
    from daebench.config import validate

    cfg = yaml.safe_load((REPO / "params.yaml").read_text())
    deep_update(cfg, yaml.safe_load(preset.read_text()) or {})
    return validate(cfg, SCHEMA, local_data=False)  # networks only: no dataset is read


def study_methods(cfg: dict, targets: list[str]) -> list[tuple[str, str]]:
    """(study, method) of every network-bearing method the targets train, in table order, without repeats."""
    out: list[tuple[str, str]] = []

    def add(study, names):
        for m in names:
            if all(m != n for _, n in out):
                out.append((study, m))

    for t in targets:
        if t == "results/table4.csv":
            add("table4", cfg["table4"]["methods"])
        elif t.startswith("results/dbae/"):
            d = cfg["dbae"]
            add("dbae", [d["dae"], *d["methods"], *d["generation"]["methods"]]
                + (d["tc_methods"] if t.endswith("table3.csv") else []))
        elif t.startswith("results/scorevae/"):
            for row in cfg["scorevae"]["rows"]:
                m = row["method"]
                prior = cfg["methods"][m].get("prior")
                add("scorevae", ([prior] if prior else []) + [m])
        elif t.startswith("results/ddvi/"):
            table = Path(t).stem
            tables = cfg["ddvi"]["tables"]
            add("ddvi", tables[table] if table in tables else [m for ms in tables.values() for m in ms])
    return out


# --------------------------------------------------------------------------- building

def image_shape(dataset: str) -> tuple[int, int]:
    from daebench.data import DATASETS

    info = DATASETS[dataset]
    return info.channels, info.default_image_size


def build_model(cfg: dict, study: str, name: str) -> torch.nn.Module:
    """The model the training job builds (meta device: shapes only)."""
    with torch.device("meta"):
        if study == "ddvi":
            from daebench.config import ddvi_method
            from daebench.methods import get_ddvi_family

            c, h = image_shape(cfg["dataset"])
            m = ddvi_method(cfg["ddvi"], name, "unsup")
            return get_ddvi_family(m["family"]).build(cfg["ddvi"]["nets"], (c, h, h), m, False)
        from daebench.methods import get_family

        method = cfg["methods"][name]
        job = {"dataset": cfg["dataset"], "method": method, "nets": cfg["nets"], "train": cfg["train"]}
        if "prior" in method:
            job["prior"] = {"method": cfg["methods"][method["prior"]], "nets": cfg["nets"]}
        c, h = image_shape(cfg["dataset"])
        return get_family(method["family"]).build(job, c, h)


def build_latent_prior(cfg: dict) -> torch.nn.Module:
    from daebench.methods import latent_prior

    with torch.device("meta"):
        return latent_prior.build({"z_dim": cfg["nets"]["z_dim"], "prior": cfg["dbae"]["prior"]})


def count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def networks(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The networks of a built model: its children with parameters; a bare U-Net (the unconditional
    prior) is one network, its decoder."""
    from daebench.nets.unet import UNet

    if isinstance(model, UNet):
        return {"decoder": model}
    return {n: c for n, c in model.named_children() if count(c) > 0}


# --------------------------------------------------------------------------- FLOPs (rough)

def forward_flops(net: torch.nn.Module, cfg: dict) -> float | None:
    """Forward FLOPs for one example of an image network, None for other kinds (the MLPs: negligible)."""
    from torch.utils.flop_counter import FlopCounterMode

    from daebench.nets.unet import Encoder, EndpointDecoder, MirrorDecoder, UNet

    c, h = image_shape(cfg["dataset"])
    z = cfg["nets"]["z_dim"]
    with torch.device("meta"):
        t = torch.zeros(1)
        if isinstance(net, UNet):
            args = (torch.zeros(1, net.inp.in_channels, h, h), t,
                    torch.zeros(1, z) if (net.z_mlp is not None or net.z_emb is not None) else None)
        elif isinstance(net, Encoder):
            args = (torch.zeros(1, c, h, h), t if net.time_mlp is not None else None)
        elif isinstance(net, (EndpointDecoder, MirrorDecoder)):
            args = (torch.zeros(1, z),)
        else:
            return None
        with FlopCounterMode(display=False) as fc:
            net(*args)
    return float(fc.get_total_flops())


def training_flops(cfg: dict, name: str, nets: dict[str, torch.nn.Module]) -> float | None:
    """Rough training FLOPs of a method over all its phases (see the module docstring)."""
    method = cfg["methods"][name]
    fwd = {n: forward_flops(m, cfg) for n, m in nets.items()}
    if any(v is None for v in fwd.values()):
        return None
    examples = method.get("examples") or cfg["train"]["examples"]
    total = 0.0
    for phase in method["phases"]:
        per = 0.0
        for n, f in fwd.items():
            if method["family"] == "scorevae":
                trains = {"encoder": {"encoder"}, "corrector": {"corrector"}}[phase["train"]]
                mult = (5 if n == "encoder" else 3) if n in trains else (3 if n == "encoder" else 1)
                if n == "corrector" and phase["train"] == "encoder":
                    mult = 0
            else:
                mult = 3
            per += mult * f
        total += per * phase["fraction"] * examples
    return total


# --------------------------------------------------------------------------- the table

def rows_for(preset: Path, flops: bool = False, tflops: float = 150.0) -> list[dict]:
    cfg = load_config(preset)
    ds = cfg["dataset"]
    rows = []
    for study, name in study_methods(cfg, preset_targets(preset)):
        model = build_model(cfg, study, name)
        method = cfg["methods"][name] if study != "ddvi" else cfg["ddvi"]["methods"][name]
        nets = networks(model)
        cost = training_flops(cfg, name, nets) if flops and study != "ddvi" else None
        items = [(n, count(m)) for n, m in nets.items()] + [("total", count(model))]
        if study == "dbae" and name in cfg["dbae"]["generation"]["methods"]:
            items.append(("latent_prior", count(build_latent_prior(cfg))))
        for net, ours in items:
            fam = {"family": "latent_prior"} if net == "latent_prior" else method
            ref, source = paper_size(ds, fam, net)
            row = {"preset": preset.stem, "study": study, "method": name, "network": net, "params": ours,
                   "paper_params": None if ref is None else round(ref),
                   "ratio": None if ref is None else round(ours / ref, 3), "source": source}
            if flops and net == "total":
                row["train_pflops"] = None if cost is None else round(cost / 1e15, 1)
                row["gpu_hours"] = None if cost is None else round(cost / (tflops * 1e12) / 3600, 1)
            rows.append(row)
    return rows


def _m(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:.2f}M"


def markdown(rows: list[dict]) -> str:
    flops = any("gpu_hours" in r for r in rows)
    head = ["preset", "method", "network", "ours", "paper", "ratio", "paper source"]
    if flops:
        head += ["train PFLOP", "GPU-h"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["preset"], r["method"], r["network"], _m(r["params"]), _m(r["paper_params"]),
                 "" if r["ratio"] is None else f"{r['ratio']:.2f}", r["source"]]
        if flops:
            cells += [str(r.get("train_pflops") or ""), str(r.get("gpu_hours") or "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="*", default=None, help="preset names (default: every workflow/presets/*.yaml)")
    p.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    p.add_argument("--markdown", type=Path, default=None, help="write the table as Markdown here")
    p.add_argument("--flops", action="store_true", help="add a rough training cost per method (slower)")
    p.add_argument("--tflops", type=float, default=150.0, help="sustained TFLOP/s assumed for GPU-hours")
    a = p.parse_args(argv)
    names = a.presets or sorted(f.stem for f in PRESETS.glob("*.yaml"))
    rows = [r for n in names for r in rows_for(PRESETS / f"{n}.yaml", a.flops, a.tflops)]
    table = markdown(rows)
    sys.stdout.write(table)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2) + "\n")
    if a.markdown:
        a.markdown.write_text(table)
    if a.flops:
        per = {}
        for r in rows:
            if r["network"] == "total" and r.get("gpu_hours"):
                per[r["preset"]] = per.get(r["preset"], 0.0) + r["gpu_hours"]
        for n, h in per.items():
            print(f"{n}: ~{math.ceil(h)} GPU-hours of training at {a.tflops:g} TFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
