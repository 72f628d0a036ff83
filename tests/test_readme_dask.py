"""The README's Dask recipe, run as written: a scheduler and two workers started from ``/`` with the
project's environment (the project is installed in it as a package, pyproject.toml), then
``alliance power … --scheduler``; the report equals the one computed on this machine's cores with
the same seed. The README's placeholders (the project's path, the address 10.0.0.5, the port 8786)
are the only words replaced."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

pytest.importorskip("distributed")


def readme_dask_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    (block,) = [b for b in blocks if "dask scheduler" in b]
    return "\n".join(line.strip() for line in block.splitlines())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_readme_dask_recipe_runs_as_written_from_the_root_folder(tmp_path):
    block = readme_dask_block()
    assert "cd /\n" in block + "\n" and "--scheduler tcp://10.0.0.5:8786" in block
    venv = VENV_BIN.parent
    port = str(free_port())
    script = (block.replace("/path/to/alliance-dashboard/.venv", str(venv))
              .replace("/path/to/alliance-dashboard", str(ROOT))
              .replace("10.0.0.5", "127.0.0.1").replace("8786", port)
              .replace("--out power.json", f"--out {tmp_path / 'dask.json'}"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"  # nothing of the project's on the PATH either
    # Wait for both workers before the power command (the README's reader starts it by hand later).
    wait = (f"{venv}/bin/python -c \"from distributed import Client; "
            f"c = Client('tcp://127.0.0.1:{port}', timeout=60); c.wait_for_workers(2, timeout=120); c.close()\"")
    lines = script.splitlines()
    power_at = next(i for i, line in enumerate(lines) if "bin/alliance power" in line)
    script = "\n".join([*lines[:power_at], wait, *lines[power_at:]])
    # The scheduler and the workers are the script's background jobs: stopped when it ends, however.
    script = "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + script
    proc = subprocess.Popen(["bash", "-ec", script],
                            cwd="/", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    dask = json.loads((tmp_path / "dask.json").read_text())
    assert dask["engine"].startswith("the Dask cluster at tcp://127.0.0.1:")
    # The same command on this machine's cores (one process), same seed.
    local_args = re.sub(r"\s*--scheduler \S+", "", script[script.index("bin/alliance power") + len("bin/alliance "):])
    local_args = local_args.replace("\\\n", " ").replace(str(tmp_path / "dask.json"), str(tmp_path / "local.json"))
    local_args = local_args.split("\n")[0]
    local = subprocess.run([str(venv / "bin" / "alliance"), *shlex_split(local_args), "--workers", "1"],
                           cwd="/", env=env, capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    one = json.loads((tmp_path / "local.json").read_text())
    assert dask["power"] == one["power"] and dask["seed"] == one["seed"] == 1


def shlex_split(text: str) -> list[str]:
    import shlex

    return shlex.split(text)
