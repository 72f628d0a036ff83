"""The README's Dask recipe, run as written: a scheduler and two workers started from a folder that is
not the project's (``cd ~``, HOME set to the test's folder), with the
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


def commands(script: str) -> list[list[str]]:
    """The ``alliance …`` commands of the block, each as its words (continuation lines joined)."""
    import shlex

    text = script.replace("\\\n", " ")
    return [shlex.split(line[line.index("bin/alliance ") + len("bin/alliance "):])
            for line in text.splitlines() if "bin/alliance " in line]


def on_local_cores(words: list[str], out: Path) -> list[str]:
    """The same command on this machine's cores: no --scheduler, one process, another --out."""
    words = list(words)
    i = words.index("--scheduler")
    del words[i:i + 2]
    words[words.index("--out") + 1] = str(out)
    return [*words, "--workers", "1"]


@pytest.mark.slow
def test_readme_dask_recipe_runs_as_written_from_the_root_folder(tmp_path):
    block = readme_dask_block()
    assert block.startswith("cd ~") and "--scheduler tcp://10.0.0.5:8786" in block
    venv = VENV_BIN.parent
    port = str(free_port())
    script = (block.replace("/path/to/alliance-dashboard/.venv", str(venv))
              .replace("/path/to/alliance-dashboard", str(ROOT))
              .replace("10.0.0.5", "127.0.0.1").replace("8786", port))
    env_home = tmp_path  # `cd ~`: the test's own folder, not the project's
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"  # nothing of the project's on the PATH either
    env["HOME"] = str(env_home)
    # Wait for both workers before the first command (the README's reader starts it by hand later).
    wait = (f"{venv}/bin/python -c \"from distributed import Client; "
            f"c = Client('tcp://127.0.0.1:{port}', timeout=60); c.wait_for_workers(2, timeout=120); c.close()\"")
    lines = script.splitlines()
    first = next(i for i, line in enumerate(lines) if "bin/alliance " in line)
    script = "\n".join([*lines[:first], wait, *lines[first:]])
    # The scheduler and the workers are the script's background jobs: stopped when it ends, however.
    script = "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + script
    proc = subprocess.Popen(["bash", "-ec", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    runs = commands(script)
    assert [words[0] for words in runs] == ["power", "fit"]
    for words in runs:
        spread = json.loads((tmp_path / words[words.index("--out") + 1]).read_text())
        local_out = tmp_path / ("local_" + words[0] + ".json")
        local = subprocess.run([str(venv / "bin" / "alliance"), *on_local_cores(words, local_out)], cwd="/",
                               env=env, capture_output=True, text=True, timeout=900)
        assert local.returncode == 0, local.stderr[-3000:]
        one = json.loads(local_out.read_text())
        if words[0] == "power":
            assert spread["engine"].startswith("the Dask cluster at tcp://127.0.0.1:")
            assert spread["power"] == one["power"] and spread["seed"] == one["seed"] == 1
        else:  # the bootstrap intervals: the same refits, whoever does them
            assert spread["confint_method"] == "boot" and len(spread["confint"]) == len(one["confint"]) == 5
            for a, b in zip(spread["confint"], one["confint"]):
                assert a["parameter"] == b["parameter"]
                assert a["low"] == pytest.approx(b["low"], rel=1e-9, abs=1e-12)
                assert a["high"] == pytest.approx(b["high"], rel=1e-9, abs=1e-12)
