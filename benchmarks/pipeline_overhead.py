"""Workflow overhead: the wall time of a dry run (`snakemake -n`) over the full DAG of every table, and of
the no-op rerun of a completed project (`snakemake --cores 2 <targets>` reporting "Nothing to be done").

Acceptance: both under 10 s. The no-op rerun is timed only for targets whose dry run says there is nothing
to do, so this script never starts a job; point --workdir at a completed project directory (its own
Snakefile, params.yaml, workflow/, results/, resources/, .snakemake/). See benchmarks/README.md.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C

LIMIT_S = 10.0
NOTHING = "Nothing to be done"


def discover_targets(workdir: Path) -> list[str]:
    """Every table: results/table4.csv and the study rules named ``*_all`` (dbae_all, scorevae_all, ddvi_all:
    results/{dbae,scorevae,ddvi}/*.csv and their figures), found in the Snakefile and workflow/rules/*.smk."""
    rules = []
    for f in [workdir / "Snakefile", *sorted((workdir / "workflow" / "rules").glob("*.smk"))]:
        if f.exists():
            rules += re.findall(r"^rule (\w+_all)\s*:", f.read_text(), flags=re.MULTILINE)
    return ["results/table4.csv", *rules]


def snakemake(args: list[str], workdir: Path, timeout: float) -> tuple[float, int, str]:
    cmd = [sys.executable, "-m", "snakemake", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, check=False)
    return time.perf_counter() - t0, proc.returncode, proc.stdout + proc.stderr


def job_total(text: str) -> int | None:
    if NOTHING in text:
        return 0
    m = re.search(r"^total\s+(\d+)\s*$", text, flags=re.MULTILINE)
    return int(m.group(1)) if m else None


def main(argv=None) -> int:
    p = C.base_parser(__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, default=C.REPO, help="project directory (a completed run for the no-op)")
    p.add_argument("--configfile", type=Path, nargs="*", default=[],
                   help="--configfile(s) passed to snakemake, e.g. workflow/presets/cifar10_32.yaml")
    p.add_argument("--targets", nargs="*", default=None, help="default: results/table4.csv and every *_all rule")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each command (median reported)")
    p.add_argument("--dry-run-only", action="store_true", help="skip the no-op rerun")
    p.add_argument("--nolock", action="store_true", help="pass --nolock to the no-op rerun (a shared project)")
    p.add_argument("--timeout", type=float, default=300)
    args = p.parse_args(argv)
    # --device / --threads do not apply (no torch work here); accepted for a uniform interface
    workdir = args.workdir.resolve()
    targets = args.targets or discover_targets(workdir)
    cfgs = [str(Path(c).resolve()) for c in args.configfile]
    cfg_args = ["--configfile", *cfgs] if cfgs else []
    repeats = 1 if args.quick else args.repeats
    env = {"date": C.environment(torch.device("cpu"))["date"], "loadavg_start": C.loadavg(),
           "cpu": C.cpu_name(), "cpu_count": os.cpu_count()}
    print(f"# {env['date']}  CPU {env['cpu']} ({env['cpu_count']} cores), load average {env['loadavg_start']}")
    print(f"# workdir {workdir}; targets {' '.join(targets)}" + (f"; --configfile {' '.join(cfgs)}" if cfgs else ""))
    version = subprocess.run([sys.executable, "-m", "snakemake", "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()

    # 1. dry run of the full DAG
    dry_times, jobs, out = [], None, ""
    for _ in range(repeats):
        t, rc, out = snakemake(["-n", "--cores", str(args.cores), *targets, *cfg_args], workdir, args.timeout)
        if rc != 0:
            print(out[-3000:])
            raise SystemExit(f"snakemake -n failed (exit {rc})")
        dry_times.append(t)
        jobs = job_total(out)
    rows = [{"command": "snakemake -n (full DAG)", "targets": len(targets), "jobs": jobs,
             "seconds": C.median(dry_times), "runs": len(dry_times), "pass": C.median(dry_times) < LIMIT_S}]
    result = {"env": env, "snakemake": version, "workdir": str(workdir), "targets": targets, "configfiles": cfgs,
              "limit_s": LIMIT_S, "quick": args.quick,
              "dry_run": {"seconds": C.median(dry_times), "all_seconds": dry_times, "jobs": jobs,
                          "pass": C.median(dry_times) < LIMIT_S}}

    # 2. the no-op rerun, over the targets that are complete (never starts a job)
    if not args.dry_run_only:
        complete, pending = [], {}
        for tgt in targets:
            _, rc, o = snakemake(["-n", "--cores", str(args.cores), tgt, *cfg_args], workdir, args.timeout)
            n = job_total(o)
            (complete.append(tgt) if rc == 0 and n == 0 else pending.__setitem__(tgt, n))
        noop = {"complete_targets": complete, "pending_jobs": pending}
        if complete:
            times, ok = [], True
            for _ in range(repeats):
                t, rc, o = snakemake(["--cores", str(args.cores), *complete, *cfg_args,
                                      *(["--nolock"] if args.nolock else [])], workdir, args.timeout)
                ok = ok and rc == 0 and NOTHING in o
                if rc != 0:
                    print(o[-2000:])
                times.append(t)
            noop.update({"seconds": C.median(times), "all_seconds": times, "nothing_to_be_done": ok,
                         "pass": ok and C.median(times) < LIMIT_S})
            rows.append({"command": f"snakemake --cores {args.cores} (no-op rerun)", "targets": len(complete),
                         "jobs": 0 if ok else None, "seconds": C.median(times), "runs": len(times),
                         "pass": noop["pass"]})
        else:
            noop.update({"seconds": None, "pass": None})
            rows.append({"command": "no-op rerun: skipped, no target complete", "targets": 0, "jobs": None,
                         "seconds": float("nan"), "runs": 0, "pass": None})
        if pending:
            print(f"not complete in {workdir} (jobs a run would start): "
                  + ", ".join(f"{k} {v}" for k, v in pending.items()))
        result["noop_rerun"] = noop
    C.print_table(rows, [("command", "command"), ("targets", "targets"), ("jobs", "jobs"), ("seconds", "wall s"),
                         ("runs", "runs"), ("pass", f"< {LIMIT_S:g} s")],
                  title=f"pipeline overhead ({version}; median of {repeats} runs)")
    result["loadavg_end"] = C.loadavg()
    checks = [result["dry_run"]["pass"]] + ([result["noop_rerun"]["pass"]] if "noop_rerun" in result else [])
    result["pass"] = all(c is True for c in checks)
    print(f"acceptance (dry run and no-op rerun each < {LIMIT_S:g} s): "
          + ("PASS" if result["pass"] else "FAIL / not measured"))
    C.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
