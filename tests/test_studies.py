"""A study declares itself once (daebench/studies/, docs/architecture.md "Adding a study"): a toy study added to
a copy of the package as one new module and one registration line plans with Snakemake, appears in the report,
gets a DVC stage, has its claims evaluated and is scaled by the emergence ladder."""
import json
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT, copy_workflow, workflow_env
from test_recipes import edited_package

# The new module: its claims (one table, one claim), its table built by the shared `study_table` rule from Table 4's
# scoring jobs, its report section, its DVC stage and its emergence scaling.
TOY = '''"""A toy study: 2-phase against the baseline in SSIM, from Table 4's stochastic scores."""
import json
import sys

import pandas as pd

from ..claims.core import Better, measurements, melt
from .base import Section, Stage, Study, Table

STUDY, PAPER = "toy", "Toy paper"
TABLES = {"table1": "results/toy/table1.csv"}
CLAIMS = [Better("toy_2phase_gt_baseline_ssim", "Table 1", "2-phase beats the baseline in SSIM", "ssim", "2-phase",
                 "baseline")]
METHODS = {"dae_baseline": "baseline", "dae_2phase_sc4": "2-phase"}


def _inputs(config):
    return [f"results/metrics/{config['dataset']}/{m}/stochastic.json" for m in METHODS]


def _write(cfg, inputs):
    rows = [{"dataset": cfg["dataset"], "method": m, "label": METHODS[m], "ssim": json.load(open(p))["ssim"]}
            for m, p in zip(METHODS, inputs)]
    return pd.DataFrame(rows)


def ours(tables, cfg, samples=None):
    t = tables["table1"]
    return measurements(melt(t, t["dataset"], t["label"], ["ssim"]))


def paper(ref_dir):
    return measurements(melt(pd.DataFrame({"label": ["baseline", "2-phase"], "ssim": [0.5, 0.7]}), "paper",
                             ["baseline", "2-phase"], ["ssim"]))


STUDY = Study(
    name="toy", claims=sys.modules[__name__],
    outputs=lambda config: list(TABLES.values()),
    headlines={"table1": (("label",), ("ssim",))},
    scaled=(("train", "examples"),),
    section=Section("The toy study", "Two rows of Table 4 again.", (("Table 1", "toy/table1.csv", None, None),)),
    stage=Stage("toy", targets=lambda config: list(TABLES.values()), jobs=lambda config: [_inputs(config)],
                deps=lambda config: [], outs=lambda config, owned: ["results/toy"]),
    tables={"table1": Table(inputs=_inputs, write=_write, cfg=lambda config: {"dataset": config["dataset"]})},
)
'''


def toy_package(tmp_path: Path) -> Path:
    src = edited_package(tmp_path, {"studies/__init__.py": [  # the registration line
        ('NAMES = ("two_phase", "two_phase_ablations", "dbae", "scorevae", "ddvi")',
         'NAMES = ("two_phase", "two_phase_ablations", "dbae", "scorevae", "ddvi", "toy")')]})
    (src / "daebench/studies/toy.py").write_text(TOY)  # the module
    return src


