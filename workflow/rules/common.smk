# Validation and the small functions that derive each job's inputs and config slice.
import json
import os
import shlex
import shutil

from snakemake.exceptions import WorkflowError

from daebench.config import ConfigError, dataset_path_problems, nets_keys, source_first_on_path, validate
from daebench.data.registry import needs_download

try:
    validate(config, workflow.source_path("../schemas/params.schema.yaml"))
except ConfigError as err:
    raise WorkflowError(f"{err}\n(fix params.yaml or the --configfile you passed)") from None

# Where runs are logged travels in the environment (inherited by local and cluster jobs), not
# in params, so that changing it never reruns the work itself.
os.environ.setdefault("MLFLOW_TRACKING_URI", config["mlflow"]["tracking_uri"])
os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", config["mlflow"]["experiment"])
# So do the execution settings (compute.*: AMP, DDP processes, ...): how a job runs is not what it computes.
os.environ.update(DAEBENCH_COMPUTE=json.dumps(config["compute"], sort_keys=True))
# Jobs import daebench from this workflow's own src/, first on PYTHONPATH: under `--sdm conda` the environment
# holds only the dependencies (envs/daebench.yaml explains why), and either way a job runs the code of the
# Snakefile that scheduled it. Absent (a workflow copied without src/), jobs use the installed package.
os.environ.update(PYTHONPATH=source_first_on_path(os.path.join(workflow.basedir, "src"), os.environ))
# And what MLflow keeps beside the metrics (checkpoints as artifacts, registered models).
os.environ.update(DAEBENCH_MLFLOW=json.dumps({k: config["mlflow"][k] for k in ("log_checkpoints", "register_models")},
                                            sort_keys=True))


envvars:
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "DAEBENCH_COMPUTE",
    "DAEBENCH_MLFLOW",


onstart:
    # Create the experiment (and the SQLite schema) once, before jobs fan out and race on it, and open
    # this invocation's parent run: every job's run nests under it (DAEBENCH_MLFLOW_PARENT_RUN).
    import sys

    from daebench.tracking import experiment_name, open_workflow_run, setup_experiment, tracking_uri

    setup_experiment(tracking_uri(), experiment_name())
    open_workflow_run(["snakemake", *sys.argv[1:]])


onsuccess:
    from daebench.tracking import close_workflow_run

    close_workflow_run(success=True)


onerror:
    from daebench.tracking import close_workflow_run

    close_workflow_run(success=False)


# A GPU is a resource only where one exists, so CPU machines run training jobs in parallel.
GPU = 1 if shutil.which("nvidia-smi") else 0
# Torch jobs run one thread each on CPU: these small networks scale poorly across threads and
# parallel jobs sharing cores with multi-threaded torch slow down ~5x (OpenMP spinning).
# Override per rule with e.g. `--set-threads train_phase=4`.
TORCH_THREADS = 4 if GPU else 1


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    method=r"[A-Za-z0-9_]+",
    phase=r"[A-Za-z0-9_]+",
    mode=r"stochastic|inversion|endpoint|sde|ode|decoder",
    nfe=r"\d+",
    table=r"table[0-9]+",
    setting=r"unsup|semi|cluster",
    prior=r"[a-z_]+",
    seed=r"\d+",
    study=r"two_phase|dbae|scorevae|ddvi",
    scale=r"[0-9]+(\.[0-9]+)?",
    source=r"prior|ae|simulated|1000_genomes",


# Every job's params carry the configuration of everything upstream of it, so a changed key
# reruns exactly the jobs downstream of it in any Snakemake invocation (another DVC stage, a later
# session), not only where the upstream job reruns alongside. File times still count, as usual.


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def data_slice(dataset):
    # A dataset read from a local copy (dataset_paths.<name>) also depends on that path; the others' slices
    # stay exactly {"dataset", "data"}, so adding datasets reruns none of their work.
    out = {"dataset": dataset, "data": config["data"]}
    if dataset in config["dataset_paths"]:
        out["path"] = config["dataset_paths"][dataset]
    return out


def prepare_slice(dataset):
    # Validation checks the configured dataset's local copy; this covers a dataset named only by a target path.
    problems = dataset_path_problems(config, dataset)
    if problems:
        raise WorkflowError("invalid parameters:\n  - " + "\n  - ".join(problems))
    return data_slice(dataset)


