"""dvc.yaml, derived: one DVC stage per study (data, table4, two_phase_ablations, dbae, scorevae, ddvi, report),
each a `snakemake` call on the study's targets, so Snakemake still decides which jobs rerun.

A stage's code ``deps`` are the shared code and its own modules (``code_deps``: what its Stage names, its rule
files and the modules of the method families its jobs train), so editing one study's method leaves the other
stages up to date; the report stage, which reads every study, depends on all of it.

A stage's ``params`` are the config keys its jobs' slices read, found by running the same slice builders
the workflow uses on a config that records every key they touch (``read_keys``); they cannot drift from
what the jobs depend on. Its ``outs`` are the study's own files (models per method, so no two stages own
the same path); ``metrics`` its headline numbers (results/summary/<study>.json); ``plots`` the curves.

`python -m daebench dvc-yaml` writes dvc.yaml from params.yaml; `--check` fails when it is stale
(tests/test_dvc.py keeps the committed one current)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace as W

import yaml

from .. import paths
from . import data, dbae, evaluation, studies, training, two_phase

CODE = ["Snakefile", "workflow", "src/daebench", "envs"]  # the report stage's: it reads every study
SOURCE, RULES = "src/daebench", "workflow/rules"


def _reads_whole(name: str):
    """dict.<name>, recording that the block was read whole."""
    base = getattr(dict, name)

    def method(self, *args):
        self._log.add(self._path)
        return base(self, *args)

    method.__name__ = name
    return method


class _Recorder(dict):
    """A config (sub)tree that records the key paths read through it: a leaf when read by key, the block
    when a key is missing from it, a whole subtree when iterated (``json.dumps`` of an embedded block, ``{**block}``, ``.items()``)."""

    def __init__(self, d: dict, path: tuple, log: set):
        super().__init__(d)
        self._path, self._log = path, log

    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        if isinstance(value, dict):
            return _Recorder(value, self._path + (key,), self._log)
        self._log.add(self._path + (key,))
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default  # noqa: SIM401 (dict.get would bypass the recording)

    def __contains__(self, key):
        # a key's absence matters too; DVC can only track an existing key, so then the block is the param
        here = dict.__contains__(self, key)
        self._log.add(self._path + (key,) if here else self._path)
        return here

    # iterating a block (json.dumps, {**block}, a loop) reads it whole
    __iter__, keys, items, values, __len__ = (_reads_whole(n) for n in ("__iter__", "keys", "items", "values",
                                                                        "__len__"))


def read_keys(config: dict, fn) -> list[str]:
    """Dotted config keys ``fn(config)`` reads (a key whose parent is read whole is left out)."""
    import json

    log: set = set()
    # serialised as the rules hand them over: a block embedded whole in a slice counts as read whole
    json.dumps(fn(_Recorder(config, (), log)), sort_keys=True, default=str)
    paths = {p for p in log if p}
    if () in log:
        return ["."]
    kept = sorted(p for p in paths if not any(p[:i] in paths for i in range(1, len(p))))
    return [".".join(map(str, p)) for p in kept]


# --- what each stage's jobs read (the same builders the rules call) ---------------------------------------


def _data_jobs(config):
    ds = config["dataset"]
    return [data.prepare_slice(config, ds), data.download_slice(config, ds)]


def trainings(config: dict, methods) -> list:
    """The slices of the training jobs of ``methods`` (every phase)."""
    ds = config["dataset"]
    return [training.train_cfg(config, W(dataset=ds, method=m, phase=p["name"]))
            for m in methods for p in config["methods"][m]["phases"]]


def scoring(config: dict) -> list:
    """The slices of the scoring jobs every reconstruction study shares (metrics, the domain classifier)."""
    ds = config["dataset"]
    return [evaluation.metrics_cfg(config, W(dataset=ds)), evaluation.classifier_slice(config, ds)]


def _report_jobs(config):
    fake = W(table4="results/table4.csv", claims=[])
    return ([studies.report_notebook_params(config, W(), fake), two_phase.table4_provenance(config, W())]
            + [studies.study_claims_cfg(config, W(study=s)) for s in studies.report_studies(config)])


# --- the code a stage runs ------------------------------------------------------------------------------------


def _code_path(entry: str) -> str:
    """A Stage.code entry as a repository path: ``x.smk`` under workflow/rules, anything else under src/daebench."""
    return f"{RULES}/{entry}" if entry.endswith(".smk") else f"{SOURCE}/{entry}"


def trained_families(slices) -> set[str]:
    """The method families the jobs of these slices (JSON strings or dicts) train or load."""
    import json

    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("family"), str):
                found.add(node["family"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for sl in slices:
        if isinstance(sl, str):
            try:
                sl = json.loads(sl)
            except ValueError:  # a provenance hash, not a slice
                continue
        walk(sl)
    return found


def family_modules() -> dict[str, str]:
    """Family name -> the module declaring it (src/daebench/methods/<module>.py), from the cached code facts
    (no torch import)."""
    from ..config import code_facts

    return {name: f"{SOURCE}/{f['module']}" for name, f in code_facts()["families"].items()}


def code_deps(own: set[str], claimed: set[str], root: Path = Path(".")) -> list[str]:
    """Snakefile, envs and the files under src/daebench and workflow/ that a stage runs: those no stage claims
    (the shared code; a claimed folder claims what is in it) and its own (``own``), never another stage's; a
    folder whole where nothing in it is left out, so dvc.yaml stays short."""
    def walk(rel: str) -> tuple[list[str], bool]:
        path = root / rel
        if path.is_file():
            keep = rel in own or not any(rel == c or rel.startswith(c + "/") for c in claimed)
            return ([rel] if keep else []), keep
        deps, whole = [], True
        for child in sorted(path.iterdir()):
            if child.name.startswith((".", "__pycache__")) or child.suffix == ".pyc":
                continue
            d, w = walk(f"{rel}/{child.name}")
            deps += d
            whole &= w
        return ([rel] if whole else deps), whole

    # a project without its own src/ (the installed package runs) depends on no source folder
    return ["Snakefile", "envs"] + [d for top in (SOURCE, "workflow") if (root / top).is_dir() for d in walk(top)[0]]


# --- the stages ----------------------------------------------------------------------------------------------


def scored_data(config: dict) -> list[str]:
    """What an image study's scoring stands on: the prepared dataset and its domain classifier."""
    ds = config["dataset"]
    return [paths.DATA.format(dataset=ds), paths.CLASSIFIER.format(dataset=ds)]


