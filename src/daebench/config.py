"""Parameter validation: params.yaml is checked once, at workflow start, against
workflow/schemas/params.schema.yaml (defaults filled in), then semantic checks that a schema
cannot express. Errors name the key path, the bad value and what is allowed.

Two checks apply everywhere rather than key by key: no number may be NaN or infinite (YAML's .nan / .inf;
JSON-schema bounds never reject NaN), and the selected dataset's local copy (dataset_paths.<dataset>) must be
given when the dataset has no download, so a missing path stops the dry run rather than the prepare job."""
from __future__ import annotations

import copy
import functools
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    pass


def _with_defaults(validator_cls):
    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


# The code facts validation and the workflow read: the registries' names and each family's declaration. They
# come from importing the code (torch: ~2 s), so they are cached per version of the files that declare them;
# parsing the workflow then never imports torch.
_FACT_SOURCES = ("config.py", "methods/*.py", "diffusion/*.py", "data/registry.py", "studies/*.py", "claims/*.py")


def _compute_facts() -> dict:
    from .data.registry import DATASETS
    from .diffusion.bridge import SOLVERS
    from .diffusion.schedules import SCHEDULES
    from .methods import FAMILIES
    from .studies import REGISTRY

    module = {}  # family -> the module declaring it (src/daebench/methods/<module>.py), for DVC's code deps
    for name, mod in sorted(sys.modules.items()):
        if name.startswith("daebench.methods.") and mod is not None:
            for f in [*getattr(mod, "FAMILIES", ()), *([mod.FAMILY] if hasattr(mod, "FAMILY") else [])]:
                if FAMILIES.get(f.name) is f:
                    module[f.name] = name.removeprefix("daebench.").replace(".", "/") + ".py"
    return {"registries": {"schedules": list(SCHEDULES), "datasets": list(DATASETS), "bridge_solvers": list(SOLVERS),
                           "studies": list(REGISTRY)},
            "study_tables": {n: list(s.claims.TABLES) for n, s in REGISTRY.items()},
            "families": {n: {"kind": f.kind, "nets": list(f.nets), "keys": sorted(f.keys), "required": list(f.required),
                             "defaults": dict(f.defaults), "modes": list(f.modes), "module": module[n],
                             "recipes": dict(getattr(f, "recipes", {}))}
                         for n, f in FAMILIES.items()}}