def download_slice(dataset):
    return {"dataset": dataset, "data": {k: config["data"][k] for k in ("download_dir", "base_url")}}


def download_record(wildcards):
    # Only datasets with a download get the input: the others' prepare jobs keep exactly the inputs (none)
    # they were run with, so adding the download step reruns none of their work.
    if not needs_download(wildcards.dataset, config["dataset_paths"].get(wildcards.dataset)):
        return []
    return f"{config['data']['download_dir']}/{wildcards.dataset}/download.json"


def data_dir(dataset):
    return f"resources/data/{dataset}"


def phase_index(method, phase):
    names = [p["name"] for p in config["methods"][method]["phases"]]
    if phase not in names:
        raise WorkflowError(f"method {method!r} has no phase {phase!r}; its phases: {', '.join(names)}")
    return names.index(phase)


def model_path(dataset, method, phase):
    return f"resources/models/{dataset}/{method}/{phase}.pt"


def manifest(wildcards):
    return f"resources/data/{wildcards.dataset}/manifest.json"


def final_model(wildcards):
    last = config["methods"][wildcards.method]["phases"][-1]["name"]
    return model_path(wildcards.dataset, wildcards.method, last)


def previous_phase(wildcards):
    i = phase_index(wildcards.method, wildcards.phase)
    if i == 0:
        return []
    prev = config["methods"][wildcards.method]["phases"][i - 1]["name"]
    return model_path(wildcards.dataset, wildcards.method, prev)


def method_core(method):
    # Everything but the table label: the label never changes what is trained.
    return {k: v for k, v in config["methods"][method].items() if k != "label"}


def family(method):
    return config["methods"][method]["family"]


def train_slice(dataset, method, upto=None):
    # A phase depends on its own and the earlier phases only (editing phase 2 keeps phase 1), on the
    # nets.* blocks its family builds (config.FAMILY_NETS), and on its prior's training, if any.
    core = method_core(method)
    if upto is not None:
        core["phases"] = core["phases"][: upto + 1]
    out = {**data_slice(dataset), "method": core, "nets": {k: config["nets"][k] for k in nets_keys(core)},
           "train": config["train"]}
    if "prior" in core:
        out["prior"] = train_slice(dataset, core["prior"])
    return out


def train_cfg(wildcards):
    return as_json(train_slice(wildcards.dataset, wildcards.method, phase_index(wildcards.method, wildcards.phase)))


def train_priority(wildcards):
    # Start long chains first: a model other trainings wait on (an early phase, a prior) is scheduled
    # before leaf trainings, so the chain prior -> encoder -> corrector is not left for last.
    methods = config["methods"]
    later = len(methods[wildcards.method]["phases"]) - 1 - phase_index(wildcards.method, wildcards.phase)
    return later + sum(len(m["phases"]) for m in methods.values() if m.get("prior") == wildcards.method)


def prior_model(wildcards):
    # the frozen prior a method builds on (ScoreVAE), needed by its first phase only
    prior = config["methods"][wildcards.method].get("prior")
    if prior is None or phase_index(wildcards.method, wildcards.phase) > 0:
        return []
    last = config["methods"][prior]["phases"][-1]["name"]
    return model_path(wildcards.dataset, prior, last)


def classifier_slice(dataset):
    return {**data_slice(dataset), "classifier": config["metrics"]["classifier"]}


def recon_slice(dataset, method, ev, upto=None):
    # a reconstruction job: the model it reads (as trained up to phase ``upto``) and its eval settings
    return {**train_slice(dataset, method, upto), "device": config["train"]["device"], "eval": ev}


def eval_slice(dataset, method):
    t4 = config["table4"]
    return recon_slice(dataset, method, {k: t4[k] for k in ("ddim_steps", "clip_x0", "n_images", "batch_size", "seed")})


def reconstruct_cfg(wildcards):
    return as_json(eval_slice(wildcards.dataset, wildcards.method))


def metrics_slice(dataset):
    # what every scoring job reads besides its input files: the pretrained weights present
    return {"dataset": dataset, "weights_dir": config["metrics"]["weights_dir"], "weights": weights_state()}


def metrics_cfg(wildcards):
    return as_json(metrics_slice(wildcards.dataset))


def metrics_upstream(dataset, method, mode):
    return {"eval": eval_slice(dataset, method), "mode": mode, "classifier": classifier_slice(dataset)}


