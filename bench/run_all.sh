#!/usr/bin/env bash
# Run every benchmark (bench/bench_*.py) in turn, from the repository root, with one command:
#
#     bench/run_all.sh
#
# Interpreter: $PYTHON if set, else the repository's .venv/bin/python if present, else python3
# (for example: PYTHON=/work/venv/bin/python bench/run_all.sh). Each benchmark runs with its
# default options; see bench/README.md for the options of each. Generated data goes to bench/out/.
# A failing benchmark does not stop the others; the exit status is 1 if any failed.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
if [ -x "$ROOT/.venv/bin/python" ]; then default_python="$ROOT/.venv/bin/python"; else default_python=python3; fi
PYTHON="${PYTHON:-$default_python}"

echo "run_all: $(date '+%Y-%m-%d %H:%M'), $(nproc 2>/dev/null || echo '?') CPUs, $("$PYTHON" --version 2>&1) ($PYTHON), commit $(git describe --always --dirty 2>/dev/null || echo unknown)"
failed=()
for script in bench/bench_*.py; do
    echo
    echo "=== $script"
    start=$(date +%s)
    if "$PYTHON" "$script"; then status=ok; else status="FAILED (exit $?)"; failed+=("$script"); fi
    echo "=== $script: $status, $(( $(date +%s) - start )) s"
done
echo
if [ ${#failed[@]} -eq 0 ]; then
    echo "run_all: every benchmark finished and met its targets"
else
    echo "run_all: failed or missed a target: ${failed[*]}"
    exit 1
fi
