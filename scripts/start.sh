#!/usr/bin/env bash
# Install (once) and start the dashboard: python3 -m venv + pip, then streamlit on http://127.0.0.1:8501
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh requirements.txt
# One BLAS thread: the model fits are many small matrix operations (see bench/README.md).
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
echo "Starting the dashboard on http://127.0.0.1:8501 (Ctrl+C to stop)"
exec .venv/bin/python -m streamlit run serve.py "$@"
