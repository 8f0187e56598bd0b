"""DVC around Snakemake, one stage per study: dvc.yaml is derived from the slice builders, `dvc repro` after
one parameter edit reruns exactly the affected jobs, and artefacts pushed to the default remote and pulled
into a second clone leave nothing to do."""
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from daebench.config import deep_update

ROOT = Path(__file__).resolve().parents[1]


def sh(args, cwd, timeout=900):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{(proc.stdout + proc.stderr)[-5000:]}"
    return proc.stdout + proc.stderr


def dvc(*args, cwd, timeout=900):
    return sh([sys.executable, "-m", "dvc", *args], cwd, timeout)


def executed_jobs(output: str) -> Counter:
    """Jobs Snakemake ran, summed over every invocation in ``output`` (its 'Job stats' tables)."""
    counts = Counter()
    for table in output.split("Job stats:")[1:]:
        for m in re.finditer(r"^(\w+)\s+(\d+)$", table.split("\n\n")[0], re.MULTILINE):
            if m.group(1) != "total":
                counts[m.group(1)] += int(m.group(2))
    return counts


def test_committed_dvc_yaml_is_derived_from_params():
    """dvc.yaml is generated from params.yaml by the job layer's slice builders (`daebench dvc-yaml`); a
    hand edit or a params change without regenerating it fails here."""
    out = subprocess.run([sys.executable, "-m", "daebench", "dvc-yaml", "--check"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def _covers(deps, path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in deps)


def test_stages_depend_on_their_own_code_only():
    """Each stage depends on the shared code and its own study's modules: an edit to DBAE's method leaves
    the Table 4 stage up to date, while the modules of every family a stage trains are among its deps and the
    report stage (which reads every study) depends on all of src/daebench."""
    from daebench.jobs.dvc import family_modules, trained_families
    from daebench.studies import REGISTRY

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    deps = {name: st["deps"] for name, st in stages.items()}
    assert not _covers(deps["table4"], "src/daebench/methods/dbae.py")
    assert not _covers(deps["table4"], "src/daebench/claims/ddvi.py")
    assert not _covers(deps["dbae"], "src/daebench/methods/scorevae.py")
    assert _covers(deps["dbae"], "src/daebench/methods/dbae.py") and _covers(deps["dbae"], "src/daebench/diffusion/bridge.py")
    assert _covers(deps["dbae"], "src/daebench/methods/dae.py")  # DBAE's tables compare with the DAE
    for shared in ("src/daebench/train/loop.py", "src/daebench/nets/unet.py", "workflow/rules/common.smk"):
        assert all(_covers(d, shared) for d in deps.values()), shared
    assert "src/daebench" in deps["report"]
    config = yaml.safe_load((ROOT / "params.yaml").read_text())
    modules = family_modules()
    for study in REGISTRY.values():
        if study.stage:
            for fam in trained_families(study.stage.jobs(config)):
                assert _covers(deps[study.stage.name], modules[fam]), (study.stage.name, fam)
            for rules in study.rules:
                assert _covers(deps[study.stage.name], f"workflow/rules/{rules}")


def _leaves(obj, path=()):
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    else:
        yield path


def _other(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "_x"
    if isinstance(value, list):
        return value + value[:1] if value else [1]
    return 1


@pytest.mark.parametrize("stage", ["data", "table4", "two_phase_ablations", "dbae", "scorevae", "ddvi", "report"])
def test_stage_params_cover_every_key_its_jobs_read(stage):
    """Changing any key outside a stage's derived params leaves every config slice of the stage's jobs
    as it was: DVC never skips a stage whose work changed."""
    import copy
    import json

    from daebench.config import load
    from daebench.jobs import dvc as D
    from daebench.studies import REGISTRY

    config = load(ROOT / "params.yaml", ROOT / "workflow/schemas/params.schema.yaml")
    jobs = {"data": D._data_jobs, "report": D._report_jobs,
            **{s.stage.name: s.stage.jobs for s in REGISTRY.values() if s.stage}}[stage]
    params = D.stages(config)[stage]["params"]
    covered = [tuple(p.split(".")) for p in params]
    before = json.dumps(jobs(config), sort_keys=True, default=str)
    checked = 0
    for leaf in _leaves(config):
        if not leaf or any(leaf[:len(c)] == c for c in covered):
            continue
        cfg = copy.deepcopy(config)
        node = cfg
        for k in leaf[:-1]:
            node = node[k]
        node[leaf[-1]] = _other(node[leaf[-1]])
        try:
            after = json.dumps(jobs(cfg), sort_keys=True, default=str)
        except Exception as err:  # noqa: BLE001 (a key the builders reject is a key they read)
            after = repr(err)
        assert after == before, f"stage {stage}: {'.'.join(map(str, leaf))} changes its jobs but is not in its params"
        checked += 1
    assert checked > 20


GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def dvc_project(smoke_run, a: Path) -> Path:
    """A copy of the smoke run of every study as a git + DVC project whose params.yaml is the smoke preset,
    with dvc.yaml derived from it and everything committed to git (DVC has recorded nothing yet)."""
    shutil.copytree(smoke_run, a, symlinks=True)  # copy2: modification times kept
    for item in ("dvc.yaml", ".dvc/config", ".dvcignore", ".gitignore", "src/daebench"):
        src, dst = ROOT / item, a / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, dst)
    # The smoke preset, written into params.yaml itself (DVC reads params from there); dvc.yaml derived from it.
    params = deep_update(yaml.safe_load((a / "params.yaml").read_text()),
                         yaml.safe_load((ROOT / "tests/smoke.yaml").read_text()))
    (a / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh([sys.executable, "-m", "daebench", "dvc-yaml"], a)
    sh(["git", "init", "-q"], a)
    sh([*GIT, "add", "-A"], a)
    sh([*GIT, "commit", "-qm", "init"], a)
    return a


@pytest.mark.slow
def test_the_main_job_recorded_in_dvc(smoke_run, tmp_path):
    """What docs/dvc.md tells a user after the main job run by Snakemake: `dvc commit` records the data and
    Table 4 stages without rerunning them; `dvc status` then says they are up to date (and only the stages
    never run are listed), `dvc metrics show` prints the summary the main job wrote, and `dvc params diff`
    shows an edited key, which `dvc status` then names against the Table 4 stage."""
    a = dvc_project(smoke_run, tmp_path / "a")
    before = dvc("status", cwd=a)
    assert re.search(r"^table4:", before, re.MULTILINE), before  # nothing recorded yet: every stage "changed"
    dvc("commit", "-f", "data", "table4", cwd=a)
    assert (a / "dvc.lock").is_file()
    status = dvc("status", cwd=a)
    listed = set(re.findall(r"^(\w+):", status, re.MULTILINE))
    assert listed == {"two_phase_ablations", "dbae", "scorevae", "ddvi", "report"}, status
    # stdout only: DVC warns on stderr about the summaries of the stages that never ran
    shown = json.loads(subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], cwd=a, check=True,
                                      capture_output=True, text=True, timeout=300).stdout)
    metrics = next(iter(shown.values()))["data"]["results/summary/two_phase.json"]["data"]
    assert metrics == json.loads((a / "results/summary/two_phase.json").read_text())
    assert "dae_2phase_sc4/stochastic" in json.dumps(metrics)
    assert dvc("params", "diff", cwd=a).strip() == ""  # nothing edited since the commit
    params = yaml.safe_load((a / "params.yaml").read_text())
    params["train"]["lr"] = params["train"]["lr"] * 2
    (a / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    diff = dvc("params", "diff", cwd=a)
    assert re.search(r"train\.lr\s+\S+\s+\S+", diff), diff
    status = dvc("status", "table4", cwd=a)
    assert "params.yaml" in status and "train" in status, status


@pytest.mark.slow
def test_every_study_under_dvc(smoke_run, tmp_path):
    """The smoke run of every study, taken under DVC: nothing to redo; an edit reruns exactly the affected
    jobs; metrics show the headline numbers; `dvc exp run -S` works; a pulled clone has nothing to do."""
    a = dvc_project(smoke_run, tmp_path / "a")
    git = GIT

    first = executed_jobs(dvc("repro", cwd=a))  # only what the smoke run did not build: summaries, the curve
    assert set(first) <= {"study_summary", "dbae_nfe_curve", "study_claims", "claims", "report"}, first
    assert first["study_summary"] == 4  # two_phase's comes with Table 4
    assert "Data and pipelines are up to date" in dvc("status", cwd=a)
    shown = dvc("metrics", "show", "--json", cwd=a)
    for key in ("two_phase", "two_phase_ablations", "dbae", "scorevae", "ddvi", "dae_2phase_sc4/stochastic",
                "pinwheel/ddvi", "dae_t1_only"):
        assert key in shown, shown[-2000:]
    sh([*git, "add", "-A"], a)
    sh([*git, "commit", "-qm", "lock"], a)

    # A DBAE sampler setting, as an experiment: DBAE's evaluation jobs and tables rerun, no training, no DAE job.
    out = dvc("exp", "run", "-S", "dbae.sampler.churn=0.5", cwd=a)
    jobs = executed_jobs(out)
    assert jobs == Counter({"dbae_reconstruct": 4, "dbae_recon_metrics": 4, "generate": 3, "gen_metrics": 3,
                            "generate_at_nfe": 2, "gen_metrics_at_nfe": 2, "inference_cost": 2, "dbae_table": 7, "dbae_nfe_curve": 1, "study_summary": 1,
                            "study_claims": 1, "claims": 1, "report": 1}), out[-3000:]
    assert "method=dae_baseline" not in out
    shown = list(csv.DictReader(io.StringIO(dvc("exp", "show", "--csv", cwd=a))))
    assert {(r["typ"], r["dbae.sampler.churn"]) for r in shown} >= {("baseline", "0.0"), ("branch_base", "0.5")}
    sh([*git, "add", "-A"], a)
    sh([*git, "commit", "-qm", "churn"], a)

    # ScoreVAE's beta: its two phases retrain (not the prior they build on), then its rows are redone.
    params = yaml.safe_load((a / "params.yaml").read_text())
    params["methods"]["scorevae"]["beta"] = 0.02
    (a / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = dvc("repro", cwd=a)
    jobs = executed_jobs(out)
    assert jobs == Counter({"train_phase": 2, "scorevae_reconstruct": 4, "scorevae_metrics": 4, "scorevae_grid": 1,
                            "scorevae_table": 1, "study_summary": 1, "study_claims": 1, "claims": 1,
                            "report": 1}), out[-3000:]
    assert "method=score_prior" not in out
    assert executed_jobs(dvc("repro", cwd=a)) == Counter()
    assert "Data and pipelines are up to date" in dvc("status", cwd=a)

    dvc("push", cwd=a)
    assert (tmp_path / "daebench-dvc-storage").is_dir()  # the default remote, beside the repo
    sh([*git, "add", "-A"], a)
    sh([*git, "commit", "-qm", "beta"], a)
    b = tmp_path / "b"
    sh(["git", "clone", "-q", str(a), str(b)], tmp_path)
    dvc("pull", cwd=b)
    for table in ("results/table4.csv", "results/dbae/table2.csv", "results/scorevae/table1.csv",
                  "results/ddvi/table1.csv"):
        assert (b / table).read_text() == (a / table).read_text()
    targets = [t for stage in yaml.safe_load((b / "dvc.yaml").read_text())["stages"].values()
               for t in stage["cmd"].split()[3:]]
    # Every pulled artefact must get its DAG-order time (order_pulled_artefacts); one dated in the future
    # here and left so is a file the ordering misses, named rather than seen as a job Snakemake redoes.
    future = time.time() + 3600
    pulled = [f for top in ("results", "resources") for f in (b / top).rglob("*") if f.is_file()]
    for f in pulled:
        os.utime(f, (future, future))
    dry = sh([sys.executable, "-m", "snakemake", "-n", *targets], b)
    assert [str(f.relative_to(b)) for f in pulled if f.stat().st_mtime >= future] == []
    assert "Nothing to be done" in dry, dry[-3000:]