@functools.lru_cache(maxsize=1)
def code_facts() -> dict:
    """{"registries": {schedules, datasets, bridge_solvers, studies}, "study_tables": {study: tables},
    "families": {name: {kind, nets, keys, required, defaults, modes, module}}}: read from the code, cached under $XDG_CACHE_HOME/daebench by the sha256 of its files."""
    import hashlib
    import json

    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for pattern in _FACT_SOURCES:
        for f in sorted(pkg.glob(pattern)):
            h.update(f.relative_to(pkg).as_posix().encode() + b"\0" + f.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "daebench" / f"facts-{h.hexdigest()[:16]}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    facts = _compute_facts()
    try:
        from .data.store import atomic_path

        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            tmp.write_text(json.dumps(facts))
    except OSError:  # a read-only home: recompute next time
        pass
    return facts


def family_facts(kind: str | None = None) -> dict[str, dict]:
    """Each family's declared facts (methods/<family>.py FAMILY), of one kind (image | ddvi) or all."""
    return {n: f for n, f in code_facts()["families"].items() if kind is None or f["kind"] == kind}


def modes() -> list[str]:
    """Every decoding mode of the image families (the workflow's mode wildcard, `reconstruct --mode`)."""
    return list(dict.fromkeys(m for f in family_facts("image").values() for m in f["modes"]))


def nets_keys(method: dict) -> tuple[str, ...]:
    """The nets.* blocks a method (as trained up to some phase) is built from: its family's, plus the
    network a phase trains on top (ScoreVAE+'s corrector)."""
    keys = tuple(family_facts()[method["family"]]["nets"])
    if any(p.get("train") == "corrector" for p in method["phases"]):
        keys += ("corrector",)
    return keys


def registries() -> dict[str, list[str]]:
    """The names the code registers, which the schema's ``x-registry: <name>`` fields accept: adding a
    schedule, family, sampler or dataset is its code and one registration line, never a schema edit."""
    facts = code_facts()
    image = family_facts("image")
    return {**facts["registries"], "image_families": list(image), "lvm_families": list(family_facts("ddvi")),
            **{f"modes.{name}": list(f["modes"]) for name, f in image.items()}}


def _fill_registries(node, regs: dict) -> None:
    if isinstance(node, dict):
        if "x-registry" in node:
            node["enum"] = regs[node["x-registry"]]
        if "x-registry-map" in node:  # one array property per registered name, of that name's registered items
            node["properties"] = {k: {"type": "array", "items": {"enum": v}}
                                  for k, v in code_facts()[node["x-registry-map"]].items()}
        for v in node.values():
            _fill_registries(v, regs)
    elif isinstance(node, list):
        for v in node:
            _fill_registries(v, regs)


def _key(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _path(err: jsonschema.ValidationError) -> str:
    return _key(err.absolute_path)


def _non_finite(value) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _non_finite_problems(obj, parts=()) -> list[tuple[tuple, str]]:
    """Every NaN / infinite number anywhere in the config (free-form blocks included), as (path, message).
    No parameter accepts one: a schema's bounds let NaN through (every comparison with it is false)."""
    if _non_finite(obj):
        return [(parts, (f"{_key(parts)}: {obj!r} is not a finite number; give a finite value (NaN and infinity, "
                         "YAML's .nan and .inf, are never valid parameters)"))]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    return [p for k, v in items for p in _non_finite_problems(v, (*parts, k))]


def _describe(err: jsonschema.ValidationError) -> str:
    key = _path(err)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        where = f"under '{key}'" if key != "<top level>" else "at the top level"
        return (f"unknown key(s) {', '.join(repr(e) for e in extra)} {where}; allowed keys: {', '.join(allowed)}")
    if err.validator == "enum":
        return f"{key}: {err.instance!r} is not allowed; allowed values: {', '.join(map(str, err.validator_value))}"
    return f"{key}: {err.message}"


@functools.lru_cache(maxsize=8)
def _schema_file(path: str, mtime_ns: int) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _schema(path: str, mtime_ns: int) -> dict:
    """The schema with every ``x-registry`` field's enum filled from the code's registries as they are now."""
    schema = copy.deepcopy(_schema_file(path, mtime_ns))
    _fill_registries(schema, registries())
    return schema


def validate(config: dict, schema_path: str | Path, *, local_data: bool = True) -> dict:
    """Validate ``config`` in place (defaults filled) and return it; raise ConfigError listing every problem.

    ``local_data``: also require the local copy of the selected dataset where it has no download
    (``dataset_paths.<dataset>``); tools that only build networks from a preset (benchmarks/) pass False."""
    schema_path = Path(schema_path).resolve()
    schema = _schema(str(schema_path), schema_path.stat().st_mtime_ns)
    cls = _with_defaults(jsonschema.Draft7Validator)
    # Defaults are filled in a first pass; errors are collected in a second on the filled config.
    for _ in cls(schema).iter_errors(config):
        pass
    # Family-specific keys exist only on that family's methods (so they never enter another family's
    # job params); fill them here, then let a second pass fill the defaults inside them.
    methods = config.get("methods")
    if isinstance(methods, dict):
        for m in methods.values():
            if isinstance(m, dict):
                fam = family_facts("image").get(m.get("family"))
                for key, value in (fam["defaults"] if fam is not None else {}).items():
                    m.setdefault(key, copy.deepcopy(value))
        for _ in cls(schema).iter_errors(config):
            pass
    _apply_recipes(config)
    # A NaN / inf is reported once, by the walk, whatever bounds or type its key has.
    found = [(tuple(e.absolute_path), _describe(e))
             for e in jsonschema.Draft7Validator(schema).iter_errors(config) if not _non_finite(e.instance)]
    found += _non_finite_problems(config)
    problems = [msg for _, msg in sorted(found, key=lambda f: [str(p) for p in f[0]])]
    if not problems:
        problems = _semantic_problems(config) + (dataset_path_problems(config, config["dataset"]) if local_data
                                                 else [])
    if problems:
        raise ConfigError("invalid parameters:\n  - " + "\n  - ".join(problems))
    return config


def _apply_recipes(config: dict) -> None:
    """``ddvi.recipe`` other than "paper": each DDVI-study family's recipe of that name (methods/<family>.py
    RECIPES) set on its methods, on ddvi.priors and on ddvi.nets, over what params.yaml and overlays say (to vary
    one of its choices, set the keys without the recipe). Unknown names are the schema's to report."""
    study = config.get("ddvi")
    if not isinstance(study, dict) or study.get("recipe", "paper") == "paper":
        return
    for family, facts in family_facts("ddvi").items():
        recipe = facts.get("recipes", {}).get(study["recipe"])
        if recipe is None:
            continue
        for m in (study.get("methods") or {}).values():
            if isinstance(m, dict) and m.get("family") == family:
                m.update({k: copy.deepcopy(v) for k, v in recipe["method"].items() if k not in recipe.get("keep", ())})
        for section in ("priors", "nets"):
            if isinstance(study.get(section), dict):
                deep_update(study[section], recipe.get(section, {}))


def _semantic_problems(config: dict) -> list[str]:
    problems = []
    methods = config.get("methods", {})
    for name, m in methods.items():
        phases = m["phases"]
        names = [p["name"] for p in phases]
        if len(set(names)) != len(names):
            problems.append(f"methods.{name}.phases: phase names must be unique, got {names}")
        total = sum(p["fraction"] for p in phases)
        # Less than 1 is a method that stops early: two-phase Table 3's "t = 1 only" is the first 0.75 of a
        # 2-phase run (and so that run's phase-1 job).
        if total > 1.0 + 1e-6 or (total < 1.0 - 1e-6 and not m.get("sample_schedule")):
            problems.append(f"methods.{name}.phases: fractions must sum to 1, got {total:g} (less than 1 only for a "
                            "model that stops after phase 1 of another method, with a sample_schedule)")
        fam = m["family"]
        keys = {f: set(spec["keys"]) for f, spec in family_facts("image").items()}
        for key in sorted((set().union(*keys.values()) - keys[fam]) & set(m)):
            owners = sorted(f for f, k in keys.items() if key in k)
            problems.append(f"methods.{name}.{key}: a {fam} method has no such key (it belongs to {', '.join(owners)})")
        missing = [k for k in family_facts()[fam]["required"] if k not in m]
        problems += [f"methods.{name}.{k}: a {fam} method needs this key" for k in missing]
        if missing:
            continue
        if fam == "dbae":
            problems += _dbae_problems(name, m)
            continue
        if fam != "dae":
            problems += _vp_problems(name, m, methods)
            continue
        for i, p in enumerate(phases):
            if "train" in p:
                problems.append(f"methods.{name}.phases[{i}].train: only scorevae phases have this key")
        for i, p in enumerate(phases):
            key = f"methods.{name}.phases[{i}]"
            if "t" not in p:
                problems.append(f"{key}.t: a DAE phase needs t: one or t: uniform")
                continue
            if p["t"] == "uniform" and "schedule" not in p:
                problems.append(f"{key}.schedule: a phase with t: uniform needs a schedule")
            if p["t"] == "one" and m["prediction"] == "eps":
                problems.append(f"{key}.t: t: one with eps-prediction teaches nothing (target = input); "
                                "use prediction v or x")
            s = p.get("schedule")
            if s and s["name"] == "shifted_cosine" and "scale" not in s:
                problems.append(f"{key}.schedule.scale: shifted_cosine needs a scale S (e.g. 4 for SC-4)")
        if not any("schedule" in p for p in phases) and "sample_schedule" not in m:
            problems.append(f"methods.{name}.phases: at least one phase needs a schedule for sampling "
                            "(or, for a model trained at t = 1 only, give the method a sample_schedule)")
    problems += _dbae_study_problems(config)
    problems += _scorevae_study_problems(config)
    problems += _ddvi_study_problems(config)
    for i, mname in enumerate(config.get("table4", {}).get("methods", [])):
        if mname not in methods:
            problems.append(f"table4.methods[{i}]: {mname!r} is not defined under methods; "
                            f"defined: {', '.join(sorted(methods))}")
    return problems


def dataset_path_problems(config: dict, dataset: str) -> list[str]:
    """[] when ``dataset`` can be prepared with this config; else why not: a dataset without a download
    (celeba64, imagenet32, ffhq128) needs its local copy named under ``dataset_paths``."""
    from daebench.data.registry import DATASETS, needs_path

    path = config.get("dataset_paths", {}).get(dataset)
    if dataset not in DATASETS or not needs_path(dataset) or (path is not None and str(path).strip()):
        return []
    given = "null" if path is None else repr(path)
    return [(f"dataset_paths.{dataset}: dataset {dataset} is read from a local copy and none is given ({given}). "
             f"{DATASETS[dataset].hint}")]


def _dbae_problems(name: str, m: dict) -> list[str]:
    problems = []
    if len(m["phases"]) != 1:
        problems.append(f"methods.{name}.phases: DBAE trains in one joint phase, got {len(m['phases'])}")
    for i, p in enumerate(m["phases"]):
        for key in ("t", "schedule"):
            if key in p:
                problems.append(f"methods.{name}.phases[{i}].{key}: DAE-only key; the bridge fixes its own times")
    if m.get("tc_weight", 0) > 0 and m.get("encoder") != "stochastic":
        problems.append(f"methods.{name}.tc_weight: the TC regulariser needs q(z|x); use encoder: stochastic")
    return problems


def _vp_problems(name: str, m: dict, methods: dict) -> list[str]:
    """uncond / scorevae / diffdec / vae: the ScoreVAE study's families."""
    problems = []
    fam, phases = m["family"], m["phases"]
    for i, p in enumerate(phases):
        if "t" in p:
            problems.append(f"methods.{name}.phases[{i}].t: DAE-only key; VP-diffusion methods draw t themselves")
        if "train" in p and fam != "scorevae":
            problems.append(f"methods.{name}.phases[{i}].train: only scorevae phases have this key")
        if "schedule" in p and fam in ("scorevae", "vae"):
            problems.append(f"methods.{name}.phases[{i}].schedule: a {fam} method has no schedule of its own"
                            + (" (it uses its prior's)" if fam == "scorevae" else ""))
    if fam in ("uncond", "diffdec") and not any("schedule" in p for p in phases):
        problems.append(f"methods.{name}.phases: family {fam} needs a phase with a schedule, e.g. "
                        "schedule: {name: vp_linear}")
    levels = m.get("loss_levels")
    if levels is not None:
        if m.get("weighting") != "simple":
            problems.append(f"methods.{name}.loss_levels: needs weighting: simple (got {m.get('weighting')!r}); "
                            "the likelihood weighting samples its own levels")
        if levels["name"] == "shifted_cosine" and not levels.get("scale"):
            problems.append(f"methods.{name}.loss_levels: shifted_cosine needs a scale, e.g. scale: 0.25")
    if fam == "scorevae":
        roles = [p.get("train") for p in phases]
        if roles not in (["encoder"], ["encoder", "corrector"]):
            problems.append(f"methods.{name}.phases: a ScoreVAE trains train: encoder, then optionally train: "
                            f"corrector (ScoreVAE+); got {roles}")
        prior = m["prior"]
        if prior not in methods:
            problems.append(f"methods.{name}.prior: {prior!r} is not defined under methods; "
                            f"defined: {', '.join(sorted(methods))}")
        elif methods[prior]["family"] != "uncond":
            problems.append(f"methods.{name}.prior: {prior!r} is a {methods[prior]['family']} method; "
                            "the prior must be an uncond method")
    return problems


def _scorevae_study_problems(config: dict) -> list[str]:
    methods = config.get("methods", {})
    problems = []
    for i, row in enumerate(config.get("scorevae", {}).get("rows", [])):
        key, name = f"scorevae.rows[{i}]", row["method"]
        if name not in methods:
            problems.append(f"{key}.method: {name!r} is not defined under methods; defined: {', '.join(sorted(methods))}")
            continue
        if methods[name]["family"] not in ("scorevae", "diffdec", "vae"):
            problems.append(f"{key}.method: {name!r} is a {methods[name]['family']} method; Table 1 rows are "
                            "scorevae, diffdec or vae methods")
        phases = [p["name"] for p in methods[name]["phases"]]
        if "phase" in row and row["phase"] not in phases:
            problems.append(f"{key}.phase: {name!r} has no phase {row['phase']!r}; its phases: {', '.join(phases)}")
    return problems


def _dbae_study_problems(config: dict) -> list[str]:
    methods = config.get("methods", {})
    study = config.get("dbae", {})
    if not study:
        return []
    problems = []

    def need(key: str, name: str, family: str) -> None:
        if name not in methods:
            problems.append(f"{key}: {name!r} is not defined under methods; defined: {', '.join(sorted(methods))}")
        elif methods[name]["family"] != family:
            problems.append(f"{key}: {name!r} is a {methods[name]['family']} method; a {family} method is needed here")

    need("dbae.dae", study["dae"], "dae")
    for key in ("methods", "tc_methods"):
        for i, name in enumerate(study[key]):
            need(f"dbae.{key}[{i}]", name, "dbae")
    for i, name in enumerate(study["generation"]["methods"]):
        if name not in methods:
            problems.append(f"dbae.generation.methods[{i}]: {name!r} is not defined under methods")
    if study["table2_nfe"] not in study["nfe"]:
        problems.append(f"dbae.table2_nfe: {study['table2_nfe']} is not in dbae.nfe {study['nfe']}")
    return problems


def ddvi_method(study: dict, name: str, setting: str) -> dict:
    """A DDVI-study method with its per-setting overrides merged in (what a run of that setting sees)."""
    m = {k: v for k, v in study["methods"][name].items() if k != "settings"}
    return m | study["methods"][name].get("settings", {}).get(setting, {})


def _ddvi_study_problems(config: dict) -> list[str]:
    study = config.get("ddvi", {})
    methods = study.get("methods", {})
    problems = []
    for name in methods:
        for setting in ("unsup", "semi", "cluster"):
            m = ddvi_method(study, name, setting)
            where = f"ddvi.methods.{name}" + (f".settings.{setting}" if setting in methods[name].get("settings", {})
                                              else "")
            ddvi = family_facts("ddvi")
            known = set().union(*(f["keys"] for f in ddvi.values()))
            for key in sorted(set(m) - {"family", "label"}):
                if key not in known:
                    problems.append(f"{where}.{key}: unknown key; known: {', '.join(sorted(known))}")
                elif key not in ddvi[m["family"]]["keys"]:
                    owners = sorted(n for n, f in ddvi.items() if key in f["keys"])
                    problems.append(f"{where}.{key}: a {m['family']} method has no such key (it belongs to "
                                    f"{', '.join(owners)})")
            for key in ddvi[m["family"]]["required"]:
                if key not in m:
                    problems.append(f"{where}.{key}: a {m['family']} method needs this key")
            if m["family"] == "ddvi" and "beta" in m and not m["beta"][0] <= m["beta"][1]:
                problems.append(f"{where}.beta: beta_1 must not exceed beta_T, got {m['beta']}")
    for table, names in study.get("tables", {}).items():
        for i, name in enumerate(names):
            if name not in methods:
                problems.append(f"ddvi.tables.{table}[{i}]: {name!r} is not defined under ddvi.methods; "
                                f"defined: {', '.join(sorted(methods))}")
    return sorted(set(problems))


def load(path: str | Path, schema_path: str | Path, overlays: Sequence[str | Path] = ()) -> dict:
    """``path`` with each overlay merged over it (as ``--configfile`` does), validated."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    for overlay in overlays:
        deep_update(config, yaml.safe_load(Path(overlay).read_text()) or {})
    return validate(config, schema_path)


def deep_update(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` (in place, returned) as Snakemake merges a --configfile over params.yaml:
    dicts merge key by key, anything else replaces (a copy)."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def typed(value):
    """``value`` with every string leaf read as a number, a bool or null where it is one (else kept). Snakemake's
    ``--config key={a: 1e-3}`` reads a nested value with YAML's BaseLoader, so every leaf arrives a string
    ("'0.001' is not of type 'number'"); its top-level values already go through int, float, bool. Floats
    without a dot (1e-3) are numbers here too, as they are at the top level."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if not isinstance(value, str):
        return value
    for parse in (int, float):
        try:
            return parse(value)
        except ValueError:
            pass
    parsed = yaml.safe_load(value) if value.strip() else value
    return parsed if isinstance(parsed, (bool, type(None))) else value


def apply_overrides(config: dict, overrides: dict) -> dict:
    """Merge the command line's ``--config`` values, typed, over ``config`` (in place) and return it."""
    return deep_update(config, typed(copy.deepcopy(overrides)))


def source_first_on_path(src: str, environ: Mapping[str, str]) -> str:
    """The PYTHONPATH under which jobs import daebench from the workflow's own ``src`` (first), the rest of
    ``environ``'s PYTHONPATH kept after it, once. Unchanged when ``src`` does not exist (a workflow copied
    without its source: jobs use the installed package)."""
    current = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if not os.path.isdir(src):
        return os.pathsep.join(current)
    return os.pathsep.join([src] + [p for p in current if p != src])
