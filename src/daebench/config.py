"""Parameter validation: params.yaml is checked once, at workflow start, against
workflow/schemas/params.schema.yaml (defaults filled in), then semantic checks that a schema
cannot express. Errors name the key path, the bad value and what is allowed."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

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


def _path(err: jsonschema.ValidationError) -> str:
    out = ""
    for p in err.absolute_path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


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


def validate(config: dict, schema_path: str | Path) -> dict:
    """Validate ``config`` in place (defaults filled) and return it; raise ConfigError listing every problem."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    cls = _with_defaults(jsonschema.Draft7Validator)
    # Defaults are filled in a first pass; errors are collected in a second on the filled config.
    for _ in cls(schema).iter_errors(config):
        pass
    # A DBAE method's bridge block exists only for that family; create it so the pass fills its defaults.
    methods = config.get("methods")
    if isinstance(methods, dict) and any(isinstance(m, dict) and m.get("family") == "dbae" and "bridge" not in m
                                         for m in methods.values()):
        for m in methods.values():
            if isinstance(m, dict) and m.get("family") == "dbae":
                m.setdefault("bridge", {})
        for _ in cls(schema).iter_errors(config):
            pass
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    problems = [_describe(e) for e in errors]
    problems += _semantic_problems(config) if not problems else []
    if problems:
        raise ConfigError("invalid parameters:\n  - " + "\n  - ".join(problems))
    return config


def _semantic_problems(config: dict) -> list[str]:
    problems = []
    methods = config.get("methods", {})
    for name, m in methods.items():
        phases = m["phases"]
        names = [p["name"] for p in phases]
        if len(set(names)) != len(names):
            problems.append(f"methods.{name}.phases: phase names must be unique, got {names}")
        total = sum(p["fraction"] for p in phases)
        if abs(total - 1.0) > 1e-6:
            problems.append(f"methods.{name}.phases: fractions must sum to 1, got {total:g}")
        if m["family"] == "dbae":
            problems += _dbae_problems(name, m)
            continue
        for key in ("encoder", "tc_weight", "bridge"):
            if key in m:
                problems.append(f"methods.{name}.{key}: only family dbae has this key")
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
        if not any("schedule" in p for p in phases):
            problems.append(f"methods.{name}.phases: at least one phase needs a schedule for sampling")
    problems += _dbae_study_problems(config)
    for i, mname in enumerate(config.get("table4", {}).get("methods", [])):
        if mname not in methods:
            problems.append(f"table4.methods[{i}]: {mname!r} is not defined under methods; "
                            f"defined: {', '.join(sorted(methods))}")
    return problems


def _dbae_problems(name: str, m: dict) -> list[str]:
    problems = []
    if "prediction" in m:
        problems.append(f"methods.{name}.prediction: a DBAE always predicts x_0 (DDBM pred-x); remove the key")
    if len(m["phases"]) != 1:
        problems.append(f"methods.{name}.phases: DBAE trains in one joint phase, got {len(m['phases'])}")
    for i, p in enumerate(m["phases"]):
        for key in ("t", "schedule"):
            if key in p:
                problems.append(f"methods.{name}.phases[{i}].{key}: DAE-only key; the bridge fixes its own times")
    if m.get("tc_weight", 0) > 0 and m.get("encoder") != "stochastic":
        problems.append(f"methods.{name}.tc_weight: the TC regulariser needs q(z|x); use encoder: stochastic")
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


def load(path: str | Path, schema_path: str | Path) -> dict:
    return validate(yaml.safe_load(Path(path).read_text()) or {}, schema_path)


def params_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