def weights_state():
    # Names and sizes of the pretrained metric files: fetching them reruns the metric jobs.
    d = config["metrics"]["weights_dir"]
    if not os.path.isdir(d):
        return []
    return sorted((f, os.path.getsize(os.path.join(d, f))) for f in os.listdir(d) if not f.startswith("."))


def table4_inputs(wildcards):
    t4 = config["table4"]
    return expand("results/metrics/{dataset}/{method}/{mode}.json", dataset=config["dataset"],
                  method=t4["methods"], mode=t4["modes"])


def table4_upstream(wildcards):
    from daebench.config import params_hash

    t4 = config["table4"]
    return params_hash([metrics_upstream(config["dataset"], m, mode) for m in t4["methods"] for mode in t4["modes"]])


def table4_cfg(wildcards):
    t4 = config["table4"]
    return as_json({"dataset": config["dataset"], "ddim_steps": t4["ddim_steps"], "methods_order": t4["methods"],
                    "methods": {m: {k: config["methods"][m][k] for k in ("label", "prediction", "phases")}
                                for m in t4["methods"]}})


def report_recon_inputs(wildcards):
    t4 = config["table4"]
    return expand("results/recon/{dataset}/{method}/{mode}.npz", dataset=config["dataset"],
                  method=t4["methods"], mode=t4["modes"])


def table4_provenance(wildcards):
    # Everything results/table4.csv depends on (see common.smk: reruns follow provenance).
    from daebench.config import params_hash

    return params_hash([table4_upstream(wildcards), table4_cfg(wildcards)])


# --- the claims of every study ------------------------------------------------------------------


def claims_study(study):
    from daebench.claims import STUDIES

    if study not in STUDIES:
        raise WorkflowError(f"no claims for study {study!r}; known: {', '.join(STUDIES)}")
    return STUDIES[study]


def study_claims_inputs(wildcards):
    # The study's tables that exist (all of them when none does yet, so asking for the claims builds them);
    # the two-phase study's one table always.
    tables = claims_study(wildcards.study).TABLES
    have = {k: v for k, v in tables.items() if os.path.exists(v)}
    return have if have and wildcards.study != "two_phase" else tables


def study_claims_cfg(wildcards):
    from daebench.claims import study_cfg

    return as_json(study_cfg(wildcards.study, config))


def study_claims_provenance(wildcards):
    return table4_provenance(wildcards) if wildcards.study == "two_phase" else ""


def claims_files(wildcards):
    from daebench.claims import STUDIES

    ran = [s for s, mod in STUDIES.items() if s == "two_phase" or any(os.path.exists(p) for p in mod.TABLES.values())]
    return [f"results/claims/{s}.csv" for s in ran]


# --- the DBAE study -------------------------------------------------------------------------------


def dbae_study():
    return config["dbae"]


def sampler_of(method):
    return dbae_study()["sampler"] if family(method) == "dbae" else dbae_study()["ddim"]


def dbae_modes(method):
    # DAE: random x_T and DDIM-inverted x_T; DBAE: x_T = Dec(z)
    return ["endpoint"] if family(method) == "dbae" else ["stochastic", "inversion"]


def dbae_eval_slice(dataset, method, nfe):
    d = dbae_study()
    return recon_slice(dataset, method, {"nfe": int(nfe), "sampler": sampler_of(method), "n_images": d["n_images"],
                                         "batch_size": d["batch_size"], "seed": d["seed"]})


def dbae_recon_cfg(wildcards):
    return as_json(dbae_eval_slice(wildcards.dataset, wildcards.method, wildcards.nfe))


def dbae_metrics_upstream(wildcards):
    return as_json({"eval": dbae_eval_slice(wildcards.dataset, wildcards.method, wildcards.nfe),
                    "mode": wildcards.mode, "classifier": classifier_slice(wildcards.dataset)})


def prior_slice(dataset, method):
    return {"dataset": dataset, "device": config["train"]["device"], "prior": dbae_study()["prior"],
            "upstream": train_slice(dataset, method)}


def prior_path(dataset, method):
    return f"resources/priors/{dataset}/{method}.pt"


def generation_slice(dataset, method, source):
    g = dbae_study()["generation"]
    out = {"dataset": dataset, "method": method_core(method), "device": config["train"]["device"],
           "sampler": sampler_of(method), "upstream": train_slice(dataset, method),
           "generation": {k: g[k] for k in ("n_samples", "nfe", "prior_steps", "batch_size", "seed")}}
    if source == "prior":
        out["prior"] = prior_slice(dataset, method)["prior"]
    return out


