"""params.yaml validation: bad keys, names and values stop the run before any job, naming the key."""
import copy
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from daebench.config import ConfigError, validate
from daebench.data.registry import DATASETS, needs_path
from daebench.methods import families

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
    (lambda c: c["methods"]["vae"].pop("beta"), "methods.vae.beta: a vae method needs this key"),
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


# --------------------------------------------------------------------------- NaN / inf, every number of the schema

SCHEMA_DOC = yaml.safe_load(SCHEMA.read_text())
ANY = "*"  # any key of a map (additionalProperties / patternProperties); an int is a list index


def schema_numbers(node, parts=(), depth=0):
    """Schema paths (tuples of keys, ANY, 0 for list items) of every value of type number or integer."""
    assert depth < 30, parts
    if "$ref" in node:
        node = {**SCHEMA_DOC["definitions"][node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items()
                                                                           if k != "$ref"}}
    types = node.get("type", [])
    out = [parts] if {"number", "integer"} & set([types] if isinstance(types, str) else types) else []
    for key, sub in node.get("properties", {}).items():
        out += schema_numbers(sub, (*parts, key), depth + 1)
    for sub in [node.get("additionalProperties"), *node.get("patternProperties", {}).values()]:
        if isinstance(sub, dict):
            out += schema_numbers(sub, (*parts, ANY), depth + 1)
    if isinstance(node.get("items"), dict):
        out += schema_numbers(node["items"], (*parts, 0), depth + 1)
    for sub in [*node.get("allOf", []), *node.get("anyOf", []), *node.get("oneOf", []), node.get("then"),
                node.get("else")]:
        if isinstance(sub, dict):
            out += schema_numbers(sub, parts, depth + 1)
    return sorted(set(out), key=str)


NUMBERS = schema_numbers(SCHEMA_DOC)
# Containers an optional key needs around it to sit at a valid place (their required keys).
SEEDS = {"loss_levels": {"name": "shifted_cosine"}, "context_net": {"size": 2, "dropout": 0.4},
         "stage1": {"steps": 20, "beta": [1.0e-4, 0.02], "kl_weight": 0.01}}  # a block's required keys


def key_name(parts):
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def owners_ok(parts, i, name):
    """Whether the map entry ``name`` at ``parts[i]`` may hold the rest of the path (a family's own keys)."""
    image, ddvi = families("image"), families("ddvi")
    if parts[:i] == ("methods",) and i + 1 < len(parts) and parts[i + 1] in set().union(*(f.keys for f in image.values())):
        return parts[i + 1] in image[PARAMS["methods"][name]["family"]].keys
    if parts[:i] == ("ddvi", "methods") and parts[i + 1] in set().union(*(f.keys for f in ddvi.values())):
        return parts[i + 1] in ddvi[PARAMS["ddvi"]["methods"][name]["family"]].keys
    return True


def existing_depth(obj, parts):
    for n, p in enumerate(parts):
        if isinstance(p, int):
            if not (isinstance(obj, list) and len(obj) > p):
                return n
        elif not (isinstance(obj, dict) and p in obj):
            return n
        obj = obj[p]
    return len(parts)


def locate(parts):
    """A concrete key in params.yaml for a schema path: map entries of the key's own family, preferring one
    where the key (or most of its path) is already set; an absent container is added with its required keys."""
    concrete = []
    for i, p in enumerate(parts):
        if p != ANY:
            concrete.append(p)
            continue
        where = PARAMS
        for q in concrete:
            where = where[q]
        names = sorted(n for n in where if owners_ok(parts, i, n))
        concrete.append(max(names, key=lambda n: existing_depth(where[n], parts[i + 1:])))
    return tuple(concrete)


def with_value(parts, value):
    cfg = copy.deepcopy(PARAMS)
    obj = cfg
    for p, nxt in itertools.pairwise(parts):
        if isinstance(p, int):
            while len(obj) <= p:
                obj.append({} if isinstance(nxt, str) else [])
        elif p not in obj or obj[p] is None:
            obj[p] = copy.deepcopy(SEEDS.get(p, {})) if isinstance(nxt, str) else []
        obj = obj[p]
    last = parts[-1]
    if isinstance(last, int):
        obj[last:last + 1] = [value]
    else:
        obj[last] = value
    return cfg


def numeric_leaves(obj, parts=()):
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return [parts]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    return [leaf for k, v in items for leaf in numeric_leaves(v, (*parts, k))]


def generic(parts):
    """A concrete key -> its schema path (map entries of methods / ddvi.methods as ANY)."""
    parts = list(parts)
    for prefix in (("methods",), ("ddvi", "methods")):
        if tuple(parts[:len(prefix)]) == prefix and len(parts) > len(prefix):
            parts[len(prefix)] = ANY
    return tuple(0 if isinstance(p, int) else p for p in parts)


# Free-form blocks (type: object without properties): no schema path, covered by the test after the next.
FREE_FORM = (("ddvi", "genotypes", "simulated"), ("ddvi", "genotypes", "1000_genomes"),
             ("ddvi", "methods", ANY, "settings"))


