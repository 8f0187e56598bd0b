"""params.yaml validation: bad keys, names and values stop the run before any job, naming the key."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from daebench.config import ConfigError, validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/params.schema.yaml"
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def check(cfg):
    return validate(copy.deepcopy(cfg), SCHEMA)


def test_dbae_bridge_defaults_are_the_release_values():
    cfg = check(PARAMS)
    assert cfg["methods"]["dbae"]["bridge"] == {"beta_d": 2.0, "beta_min": 0.1, "sigma_0": 0.5, "sigma_T": 0.5,
                                                "cov": 0.0, "t_min": 0.0001}
    assert "bridge" not in cfg["methods"]["dae_baseline"]


def test_shipped_params_are_valid_and_defaults_fill():
    cfg = check(PARAMS)
    assert cfg["table4"]["ddim_steps"] == 50
    minimal = check({"methods": PARAMS["methods"]})
    assert minimal["train"]["batch_size"] == 64 and minimal["dataset"] == "digits"
    assert minimal["nets"]["decoder"]["channel_mult"] == [1, 2, 2]


def test_schema_documents_every_top_level_key():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert set(PARAMS) <= set(schema["properties"])
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("mutate,expected", [
    (lambda c: c.update(learning_rate=1), "unknown key(s) 'learning_rate' at the top level"),
    (lambda c: c["train"].update(lr_decay=0.5), "unknown key(s) 'lr_decay' under 'train'"),
    (lambda c: c["methods"]["dae_2phase_sc4"]["phases"][1]["schedule"].update(name="sc5"),
     "methods.dae_2phase_sc4.phases[1].schedule.name: 'sc5' is not allowed; allowed values: linear_beta, cosine"),
    (lambda c: c["methods"]["dae_baseline"].update(prediction="score"),
     "methods.dae_baseline.prediction: 'score' is not allowed; allowed values: eps, x, v"),
    (lambda c: c["train"].update(examples=-5), "train.examples: -5 is less than the minimum of 1"),
    (lambda c: c["table4"].update(ddim_steps=0), "table4.ddim_steps: 0 is less than the minimum of 1"),
    (lambda c: c["train"].update(batch_size="64"), "train.batch_size: '64' is not of type 'integer'"),
    (lambda c: c.update(dataset="imagenet"), "dataset: 'imagenet' is not allowed; allowed values: digits, mnist, cifar10"),
    (lambda c: c["methods"]["dae_2phase_sc4"]["phases"][0].update(fraction=1.0),
     "methods.dae_2phase_sc4.phases: fractions must sum to 1, got 1.25"),
    (lambda c: c["methods"]["dae_baseline"]["phases"].insert(0, {"name": "p1", "t": "one", "fraction": 0.0001}),
     "teaches nothing"),
    (lambda c: c["table4"]["methods"].append("dae_missing"), "table4.methods[3]: 'dae_missing' is not defined"),
    (lambda c: c["methods"]["dae_1phase_sc4"]["phases"][0]["schedule"].pop("scale"),
     "shifted_cosine needs a scale S"),
    (lambda c: c["methods"]["dbae_d"].update(tc_weight=0.1), "methods.dbae_d.tc_weight: the TC regulariser needs q(z|x)"),
    (lambda c: c["methods"]["dbae"].update(prediction="v"), "methods.dbae.prediction: a dbae method has no such key (it belongs to dae)"),
    (lambda c: c["methods"]["dbae"].update(encoder="vq"),
     "methods.dbae.encoder: 'vq' is not allowed; allowed values: stochastic, deterministic"),
    (lambda c: c["methods"]["dbae"].update(bridge={"beta_max": 20}), "unknown key(s) 'beta_max' under 'methods.dbae.bridge'"),
    (lambda c: c["methods"]["dae_baseline"].update(encoder="stochastic"), "methods.dae_baseline.encoder: a dae method has no such key (it belongs to dbae, diffdec)"),
    (lambda c: c["dbae"].update(dae="dbae"), "dbae.dae: 'dbae' is a dbae method; a dae method is needed here"),
    (lambda c: c["dbae"].update(table2_nfe=7), "dbae.table2_nfe: 7 is not in dbae.nfe"),
    (lambda c: c["dbae"]["sampler"].update(solver="rk4"), "dbae.sampler.solver: 'rk4' is not allowed"),
    (lambda c: c["methods"]["scorevae"].update(prior="dae_baseline"),
     "methods.scorevae.prior: 'dae_baseline' is a dae method; the prior must be an uncond method"),
    (lambda c: c["methods"]["scorevae"].update(prior="nope"), "methods.scorevae.prior: 'nope' is not defined"),
    (lambda c: c["methods"]["scorevae"]["phases"].reverse(),
     "a ScoreVAE trains train: encoder, then optionally train: corrector (ScoreVAE+); got ['corrector', 'encoder']"),
    (lambda c: c["methods"]["vae"].pop("beta"), "'beta' is a required property"),
    (lambda c: c["methods"]["diffdec"].update(weighting="uniform"),
     "methods.diffdec.weighting: 'uniform' is not allowed; allowed values: simple, likelihood"),
    (lambda c: c["methods"]["vae"].update(prior="score_prior"),
     "methods.vae.prior: a vae method has no such key (it belongs to scorevae)"),
    (lambda c: c["methods"]["dae_baseline"].update(beta=0.1),
     "methods.dae_baseline.beta: a dae method has no such key (it belongs to diffdec, scorevae, vae)"),
    (lambda c: c["methods"]["score_prior"]["phases"][0].pop("schedule"), "methods.score_prior.phases: family uncond needs a phase with a schedule"),
    (lambda c: c["scorevae"]["rows"].append({"method": "dae_baseline"}),
     "scorevae.rows[5].method: 'dae_baseline' is a dae method; Table 1 rows are scorevae, diffdec or vae methods"),
    (lambda c: c["scorevae"]["rows"][1].update(phase="warmup"), "scorevae.rows[1].phase: 'scorevae' has no phase 'warmup'"),
    (lambda c: c["methods"]["scorevae"].update(loss_levels={"name": "cosine"}),
     "methods.scorevae.loss_levels: needs weighting: simple (got 'likelihood')"),
    (lambda c: c["methods"]["diffdec"].update(weighting="simple", loss_levels={"name": "shifted_cosine"}),
     "methods.diffdec.loss_levels: shifted_cosine needs a scale"),
    (lambda c: c["methods"]["vae"].update(loss_levels={"name": "cosine"}),
     "methods.vae.loss_levels: a vae method has no such key"),
])
def test_bad_params_name_the_key(mutate, expected):
    cfg = copy.deepcopy(PARAMS)
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        check(cfg)
    assert expected in str(err.value)


def write_bad(tmp_path, mutate):
    cfg = copy.deepcopy(PARAMS)
    mutate(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("mutate,key", [
    (lambda c: c.update(foo=1), "'foo'"),
    (lambda c: c["methods"]["dae_2phase_sc4"]["phases"][1]["schedule"].update(name="warp"), "schedule.name"),
    (lambda c: c["train"].update(examples=-1), "train.examples"),
])
def test_snakemake_fails_before_any_job(tmp_path, mutate, key):
    bad = write_bad(tmp_path, mutate)
    # --configfile merges onto params.yaml, as a user's override would
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "results/table4.csv", "--configfile", str(bad)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalid parameters" in out and key in out, out[-2000:]
    assert "rule prepare_data" not in out  # no job was scheduled
