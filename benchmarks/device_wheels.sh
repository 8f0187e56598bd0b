#!/usr/bin/env bash
# Download the wheels benchmarks/device_check.sh needs on the lent GPU machine (issue 15) into .whl/ (git-ignored):
# Python 3.12, manylinux x86-64, every version pinned, --no-deps (the list below IS the dependency closure).
#
#   bash benchmarks/device_wheels.sh            # download into .whl/ (needs PyPI), check the size
#   bash benchmarks/device_wheels.sh --verify   # also install them offline into a fresh Python 3.12 venv
#                                               # (with the GPU machine's own packages from PyPI, minus torch)
#                                               # and import snakemake, mlflow's SQLite store, jsonschema, psutil
#
# The GPU machine already has torch 2.11, torchvision 0.26, numpy, pandas, scikit-learn, scikit-image, matplotlib,
# pyyaml, tqdm, nvidia-ml-py (and what they pull in: scipy, pillow, jinja2, filelock, fsspec, sympy, networkx, ...).
# Not carried on purpose: mlflow (full: pyarrow, Flask, gunicorn, ... ~60 MiB more; mlflow-skinny has the tracking
# client, the SQLite store once sqlalchemy + alembic are there, and the system-metrics monitor), dvc, lpips,
# torch-fidelity, diffusers (no job of the smoke Table 4 DAG or of the check imports them) and the project itself
# (device_check.sh puts src/ on PYTHONPATH: `pip install .` would try to replace the machine's torch with the
# pinned 2.15). Versions = those this project is developed and tested with (python -m pip list here).
# Budget: the folder stays under 60 MiB (64 MiB with the working tree is the hard limit of the `run` tool's carry).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.whl
LIMIT_MIB=60

