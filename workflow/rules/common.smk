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

# Jobs log to the experiment recorded by mlflow_setup; the URI travels in the environment so
# that changing where runs are logged never reruns the work itself.
os.environ.setdefault("MLFLOW_TRACKING_URI", config["mlflow"]["tracking_uri"])

# A GPU is a resource only where one exists, so CPU machines run training jobs in parallel.
GPU = 1 if shutil.which("nvidia-smi") else 0
# Torch jobs run one thread each on CPU: these small networks scale poorly across threads and
# parallel jobs sharing cores with multi-threaded torch slow down ~5x (OpenMP spinning).
# Override per rule with e.g. `--set-threads train_phase=4`.
TORCH_THREADS = 4 if GPU else 1
EXPERIMENT = "resources/mlflow/experiment.json"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    method=r"[A-Za-z0-9_]+",
    phase=r"[A-Za-z0-9_]+",
    mode=r"stochastic|inversion",


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def data_dir(dataset):
    return f"resources/data/{dataset}"


def phase_index(method, phase):
    names = [p["name"] for p in config["methods"][method]["phases"]]
    if phase not in names:
        raise WorkflowError(f"method {method!r} has no phase {phase!r}; its phases: {', '.join(names)}")
    return names.index(phase)


def model_path(dataset, method, phase):
    return f"resources/models/{dataset}/{method}/{phase}.pt"


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


def train_cfg(wildcards):
    # A phase depends on its own and the earlier phases only: editing phase 2 keeps phase 1.
    i = phase_index(wildcards.method, wildcards.phase)
    method = method_core(wildcards.method)
    method["phases"] = method["phases"][: i + 1]
    return as_json({"dataset": wildcards.dataset, "method": method, "nets": config["nets"],
                    "train": config["train"]})


def reconstruct_cfg(wildcards):
    t4 = config["table4"]
    return as_json({"dataset": wildcards.dataset, "method": method_core(wildcards.method),
                    "device": config["train"]["device"],
                    "eval": {k: t4[k] for k in ("ddim_steps", "clip_x0", "n_images", "batch_size", "seed")}})


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


def table4_cfg(wildcards):
    t4 = config["table4"]
    return as_json({"dataset": config["dataset"], "ddim_steps": t4["ddim_steps"], "methods_order": t4["methods"],
                    "methods": {m: {k: config["methods"][m][k] for k in ("label", "prediction", "phases")}
                                for m in t4["methods"]}})
