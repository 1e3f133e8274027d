#!/usr/bin/env bash
# The CUDA path in one command (see benchmarks/gpu_check.py): the CUDA tests, speed against transformers,
# the quickstart and the server on a lent GPU; --dry-run runs every step at a tiny size on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
exec "$PY" benchmarks/gpu_check.py "$@"
