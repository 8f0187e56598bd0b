"""The SLURM profile (workflow/profiles/slurm) end to end on a real one-node SLURM cluster that the test
starts itself: munged, slurmctld and slurmd on 127.0.0.1, configured under a temporary directory
(`SLURM_CONF`), no accounting database. The smoke Table 4 DAG is submitted through sbatch by
snakemake-executor-plugin-slurm; the test checks the table and what SLURM ran (one batch job per
non-local job, GPU jobs with `--gpus=1`).

Layered on the real profile, a test profile only adapts it to the test node: 1 CPU thread and 2 GB per
job (the node has few cores), fast status polling, and job status from `squeue` (without slurmdbd,
`sacct` has nothing to report). The node declares fake GPUs (gres files that are not devices), so the
profile's GPU requests are scheduled as on a cluster; the networks still run on the CPU.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import copy_workflow, require

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow/profiles/slurm"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel")
SBIN = os.pathsep.join(["/usr/sbin", "/usr/local/sbin", "/sbin"])


def find(name):
    return shutil.which(name) or shutil.which(name, path=SBIN)


def missing_slurm():
    return [name for name in DAEMONS + CLIENTS if find(name) is None]


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def node_hardware():
    """`slurmd -C`: the node's CPUs, topology and memory as slurmd itself sees them."""
    out = subprocess.run([find("slurmd"), "-C"], capture_output=True, text=True, timeout=30, check=True).stdout
    fields = dict(re.findall(r"(\w+)=(\S+)", out.splitlines()[0]))
    return {k: int(fields[k]) for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore",
                                         "RealMemory")}


def wait_for(predicate, timeout, what, logs=()):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p}\n{p.read_text()[-2000:] if p.exists() else '(absent)'}" for p in logs)
    raise AssertionError(f"{what} (waited {timeout}s)\n{tails}")