def generation_prior(wildcards):
    return prior_path(wildcards.dataset, wildcards.method) if wildcards.source == "prior" else []


def gen_metrics_cfg(wildcards):
    g = dbae_study()["generation"]
    return as_json({**metrics_slice(wildcards.dataset), "pr_k": g["pr_k"], "ref_seed": g["ref_seed"]})


def latent_eval_slice(dataset, method, **extra):
    return {"dataset": dataset, "device": config["train"]["device"], "upstream": train_slice(dataset, method), **extra}


def cost_cfg(wildcards):
    return as_json({**latent_eval_slice(wildcards.dataset, wildcards.method), "method": method_core(wildcards.method),
                    "sampler": sampler_of(wildcards.method), "cost": dbae_study()["cost"]})


def dbae_rows():
    # the DiffAE comparator first, then the DBAE variants
    d = dbae_study()
    return [d["dae"]] + d["methods"]


def dbae_study_methods():
    d = dbae_study()
    return sorted(set(dbae_rows() + d["tc_methods"] + d["generation"]["methods"]))


def dbae_table_inputs(wildcards):
    d, ds = dbae_study(), config["dataset"]
    t = wildcards.table
    if t in ("table2", "table9"):
        nfes = [d["table2_nfe"]] if t == "table2" else d["nfe"]
        return [f"results/dbae/metrics/{ds}/{m}/{mode}_nfe{n}.json"
                for m in dbae_rows() for mode in dbae_modes(m) for n in nfes]
    if t == "table4":
        return expand("results/dbae/gen_metrics/{ds}/{m}/{src}.json", ds=ds, m=d["generation"]["methods"],
                      src=["prior", "ae"])
    if t == "table1":
        return expand("results/dbae/probe/{ds}/{m}.json", ds=ds, m=dbae_rows())
    if t == "table3":
        rows = [d["dae"]] + d["tc_methods"]
        return (expand("results/dbae/disentangle/{ds}/{m}.json", ds=ds, m=rows)
                + expand("results/dbae/gen_metrics/{ds}/{m}/prior.json", ds=ds, m=rows))
    if t == "table5":
        return expand("results/dbae/cost/{ds}/{m}.json", ds=ds, m=dbae_rows())
    raise WorkflowError(f"unknown DBAE table {t!r}; known: table1, table2, table3, table4, table5, table9")


def dbae_table_cfg(wildcards):
    d, ds = dbae_study(), config["dataset"]
    names = dbae_study_methods()
    return as_json({"dataset": ds, "z_dim": config["nets"]["z_dim"], "table2_nfe": d["table2_nfe"], "nfe": d["nfe"],
                    "order": dbae_rows() + [m for m in names if m not in dbae_rows()],
                    "methods": {m: {"label": config["methods"][m]["label"], "family": family(m),
                                    "tc_weight": config["methods"][m].get("tc_weight", 0.0)} for m in names}})


def dbae_table_upstream(wildcards):
    # Everything the table's inputs depend on (coarse: any DBAE-study setting or involved model).
    from daebench.config import params_hash

    d, ds = dbae_study(), config["dataset"]
    return params_hash([d, classifier_slice(ds), config["metrics"]["weights_dir"]]
                       + [train_slice(ds, m) for m in dbae_study_methods()])


# --- the ScoreVAE study ----------------------------------------------------------------------------


def scorevae_study():
    return config["scorevae"]


def row_phase(row):
    return row.get("phase") or config["methods"][row["method"]]["phases"][-1]["name"]


def scorevae_modes(method):
    # the VAE decodes in one pass; diffusion decoders by SDE and/or ODE
    return ["decoder"] if family(method) == "vae" else scorevae_study()["modes"]


def scorevae_rows():
    """One entry per Table 1 row and decoding mode, in the configured order."""
    out = []
    for row in scorevae_study()["rows"]:
        m = row["method"]
        for mode in scorevae_modes(m):
            out.append({"method": m, "phase": row_phase(row), "mode": mode, "family": family(m),
                        "label": row.get("label") or config["methods"][m]["label"], "beta": config["methods"][m]["beta"]})
    return out


