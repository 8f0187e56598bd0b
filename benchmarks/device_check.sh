#!/usr/bin/env bash
# The device check of issue 15: every CUDA path of the project in <= 8 minutes on one lent GPU (see
# benchmarks/README.md, "device_check.sh"). All logic is in benchmarks/device_check.py; this only sets up.
#
#   bash benchmarks/device_check.sh          # GPU machine: figures as JSON under $OUT, a table last
#   bash benchmarks/device_check.sh --cpu    # the same steps at tiny sizes on CPU (< 90 s; the test suite runs it)
#
# Needs the wheels of benchmarks/device_wheels.sh in .whl/ where snakemake / mlflow / ... are not installed
# (run tool: carry [".whl"]). The project is not pip-installed (its torch pin would replace the machine's torch):
# src/ goes on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || PY=python
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export OUT="${OUT:-$PWD/device_check_out}"
mkdir -p "$OUT"
exec "$PY" benchmarks/device_check.py --out "$OUT" "$@"