WHEELS=(
  # --- Snakemake: runs the smoke Table 4 DAG as the users run it ---
  snakemake==9.27.1                              # the workflow engine
  snakemake-interface-common==1.23.0             # snakemake's plugin interfaces (imported at start-up) ...
  snakemake-interface-executor-plugins==9.4.0    # ... the local executor
  snakemake-interface-logger-plugins==2.1.0      # ... logging
  snakemake-interface-report-plugins==1.3.0      # ... report (imported by the CLI)
  snakemake-interface-scheduler-plugins==2.0.2   # ... job scheduler
  snakemake-interface-storage-plugins==4.4.1     # ... storage
  pulp==3.3.2                                    # snakemake's ILP job scheduler (bundles the CBC solver: 16 MiB)
  conda-inject==1.3.2                            # snakemake: conda integration (imported even without --use-conda)
  configargparse==1.9.0                          # snakemake's command line (profiles)
  connection-pool==0.0.3                         # snakemake: pools (sdist only on PyPI: built here into a wheel)
  docutils==0.22.4                               # snakemake: rule docstrings / report
  dpath==2.2.0                                   # snakemake, yte: config access
  humanfriendly==10.0                            # snakemake: resource sizes ("4GB")
  immutables==0.21                               # snakemake: immutable maps (C extension)
  nbformat==5.11.1                               # snakemake: notebook rules (imported by the CLI)
  fastjsonschema==2.22.3                         # nbformat
  jupyter-core==5.9.1                            # nbformat
  traitlets==5.15.0                              # nbformat, jupyter-core
  platformdirs==4.14.8                           # snakemake, jupyter-core
  smart-open==7.7.1                              # snakemake: remote/local file opening
  wrapt==2.1.2                                   # smart-open, snakemake
  sqlmodel==0.0.37                               # snakemake: persistence of job metadata (.snakemake/)
  tabulate==0.10.0                               # snakemake: job stats table
  tenacity==9.2.1                                # snakemake: retries
  throttler==1.2.3                               # snakemake: job submission rate
  yte==1.9.4                                     # snakemake: YAML templates (config/profiles)
  argparse-dataclass==2.0.0                      # snakemake-interface-common, yte
  gitpython==3.2.1                               # snakemake and mlflow: git sha of the workflow / runs
  gitdb==4.0.12                                  # gitpython
  smmap==5.0.3                                   # gitdb
  # --- params.yaml validation (daebench.config, the Snakefile) and snakemake's own config schemas ---
  jsonschema==4.26.0                             # validator
  jsonschema-specifications==2025.9.1            # jsonschema: meta-schemas
  referencing==0.37.0                            # jsonschema: $ref resolution
  rpds-py==0.30.0                                # referencing (Rust extension)
  attrs==26.1.0                                  # jsonschema, referencing
  # --- MLflow tracking to a local SQLite store + system metrics (daebench.tracking) ---
  mlflow-skinny==3.17.2                          # the tracking client and stores, without the UI/server stack
  sqlalchemy==2.0.58                             # the SQLite tracking store
  greenlet==3.5.6                                # sqlalchemy (C extension)
  alembic==1.20.1                                # the store's schema migrations (run on a new mlflow.db)
  mako==1.4.3                                    # alembic
  psutil==7.2.2                                  # system metrics (CPU, memory, disk, network; process RSS); snakemake
  cachetools==7.3.3                              # mlflow-skinny
  click==8.5.1                                   # mlflow-skinny
  cloudpickle==3.1.3                             # mlflow-skinny
  databricks-sdk==0.162.0                        # mlflow-skinny (imported by its tracking code)
  google-auth==2.63.0                            # databricks-sdk
  pyasn1==0.6.3                                  # google-auth
  pyasn1-modules==0.4.2                          # google-auth
  cryptography==50.0.2                           # google-auth
  cffi==2.0.0                                    # cryptography
  pycparser==3.0                                 # cffi
  fastapi==0.165.0                               # mlflow-skinny (declared; the server parts are not used)
  starlette==1.10.0                              # mlflow-skinny, fastapi
  annotated-doc==0.0.7                           # fastapi
  uvicorn==0.54.0                                # mlflow-skinny (declared)
  h11==0.16.0                                    # uvicorn
  anyio==4.16.0                                  # mlflow-skinny, starlette
  importlib-metadata==9.1.0                      # mlflow-skinny: plugin entry points
  zipp==4.1.2                                    # importlib-metadata
  opentelemetry-api==1.45.2                      # mlflow-skinny: tracing API
  opentelemetry-sdk==1.45.2                      # mlflow-skinny
  opentelemetry-proto==1.45.2                    # mlflow-skinny
  opentelemetry-semantic-conventions==0.66b2     # opentelemetry-sdk
  protobuf==7.36.2                               # mlflow-skinny: entities
  pydantic==2.13.4                               # mlflow-skinny, sqlmodel
  pydantic-core==2.46.4                          # pydantic (Rust extension)
  annotated-types==0.7.0                         # pydantic
  typing-inspection==0.4.2                       # pydantic
  python-dotenv==1.2.2                           # mlflow-skinny
  sqlparse==0.6.1                                # mlflow-skinny: search filters
  requests==2.34.2                               # mlflow-skinny, snakemake, clean-fid
  urllib3==2.7.0                                 # requests
  idna==3.20                                     # requests, anyio
  certifi==2026.10.19.post1                      # requests
  charset-normalizer==3.4.7                      # requests
  # --- metrics: the domain-feature Frechet distance goes through clean-fid's custom_feat_extractor ---
  clean-fid==0.1.35                              # (its torch/torchvision/scipy/pillow requirements: on the machine)
  # --- shared with the machine's stack; carried in case its versions are older than the above require ---
  packaging==25.0                                # snakemake, mlflow-skinny, matplotlib
  typing-extensions==4.16.0                      # pydantic, sqlalchemy, alembic (torch needs >= 4.10)
)

fail() { echo "device_wheels.sh: $*" >&2; exit 1; }