def test_schema_walk_finds_every_number_of_params_yaml():
    assert len(NUMBERS) > 100
    assert {("train", "lr"), ("train", "ema_decay"), ("ddvi", "train", "lr"), ("methods", ANY, "bridge", "t_min"),
            ("ddvi", "methods", ANY, "beta", 0), ("nets", "decoder", "dropout"), ("emergence", "scales", 0),
            ("methods", ANY, "phases", 0, "schedule", "scale")} <= set(NUMBERS)
    shipped = {generic(leaf) for leaf in numeric_leaves(PARAMS)
               if not any(generic(leaf)[:len(f)] == f for f in FREE_FORM)}
    assert shipped - set(NUMBERS) == set()  # every number params.yaml sets has a schema path tested below
    assert validate(copy.deepcopy(PARAMS), SCHEMA)  # and the base the cases start from is valid


@pytest.mark.parametrize("parts", NUMBERS, ids=key_name)
def test_every_schema_number_rejects_nan_and_inf_naming_the_key(parts):
    """No key of the schema allows NaN or infinity, so each gets NaN, inf and -inf in turn at a valid place:
    the one problem reported is that value at that key (JSON-schema bounds alone let NaN through)."""
    key = key_name(locate(parts))
    for value in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ConfigError) as err:
            check(with_value(locate(parts), value))
        (problem,) = str(err.value).splitlines()[1:]
        assert problem.startswith(f"  - {key}: {value!r} is not a finite number; give a finite value"), problem


@pytest.mark.parametrize("parts", [
    ("ddvi", "genotypes", "simulated", "mutation_rate"),       # free-form blocks read by daebench.data.genotypes
    ("ddvi", "genotypes", "1000_genomes", "max_sites"),
    ("ddvi", "methods", "ddvi", "settings", "semi", "kl_weight"),   # a per-setting override
    ("ddvi", "methods", "aaeb", "settings", "cluster", "noise"),
], ids=key_name)
def test_nan_in_free_form_blocks_is_rejected_too(parts):
    with pytest.raises(ConfigError) as err:
        check(with_value(parts, float("nan")))
    assert str(err.value).splitlines()[1].startswith(f"  - {key_name(parts)}: nan is not a finite number")


def test_yaml_nan_and_inf_spellings_are_rejected():
    cfg = copy.deepcopy(PARAMS)
    cfg["train"].update(yaml.safe_load("{lr: .nan, ema_decay: .inf}"))
    cfg["ddvi"]["train"].update(yaml.safe_load("{lr: -.Inf}"))
    with pytest.raises(ConfigError) as err:
        check(cfg)
    problems = [line.split(":")[0].strip(" -") for line in str(err.value).splitlines()[1:]]
    assert problems == ["ddvi.train.lr", "train.ema_decay", "train.lr"]


# --------------------------------------------------------------------------- datasets read from a local copy

def test_the_datasets_needing_a_path_are_those_without_a_download():
    assert {name for name in DATASETS if needs_path(name)} == {"celeba64", "imagenet32", "ffhq128", "images"}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_selected_dataset_without_its_path_fails_naming_the_key_and_what_to_put_there(name):
    cfg = copy.deepcopy(PARAMS)
    cfg["dataset"] = name
    if not needs_path(name):  # embedded, downloaded, or (lsun_bedroom128 left null) downloaded instead
        check(cfg)
        return
    for missing in (None, "", "  "):
        cfg["dataset_paths"][name] = missing
        with pytest.raises(ConfigError) as err:
            check(cfg)
        msg = str(err.value)
        assert f"dataset_paths.{name}: dataset {name} is read from a local copy and none is given" in msg
        assert f"set dataset_paths.{name} in params.yaml (or your --configfile) to" in msg
        assert DATASETS[name].hint in msg
    cfg["dataset_paths"][name] = f"/data/{name}"  # not checked to exist here: it may exist on compute nodes only
    assert check(cfg)["dataset_paths"][name] == f"/data/{name}"
    cfg["dataset_paths"][name] = None  # tools that only build networks (benchmarks/) opt out
    assert validate(copy.deepcopy(cfg), SCHEMA, local_data=False)["dataset"] == name


def test_unselected_datasets_may_leave_their_path_null():
    assert all(v is None for v in PARAMS["dataset_paths"].values()) and PARAMS["dataset"] == "digits"
    check(PARAMS)
    check({**PARAMS, "dataset": "lsun_bedroom128"})


@pytest.fixture
def project(tmp_path):
    """A bare copy of the workflow (no results, no .snakemake): the dry run plans from scratch."""
    for item in ("Snakefile", "params.yaml", "workflow", "envs"):
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, tmp_path / item)
    return tmp_path