def scorevae_eval_slice(dataset, method, phase):
    s = scorevae_study()
    if family(method) == "vae":  # one decoder pass: only the choice of z matters
        ev = {"nfe": 1, "sampler": {"latent": s["sampler"]["latent"]}}
    else:
        ev = {"nfe": s["nfe"], "sampler": s["sampler"]}
    ev.update({k: s[k] for k in ("n_images", "batch_size", "seed")})
    return recon_slice(dataset, method, ev, phase_index(method, phase))


def scorevae_model(wildcards):
    return model_path(wildcards.dataset, wildcards.method, wildcards.phase)


def scorevae_recon_files(dataset):
    return [f"results/scorevae/recon/{dataset}/{r['method']}/{r['phase']}_{r['mode']}.npz" for r in scorevae_rows()]


def scorevae_table_inputs(wildcards):
    return [f"results/scorevae/metrics/{config['dataset']}/{r['method']}/{r['phase']}_{r['mode']}.json"
            for r in scorevae_rows()]


def scorevae_table_cfg(wildcards):
    return as_json({"dataset": config["dataset"], "rows": scorevae_rows(), "nfe": scorevae_study()["nfe"]})


def scorevae_table_upstream(wildcards):
    from daebench.config import params_hash

    ds = config["dataset"]
    return params_hash([classifier_slice(ds), config["metrics"]["weights_dir"], weights_state()]
                       + [scorevae_eval_slice(ds, r["method"], r["phase"]) for r in scorevae_rows()])


def scorevae_grid_labels(wildcards):
    return " ".join(shlex.quote(f"{r['label']} (beta {r['beta']:g}, {r['mode']})") for r in scorevae_rows())


def order_pulled_artefacts():
    """A fresh clone whose artefacts came from `dvc pull` has no .snakemake/ metadata, and DVC
    writes files in whatever order it checks them out, so a result can look older than its
    inputs. There, and only there, give the pulled files modification times in DAG order
    (data < models by phase < reconstructions < metrics < tables < report)."""
    import glob
    import time

    if os.path.isdir(".snakemake/metadata") or not os.path.exists("dvc.lock"):
        return
    ds = config["dataset"]
    depth = max(len(m["phases"]) for m in config["methods"].values())
    levels = [glob.glob(f"resources/data/{ds}/*"), [f"resources/models/{ds}/feature_classifier.pt"]]
    for i in range(depth):
        levels.append([model_path(ds, name, m["phases"][i]["name"]) for name, m in config["methods"].items()
                       if i < len(m["phases"])])
    levels += [glob.glob(f"results/recon/{ds}/*/*"), glob.glob(f"results/metrics/{ds}/*/*"),
               ["results/table4.csv"], glob.glob("results/claims/*.csv"), ["results/claims.csv"],
               ["results/report.html"]]
    t0 = time.time() - len(levels) - 1
    for level, files in enumerate(levels):
        for f in files:
            if os.path.exists(f):
                os.utime(f, (t0 + level, t0 + level))


order_pulled_artefacts()


# --- the DDVI study -----------------------------------------------------------------------------------
from daebench.config import ddvi_method

DDVI_LATENT_TITLES = {"unsup": "Test-digit codes by class (unsupervised, first seed)",
                      "semi": "Test-digit codes by class (semi-supervised, first seed)",
                      "cluster": "Genotype codes by population (clustering, first seed)"}
DDVI_SETTING_TABLES = {"table1": "unsup", "table2": "semi", "table3": "cluster", "table8": "unsup"}


def ddvi_data(setting):
    """(prepared-data directory, the slice that built it) of a setting: images, or genotypes."""
    if setting == "cluster":
        g = config["ddvi"]["genotypes"]
        return f"resources/data/genotypes/{g['source']}", {"genotypes": g}
    return data_dir(config["dataset"]), data_slice(config["dataset"])


def ddvi_manifest(wildcards):
    return os.path.join(ddvi_data(wildcards.setting)[0], "manifest.json")


def ddvi_train_slice(setting, prior, method, seed):
    study = config["ddvi"]
    if method not in study["methods"]:
        raise WorkflowError(f"ddvi: no method {method!r} under ddvi.methods; defined: {', '.join(study['methods'])}")
    d, upstream = ddvi_data(setting)
    out = {"setting": setting, "dataset": d.split("resources/data/", 1)[1],
           "likelihood": "gaussian" if setting == "cluster" else "bce", "method": ddvi_method(study, method, setting),
           "nets": study["nets"], "train": {**study["train"], "seed": int(seed)}, "data": upstream}
    if setting == "cluster":
        out["prior"] = {"name": "mixture", **study["settings"]["cluster"]}
    else:
        if prior not in study["priors"]:
            raise WorkflowError(f"ddvi: unknown prior {prior!r}; known: {', '.join(study['priors'])}")
        out["prior"] = {"name": prior, "params": study["priors"][prior]}
        out["kde"] = study["kde"]
    if setting == "semi":
        out["semi"] = {k: v for k, v in study["settings"]["semi"].items() if k != "priors"}
    return out