def test_a_study_is_one_module_and_one_registration_line(tmp_path):
    src = toy_package(tmp_path)
    env = {**workflow_env(), "PYTHONPATH": str(src), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proj = copy_workflow(tmp_path / "proj")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["report"]["studies"] = ["two_phase", "toy"]
    params["emergence"]["studies"] = ["toy"]
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def run(*args, timeout=600):
        proc = subprocess.run(args, cwd=proj, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        return proc.stdout + proc.stderr

    # The workflow plans its table (the shared study_table rule over the shared training and scoring jobs), its
    # claims and summary, the report with its section, and its emergence ladder.
    plan = run(sys.executable, "-m", "snakemake", "-n", "--cores", "2", "results/toy/table1.csv",
               "results/claims/toy.csv", "results/summary/toy.json", "results/report.html", "emergence_all")
    for rule in ("study_table", "study_claims", "study_summary", "report", "emergence", "metrics", "train_phase"):
        assert f"rule {rule}:" in plan or f"localrule {rule}:" in plan, rule
    assert "results/toy/table1.csv" in plan and "results/emergence/toy/x2/results/claims/toy.csv" in plan

    out = run(sys.executable, "-c", """
import copy, json, yaml
from pathlib import Path
import pandas as pd
from daebench.cli import build_parser
from daebench.claims import study_claims
from daebench.config import load
from daebench.emergence import point_config
from daebench.jobs.dvc import stages
from daebench.report import SECTIONS, contents
from daebench.studies import REGISTRY
cfg = load("params.yaml", "workflow/schemas/params.schema.yaml")
st = stages(cfg)
print("stage", st["toy"]["cmd"], st["toy"]["outs"])
print("section", SECTIONS["toy"]["title"], "toy" in contents(["two_phase", "toy"]))
toy = REGISTRY["toy"]
t = pd.DataFrame({"dataset": ["digits"] * 2, "label": ["baseline", "2-phase"], "ssim": [0.40, 0.60]})
c = study_claims(toy.claims, {"table1": t}, {})
print("verdict", c["verdict"].iloc[0])
print("scaled", point_config(cfg, "toy", 2)["train"]["examples"] == 2 * cfg["train"]["examples"])
args = build_parser().parse_args(["claims", "--study", "toy", "--tables", "table1=x.csv", "--out", "y.csv"])
print("cli", args.study)
""")
    assert "stage snakemake --cores all results/toy/table1.csv results/summary/toy.json" in out, out
    assert "section The toy study True" in out and "scaled True" in out and "cli toy" in out, out
    assert "verdict holds" in out, out  # a single value per row: no interval, the point comparison decides

    # The shared study_table rule's command writes the table from the files it names.
    for m, v in {"dae_baseline": 0.4, "dae_2phase_sc4": 0.6}.items():
        p = proj / f"results/metrics/digits/{m}/stochastic.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"ssim": v}))
    run(sys.executable, "-m", "daebench", "study-table", "--study", "toy", "--table", "table1", "--cfg",
        '{"dataset": "digits"}', "--inputs", "results/metrics/digits/dae_baseline/stochastic.json",
        "results/metrics/digits/dae_2phase_sc4/stochastic.json", "--out", "results/toy/table1.csv")
    assert (proj / "results/toy/table1.csv").read_text().splitlines()[1:] == ["digits,dae_baseline,baseline,0.4",
                                                                               "digits,dae_2phase_sc4,2-phase,0.6"]


def test_the_registry_is_the_one_list_of_studies():
    """Everything that names the studies reads the registry: the schema's enums, the CLI's choices, the DVC stages,
    the report's sections and the emergence ladders."""
    from daebench.cli import build_parser
    from daebench.config import load
    from daebench.jobs.dvc import stages
    from daebench.report import SECTIONS
    from daebench.studies import NAMES, REGISTRY

    assert list(REGISTRY) == list(NAMES) and all(s.name == n for n, s in REGISTRY.items())
    cfg = load(ROOT / "params.yaml", ROOT / "workflow/schemas/params.schema.yaml")
    assert [k for k in stages(cfg) if k not in ("data", "report")] == [s.stage.name for s in REGISTRY.values()]
    assert list(SECTIONS) == [n for n, s in REGISTRY.items() if s.section]
    claims = next(a for a in build_parser()._subparsers._group_actions[0].choices["claims"]._actions
                  if "--study" in a.option_strings)
    assert list(claims.choices) == list(NAMES)
    for name, s in REGISTRY.items():
        assert set(s.headlines) <= set(s.claims.TABLES) and s.scaled, name
        for rules in s.rules:
            assert (ROOT / "workflow/rules" / rules).exists(), (name, rules)


def test_no_rule_file_is_included_by_hand_that_a_study_declares():
    snakefile = (ROOT / "Snakefile").read_text()
    from daebench.studies import REGISTRY

    for s in REGISTRY.values():
        for rules in s.rules:
            assert f'"workflow/rules/{rules}"' not in snakefile, rules
