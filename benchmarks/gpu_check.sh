#!/usr/bin/env bash
# One GPU check: benchmarks/gpu_check.sh OUT_DIR [--device cpu] [--quick] [--standin DIR]
#
# For a machine with one CUDA GPU and a preinstalled PyTorch (no install, no papermill, no internet): runs the
# repository's code with PYTHONPATH set to its root. What it measures: benchmarks/gpu_check.py's docstring and
# benchmarks/README.md. Python: $PYTHON if set, else python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON:-python3}" -m benchmarks.gpu_check "$@"