class SlurmCluster:
    """munged + slurmctld + slurmd for one node, `localhost`, with 2 fake GPUs; torn down by stop()."""

    def __init__(self):
        # A short path: munged's socket path must fit in a sockaddr_un (108 bytes).
        self.dir = Path(tempfile.mkdtemp(prefix="daebench-slurm-"))
        self.procs = []
        self.env = None

    def start(self):
        d = self.dir
        for sub in ("munge", "state", "spool", "log", "bin"):
            (d / sub).mkdir()
        key = d / "munge/munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        sock = d / "munge/munge.socket"
        self._spawn([find("munged"), "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
                     f"--pid-file={d}/munge/munged.pid", f"--seed-file={d}/munge/munged.seed",
                     f"--log-file={d}/log/munged.log"], "munged")
        wait_for(sock.exists, 30, "munged did not create its socket", [d / "log/munged.out"])

        hw = node_hardware()
        self.gpus = 2
        self.mem_mb = int(hw["RealMemory"] * 0.8)  # not above what slurmd reports, or the node is INVALID
        for i in range(self.gpus):
            (d / f"gpu{i}").touch()  # slurmd logs that these are no devices, and counts them
        ctld_port, slurmd_port = free_ports(2)
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        conf = d / "slurm.conf"
        conf.write_text(f"""\
ClusterName=daebenchtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
# no cgroups in a container: plain process tracking, no task confinement
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
# no slurmdbd: sacct reports nothing, so job states come from squeue, which keeps finished jobs MinJobAge s
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
# SLURM's default JobRequeue=1 lets `scontrol requeue` requeue any batch job; with 0 only a job submitted with
# --requeue (the profile's `slurm-requeue: true`) can be, so the pre-emption test fails without the option
JobRequeue=0
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={hw['CPUs']} Boards={hw['Boards']} \
SocketsPerBoard={hw['SocketsPerBoard']} CoresPerSocket={hw['CoresPerSocket']} \
ThreadsPerCore={hw['ThreadsPerCore']} RealMemory={self.mem_mb} Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
        (d / "gres.conf").write_text(f"NodeName=localhost Name=gpu File={d}/gpu[0-{self.gpus - 1}]\n")
        # The jobstep plugin removes SLURM_* variables (SLURM_CONF among them) before it calls srun inside
        # a job; a cluster node reads /etc/slurm/slurm.conf, this node needs SLURM_CONF back.
        srun = d / "bin/srun"
        srun.write_text(f"#!/bin/sh\nSLURM_CONF='{conf}'\nexport SLURM_CONF\nexec '{find('srun')}' \"$@\"\n")
        srun.chmod(0o755)
        self.env = dict(os.environ, SLURM_CONF=str(conf), PATH=f"{d}/bin{os.pathsep}{os.environ['PATH']}",
                        PYTHONUNBUFFERED="1")

        self._spawn([find("slurmctld"), "-D", "-i"], "slurmctld")
        self._spawn([find("slurmd"), "-D", "-N", "localhost"], "slurmd")
        logs = [d / "log/slurmctld.out", d / "log/slurmd.out"]
        wait_for(lambda: self.node_state() == "idle", 60, "the SLURM node did not become idle", logs)

    def _spawn(self, cmd, name):
        with open(self.dir / f"log/{name}.out", "w") as out:
            self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                               env=self.env or os.environ, start_new_session=True))

    def run(self, cmd, **kw):
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=60, check=False, **kw)

    def node_state(self):
        return self.run(["sinfo", "--noheader", "--Node", "--format=%t"]).stdout.strip()

    def jobs(self):
        """Every job slurmctld knows (finished ones for MinJobAge), as dicts of `scontrol show job` fields."""
        out = self.run(["scontrol", "--oneliner", "show", "job"]).stdout
        return [dict(re.findall(r"(\S+?)=(\S*)", line)) for line in out.splitlines() if line.startswith("JobId=")]

    def stop(self):
        if self.env is not None:
            ids = self.run(["squeue", "--noheader", "--format=%i"]).stdout.split()
            if ids:
                self.run(["scancel", *ids])
        for proc in reversed(self.procs):  # slurmd, slurmctld, munged
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=15)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture()
def slurm():
    missing = missing_slurm()
    require(not any(name in missing for name in DAEMONS),
            f"SLURM/munge not installed (missing {', '.join(missing)}); apt-get install slurm-wlm munge, as .ci/run does")
    assert not missing, f"SLURM daemons found but not the client commands {missing}"
    cluster = SlurmCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def loaded_workflow():
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, ResourceSettings

    cwd = os.getcwd()  # the API changes into the workdir
    try:
        with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
            return api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=ROOT / "Snakefile",
                                workdir=ROOT)._workflow
    finally:
        os.chdir(cwd)


def test_profile_gives_gpus_to_network_jobs_only():
    """Static: every rule that runs a network asks for a GPU, tables ask for none (the dry run shows both)."""
    cfg = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert cfg["executor"] == "slurm"
    # the rules as Snakemake builds them (a `use rule ... as` rule inherits its parent's resources); a rule
    # that declares `gpu=GPU` has a `gpu` resource (0 here, without a GPU)
    rules = {rule.name: rule for rule in loaded_workflow().rules}
    gpu_in_rule = {name for name, rule in rules.items() if "gpu" in rule.resources}
    assert {"train_phase", "reconstruct", "dbae_reconstruct", "scorevae_metrics"} <= gpu_in_rule
    gpu_in_profile = {name for name, res in cfg["set-resources"].items() if res.get("gpu")}
    assert gpu_in_rule <= gpu_in_profile, gpu_in_rule - gpu_in_profile
    assert set(cfg["set-resources"]) <= set(rules), set(cfg["set-resources"]) - set(rules)
    assert not {"table4", "dbae_table", "scorevae_table"} & gpu_in_profile


def test_profile_dry_run_shows_gpu_requests(project):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm", "-n",
                           "results/table4.csv"],
                          cwd=project, capture_output=True, text=True, timeout=120, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    blocks = out.split("\nrule ")[1:]
    train = [b for b in blocks if b.startswith("train_phase:")]
    assert len(train) == 4
    for block in train:
        resources = re.search(r"resources: (.*)", block).group(1)
        assert "gpu=1" in resources and "runtime=720" in resources, resources
    table = next(b for b in blocks if b.startswith("table4:"))
    assert "gpu=" not in re.search(r"resources: (.*)", table).group(1)


def _test_profile(project, **extra):
    """The real profile adapted to the test node: 1 thread and 2 GB per job, fast polling, squeue status."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    mem = 2000
    overlay = {
        "set-resources": {rule: {**res, "mem_mb": min(res.get("mem_mb", mem), mem)}
                          for rule, res in profile["set-resources"].items()},
        "set-threads": {rule: 1 for rule in profile["set-threads"]},
        "latency-wait": 5,
        "retries": 0,
        "keep-going": False,
        "max-status-checks-per-second": 10,
        "seconds-between-status-checks": 1,
        "slurm-init-seconds-before-status-checks": 1,
        "slurm-status-command": "squeue",
        "slurm-keep-successful-logs": True,
        **extra,
    }
    (project / "testprofile").mkdir(exist_ok=True)
    (project / "testprofile/config.yaml").write_text(yaml.safe_dump(overlay))
    return mem


@pytest.mark.slow
def test_smoke_table4_through_slurm_with_a_preempted_training_job(project, slurm, tmp_path_factory):
    """The smoke Table 4 through sbatch with `--slurm-requeue`; one training job is pre-empted mid-way
    (`scontrol requeue`: SLURM kills it and queues it again, as pre-emption in REQUEUE mode does). It runs
    again under the same SLURM job id, resumes from its checkpoint and ends with exactly the weights of an
    undisturbed run; the table, and what SLURM ran, are as without the pre-emption."""
    mem = _test_profile(project, **{"slurm-requeue": True})
    # the job we pre-empt trains longer, so that there is a mid-way
    (project / "long.yaml").write_text("methods: {dae_1phase_sc4: {examples: 3200}}\n")
    config = ["--configfile", "tests/smoke.yaml", "long.yaml"]
    cmd = [sys.executable, "-m", "snakemake", "results/table4.csv", "--profile", "workflow/profiles/slurm",
           "--profile", "testprofile", *config]
    t0 = time.time()
    with open(project / "snakemake.out", "w") as sink:  # a file, not a pipe: a full pipe would stall Snakemake
        proc = subprocess.Popen(cmd, cwd=project, stdout=sink, stderr=subprocess.STDOUT, env=slurm.env)
        try:
            resume = project / "resources/checkpoints/digits/dae_1phase_sc4/main.resume.pt"
            deadline = time.monotonic() + 600  # a guard against a hang only
            while proc.poll() is None and not resume.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            victim = [j for j in slurm.jobs() if j["Comment"].startswith("rule_train_phase")
                      and "dae_1phase_sc4" in j["Comment"] and j["JobState"] == "RUNNING"]
            assert len(victim) == 1, (slurm.jobs(), proc.poll())
            victim_id = victim[0]["JobId"]
            requeue = slurm.run(["scontrol", "requeue", victim_id])
            assert requeue.returncode == 0, requeue.stderr
            # SLURM holds a requeued job back by a BeginTime delay (minutes); the test lets it start at once
            wait_for(lambda: next(j for j in slurm.jobs() if j["JobId"] == victim_id)["JobState"] == "PENDING", 60,
                     "the requeued job did not go back to PENDING")
            release = slurm.run(["scontrol", "update", f"JobId={victim_id}", "StartTime=now"])
            assert release.returncode == 0, release.stderr
            proc.wait(timeout=900)
        finally:  # a failed assertion must not leave Snakemake submitting to the next test's cluster
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    elapsed = time.time() - t0
    out = (project / "snakemake.out").read_text()
    assert proc.returncode == 0, out[-5000:]

    table = pd.read_csv(project / "results/table4.csv")
    assert len(table) == 6
    assert set(table["mode"]) == {"stochastic", "inversion"}
    assert set(table["label"]) == {"Preechakul et al.", "1-phase SC-4", "2-phase SC-4"}
    assert table["psnr"].notna().all() and (table["n_images"] == 32).all()

    # every non-local job went through sbatch, and SLURM ran it to completion (the pre-empted one twice)
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", out)
    jobs = {j["JobId"]: j for j in slurm.jobs() if j.get("JobName") == run_id}
    assert sorted(jobs, key=int) == sorted(submitted, key=int)
    rules = {}
    for job in jobs.values():
        rule = re.match(r"rule_(\w+?)(_wildcards_|$)", job["Comment"]).group(1)
        rules[rule] = rules.get(rule, 0) + 1
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert job["NumCPUs"] == "1" and job["MinMemoryNode"] == f"{mem}M", job
        assert (job.get("TresPerJob") == "gres:gpu:1") == (rule not in ("table4", "prepare_data")), job
        assert job["Restarts"] == ("1" if job["JobId"] == victim_id else "0"), job
    # preprocessing is a batch job like the others (digits downloads nothing, so there is no download_data job)
    assert rules == {"prepare_data": 1, "train_classifier": 1, "train_phase": 4, "reconstruct": 6, "metrics": 6,
                     "table4": 1}
    logs = list((project / ".snakemake/slurm_logs").rglob("*.log"))
    assert len(logs) == len(jobs), logs
    train_log = next((project / ".snakemake/slurm_logs/rule_train_phase").glob("*dae_2phase_sc4_phase2/*.log"))
    assert "Finished jobid: 0 (Rule: train_phase)" in train_log.read_text()
    # the profile's time limits reached sbatch (runtime minutes -> TimeLimit)
    limits = {re.match(r"rule_(\w+?)(_wildcards_|$)", j["Comment"]).group(1): j["TimeLimit"] for j in jobs.values()}
    assert limits["train_phase"] == "12:00:00" and limits["table4"] == "00:15:00", limits

    log = (project / "logs/train/digits/dae_1phase_sc4/main.log").read_text()
    assert f"resumed from {resume.relative_to(project)} at step" in log, log[-3000:]
    assert int(log.split(" at step ")[1].split("/")[0]) > 0
    # the pre-empted model against the same target trained undisturbed and locally, with 1 thread per job
    target = "resources/models/digits/dae_1phase_sc4/main.pt"
    ref = copy_workflow(tmp_path_factory.mktemp("requeue_ref"))
    (ref / "long.yaml").write_text((project / "long.yaml").read_text())
    local = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", target, *config], cwd=ref,
                           capture_output=True, text=True, timeout=900, check=False)
    assert local.returncode == 0, (local.stdout + local.stderr)[-4000:]
    a = torch.load(project / target, weights_only=True)
    b = torch.load(ref / target, weights_only=True)
    assert a["step"] == b["step"] == 100
    for key in ("model", "ema"):
        for name in b[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs after the requeue"
    print(f"smoke Table 4 through SLURM with one pre-emption: {len(jobs)} batch jobs, {elapsed:.0f}s")
