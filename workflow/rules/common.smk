# Validation and the small functions that derive each job's inputs and config slice.
import json
import os
import shutil

from snakemake.exceptions import WorkflowError

from daebench.config import ConfigError, validate

try:
    validate(config, workflow.source_path("../schemas/params.schema.yaml"))
except ConfigError as err:
    raise WorkflowError(f"{err}\n(fix params.yaml or the --configfile you passed)") from None

# Where runs are logged travels in the environment (inherited by local and cluster jobs), not
# in params, so that changing it never reruns the work itself.
os.environ.setdefault("MLFLOW_TRACKING_URI", config["mlflow"]["tracking_uri"])
os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", config["mlflow"]["experiment"])


envvars:
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",


onstart:
    # Create the experiment (and the SQLite schema) once, before jobs fan out and race on it.
    from daebench.tracking import experiment_name, setup_experiment, tracking_uri

    setup_experiment(tracking_uri(), experiment_name())


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
    mode=r"stochastic|inversion",


# Every job's params carry the configuration of everything upstream of it, so a changed key
# reruns exactly the jobs downstream of it in any Snakemake invocation (another DVC stage, a later
# session), not only where the upstream job reruns alongside. File times still count, as usual.


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def data_slice(dataset):
    return {"dataset": dataset, "data": config["data"]}


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
    m = config["methods"][method]
    return {"family": m["family"], "prediction": m["prediction"], "phases": m["phases"]}


def train_slice(dataset, method, upto=None):
    # A phase depends on its own and the earlier phases only: editing phase 2 keeps phase 1.
    core = method_core(method)
    if upto is not None:
        core["phases"] = core["phases"][: upto + 1]
    return {**data_slice(dataset), "method": core, "nets": config["nets"], "train": config["train"]}


def train_cfg(wildcards):
    return as_json(train_slice(wildcards.dataset, wildcards.method, phase_index(wildcards.method, wildcards.phase)))


def classifier_slice(dataset):
    return {**data_slice(dataset), "classifier": config["metrics"]["classifier"]}


def eval_slice(dataset, method):
    t4 = config["table4"]
    return {**train_slice(dataset, method), "device": config["train"]["device"],
            "eval": {k: t4[k] for k in ("ddim_steps", "clip_x0", "n_images", "batch_size", "seed")}}


def reconstruct_cfg(wildcards):
    return as_json(eval_slice(wildcards.dataset, wildcards.method))


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
               ["results/table4.csv"], ["results/claims.csv"], ["results/report.html"]]
    t0 = time.time() - len(levels) - 1
    for level, files in enumerate(levels):
        for f in files:
            if os.path.exists(f):
                os.utime(f, (t0 + level, t0 + level))


order_pulled_artefacts()