def ddvi_eval_slice(w):
    return as_json({**ddvi_train_slice(w.setting, w.prior, w.method, w.seed), "eval": config["ddvi"]["eval"]})


def ddvi_priors(setting):
    return ["mixture"] if setting == "cluster" else config["ddvi"]["settings"][setting]["priors"]


def ddvi_table_runs(table):
    setting = DDVI_SETTING_TABLES[table]
    return expand("results/ddvi/runs/{setting}/{prior}/{method}/seed{seed}.json", setting=setting,
                  prior=ddvi_priors(setting), method=config["ddvi"]["tables"][table], seed=config["ddvi"]["seeds"])


def ddvi_table_cfg(w):
    study = config["ddvi"]
    names = study["tables"][w.table]
    return as_json({"methods": names, "priors": ddvi_priors(DDVI_SETTING_TABLES[w.table]), "seeds": study["seeds"],
                    "labels": {m: study["methods"][m].get("label", m) for m in names}})


def ddvi_latent_rows(setting):
    """(prior, method) of every row of the setting's table, prior by prior."""
    table = next(t for t, s in DDVI_SETTING_TABLES.items() if s == setting)  # table1, not table8
    return [(p, m) for p in ddvi_priors(setting) for m in config["ddvi"]["tables"][table]]


def ddvi_latent_inputs(setting):
    """The first seed's test codes of every row."""
    seed = config["ddvi"]["seeds"][0]
    return [f"results/ddvi/runs/{setting}/{p}/{m}/seed{seed}.npz" for p, m in ddvi_latent_rows(setting)]


def ddvi_latent_labels(setting):
    methods = config["ddvi"]["methods"]
    return " ".join(shlex.quote(methods[m].get("label", m) + ("" if setting == "cluster" else f" / {p}"))
                    for p, m in ddvi_latent_rows(setting))


# Options added after models were trained (issue 14) leave a job's slice untouched at their neutral value, so
# that existing models stay valid and only evaluation reruns (elbo_release, clusters on the chain mean).
DDVI_NEUTRAL = {"method": {"chain_weight": None, "pretrain_examples": 0},
                "prior_params": {"form": "marsland", "noise_dir": "isotropic"}}


def ddvi_job_slice(setting, prior, method, seed):
    out = ddvi_train_slice(setting, prior, method, seed)
    out["method"] = {k: v for k, v in out["method"].items() if DDVI_NEUTRAL["method"].get(k, ...) != v}
    if "params" in out["prior"]:
        out["prior"] = {**out["prior"], "params": {k: v for k, v in out["prior"]["params"].items()
                                                   if DDVI_NEUTRAL["prior_params"].get(k, ...) != v}}
    return out


def ddvi_job_eval_slice(w):
    return as_json({**ddvi_job_slice(w.setting, w.prior, w.method, w.seed), "eval": config["ddvi"]["eval"]})


# --- emergence ladders ------------------------------------------------------------------------------


def emergence_points(wildcards):
    return {f"x{s:g}": f"results/emergence/{wildcards.study}/x{s:g}/results/claims/{wildcards.study}.csv"
            for s in config["emergence"]["scales"]}


# --- the report ------------------------------------------------------------------------------------


# report.studies picks the report's sections after Table 4 (always shown), and so what it depends on.
def report_studies():
    return ["two_phase"] + [s for s in config["report"]["studies"] if s != "two_phase"]


def report_method_studies():
    from daebench.report import method_studies

    return method_studies(config)


def report_study_inputs(wildcards):
    # DBAE_OUTPUTS etc. are defined beside each study's `all` rule (workflow/rules/<study>.smk)
    outputs = {"dbae": DBAE_OUTPUTS, "scorevae": SCOREVAE_OUTPUTS, "ddvi": DDVI_OUTPUTS}
    return [p for s in report_studies()[1:] for p in outputs[s]]
