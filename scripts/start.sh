#!/usr/bin/env bash
# Install (once) and start the dashboard: python3 -m venv + pip, then streamlit on http://127.0.0.1:8501.
# Streamlit's options pass through, e.g. another port: bash scripts/start.sh --server.port 8611
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh requirements.txt
# One BLAS thread: the model fits are many small matrix operations (see bench/README.md).
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# The address Streamlit will really use, as it decides it: a command-line option, else its environment
# variable, else .streamlit/config.toml, else Streamlit's default.
read -r address port < <(.venv/bin/python - <<'PY'
import os, tomllib
try:
    with open(".streamlit/config.toml", "rb") as f:
        server = tomllib.load(f).get("server", {})
except OSError:
    server = {}
print(os.environ.get("STREAMLIT_SERVER_ADDRESS") or server.get("address") or "localhost",
      os.environ.get("STREAMLIT_SERVER_PORT") or server.get("port") or 8501)
PY
)
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --server.port=*) port="${args[$i]#*=}" ;;
    --server.port) port="${args[$((i + 1))]:-$port}" ;;
    --server.address=*) address="${args[$i]#*=}" ;;
    --server.address) address="${args[$((i + 1))]:-$address}" ;;
  esac
done
case "$address" in *:*) host="[$address]" ;; *) host="$address" ;; esac  # an IPv6 address in brackets
echo "Starting the dashboard on http://$host:$port (Ctrl+C to stop)"
exec .venv/bin/python -m streamlit run serve.py "$@"
