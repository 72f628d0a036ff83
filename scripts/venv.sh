# Sourced by start.sh and test.sh: check the Python, (re)build .venv when needed, install $1.
# PYTHON=/path/to/python3.11 chooses the interpreter (default: python3 on the PATH).
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "No Python found as '$PY'. Install Python 3.11 or newer, or run with PYTHON=/path/to/python3.11." >&2
  exit 1
fi
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "The dashboard needs Python 3.11 or newer, but '$PY' is $("$PY" -V 2>&1)." \
       "Install Python 3.11+ and run again, or point to it with PYTHON=/path/to/python3.11." >&2
  exit 1
fi
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "'$PY' cannot make virtual environments; install its venv module (Debian/Ubuntu: apt-get install python3-venv)." >&2
  exit 1
fi
want=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
have=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  # No .venv, a broken one (e.g. a failed first run), or one made by another Python: start afresh.
  [ -e .venv ] && echo "Rebuilding .venv with Python $want (it was made by ${have:-a Python that no longer runs})."
  rm -rf .venv
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$1"; then
  echo "Installing the packages in $1 failed (see the messages above); fix that and run the command again." >&2
  exit 1
fi
# The project itself, as a package in editable mode (pyproject.toml): `import core` works from any
# folder with this environment (Dask workers, scripts, notebooks) and `.venv/bin/alliance` is
# `python -m core`. Skipped when .venv already points at this checkout.
here=$(pwd -P)
if [ "$(cd / && "$here/.venv/bin/python" -c 'import core, pathlib; print(pathlib.Path(core.__file__).resolve().parent.parent)' 2>/dev/null)" != "$here" ] \
   || [ ! -x .venv/bin/alliance ]; then
  if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .; then
    echo "Installing this project into .venv (pip install -e .) failed (see the messages above)." >&2
    exit 1
  fi
fi
