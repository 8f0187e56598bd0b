"""Command line: every Snakemake rule calls one of these commands (`python -m daebench <cmd>`).

Parse and call: each command is a run function of the job layer (daebench.jobs). Job configuration
arrives as a JSON slice (`--cfg`), exactly the part of params.yaml the job depends on, so that
Snakemake's params trigger reruns precisely."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from . import paths

log = logging.getLogger("daebench")


class _Registry:
    """The CLI's choices, read from the code's registries (the families' modes, the studies, the tables) when
    an option is checked (with a metavar, argparse never lists them while building the parser): a light
    command (a table, a claim) never imports torch for them."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def _names(self) -> list[str]:
        import importlib

        value = getattr(importlib.import_module(self.module), self.name)
        return list(value() if callable(value) else value)

    def __contains__(self, item) -> bool:
        return item in self._names()

    def __iter__(self):
        return iter(self._names())


def _job(module: str, name: str, torch: bool = True):
    """The run function ``daebench.jobs.<module>.<name>``, imported when the command runs (so ``--help``
    and the other commands stay fast). ``torch=False``: a job that does not need torch (a table, a claim, a
    reconstruction's scoring without the ImageNet weights), for which the CLI does not import it (over a
    second of a job that otherwise takes under one)."""
    def call(**kwargs):
        import importlib

        return getattr(importlib.import_module(f"daebench.jobs.{module}"), name)(**kwargs)

    call.__name__, call.job, call.torch = name, (module, name), torch
    return call


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
    mode = (["--mode"], {"required": True, "choices": _Registry("daebench.config", "modes"), "metavar": "MODE",
                          "help": "a decoding mode of the method's family (daebench.config.modes())"})
    add("download-data", _job("data", "download_data", torch=False), "fetch and verify a dataset's source files (the network step)", cfg,
        out)
    add("prepare-data", _job("data", "prepare_data"), "preprocess a dataset from downloaded files or a local copy (no network)",
        cfg, out)
    add("train", _job("training", "train"), "train one phase of a method", cfg, data, out, method,
        (["--phase-index"], {"type": int, "required": True}), (["--init"], {"default": None}),
        (["--prior"], {"default": None, "help": "checkpoint of the frozen prior (scorevae)"}),
        (["--checkpoint-dir"], {"default": paths.CHECKPOINTS}))
    add("reconstruct", _job("evaluation", "reconstruct"), "reconstruct the test split", cfg, data, out, method, mode,
        (["--model"], {"required": True}))
    add("train-classifier", _job("evaluation", "train_classifier"), "train the domain feature classifier", cfg, data, out)
    add("metrics", _job("evaluation", "metrics", torch=False), "score reconstructions", cfg, out, method, mode,
        (["--recon"], {"required": True}), (["--classifier"], {"required": True}))
    add("table4", _job("two_phase", "table4", torch=False), "assemble results/table4.csv", cfg, out, (["--inputs"], {"nargs": "+"}),
        (["--summary"], {"default": None, "help": "also write the study's headline numbers (results/summary/two_phase.json)"}))
    add("two-phase-table", _job("two_phase", "two_phase_table", torch=False), "assemble one of the two-phase ablation tables", cfg,
        out, (["--table"], {"required": True, "choices": _Registry("daebench.jobs.two_phase", "ABLATIONS"),
                             "metavar": "TABLE"}), (["--inputs"], {"nargs": "+"}))
    add("ppl", _job("two_phase", "ppl"), "perceptual path length of slerp interpolations (two-phase Table 5)", cfg, data,
        out, method, (["--model"], {"required": True}), (["--classifier"], {"required": True}))
    model = (["--model"], {"required": True, "help": "trained autoencoder checkpoint"})
    add("train-prior", _job("dbae", "train_prior"), "fit the latent DDIM prior on an autoencoder's codes", cfg, data, out,
        method, model, (["--checkpoint-dir"], {"default": paths.CHECKPOINTS}))
    add("generate", _job("dbae", "generate"), "decode prior samples or encoded test codes", cfg, data, out, method, model,
        (["--source"], {"required": True, "choices": ["prior", "ae"]}), (["--prior"], {"default": None}))
    add("gen-metrics", _job("dbae", "gen_metrics"), "precision/recall, FD, IS of generated samples", cfg, data, out, method,
        (["--samples"], {"required": True}), (["--classifier"], {"required": True}))
    add("probe", _job("dbae", "probe"), "linear probe on the latent codes", cfg, data, out, method, model)
    add("disentangle", _job("dbae", "disentangle"), "TAD and ATTRS of the latent codes", cfg, data, out, method, model)
    add("inference-cost", _job("dbae", "inference_cost"), "NFE and time to get z and x_T", cfg, data, out, method, model)
    add("dbae-table", _job("dbae", "dbae_table", torch=False), "assemble one of DBAE's tables", cfg, out,
        (["--table"], {"required": True, "choices": _Registry("daebench.jobs.dbae", "TABLES"), "metavar": "TABLE"}),
        (["--inputs"], {"nargs": "+"}))
    add("dbae-nfe-curve", _job("dbae", "nfe_curve", torch=False), "DBAE Table 9 as a wide CSV (one column per method/mode)",
        out, (["--inputs"], {"nargs": "+", "required": True}), (["--metric"], {"default": "ssim"}))
    add("dvc-yaml", _job("dvc", "dvc_yaml_job", torch=False), "write dvc.yaml (one stage per study) from a params file",
        (["--params"], {"default": "params.yaml"}), (["--schema"], {"default": "workflow/schemas/params.schema.yaml"}),
        (["--out"], {"default": "dvc.yaml"}), (["--check"], {"action": "store_true", "help": "fail if it is stale"}))
    add("scorevae-table", _job("scorevae", "scorevae_table", torch=False), "assemble ScoreVAE's Table 1", cfg, out, (["--inputs"], {"nargs": "+"}))
    add("scorevae-prior", _job("scorevae", "scorevae_prior"), "ScoreVAE Table 1's prior row: samples, their FD, held-out eps MSE",
        cfg, data, out, (["--model"], {"required": True}), (["--classifier"], {"required": True}))
    add("scorevae-grid", _job("scorevae", "scorevae_grid"), "one labelled figure: originals, then one row per reconstruction", out,
        (["--inputs"], {"nargs": "+", "required": True}), (["--labels"], {"nargs": "+", "required": True}),
        (["--n"], {"type": int, "default": 12, "help": "images per row"}))
    add("prepare-genotypes", _job("data", "prepare_genotypes"), "simulate (msprime) or download 1000 Genomes genotypes, PCA",
        cfg, out)
    run_name = (["--name"], {"required": True, "help": "run name (setting/prior/method/seed)"})
    add("ddvi-train", _job("ddvi", "ddvi_train"), "train one model of the DDVI study", cfg, data, out, run_name,
        (["--checkpoint-dir"], {"default": paths.CHECKPOINTS}))
    add("ddvi-evaluate", _job("ddvi", "ddvi_evaluate"), "ELBO, MMD, latent NLL, KNN accuracy or clustering of one run", cfg, data,
        out, method, run_name, (["--model"], {"required": True}),
        (["--arrays"], {"required": True, "help": "npz for the test codes (and generated images)"}))
    add("ddvi-table", _job("ddvi", "ddvi_table", torch=False), "assemble one of DDVI's tables (mean and 95%% interval over seeds)", cfg, out,
        (["--table"], {"required": True, "choices": _Registry("daebench.jobs.ddvi", "SETTING_OF_TABLE"),
                       "metavar": "TABLE"}),
        (["--inputs"], {"nargs": "+"}))
    add("ddvi-table5", _job("ddvi_budget", "ddvi_table5", torch=False), "DDVI's Table 5: clustering NMI against training time", cfg, out,
        (["--runs"], {"nargs": "+", "required": True}), (["--figure"], {"required": True}))
    add("ddvi-latents", _job("ddvi", "ddvi_latents", torch=False), "scatter plots of test codes, coloured by class", out,
        (["--inputs"], {"nargs": "+", "required": True}), (["--labels"], {"nargs": "+", "required": True}),
        (["--title"], {"default": ""}))
    add("fetch-weights", _job("evaluation", "fetch_weights"), "download pretrained metric weights (needs a network)",
        (["--dest"], {"default": "resources/weights"}), (["--names"], {"nargs": "*"}))
    add("validate", _job("base", "validate", torch=False), "validate a params file, with overlays merged over it",
        (["--params"], {"default": "params.yaml"}), (["--schema"], {"default": "workflow/schemas/params.schema.yaml"}),
        (["--overlay"], {"nargs": "*", "default": [], "help": "files merged over --params in order, as --configfile"}))
    study = (["--study"], {"required": True, "choices": _Registry("daebench.studies", "REGISTRY"), "metavar": "STUDY"})
    add("claims", _job("studies", "claims", torch=False), "test one study's claims on its tables and on the paper's", study,
        (["--tables"], {"nargs": "+", "required": True, "help": "name=path of each table (e.g. table4=...)"}),
        (["--cfg"], {"default": "{}", "help": "JSON: what the tables do not say (DBAE: dae; DDVI: dataset, genotypes)"}),
        (["--samples"], {"nargs": "*", "default": [], "help": "the reconstructions' scoring JSONs (per-image values "
                                                             "for the paired intervals)"}),
        out)
    add("study-table", _job("studies", "study_table", torch=False), "a table of a study declared without rules of its own",
        study, (["--table"], {"required": True}), cfg, (["--inputs"], {"nargs": "*", "default": []}), out)
    add("summary", _job("studies", "summary", torch=False), "a study's headline numbers as JSON (for `dvc metrics show`)", study,
        (["--tables"], {"nargs": "+", "required": True, "help": "name=path of each table"}), out)
    add("claims-all", _job("studies", "claims_all", torch=False), "concatenate the studies' claims files into one",
        (["--inputs"], {"nargs": "+", "required": True}), out)
    add("emergence-point", _job("studies", "emergence_point", torch=False), "run one study at one training budget (a nested Snakemake run)",
        study, (["--scale"], {"required": True}), (["--cfg"], {"required": True, "help": "the resolved config (JSON)"}),
        (["--workdir"], {"required": True}), (["--root"], {"default": "."}), (["--cores"], {"type": int, "default": 1}),
        (["--snakefile"], {"default": "Snakefile"}))
    add("emergence", _job("studies", "emergence", torch=False), "a study's claims at each budget: CSV and figure", study,
        (["--cfg"], {"required": True}), (["--points"], {"nargs": "+", "required": True, "help": "scale=workdir"}),
        out, (["--figure"], {"required": True}))
    add("report", _job("studies", "report", torch=False), "execute notebooks/report.ipynb (papermill) and render it to HTML",
        (["--notebook"], {"default": "notebooks/report.ipynb"}), (["--out-html"], {"required": True}),
        (["--executed"], {"required": True, "help": "where the executed notebook goes (kept when a cell fails)"}),
        (["--params-json"], {"default": "{}", "help": "JSON object of notebook parameters"}),
        (["--cwd"], {"default": ".", "help": "the notebook's working directory (the repo root)"}),
        (["--config-hash"], {"default": None, "help": "the resolved params' hash, shown in the report's header"}))
    return p


# Commands that run as torchrun processes when compute.nproc > 1 (one DDP training job).
DISTRIBUTED_COMMANDS = {"train"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.cmd in DISTRIBUTED_COMMANDS:
        from . import compute

        settings = compute.from_env()
        if compute.wants_relaunch(settings):
            cmd = compute.torchrun_argv(settings["nproc"], argv)
            print(f"compute.nproc={settings['nproc']}: running as {' '.join(cmd)}", file=sys.stderr, flush=True)
            os.execv(cmd[0], cmd)  # same pid: Snakemake's signals reach torchrun, which stops its workers
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("alembic", "mlflow", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    kwargs = {k: v for k, v in vars(args).items() if k not in ("cmd", "fn", "verbose", "threads", "no_progress")}
    if "cfg" in kwargs:
        kwargs["cfg"] = json.loads(kwargs["cfg"])
    if args.threads:
        threads = max(1, min(args.threads, os.cpu_count() or 1))
        if args.fn.torch:
            import torch

            torch.set_num_threads(threads)
        else:  # numpy's BLAS (and torch, should the job import it) read these when they load
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = str(threads)
    from .data.store import WriteError

    try:
        args.fn(progress=not args.no_progress, **kwargs)
    except WriteError as err:  # a full disk or a file-size limit: the path and the fix, not a traceback
        log.error("%s", err.strerror)
        return 1
    dist = sys.modules.get("torch.distributed")  # loaded by a job that set up a process group, else absent
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return 0