download() {
  mkdir -p "$DEST"
  local specs=() spec
  for spec in "${WHEELS[@]}"; do
    [[ $spec == connection-pool==* ]] || specs+=("$spec")
  done
  python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --dest "$DEST" "${specs[@]}"
  # connection-pool has no wheel on PyPI: build the (pure-Python) wheel from its sdist
  if ! ls "$DEST"/connection_pool-0.0.3-*.whl >/dev/null 2>&1; then
    python -m pip wheel --quiet --no-deps --no-binary=:all: --wheel-dir "$DEST" connection-pool==0.0.3
  fi
  # nothing else may linger there (an old version would be installed too)
  local keep=() f name
  for spec in "${WHEELS[@]}"; do
    name=${spec%%==*}; keep+=("$(echo "$name" | tr '[:upper:]-' '[:lower:]_')-${spec#*==}-")
  done
  for f in "$DEST"/*; do
    name=$(basename "$f" | tr '[:upper:]' '[:lower:]')
    local ok=0 k
    for k in "${keep[@]}"; do [[ $name == "$k"* ]] && ok=1 && break; done
    [[ $ok == 1 ]] || { echo "removing $f (not in the list)"; rm -f "$f"; }
  done
  local n size
  n=$(ls "$DEST"/*.whl | wc -l)
  [[ $n == "${#WHEELS[@]}" ]] || fail "expected ${#WHEELS[@]} wheels in $DEST, found $n"
  size=$(du -sb "$DEST" | cut -f1)
  echo "$DEST: $n wheels, $((size / 1024 / 1024)) MiB ($size bytes; limit $LIMIT_MIB MiB)"
  (( size < LIMIT_MIB * 1024 * 1024 )) || fail "$DEST is over $LIMIT_MIB MiB"
}

verify() {
  # A fresh Python 3.12 venv with the GPU machine's own packages (from PyPI, without torch), then the carried
  # wheels installed offline exactly as device_check.py does, then the imports the check needs.
  local py=${PYTHON312:-}
  if [[ -z $py ]]; then
    for cand in python3.12 "$(pyenv root 2>/dev/null)/versions/3.12"*/bin/python3.12; do
      if "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then py=$cand; break; fi
    done
  fi
  [[ -n $py ]] || fail "--verify needs a Python 3.12 (set PYTHON312=/path/to/python3.12)"
  local venv
  venv=$(mktemp -d /tmp/daebench-wheels-verify.XXXXXX)
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet numpy pandas scikit-learn scikit-image matplotlib pyyaml tqdm \
    nvidia-ml-py jinja2 filelock fsspec sympy networkx
  # as benchmarks/device_check.py's install step: resolve against what is there, the rest from .whl only
  "$venv/bin/python" -m pip install --quiet --no-index --find-links "$DEST" --no-deps clean-fid
  "$venv/bin/python" -m pip install --no-index --find-links "$DEST" \
    snakemake mlflow-skinny sqlalchemy alembic jsonschema psutil
  # the closure is complete but for clean-fid's torch / torchvision (the GPU machine's own)
  local broken
  broken=$("$venv/bin/python" -m pip check 2>&1 | grep -v -E '^(No broken requirements|clean-fid .* requires (torch|torchvision),)' || true)
  [[ -z $broken ]] || fail "pip check found unmet requirements: $broken"
  "$venv/bin/python" - "$venv" <<'EOF'
import sys
import jsonschema, psutil, snakemake  # noqa: F401
from mlflow.tracking import MlflowClient
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # noqa: F401
c = MlflowClient(f"sqlite:///{sys.argv[1]}/verify.db")          # creates and migrates the schema
exp = c.create_experiment("verify")
run = c.create_run(exp)
c.log_metric(run.info.run_id, "x", 1.0)
assert c.get_run(run.info.run_id).data.metrics == {"x": 1.0}
print("imports and an MLflow SQLite round trip: ok")
EOF
  "$venv/bin/python" -m snakemake --version >/dev/null
  echo "verified in $venv (Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'))"
}

download
[[ ${1:-} == --verify ]] && verify
exit 0