def models(config: dict, methods, owned: set) -> list[str]:
    """The model folders resources/models/<dataset>/<method> holding each method's phases (and the prior it
    builds on) that no earlier stage owns. A phase shared with an earlier method lives in that method's folder
    (training.model_path), so a method made only of shared phases (two-phase Table 3's t = 1 only) adds none."""
    out, ds = [], config["dataset"]
    for m in methods:
        for name in ([config["methods"][m]["prior"]] if "prior" in config["methods"][m] else []) + [m]:
            for phase in config["methods"][name]["phases"]:
                folder = str(Path(training.model_path(config, ds, name, phase["name"])).parent)
                if folder not in owned:
                    owned.add(folder)
                    out.append(folder)
    return out


def stages(config: dict) -> dict:
    """The data stage, one stage per study that declares one (daebench.studies), the report stage."""
    from ..studies import REGISTRY

    ds = config["dataset"]
    data_dir = paths.DATA.format(dataset=ds)
    owned: set = set()
    by_family = family_modules()

    def own_code(study) -> set[str]:
        st = study.stage
        return ({_code_path(c) for c in st.code} | {f"{RULES}/{r}" for r in study.rules}
                | {by_family[f] for f in trained_families(st.jobs(config)) if f in by_family})

    owns = {study.name: own_code(study) for study in REGISTRY.values() if study.stage}
    claimed = set().union(*owns.values(), {f"{SOURCE}/report"})  # the report's code: only the report stage's

    def stage(targets, jobs, deps, outs, code, summary=None):
        s = {"cmd": "snakemake --cores all " + " ".join(targets + ([summary] if summary else [])),
             "deps": code + deps, "params": read_keys(config, jobs),
             "outs": [{o: {"persist": True}} for o in outs]}
        if summary:
            s["metrics"] = [{summary: {"persist": True}}]  # cached: pushed and pulled with the results
        return s

    out = {"data": stage(["data"], _data_jobs, [], [data_dir], code_deps(set(), claimed))}
    for study in REGISTRY.values():
        if st := study.stage:
            out[st.name] = stage(st.targets(config), st.jobs, st.deps(config), st.outs(config, owned),
                                 code_deps(owns[study.name], claimed), paths.SUMMARY.format(study=study.name))
    report_deps = [paths.TABLE4, "results/recon"] + [
        p for s in studies.report_studies(config)[1:] for p in REGISTRY[s].outputs(config)]
    out["report"] = stage([paths.REPORT, paths.ALL_CLAIMS], _report_jobs, ["notebooks/report.ipynb"] + report_deps,
                          ["results/claims", paths.ALL_CLAIMS, paths.REPORT], CODE)
    return out


