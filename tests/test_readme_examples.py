"""Every command-line example in README.md runs as written, on the sample files in examples/."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The ``.venv/bin/python -m core …`` commands of README's bash blocks (continuations joined)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith(".venv/bin/python -m core "):
                commands.append(line)
    return commands


def test_readme_has_command_examples():
    assert len(readme_commands()) >= 4


@pytest.mark.parametrize("command", readme_commands())
def test_readme_example_runs(command, tmp_path):
    args = shlex.split(command)[1:]  # drop .venv/bin/python: run with this interpreter
    if "--out" in args:  # write into the test's folder, not the checkout
        args[args.index("--out") + 1] = str(tmp_path / args[args.index("--out") + 1])
    env = {**os.environ, "ALLIANCE_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    if "--out" in args:
        out = Path(args[args.index("--out") + 1])
        assert out.exists() and out.stat().st_size > 0
        if out.suffix == ".json":
            report = json.loads(out.read_text(encoding="utf-8"))
            assert report.get("excluded_rows", []) == [] or isinstance(report["excluded_rows"], list)
