"""The job layer's slice builders and the one training-step formula (src/daebench/jobs/): what each job
depends on decides what Snakemake reruns, so these are pinned here, not only through dry runs."""
import copy
import inspect
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from daebench import jobs
from daebench.config import ConfigError, load
from daebench.jobs import data, ddvi, training

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config():
    return load(ROOT / "params.yaml", ROOT / "workflow/schemas/params.schema.yaml")


def test_steps_split_a_length_over_phases_exactly():
    # 51,200 examples at batch 32 = 1,600 steps; 2-phase SC-4 is 0.75 / 0.25 of them
    assert training.steps(51200, 32, [0.75, 0.25], 0) == (1200, 0)
    assert training.steps(51200, 32, [0.75, 0.25], 1) == (400, 1200)
    # ScoreVAE's 0.6667 / 0.3333 of 2,400 steps: rounded at the cumulative bounds, so they add up to 2,400
    enc, corr = training.steps(76800, 32, [0.6667, 0.3333], 0), training.steps(76800, 32, [0.6667, 0.3333], 1)
    assert enc == (1600, 0) and corr == (800, 1600)
    # one-phase jobs (latent prior, DDVI): examples / batch, at least one step
    assert training.steps(204800, 256) == (800, 0)
    assert training.steps(76800, 128) == (600, 0)
    assert training.steps(10, 128) == (1, 0)


def test_bind_gives_plain_functions_without_config(config):
    J = jobs.bind(config)
    # one namespace per job module, so a rule's J.<module>.<function> is found in src/daebench/jobs/<module>.py
    assert set(vars(J)) - {"as_json"} <= {m.__name__.rsplit(".", 1)[-1] for m in jobs.MODULES}
    for module, ns in vars(J).items():
        if module == "as_json":
            continue
        for name, fn in vars(ns).items():
            assert inspect.isfunction(fn), name  # Snakemake takes functions, not partials, as input functions
            assert "config" not in inspect.signature(fn).parameters, name
            assert getattr(jobs, module).__dict__[name].__module__.endswith(f".{module}"), name
    w = SimpleNamespace(dataset="digits", method="dae_2phase_sc4", phase="phase2")
    assert J.training.train_cfg(w) == jobs.as_json(training.train_slice(config, "digits", "dae_2phase_sc4", 1))
    assert J.training.final_model(w) == "resources/models/digits/dae_2phase_sc4/phase2.pt"
    assert J.training.previous_phase(w) == "resources/models/digits/dae_2phase_sc4/phase1.pt"


def test_builder_names_are_unique_across_modules():
    # bind() would refuse two builders of one name; a module-level duplicate is caught here too
    names = [n for m in jobs.MODULES for n, f in vars(m).items()
             if not n.startswith("_") and inspect.isfunction(f) and f.__module__ == m.__name__
             and list(inspect.signature(f).parameters)[:1] == ["config"]]
    assert len(names) == len(set(names)) == len(jobs.builders())


def test_editing_a_later_phase_keeps_the_earlier_phase_slice(config):
    cfg = copy.deepcopy(config)
    before = training.train_slice(cfg, "digits", "dae_2phase_sc4", 0)
    cfg["methods"]["dae_2phase_sc4"]["phases"][1]["schedule"]["scale"] = 8
    assert training.train_slice(cfg, "digits", "dae_2phase_sc4", 0) == before
    assert training.train_slice(cfg, "digits", "dae_2phase_sc4", 1) != training.train_slice(config, "digits",
                                                                                           "dae_2phase_sc4", 1)
    # the label never changes what is trained
    cfg["methods"]["dae_2phase_sc4"]["label"] = "renamed"
    assert training.train_slice(cfg, "digits", "dae_2phase_sc4", 0) == before


def test_a_method_on_a_prior_carries_the_prior_slice(config):
    s = training.train_slice(config, "digits", "scorevae", 0)
    assert s["prior"] == training.train_slice(config, "digits", "score_prior")
    assert set(s["nets"]) == {"z_dim", "encoder"}  # the family's nets: the frozen prior's decoder is its own


def test_only_local_datasets_carry_their_path(config):
    # and a dataset's own data block (data.images) only its jobs: adding one never reruns the others
    assert data.data_slice(config, "digits") == {"dataset": "digits",
                                                 "data": {k: v for k, v in config["data"].items() if k != "images"}}
    assert data.data_slice(config, "images")["data"]["images"] == config["data"]["images"]
    cfg = copy.deepcopy(config)
    cfg["dataset_paths"]["celeba64"] = "/data/celeba"
    assert data.data_slice(cfg, "celeba64")["path"] == "/data/celeba"


def test_errors_name_the_bad_key(config):
    with pytest.raises(ConfigError, match="has no phase 'phase3'; its phases: phase1, phase2"):
        training.phase_index(config, "dae_2phase_sc4", "phase3")
    with pytest.raises(ConfigError, match="no method 'nope' under ddvi.methods"):
        ddvi.ddvi_train_slice(config, "unsup", "pinwheel", "nope", 0)
    with pytest.raises(ConfigError, match="unknown prior 'moon'"):
        ddvi.ddvi_train_slice(config, "unsup", "moon", "ddvi", 0)


def test_ddvi_options_at_their_neutral_value_leave_the_slice_unchanged(config):
    cfg = copy.deepcopy(config)
    base = ddvi.ddvi_job_slice(cfg, "unsup", "swiss_roll", "ddvi", 0)
    assert "chain_weight" not in base["method"] and "form" not in base["prior"]["params"]
    cfg["ddvi"]["methods"]["ddvi"]["chain_weight"] = 0.5
    assert ddvi.ddvi_job_slice(cfg, "unsup", "swiss_roll", "ddvi", 0)["method"]["chain_weight"] == 0.5


def test_table_inputs_follow_the_configured_order(config):
    J = jobs.bind(config)
    t4 = J.two_phase.table4_inputs(SimpleNamespace())
    assert t4[0] == "results/metrics/digits/dae_baseline/stochastic.json" and len(t4) == 6
    runs = J.ddvi.ddvi_table_runs(SimpleNamespace(table="table3"))
    assert runs[0] == "results/ddvi/runs/cluster/mixture/aevb/seed0.json"
    assert len(runs) == len(config["ddvi"]["tables"]["table3"]) * len(config["ddvi"]["seeds"])
    assert J.dbae.dbae_table_inputs(SimpleNamespace(table="table5"))[0] == "results/dbae/cost/digits/dae_baseline.json"
    with pytest.raises(ConfigError, match="unknown DBAE table 'table7'"):
        J.dbae.dbae_table_inputs(SimpleNamespace(table="table7"))
    # the report depends on every selected study's outputs
    assert set(J.studies.report_study_inputs(SimpleNamespace())) >= set(J.dbae.dbae_outputs()) | set(J.ddvi.ddvi_outputs())
    assert json.loads(J.studies.config_json(SimpleNamespace())) == json.loads(json.dumps(config))