def plots(config: dict) -> list:
    """`dvc plots show`: DBAE's NFE curve (Table 9) and the figures of each study."""
    ds = config["dataset"]
    return [
        {"DBAE Table 9: SSIM against NFE": {"template": "linear", "x": "nfe",
                                            "y": {"results/dbae/nfe_curve.csv": dbae.nfe_curve_columns(config)}}},
        *[f"results/recon/{ds}/{m}/{mode}.png" for m in config["table4"]["methods"] for mode in config["table4"]["modes"]],
        "results/scorevae/recon_grid.png",
        *[f"results/ddvi/latents_{s}.png" for s in ("unsup", "semi", "cluster")],
    ]


def order_pulled_artefacts(config: dict) -> None:
    """A fresh clone whose artefacts came from `dvc pull` has no .snakemake/ metadata, and DVC writes files
    in whatever order it checks them out, so a result can look older than its inputs. There, and only
    there, give the pulled files modification times in DAG order: data < models by phase < priors and
    DDVI models < reconstructions and samples (the ScoreVAE prior's own included) < their scores < tables
    and figures < summaries and claims < all claims < report."""
    import glob
    import os
    import sys
    import time

    if os.path.isdir(".snakemake/metadata") or not os.path.exists("dvc.lock"):
        return
    ds = config["dataset"]
    depth = max(len(m["phases"]) for m in config["methods"].values())
    phases = [[training.model_path(config, ds, name, m["phases"][i]["name"]) for name, m in config["methods"].items()
               if i < len(m["phases"])] for i in range(depth)]
    levels = [[f"resources/data/{ds}/*", "resources/data/genotypes/*/*"],
              [paths.CLASSIFIER.format(dataset=ds)], *phases,
              [paths.PRIORS.format(dataset=ds) + "/*", "resources/ddvi/**/*.pt"],
              [f"results/{d}/{ds}/*/*" for d in ("recon", "dbae/recon", "scorevae/recon", "dbae/gen")]
              + [f"results/scorevae/prior/{ds}/*", "results/ddvi/runs/**/*", "results/ddvi/budget/**/*",
                 f"results/two_phase/ppl/{ds}/*"],
              [f"results/{d}/{ds}/*/*" for d in ("metrics", "dbae/metrics", "scorevae/metrics", "dbae/gen_metrics")]
              + [f"results/dbae/{d}/{ds}/*" for d in ("probe", "disentangle", "cost")],
              ["results/table4.csv", "results/two_phase/table*.csv", "results/dbae/table*.csv", "results/scorevae/*.csv", "results/scorevae/*.png",
               "results/ddvi/*.csv", "results/ddvi/*.png"],
              ["results/dbae/nfe_curve.csv", "results/summary/*.json", "results/claims/*.csv"],
              ["results/claims.csv"], ["results/report.html"]]
    t0, n = time.time() - len(levels) - 1, 0
    for level, patterns in enumerate(levels):
        for f in {f for pattern in patterns for f in glob.glob(pattern, recursive=True)}:
            if os.path.isfile(f):
                os.utime(f, (t0 + level, t0 + level))
                n += 1
    if n:
        print(f"daebench: no .snakemake/metadata but a dvc.lock (artefacts from `dvc pull`): gave {n} files "
              "modification times in DAG order", file=sys.stderr)


HEADER = """\
# Generated from params.yaml by `python -m daebench dvc-yaml` (src/daebench/jobs/dvc.py): regenerate it after
# changing a study's methods or the dataset. One stage per study; each runs Snakemake on the study's targets,
# so `dvc repro` reruns a stage when its params, code or inputs changed, and Snakemake inside it reruns
# exactly the affected jobs (reruns follow params provenance, not mtimes, so DVC checkouts trigger no work).
# A stage's params are the keys its jobs' config slices read (derived, not kept by hand). Outputs persist:
# DVC must not delete them before a stage runs, or Snakemake would redo everything instead of what changed.
"""


def dvc_yaml(config: dict) -> str:
    body = yaml.safe_dump({"stages": stages(config), "plots": plots(config)}, sort_keys=False, width=120)
    return HEADER + body


def write_dvc_yaml(config: dict, out: Path, check: bool = False) -> bool:
    """Write ``out``; with ``check``, only report whether it is current. Returns whether it was current."""
    text = dvc_yaml(config)
    current = out.exists() and out.read_text() == text
    if not check and not current:
        from ..data.store import atomic_path

        with atomic_path(out) as tmp:
            tmp.write_text(text)
    return current


def dvc_yaml_job(params: str, schema: str, out: str, check: bool = False, progress: bool = True) -> None:
    from ..config import load

    current = write_dvc_yaml(load(params, schema), Path(out), check)
    if check and not current:
        raise SystemExit(f"{out} is out of date with {params}: run `python -m daebench dvc-yaml` and commit it")
    print(f"{out}: {'up to date' if current else 'written'}")
