"""What a study declares: :class:`Study`, with its report :class:`Section` and its DVC :class:`Stage`.

Plain data and functions of the resolved configuration; every consumer (the workflow, the report, DVC
generation, the emergence ladder, the summaries, the schema's study enums, the CLI) reads these fields and
nothing else about a study."""
from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

Config = dict


def _none(config: Config) -> list:
    return []


def _no_cfg(config: Config) -> dict:
    return {}


@dataclass(frozen=True)
class Section:
    """The study's section of results/report.html: a title, an introduction, its tables beside the paper's
    (caption, our CSV under results/, the published CSV in daebench/reference or None, the published file's
    ``table`` number where one file holds several), figures (caption, glob under results/; ``{nfe}`` is filled
    with the largest NFE swept), and the training curves read from MLflow (``rule``, ``metric``, ``methods``;
    ``split``: run name -> (method, phase); ``keep``: which runs to draw); ``target``: the rule that builds what it shows."""
    title: str
    intro: str
    tables: tuple[tuple[str, str, str | None, int | None], ...]
    figures: tuple[tuple[str, str], ...] = ()
    curves: Mapping[str, Any] | None = None
    plots: tuple[tuple[str, str, Callable], ...] = ()  # (caption, table under results/, table -> figure)
    target: str | None = None  # the rule that builds it, when not `<study>_all`


@dataclass(frozen=True)
class Stage:
    """The study's DVC stage: a `snakemake` call on ``targets``, whose ``params`` are the config keys the
    slices of ``jobs`` read (jobs.dvc.read_keys), with ``deps`` besides the code and ``outs`` it owns
    (``outs(config, owned)`` adds the model folders it claims to ``owned``, so no two stages own one path).
    ``code``: the modules under src/daebench its jobs run that not every study runs (its own job, claims and
    study modules, the helpers of its methods); the stage depends on these, the modules of the method families
    its jobs train (derived) and the code no stage names (the shared code), not on other studies' modules
    (jobs.dvc.code_deps)."""
    name: str
    targets: Callable[[Config], list[str]]
    jobs: Callable[[Config], list]
    deps: Callable[[Config], list[str]]
    outs: Callable[[Config, set], list[str]]
    code: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    """A table built by the shared ``study_table`` rule: ``inputs(config)`` the files it reads (any job's
    outputs: a study reuses the shared training, reconstruction and scoring rules), ``cfg(config)`` the slice it
    depends on, ``write(cfg, inputs)`` the frame (the rule writes it to the study's TABLES path)."""
    inputs: Callable[[Config], list[str]]
    write: Callable[[dict, list[str]], Any]
    cfg: Callable[[Config], dict] = _no_cfg


@dataclass(frozen=True)
class Study:
    """One paper's study, declared once in ``daebench/studies/<name>.py`` as ``STUDY = Study(...)``.

    - ``claims``: the module (or any object) with ``PAPER``, ``TABLES`` (table name -> CSV path),
      ``CLAIMS``, ``ours(tables, cfg, samples)`` and ``paper(ref_dir)`` (see daebench/claims/core.py);
    - ``claims_cfg(config)``: what the claims need from the configuration that the tables do not say;
    - ``outputs(config)``: everything it produces: its ``<name>_all`` target and what the report shows;
    - ``samples(config, table)``: the input files of a table, among which the claims find the scoring JSONs
      whose per-image values give their paired intervals (None: a study without any);
    - ``headlines``: per table, the columns naming a row and the metrics of `dvc metrics show`;
    - ``scaled``: the training lengths (paths into the configuration) an emergence budget multiplies, the
      first giving the curves' x axis;
    - ``section``, ``stage``: its report section and DVC stage (None: it has neither);
    - ``methods(config)``: the training methods it lists (the report's job-time summary; the first study
      listing a method owns it); ``benchmarks``: globs under logs/benchmarks/ of its own jobs;
    - ``rules``: its rule files under workflow/rules/; none when its tables come from the shared ``study_table``
      rule, which builds each of ``tables`` (name -> :class:`Table`)."""
    name: str
    claims: ModuleType | Any
    outputs: Callable[[Config], list[str]]
    headlines: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]
    scaled: tuple[tuple[str, ...], ...]
    claims_cfg: Callable[[Config], dict] = _no_cfg
    samples: Callable[[Config, str], list[str]] | None = None
    section: Section | None = None
    stage: Stage | None = None
    methods: Callable[[Config], list[str]] = _none
    benchmarks: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    tables: Mapping[str, Table] = field(default_factory=dict)

    def __post_init__(self):
        if not self.scaled:
            raise ValueError(f"study {self.name}: scaled names no training length for the emergence ladder")
        unknown = set(self.headlines) - set(self.claims.TABLES)
        if unknown:
            raise ValueError(f"study {self.name}: headlines for tables {sorted(unknown)} not in its TABLES")
        if not self.rules and set(self.tables) != set(self.claims.TABLES):
            raise ValueError(f"study {self.name}: without a rule file, `tables` must build each of "
                             f"{', '.join(self.claims.TABLES)}")

    @property
    def paper(self) -> str:
        return self.claims.PAPER

    def owns_benchmark(self, rel: str) -> bool:
        """Whether a benchmark file (its path under logs/benchmarks/) is one of this study's own jobs."""
        return any(fnmatch.fnmatchcase(rel, g) for g in self.benchmarks)
