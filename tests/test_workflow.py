"""The workflow itself: lint, the DAG's shape, and every study's smoke run end to end (one shared
undisturbed run, `smoke_run` in conftest.py; kills and resumption: test_chaos.py)."""
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run(args, cwd, timeout=600, env=None):
    return subprocess.run(SNAKEMAKE + args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_lint_is_clean():
    proc = run(["--lint"], ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def job_counts(text):
    table = text.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_a_nested_command_line_override_is_typed_and_reaches_the_jobs(project):
    """`--config 'train={lr: 0.002}'`: Snakemake passes the nested 0.002 as a string; it is validated as a
    number and the training jobs' slices carry it (so their params change and they rerun)."""
    proc = run(["-n", "-p", "results/table4.csv", "--config", "train={lr: 0.002}"], project, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    train = [line for line in out.splitlines() if "-m daebench train " in line]
    assert train and all('"lr":0.002' in line and '"batch_size":32' in line for line in train), train[:1]
    # the dotted form is refused by Snakemake's own parser, before the workflow sees it (the README says so)
    proc = run(["-n", "results/table4.csv", "--config", "train.lr=0.002"], project, timeout=120)
    assert proc.returncode != 0 and "must start with a valid identifier" in proc.stdout + proc.stderr


def test_dry_run_shows_the_spine(project):
    proc = run(["-n", "results/table4.csv"], project, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    counts = job_counts(out)
    assert counts == {"prepare_data": 1, "train_classifier": 1, "train_phase": 4,
                      "reconstruct": 6, "metrics": 6, "table4": 1, "total": 19}
    # phase 2 takes phase 1's checkpoint as its input
    block = out.split("output: resources/models/digits/dae_2phase_sc4/phase2.pt")[0].rsplit("rule ", 1)[1]
    assert "resources/models/digits/dae_2phase_sc4/phase1.pt" in block


DBAE_TABLES = ["table1", "table2", "table3", "table4", "table5", "table9", "table11"]


def test_dry_run_shows_the_dbae_study(project):
    proc = run(["-n"] + [f"results/dbae/{t}.csv" for t in ("table2", "table9", "table4")], project, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # 3 autoencoders (the DAE comparator, DBAE, DBAE-d), 2 latent priors, 4 NFEs x (2 DAE modes + 2 DBAEs)
    assert job_counts(out) == {"prepare_data": 1, "train_classifier": 1, "train_phase": 3, "train_prior": 2,
                               "dbae_reconstruct": 16, "dbae_recon_metrics": 16, "generate": 4, "gen_metrics": 4,
                               "dbae_table": 3, "total": 50}
    for path in ("results/dbae/recon/digits/dae_baseline/inversion_nfe100.npz",
                 "results/dbae/recon/digits/dbae_d/endpoint_nfe10.npz", "resources/priors/digits/dbae.pt",
                 "results/dbae/gen/digits/dae_baseline/ae.npz"):
        assert path in out


def test_dry_run_shows_the_scorevae_study(project):
    proc = run(["-n", "results/scorevae/table1.csv"], project, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # prior, ScoreVAE encoder + corrector, VAE, 2 DiffDecoders; 4 diffusion rows x (sde, ode) + the VAE; the
    # prior's own row (its samples)
    assert job_counts(out) == {"prepare_data": 1, "train_classifier": 1, "train_phase": 6, "scorevae_reconstruct": 9,
                               "scorevae_metrics": 9, "scorevae_prior": 1, "scorevae_table": 1, "total": 28}
    # the encoder's first phase starts from the prior job's model; ScoreVAE is read at the encoder phase
    block = out.split("output: resources/models/digits/scorevae/encoder.pt")[0].rsplit("rule ", 1)[1]
    assert "resources/models/digits/score_prior/main.pt" in block
    for path in ("results/scorevae/recon/digits/scorevae/encoder_sde.npz",
                 "results/scorevae/recon/digits/scorevae/corrector_ode.npz",
                 "results/scorevae/recon/digits/vae/main_decoder.npz"):
        assert path in out


@pytest.mark.slow
def test_smoke_scorevae_study_end_to_end(smoke_run):
    project = smoke_run  # the shared undisturbed smoke run of every study (conftest.py)
    targets = ["results/scorevae/table1.csv", "results/scorevae/recon_grid.png"]
    t1 = pd.read_csv(project / "results/scorevae/table1.csv")
    prior, t1 = t1.iloc[-1], t1.iloc[:-1]
    assert list(t1["label"]) == ["VAE"] + ["ScoreVAE"] * 2 + ["ScoreVAE+"] * 2 + ["DiffDecoder"] * 4
    assert list(t1["beta"]) == [0.01] * 7 + [0.0] * 2
    assert list(t1["mode"]) == ["decoder"] + ["sde", "ode"] * 4
    assert list(t1["phase"][1:5]) == ["encoder", "encoder", "corrector", "corrector"]
    assert list(t1["nfe"]) == [0] + [7] * 8  # 6 solver steps + the final denoising evaluation
    for col in ("l2", "featdist_domain", "fd_domain", "psnr", "ssim", "n_params", "mlflow_run_id"):
        assert t1[col].notna().all(), col
    # KL(q(z|x_0) || N(0, I)) where there is a q: every row but the deterministic DiffDecoder (beta 0)
    assert t1["kl"].notna().tolist() == [True] * 7 + [False] * 2 and (t1["kl"].dropna() >= 0).all()
    assert "lpips" not in t1.columns  # no AlexNet weights here: absent, not faked
    assert_recomputed(t1, lambda r: project / f"results/scorevae/recon/digits/{r['method']}/{r['phase']}_{r['mode']}.npz")
    # the prior's own row: its samples' FD against the same test images, its held-out eps MSE, nothing else
    assert (prior["label"], prior["method"], prior["family"], prior["mode"], prior["nfe"]) == \
        ("VP diffusion prior (samples)", "score_prior", "uncond", "sde", 7)
    assert prior["fd_domain"] > 0 and 0 < prior["eps_mse"] < 1 and pd.isna(prior["l2"]) and pd.isna(prior["ssim"])
    assert t1["eps_mse"].isna().all()
    assert (project / "results/scorevae/prior/digits/score_prior.png").stat().st_size > 500
    # ScoreVAE+ carries the corrector's parameters on top of ScoreVAE's
    assert t1["n_params"][3] > t1["n_params"][1]
    assert (project / "results/scorevae/recon_grid.png").stat().st_size > 1000
    claims = run(["--cores", "2", "results/claims/scorevae.csv", "--configfile", "tests/smoke.yaml"], project)
    assert claims.returncode == 0, (claims.stdout + claims.stderr)[-4000:]
    assert_claims_evaluate(project, "scorevae")  # LPIPS claims through the featdist_domain stand-in

    # swapping the prior retrains only the encoder side: the new prior, ScoreVAE's two phases and their rows
    (project / "swap.yaml").write_text(
        "methods:\n  score_prior_b:\n    family: uncond\n    label: another prior\n"
        "    phases: [{name: main, fraction: 1.0, schedule: {name: vp_linear}}]\n"
        "  scorevae: {prior: score_prior_b}\n")
    dry = run(["-n", *targets, "--configfile", "tests/smoke.yaml", "swap.yaml"], project, timeout=120)
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-3000:]
    trained = sorted(re.findall(r"output: resources/models/digits/(\w+/\w+)\.pt", out))
    assert trained == ["score_prior_b/main", "scorevae/corrector", "scorevae/encoder"]
    counts = job_counts(out)
    assert counts["scorevae_reconstruct"] == 4 and counts["scorevae_metrics"] == 4
    assert "output: results/scorevae/recon/digits/vae/" not in out
    assert "output: results/scorevae/recon/digits/diffdec" not in out
    assert "train_classifier" not in counts and "prepare_data" not in counts


@pytest.mark.slow
def test_smoke_dbae_study_end_to_end(smoke_run):
    project = smoke_run
    targets = [f"results/dbae/{t}.csv" for t in DBAE_TABLES]
    t2 = pd.read_csv(project / "results/dbae/table2.csv")
    assert list(t2["label"]) == ["Preechakul et al. (random x_T)", "Preechakul et al. (inferred x_T)", "DBAE", "DBAE-d"]
    assert list(t2["tractable"]) == ["yes", "no", "yes", "yes"]
    assert list(t2["latent_dim"]) == [8, 8 + 256, 8, 8] and (t2["nfe"] == 5).all()
    assert list(t2["nfe_endpoint"]) == [0, 5, 1, 1] and list(t2["nfe_decode"]) == [5, 5, 5, 5]
    for col in ("ssim", "mse", "psnr", "fd_domain", "featdist_domain", "mlflow_run_id"):
        assert t2[col].notna().all(), col
    mode = {"random x_T": "stochastic", "inferred x_T": "inversion", "Dec(z)": "endpoint"}
    assert_recomputed(t2, lambda r: project / f"results/dbae/recon/digits/{r['method']}/{mode[r['x_T']]}_nfe{r['nfe']}.npz")
    # inferring x_T by DDIM inversion reconstructs far better than a fresh x_T: the baseline's two rows
    assert t2["psnr"][1] > t2["psnr"][0] + 5 and t2["ssim"][1] > t2["ssim"][0] + 0.3
    t9 = pd.read_csv(project / "results/dbae/table9.csv")
    assert len(t9) == 8 and set(t9["metric"]) == {"ssim", "mse"} and {"nfe3", "nfe5"} <= set(t9.columns)
    t4 = pd.read_csv(project / "results/dbae/table4.csv")
    assert list(t4["label"]) == ["Preechakul et al.", "DBAE", "Preechakul et al.+AE", "DBAE+AE"]
    assert t4["precision_domain"].between(0, 1).all() and t4["recall_domain"].between(0, 1).all()
    assert (t4["is_domain"] >= 1).all() and "fid_tf" not in t4.columns  # no Inception weights: absent
    t1 = pd.read_csv(project / "results/dbae/table1.csv")
    assert list(t1["method"]) == ["dae_baseline", "dbae", "dbae_d"]
    assert t1[["ap", "class_accuracy", "class_auroc", "pearson_r"]].le(1).all().all()
    t3 = pd.read_csv(project / "results/dbae/table3.csv")
    assert list(t3["method"]) == ["dae_baseline", "dbae", "dbae_tc"] and list(t3["regularized"]) == ["no", "no", "yes"]
    assert t3[["tad", "attrs", "fd_domain"]].notna().all().all()
    t5 = pd.read_csv(project / "results/dbae/table5.csv")
    assert list(t5["nfe_endpoint"]) == [5, 1, 1] and t5["endpoint_by"].iloc[0] == "DDIM inversion"
    assert (t5["ms_total"] > 0).all()
    claims = run(["--cores", "2", "results/claims/dbae.csv", "--configfile", "tests/smoke.yaml"], project)
    assert claims.returncode == 0, (claims.stdout + claims.stderr)[-4000:]
    assert_claims_evaluate(project, "dbae")

    # editing DBAE's endpoint generator reruns exactly the DBAE side, never the DAE comparator
    (project / "endpoint.yaml").write_text("nets: {endpoint: {model_channels: 8}}\n")
    dry = run(["-n", *targets, "--configfile", "tests/smoke.yaml", "endpoint.yaml"], project, timeout=120)
    out = dry.stdout + dry.stderr
    counts = job_counts(out)
    assert counts["train_phase"] == 3  # dbae, dbae_d, dbae_tc
    assert "output: resources/models/digits/dae_baseline/main.pt" not in out
    assert "train_classifier" not in counts and "prepare_data" not in counts


@pytest.mark.slow
def test_smoke_two_phase_ablations_end_to_end(smoke_run):
    """Tables 1-3, 5 and 10 of the shared smoke run: rows, shared jobs (one phase 1 for Table 3, Table 1's v
    row is Table 4's job), the PPL strips and the claims."""
    project = smoke_run
    t1 = pd.read_csv(project / "results/two_phase/table1.csv")
    assert list(t1["prediction"]) == ["eps", "x", "v"] and set(t1["schedule"]) == {"sc4"}
    t4 = pd.read_csv(project / "results/table4.csv")
    shared = t4[(t4["method"] == "dae_1phase_sc4") & (t4["mode"] == "stochastic")].iloc[0]
    assert t1.iloc[2]["mlflow_run_id"] == shared["mlflow_run_id"]  # the same metrics job, not a rerun
    t2 = pd.read_csv(project / "results/two_phase/table2.csv")
    assert list(t2["schedule"]) == ["linear_beta", "sc1", "sc2", "sc4", "sc8"] * 2
    assert list(t2["prediction"]) == ["x"] * 5 + ["v"] * 5
    t3 = pd.read_csv(project / "results/two_phase/table3.csv", keep_default_na=False)
    assert list(t3["phase1"]) == ["sc4", "t = 1", "t = 1", "t = 1", "t = 1", "t = 1"]
    assert list(t3["phase2"]) == ["N/A", "N/A", "sc2", "sc4", "sc8", "sc16"]
    for t in (t1, t2, t3):
        assert t[["psnr", "ssim", "fd_domain"]].notna().all().all() and (t["n_images"] == 32).all()
    # one phase-1 job for Table 3's five 2-phase-derived rows
    assert (project / "logs/train/digits/dae_2phase_sc4/phase1.log").exists()
    for m in ("dae_2phase_sc2", "dae_2phase_sc8", "dae_2phase_sc16"):
        assert (project / f"logs/train/digits/{m}/phase2.log").exists()
        assert not (project / f"logs/train/digits/{m}/phase1.log").exists(), m
    assert not (project / "logs/train/digits/dae_t1_only").exists()
    t5 = pd.read_csv(project / "results/two_phase/table5.csv")
    assert list(t5["label"]) == ["Preechakul et al.", "1-phase SC-4", "2-phase SC-4"]
    assert "ppl_featdist_domain" in t5.columns and "ppl_lpips_vgg" not in t5.columns  # no VGG weights: named so
    assert (t5["ppl_featdist_domain"] > 0).all() and (t5["pairs"] == 4).all() and (t5["steps"] == 10).all()
    for m in t5["method"]:
        assert (project / f"results/two_phase/ppl/digits/{m}.png").stat().st_size > 0
    t10 = pd.read_csv(project / "results/two_phase/table10.csv")
    assert set(t10["kind"]) == {"class", "attribute"} and len(t10[t10["kind"] == "class"]) == 11  # 10 + Average
    methods = ["dae_baseline", "dae_1phase_sc4", "dae_2phase_sc4"]
    assert t10[methods].apply(lambda c: c.between(0, 1)).all().all()
    assert t10[[f"{m}_rank" for m in methods]].isin([1, 2, 3]).all().all()
    assert_claims_evaluate(project, "two_phase_ablations")


@pytest.mark.slow
def test_smoke_table4_end_to_end(smoke_run):
    """Table 4 of the shared smoke run, its MLflow runs, claims and emergence curve. (Killed and resumed
    jobs: test_chaos.py, on every study's DAG.)"""
    project = smoke_run
    table = pd.read_csv(project / "results/table4.csv")
    assert len(table) == 6
    assert set(table["mode"]) == {"stochastic", "inversion"}
    assert list(table.columns[:6]) == ["dataset", "method", "label", "prediction", "schedule", "mode"]
    for col in ("psnr", "ssim", "mse", "fd_domain", "featdist_domain", "n_images", "ddim_steps", "mlflow_run_id"):
        assert col in table.columns and table[col].notna().all(), col
    assert "lpips" not in table.columns and "fid_tf" not in table.columns  # no weights here: absent, not faked
    assert (table["n_images"] == 32).all() and (table["ddim_steps"] == 8).all()
    assert set(table["label"]) == {"Preechakul et al.", "1-phase SC-4", "2-phase SC-4"}
    for mode in ("stochastic", "inversion"):
        grid = project / f"results/recon/digits/dae_2phase_sc4/{mode}.png"
        assert grid.stat().st_size > 0
    # the table's PSNR / SSIM / MSE are those scikit-image computes on the saved reconstructions, and DDIM
    # inversion (x_T inferred from the image) reconstructs far better than stochastic encoding (fresh x_T),
    # the ordering the smoke run is built to show
    assert_recomputed(table, lambda row: project / f"results/recon/digits/{row['method']}/{row['mode']}.npz")
    by_mode = table.set_index(["method", "mode"])["psnr"]
    for method in set(table["method"]):
        assert by_mode[(method, "inversion")] > by_mode[(method, "stochastic")] + 5, method
    # every job's timing sits beside its log (the Snakefile derives `benchmark:` from `log:` for each rule)
    for log in ("train/digits/dae_2phase_sc4/phase1", "metrics/digits/dae_2phase_sc4/inversion", "tables/table4"):
        assert (project / f"logs/{log}.log").exists(), log
        bench = pd.read_csv(project / f"logs/benchmarks/{log}.tsv", sep="\t")
        assert len(bench) == 1 and bench["s"].iloc[0] > 0, log

    # every table row links to a finished MLflow run that holds its metrics
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    for _, row in table.iterrows():
        r = client.get_run(row["mlflow_run_id"])
        assert r.info.status == "FINISHED"
        assert r.data.metrics["psnr"] == pytest.approx(row["psnr"], rel=1e-4)
        assert r.data.tags["rule"] == "metrics" and r.data.tags["dataset"] == "digits"
        assert (r.data.params["method"], r.data.params["mode"]) == (row["method"], row["mode"])
        # and on the run that trained the model (the last phase's), beside its lr and network sizes
        trained = client.get_run(r.data.tags["daebench.training_run_id"])
        assert trained.data.tags["rule"] == "train" and trained.info.run_name.startswith(row["method"] + "/")
        what = f"{row['mode']}-{row['ddim_steps']}steps-n{row['n_images']}"
        assert trained.data.metrics[f"eval/{what}/psnr"] == pytest.approx(row["psnr"], rel=1e-4)
        assert "train.lr" in trained.data.params and int(trained.data.params["n_params.decoder"]) > 0
    train_runs = [r for r in client.search_runs([client.get_experiment_by_name("daebench").experiment_id],
                                                "tags.rule = 'train'")
                  if r.info.run_name in {"dae_baseline/main", "dae_1phase_sc4/main", "dae_2phase_sc4/phase1",
                                         "dae_2phase_sc4/phase2"}]
    assert len(train_runs) == 4 and all(r.info.status == "FINISHED" for r in train_runs)
    assert all("loss/mse" in r.data.metrics for r in train_runs)
    # one Snakemake invocation, one parent run: every job's run nests under it; training runs carry their
    # checkpoint and where they stood (progress 1 at the end, no time left)
    exp = [client.get_experiment_by_name("daebench").experiment_id]
    (parent,) = {r.data.tags.get("mlflow.parentRunId") for r in train_runs}
    workflow_run = client.get_run(parent)
    assert workflow_run.data.tags["rule"] == "workflow" and workflow_run.info.status == "FINISHED"
    assert "results/table4.csv" in workflow_run.data.tags["command"]
    from conftest import SMOKE_FIGURES, SMOKE_REPORT, SMOKE_TABLES
    from daebench.tracking import workflow_run_name

    targets = sorted({t for ts in SMOKE_TABLES.values() for t in ts} | set(SMOKE_FIGURES) | {SMOKE_REPORT})
    assert workflow_run.info.run_name == workflow_run_name(targets)  # named by its targets
    workflows = {r.info.run_id for r in client.search_runs(exp, "tags.rule = 'workflow'")}
    jobs = client.search_runs(exp, "tags.rule != 'workflow'", max_results=5000)
    assert {r.data.tags.get("mlflow.parentRunId") for r in jobs} <= workflows  # no job run outside one
    assert sum(r.data.tags["mlflow.parentRunId"] == parent for r in jobs) >= 100  # the shared run's ~140 jobs
    for r in train_runs:
        assert r.data.metrics["progress"] == 1.0 and r.data.metrics["eta_seconds"] == 0.0
        # the checkpoint stored once: the run names the workflow's file and its hash, copies nothing
        tags = r.data.tags
        ckpt = project / tags["checkpoint.path"]
        assert tags["checkpoint.path"].startswith("resources/models/digits/") and ckpt.is_file()
        assert tags["checkpoint.sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
        assert [f.path for f in client.list_artifacts(r.info.run_id)] == ["config.json", "log"]
        (job_log,) = client.list_artifacts(r.info.run_id, "log")
        assert job_log.path.endswith(".log") and job_log.file_size > 0

    again = run(["-n", "results/table4.csv", "--configfile", "tests/smoke.yaml"], project, timeout=120)
    assert "Nothing to be done" in again.stdout + again.stderr

    # the claims file: every Table 4 claim evaluates on the smoke run (LPIPS ones: no weights here)
    proc = run(["--cores", "2", "results/claims.csv", "--configfile", "tests/smoke.yaml"], project)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert_claims_evaluate(project, "two_phase")  # LPIPS claims through the featdist_domain stand-in
    # every study has run in the shared project: the combined file holds them all, Table 4 first
    studies = list(pd.read_csv(project / "results/claims.csv")["study"].unique())
    assert studies[0] == "two_phase" and sorted(studies) == ["dbae", "ddvi", "scorevae", "two_phase", "two_phase_ablations"]

    # the emergence curve at the smoke preset's two budgets (x1 the main run, x2 a nested run), one CSV and figure
    proc = run(["--cores", "2", "results/emergence/two_phase.csv", "--configfile", "tests/smoke.yaml"], project,
               timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    em = pd.read_csv(project / "results/emergence/two_phase.csv")
    assert sorted(em["scale"].unique()) == [1, 2] and sorted(em["examples"].unique()) == [1280, 2560]
    assert set(em["claim_id"]) == set(pd.read_csv(project / "results/claims/two_phase.csv")["claim_id"])
    ssim = em[(em["claim_id"] == "2phase_gt_1phase_stoch_ssim") & (em["row"] == "2-phase SC-4 · stochastic")]
    assert len(ssim) == 2 and ssim["value"].between(0, 1).all()
    assert (project / "results/emergence/two_phase.png").stat().st_size > 5000
    point = project / "results/emergence/two_phase/x2"
    assert "examples: 2560" in (point / "params.yaml").read_text()
    assert (point / "resources/data").is_symlink()  # the prepared data are shared, never rebuilt
    # x1 is the main run: its table is the main one, linked, and no nested run trained anything for it
    x1 = project / "results/emergence/two_phase/x1"
    assert (x1 / "results/table4.csv").resolve() == (project / "results/table4.csv").resolve()
    assert not (x1 / "resources").exists() and not (x1 / ".snakemake").exists()
    main = pd.read_csv(project / "results/claims/two_phase.csv").set_index("claim_id")["verdict"].sort_index()
    at1 = em[em["scale"] == 1].drop_duplicates("claim_id").set_index("claim_id")["verdict"].sort_index()
    assert at1.to_dict() == main.to_dict()


# Claims whose rows are reconstructions scored per image: each has a paired interval (the scoring JSONs reached
# the claims job), never "no interval"
PAIRED = {"two_phase": lambda c: True,
          "two_phase_ablations": lambda c: c.table in ("Table 1", "Table 2", "Table 3"),
          "scorevae": lambda c: True,
          "dbae": lambda c: c.table in ("Table 2", "Table 9"),
          "ddvi": lambda c: False}


def assert_recomputed(table: pd.DataFrame, npz_of_row) -> None:
    """Each row's per-image metrics, as present (PSNR, SSIM, MSE, L2), equal what scikit-image and numpy compute
    on the reconstructions the row was scored from ([-1, 1] -> [0, 1], mean over the test images)."""
    from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

    from daebench.evaluate.reconstruction import to_hwc01

    for _, row in table.iterrows():
        rec = np.load(npz_of_row(row))
        orig, recon = to_hwc01(rec["original"]).astype(np.float64), to_hwc01(rec["recon"]).astype(np.float64)
        ref = {"psnr": [peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(orig, recon)],
               "ssim": [structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                             data_range=1.0, channel_axis=-1) for a, b in zip(orig, recon)],
               "mse": [mean_squared_error(a, b) for a, b in zip(orig, recon)],
               "l2": [np.linalg.norm((a - b).ravel()) for a, b in zip(orig, recon)]}
        checked = [m for m in ref if m in row.index and pd.notna(row[m])]
        assert {"psnr", "ssim"} <= set(checked), (row.to_dict(), checked)
        for m in checked:
            assert row[m] == pytest.approx(np.mean(ref[m]), rel=1e-4, abs=1e-4), (m, row.to_dict())


def assert_claims_evaluate(project, study, untestable=()):
    """Every claim of the study's claims file has a verdict; only the named ones are untestable; claims on
    per-image metrics have a paired interval, and the interval lies on the side the verdict says."""
    c = pd.read_csv(project / f"results/claims/{study}.csv")
    from daebench.report import STUDIES

    assert set(c["claim_id"]) == {x.claim_id for x in STUDIES[study].CLAIMS}
    assert set(c["verdict"]) <= {"holds", "fails", "inconclusive", "vs-collapsed", "untestable"}
    assert set(c.loc[c["verdict"] == "untestable", "claim_id"]) == set(untestable), c[["claim_id", "measured"]]
    paired = {x.claim_id for x in STUDIES[study].CLAIMS if PAIRED[study](x)} - set(untestable)
    tests = c.set_index("claim_id")["test"]
    assert all(str(tests[i]).startswith("paired bootstrap") for i in paired), tests[list(paired)]
    # the verdict rule itself, on each judged row with an interval: inconclusive exactly when the interval of
    # the difference straddles 0, else holds or fails by the side it lies on
    judged = c[c["verdict"].isin(["holds", "fails", "inconclusive"]) & c["ci_low"].notna()
               & (c["measured"].str.count(" factor ") == 0)]
    straddles = (judged["ci_low"] <= 0) & (judged["ci_high"] >= 0)
    assert ((judged["verdict"] == "inconclusive") == straddles).all(), judged[["claim_id", "verdict", "ci_low", "ci_high"]]
    ok = c[c["verdict"].isin(["holds", "fails"]) & c["ci_low"].notna() & (c["measured"].str.count(" factor ") == 0)]
    lower = ok["measured"].str.split(":").str[0].isin(["MSE", "L2", "fd_domain", "featdist_domain", "latent NLL", "MMD"])
    better_side = (ok["ci_high"] < 0) == lower
    assert ((ok["verdict"] == "holds") == better_side).all(), ok[["claim_id", "verdict", "ci_low", "ci_high"]]


def test_dry_run_shows_the_ddvi_study(project):
    proc = run(["-n", "results/ddvi/table1.csv", "results/ddvi/table3.csv"], project, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # table 1: 5 methods x 3 priors x 5 seeds; table 3: 4 methods x 5 seeds on the simulated genotypes
    assert job_counts(out) == {"prepare_data": 1, "ddvi_genotypes": 1, "ddvi_train": 95, "ddvi_evaluate": 95,
                               "ddvi_table": 2, "total": 194}
    assert "output: resources/ddvi/cluster/mixture/ddvi/seed4.pt" in out
    assert "output: resources/ddvi/unsup/swiss_roll/aaeb/seed1.pt" in out


@pytest.mark.slow
def test_smoke_ddvi_study_end_to_end(smoke_run):
    project = smoke_run
    targets = ["results/ddvi/table1.csv", "results/ddvi/table3.csv", "results/ddvi/table8.csv",
               "results/ddvi/latents_cluster.png"]
    t1 = pd.read_csv(project / "results/ddvi/table1.csv")
    assert list(t1["label"]) == ["AEVB", "AEVB-IAF", "AAEB", "H-AEVB", "DDVI"] and (t1["n_seeds"] == 2).all()
    assert t1["elbo"].isna().tolist() == [False, False, True, False, False]  # AAEB has no density: N/A
    assert t1[["mmd", "mmd_ci95", "latent_nll", "latent_nll_ci95"]].notna().all().all()
    assert (t1["mmd"] > 0).all() and (t1["elbo"].dropna() < 0).all()
    t3 = pd.read_csv(project / "results/ddvi/table3.csv")
    assert list(t3["method"]) == ["aevb", "aevb_iaf", "aaeb", "ddvi"]
    assert t3[["cluster_purity", "cluster_completeness", "nmi"]].apply(lambda c: c.between(0, 1)).all().all()
    t8 = pd.read_csv(project / "results/ddvi/table8.csv")
    assert "ddvi_nosleep" in set(t8["method"]) and t8["latent_nll"].notna().all()
    assert (project / "results/ddvi/latents_cluster.png").stat().st_size > 5000
    claims = run(["--cores", "2", "results/claims/ddvi.csv", "--configfile", "tests/smoke.yaml"], project)
    assert claims.returncode == 0, (claims.stdout + claims.stderr)[-4000:]
    # the smoke preset runs the pinwheel prior unsupervised (Tables 1, 8) and the swiss roll semi-supervised
    # (Table 2, built for the report): the other priors' claims of each table have no rows
    from daebench.report import STUDIES

    absent = {c.claim_id for c in STUDIES["ddvi"].CLAIMS
              if (c.table == "Table 2" and not c.claim_id.endswith("_swiss_roll"))
              or (c.table in ("Table 1", "Table 8") and c.claim_id.endswith(("_swiss_roll", "_square")))}
    assert_claims_evaluate(project, "ddvi", untestable=absent)
    c = pd.read_csv(project / "results/claims/ddvi.csv").set_index("claim_id")
    assert c.loc["ddvi_gt_aevb_elbo_release_pinwheel", "estimator"].startswith("the release")
    # one changed knob of one baseline reruns exactly that baseline's runs and the tables
    (project / "knob.yaml").write_text("ddvi:\n  methods:\n    aaeb: {noise: 0.2}\n")
    dry = run(["-n", *targets, "--configfile", "tests/smoke.yaml", "knob.yaml"], project, timeout=120)
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-3000:]
    trained = sorted(re.findall(r"output: resources/ddvi/(\S+)\.pt", out))
    assert trained == ["cluster/mixture/aaeb/seed0", "cluster/mixture/aaeb/seed1",
                       "unsup/pinwheel/aaeb/seed0", "unsup/pinwheel/aaeb/seed1"]


README_CLAIMS = ["statements", "robust in the paper", "paper-inconclusive", "verdicts", "holds", "robust held",
                 "on stand-ins", "fails", "inconclusive", "vs-collapsed", "untestable"]


def readme_claims_table() -> dict[str, dict[str, int]]:
    """The README's "Claims at a glance" table: study -> its counts."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- claims-at-a-glance -->")[1]
    out = {}
    for line in block.strip().splitlines()[2:]:
        if not line.startswith("| `"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        # "—": a study whose default run was not redone under the current claims (its verdicts unknown)
        out[cells[0].strip("`")] = {k: None if v == "—" else int(v)
                                    for k, v in zip(README_CLAIMS, cells[1:1 + len(README_CLAIMS)])}
    return out


@pytest.mark.slow
def test_readme_claim_counts_match_the_claims_files(smoke_run):
    """The README's headline counts: the structure (statements, robust, paper-inconclusive: the paper's side,
    the same at any scale) against a smoke run's claims files; the default run's verdict counts add up."""
    from daebench.claims import counts, read_claims
    from daebench.report import STUDIES

    table = readme_claims_table()
    assert set(table) == set(STUDIES)
    for study, r in table.items():
        c = read_claims(smoke_run / f"results/claims/{study}.csv")
        per = c.drop_duplicates("claim_id")
        assert r["statements"] == len(per), study
        assert r["robust in the paper"] == int(per["robust"].fillna(False).sum()), study
        assert r["paper-inconclusive"] == int((per["paper_verdict"] == "paper-inconclusive").sum()), study
        verdicts = [r[k] for k in ("holds", "fails", "inconclusive", "vs-collapsed", "untestable")]
        if r["verdicts"] is None:
            assert set(verdicts) | {r["robust held"], r["on stand-ins"]} == {None}, study
            continue
        assert sum(verdicts) == r["verdicts"], study
        assert r["on stand-ins"] <= r["robust held"] <= r["holds"], study
        assert set(counts(c)) >= {"holds", "fails", "inconclusive", "vs-collapsed", "untestable", "robust_holds",
                                  "robust_holds_stand_in"}
    assert table["two_phase"]["verdicts"] is not None  # the main job's claims are always stated
    held = sum(r["robust held"] or 0 for r in table.values())
    stand_in = sum(r["on stand-ins"] or 0 for r in table.values())
    assert f"{held} robust findings hold ({stand_in} of them on stand-in metrics)" in (ROOT / "README.md").read_text()


def test_a_reused_smoke_project_must_come_from_this_code(tmp_path):
    """DAEBENCH_SMOKE_RUN reuses a finished smoke project only if this checkout's code built it."""
    from conftest import SMOKE_STAMP, code_hash, reused_smoke_project

    with pytest.raises(pytest.fail.Exception, match="no stamp"):
        reused_smoke_project(tmp_path)
    (tmp_path / SMOKE_STAMP).write_text("0123456789abcdef\n")
    with pytest.raises(pytest.fail.Exception, match="built by other code"):
        reused_smoke_project(tmp_path)
    (tmp_path / SMOKE_STAMP).write_text(code_hash() + "\n")
    assert reused_smoke_project(tmp_path) == tmp_path
