"""The job layer: what each Snakemake job runs, and what the workflow derives for it.

Every study module here (``data``, ``training``, ``evaluation``, ``two_phase``, ``dbae``, ``scorevae``,
``ddvi``, ``ddvi_budget``, ``studies``; ``dvc`` derives dvc.yaml from the same builders) holds two kinds of plain functions:

- **run functions** (``train``, ``reconstruct``, ``dbae_table``, ...): one per CLI command. They take the
  job's config slice as a dict (``cfg``) and its files as keyword arguments, and do the work. ``cli.py``
  only parses arguments and calls them.
- **slice builders and input functions**, whose first parameter is ``config`` (the validated params):
  the config slice each job depends on (so a changed key reruns exactly the jobs downstream of it), its
  input files and paths. The ``.smk`` files reach them through :func:`bind` as ``J.<module>.<function>``.

Every training job goes through one runner, :func:`training.run_training`, with one step formula,
:func:`training.steps`.
"""
from __future__ import annotations

import functools
import inspect
from types import ModuleType, SimpleNamespace

from . import data, dbae, ddvi, ddvi_budget, dvc, evaluation, scorevae, studies, training, two_phase
from .base import as_json

MODULES: tuple[ModuleType, ...] = (data, training, evaluation, two_phase, dbae, scorevae, ddvi, ddvi_budget, studies,
                                   dvc)


def builders(modules=MODULES) -> dict:
    """name -> every public function of the job modules whose first parameter is ``config``."""
    out = {}
    for mod in modules:
        for name, fn in vars(mod).items():
            if name.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != mod.__name__:
                continue
            params = list(inspect.signature(fn).parameters)
            if params[:1] == ["config"]:
                if name in out:
                    raise RuntimeError(f"two slice builders named {name!r} ({out[name].__module__}, {mod.__name__})")
                out[name] = fn
    return out


def _bound(fn, config: dict):
    """``fn`` with ``config`` bound, as a plain function: Snakemake takes only functions (not partials) as
    input functions, and reads the parameters it passes (wildcards, input, ...) from the signature."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        return fn(config, *args, **kwargs)

    sig = inspect.signature(fn)
    call.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
    return call


def bind(config: dict) -> SimpleNamespace:
    """The slice builders with ``config`` bound, for the .smk files, one namespace per job module:
    ``J.training.train_cfg(wildcards)`` is :func:`daebench.jobs.training.train_cfg` (config, wildcards)."""
    by_module: dict[str, dict] = {}
    for name, fn in builders().items():
        by_module.setdefault(fn.__module__.rsplit(".", 1)[-1], {})[name] = _bound(fn, config)
    return SimpleNamespace(as_json=as_json, **{m: SimpleNamespace(**fns) for m, fns in by_module.items()})