@pytest.mark.parametrize("overlay,target", [
    ({"dataset": "celeba64"}, "results/table4.csv"),
    ({}, "resources/data/ffhq128/manifest.json"),  # a dataset named only by a target path, not `dataset`
])
def test_dry_run_without_a_local_dataset_path_fails_before_any_job(project, overlay, target):
    name = overlay.get("dataset") or target.split("/")[2]
    args = ["-n", target]
    if overlay:
        (project / "overlay.yaml").write_text(yaml.safe_dump(overlay))
        args += ["--configfile", "overlay.yaml"]
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=project, capture_output=True, text=True,
                          timeout=120, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalid parameters" in out and f"dataset_paths.{name}: dataset {name} is read from a local copy" in out
    assert f"set dataset_paths.{name} in params.yaml (or your --configfile) to" in out, out[-2000:]
    assert "Job stats" not in out and "rule prepare_data:" not in out  # no job was scheduled


def test_schema_enums_follow_the_code_registries():
    """Registry-backed fields (`x-registry` in the schema) take their enum from the code as it is, and the
    fields naming studies list exactly the registered studies, each with its own tables."""
    from daebench.config import _schema, registries
    from daebench.diffusion.schedules import SCHEDULES
    from daebench.methods import families
    from daebench.studies import REGISTRY as STUDIES

    path = ROOT / "workflow/schemas/params.schema.yaml"
    schema = _schema(str(path), path.stat().st_mtime_ns)
    found = {}

    def walk(node, where=""):
        if isinstance(node, dict):
            if "x-registry" in node:
                found[where] = node
            for k, v in node.items():
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for v in node:
                walk(v, where)

    walk(schema)
    regs = registries()
    assert {n["x-registry"] for n in found.values()} == set(regs) - {"modes.dbae", "modes.uncond", "modes.vae",
                                                                        "modes.diffdec"}
    for where, node in found.items():
        assert node["enum"] == regs[node["x-registry"]], where
    assert regs["schedules"] == list(SCHEDULES)
    assert regs["image_families"] == list(families("image")) and regs["lvm_families"] == list(families("ddvi"))
    props = schema["properties"]
    assert props["report"]["properties"]["studies"]["items"]["enum"] == list(STUDIES)
    assert props["emergence"]["properties"]["studies"]["items"]["enum"] == list(STUDIES)
    tables = props["emergence"]["properties"]["tables"]["properties"]
    assert {k: v["items"]["enum"] for k, v in tables.items()} == {n: list(s.claims.TABLES) for n, s in STUDIES.items()}


def test_every_schema_key_has_a_description():
    """The schema is the one place for a key's type, default and meaning: every property says what it is."""
    schema = yaml.safe_load((ROOT / "workflow/schemas/params.schema.yaml").read_text())
    missing = []

    def walk(node, path):
        if not isinstance(node, dict):
            return
        for key, sub in (node.get("properties") or {}).items():
            where = f"{path}.{key}" if path else key
            if isinstance(sub, dict) and not sub.get("description"):
                missing.append(where)
            walk(sub, where)
        for key in ("items", "additionalProperties"):
            walk(node.get(key), f"{path}[]")
        for name, sub in (node.get("definitions") or {}).items():
            walk(sub, f"#{name}")

    walk(schema, "")
    assert not missing, f"schema keys without a description: {missing}"


def test_cached_code_facts_are_the_code():
    """Validation and the workflow read the families' and registries' facts from a cache keyed by the code's
    sha256 (so parsing the workflow does not import torch); what it holds is what the code declares."""
    from daebench import config

    assert config.code_facts() == json.loads(json.dumps(config._compute_facts()))


def test_command_line_overrides_are_typed_before_validation():
    """`--config train={lr: 0.002}`: Snakemake hands the nested leaves over as strings; they are read as YAML
    scalars (numbers, bools, null) before validation, and merged over the config without dropping siblings."""
    from daebench.config import apply_overrides, typed

    assert typed({"lr": "0.002", "n": "3", "e": "1e-3", "ok": "true", "no": "null", "name": "digits",
                  "l": ["1", "x"]}) == {"lr": 0.002, "n": 3, "e": 0.001, "ok": True, "no": None, "name": "digits",
                                        "l": [1, "x"]}
    cfg = {"train": {"lr": 0.0005, "batch_size": 64}, "dataset": "digits"}
    assert apply_overrides(cfg, {"train": {"lr": "0.002"}}) == {"train": {"lr": 0.002, "batch_size": 64},
                                                                 "dataset": "digits"}


def test_validate_takes_overlays_and_answers_in_lines(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: -1}\n")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "daebench", "validate", *args], capture_output=True, text=True,
                              timeout=120, check=False, cwd=root)

    ok = run("--overlay", "tests/smoke.yaml")
    assert ok.returncode == 0 and ok.stdout.strip() == "params.yaml + tests/smoke.yaml: valid", ok.stderr
    out = run("--overlay", "tests/smoke.yaml", str(bad))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == "  - train.lr: -1 is less than or equal to the minimum of 0"
    alone = run("--params", "tests/smoke.yaml")  # a preset on its own: the problems and how to check it as meant
    assert alone.returncode == 1 and "Traceback" not in alone.stderr and "--overlay tests/smoke.yaml" in alone.stderr
