"""Command line: every Snakemake rule calls one of these commands (`python -m daebench <cmd>`).

Job configuration arrives as a JSON slice (`--cfg`), exactly the part of params.yaml the job
depends on, so that Snakemake's params trigger reruns precisely."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger("daebench")


def _threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(max(1, min(n, os.cpu_count() or 1)))


def cmd_prepare_data(a) -> None:
    from .data import prepare

    cfg = json.loads(a.cfg)
    d = cfg["data"]
    manifest = prepare(cfg["dataset"], a.out, download_dir=d["download_dir"], seed=d["seed"],
                       test_fraction=d["test_fraction"], base_url=d["base_url"], max_train=d["max_train"],
                       max_test=d["max_test"])
    log.info("prepared %s: %s", cfg["dataset"], manifest["counts"])


def cmd_train(a) -> None:
    import torch

    from .data import load_split, read_manifest, to_tensor
    from .methods import get_family
    from .tracking import start_run
    from .train import load_checkpoint, num_params, phase_steps, train_phase

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    method, i = cfg["method"], a.phase_index
    phases = method["phases"]
    phase = phases[i]
    manifest = read_manifest(a.data)
    cfg["data_shape"] = manifest["image_shape"]
    images, _ = load_split(a.data, "train")
    x = to_tensor(images)
    fam = get_family(method["family"])
    h, _, c = cfg["data_shape"]
    torch.manual_seed(cfg["train"]["seed"])  # initial weights are part of what the seed fixes
    model = fam.build(cfg, c, h)
    steps, offset = phase_steps(cfg["train"], phases, i)
    init = load_checkpoint(Path(a.init)) if a.init else None
    out = Path(a.out)
    ckpt_path = Path(a.checkpoint_dir) / f"{out.stem}.resume.pt"
    run_id = None
    if ckpt_path.exists():  # continue the MLflow run of the interrupted attempt
        run_id = load_checkpoint(ckpt_path).get("mlflow_run_id") or None
    name = f"{a.method}/{phase['name']}"
    with start_run(name=name, rule="train", dataset=cfg["dataset"], params=cfg,
                   run_id=run_id) as run:
        run.log_metrics({"params/decoder": num_params(model.decoder), "params/encoder": num_params(model.encoder),
                         "phase/steps": steps})
        def logger(metrics, step):
            run.log_metrics(metrics, step)

        t0 = time.time()
        final = train_phase(model, fam.phase_loss(method, phase), x, steps=steps, phase_index=i,
                            train_cfg=cfg["train"], ckpt_path=ckpt_path, out_path=out, config=cfg, init=init,
                            logger=logger, step_offset=offset, progress=not a.no_progress,
                            extra={"mlflow_run_id": run.run_id})
        run.log_metrics({"train/seconds": time.time() - t0, "train/final_step": final["step"]})
    log.info("trained %s for %d steps -> %s (MLflow run %s)", name, steps, out, run.run_id)


def cmd_reconstruct(a) -> None:
    import numpy as np

    from .evaluate.reconstruction import reconstruct_split, save_grid
    from .tracking import start_run
    from .train import load_checkpoint, resolve_device

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    ev = cfg["eval"]
    ckpt = load_checkpoint(Path(a.model))
    with start_run(name=f"{a.method}/reconstruct-{a.mode}", rule="reconstruct",
                   dataset=cfg["dataset"], params=cfg) as run:
        res = reconstruct_split(ckpt, Path(a.data), cfg["method"], a.mode, steps=ev["ddim_steps"],
                                n_images=ev["n_images"], batch_size=ev["batch_size"], seed=ev["seed"],
                                clip_x0=ev["clip_x0"],
                                device=resolve_device(cfg.get("device", "auto")), progress=not a.no_progress)
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.stem}.tmp.npz")
        np.savez(tmp, original=res["original"], recon=res["recon"], labels=res["labels"],
                 meta=json.dumps({"seconds": res["seconds"], "nfe": res["nfe"], "mode": a.mode,
                                  "clip_x0": ev["clip_x0"],
                                  "ddim_steps": ev["ddim_steps"], "mlflow_run_id": run.run_id}))
        os.replace(tmp, out)
        grid = out.with_suffix(".png")
        save_grid(grid, [res["original"], res["recon"]])
        run.log_metrics({"seconds": res["seconds"], "nfe": res["nfe"],
                         "images_per_s": len(res["recon"]) / max(res["seconds"], 1e-9)})
        run.log_artifact(grid)
    log.info("reconstructed %d images (%s, %d NFE) in %.1fs -> %s", len(res["recon"]), a.mode, res["nfe"],
             res["seconds"], out)


def cmd_train_classifier(a) -> None:
    from .data import load_split
    from .evaluate.features import save_classifier, train_classifier

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    c = cfg["classifier"]
    xtr, ytr = load_split(a.data, "train")
    xte, yte = load_split(a.data, "test")
    model, info = train_classifier(xtr, ytr, steps=c["steps"], batch_size=c["batch_size"], lr=c["lr"],
                                   seed=c["seed"], test_images=xte, test_labels=yte)
    save_classifier(Path(a.out), model, info)
    log.info("feature classifier: %s", info)


def cmd_metrics(a) -> None:
    from .evaluate.scoring import score_reconstructions
    from .tracking import start_run

    _threads(a.threads)
    cfg = json.loads(a.cfg)
    with start_run(name=f"{a.method}/metrics-{a.mode}", rule="metrics",
                   dataset=cfg["dataset"], params=cfg) as run:
        result = score_reconstructions(Path(a.recon), Path(a.classifier), Path(cfg["weights_dir"]))
        run.log_metrics({k: v for k, v in result["metrics"].items() if v is not None})
        result.update(method=a.method, mode=a.mode, mlflow_run_id=run.run_id)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    log.info("%s %s: %s", a.method, a.mode, result["metrics"])


def cmd_table4(a) -> None:
    from .tables import write_table4

    cfg = json.loads(a.cfg)
    df = write_table4(cfg, [Path(p) for p in a.inputs], Path(a.out))
    log.info("wrote %s (%d rows)\n%s", a.out, len(df), df.to_string(index=False))


def cmd_fetch_weights(a) -> None:
    from .evaluate.weights import fetch_weights

    fetch_weights(Path(a.dest), a.names or None)


def cmd_validate(a) -> None:
    from .config import load

    load(a.params, a.schema)
    print(f"{a.params}: valid")


def cmd_claims(a) -> None:
    from .claims import write_claims

    df = write_claims(Path(a.table4), Path(a.out))
    known = df["holds"].dropna()
    log.info("wrote %s: %d of %d testable claims hold, %d not testable", a.out, int(known.sum()), len(known),
             int(df["holds"].isna().sum()))


def cmd_report(a) -> None:
    from papermill.exceptions import PapermillExecutionError

    from .report import render_report
    from .tracking import experiment_name, tracking_uri

    params = json.loads(a.params_json)
    # The MLflow store and experiment reach jobs through the environment (not Snakemake params).
    params.setdefault("mlflow_uri", tracking_uri())
    params.setdefault("experiment", experiment_name())
    try:
        render_report(a.notebook, a.executed, a.out_html, params, cwd=a.cwd)
    except PapermillExecutionError as err:
        raise SystemExit(f"report notebook {a.notebook} failed in cell {err.exec_count}: {err.ename}: "
                         f"{err.evalue}\nthe executed notebook with the traceback is at {a.executed}") from None
    log.info("wrote %s (executed notebook: %s)", a.out_html, a.executed)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="daebench", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, fn, help, *args):
        s = sub.add_parser(name, help=help)
        s.set_defaults(fn=fn)
        for arg in args:
            s.add_argument(*arg[0], **arg[1])
        s.add_argument("--threads", type=int, default=None, help="torch CPU threads (Snakemake's {threads})")
        s.add_argument("--no-progress", action="store_true", help="no progress bars")
        return s

    cfg = (["--cfg"], {"required": True, "help": "JSON config slice of this job"})
    data = (["--data"], {"required": True, "help": "prepared dataset directory"})
    out = (["--out"], {"required": True})
    method = (["--method"], {"required": True})
    mode = (["--mode"], {"required": True, "choices": ["stochastic", "inversion"]})
    add("prepare-data", cmd_prepare_data, "download/preprocess a dataset", cfg, out)
    add("train", cmd_train, "train one phase of a method", cfg, data, out, method,
        (["--phase-index"], {"type": int, "required": True}), (["--init"], {"default": None}),
        (["--checkpoint-dir"], {"default": "resources/checkpoints"}))
    add("reconstruct", cmd_reconstruct, "reconstruct the test split", cfg, data, out, method, mode,
        (["--model"], {"required": True}))
    add("train-classifier", cmd_train_classifier, "train the domain feature classifier", cfg, data, out)
    add("metrics", cmd_metrics, "score reconstructions", cfg, out, method, mode,
        (["--recon"], {"required": True}), (["--classifier"], {"required": True}))
    add("table4", cmd_table4, "assemble results/table4.csv", cfg, out, (["--inputs"], {"nargs": "+"}))
    add("fetch-weights", cmd_fetch_weights, "download pretrained metric weights (needs a network)",
        (["--dest"], {"default": "resources/weights"}), (["--names"], {"nargs": "*"}))
    add("validate", cmd_validate, "validate a params file", (["--params"], {"default": "params.yaml"}),
        (["--schema"], {"default": "workflow/schemas/params.schema.yaml"}))
    add("claims", cmd_claims, "test the paper's Table 4 claims on results/table4.csv",
        (["--table4"], {"required": True}), out)
    add("report", cmd_report, "execute notebooks/report.ipynb (papermill) and render it to HTML",
        (["--notebook"], {"default": "notebooks/report.ipynb"}), (["--out-html"], {"required": True}),
        (["--executed"], {"required": True, "help": "where the executed notebook goes (kept when a cell fails)"}),
        (["--params-json"], {"default": "{}", "help": "JSON object of notebook parameters"}),
        (["--cwd"], {"default": ".", "help": "the notebook's working directory (the repo root)"}))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("alembic", "mlflow", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args.fn(args)
    return 0
