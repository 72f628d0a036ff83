"""The server's start-up readiness (ui/warmup.py): freed memory kept for reuse, and the switch off."""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, env: dict) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_keep_freed_memory_on_glibc_and_its_switch():
    code = "from ui.warmup import keep_freed_memory; print(keep_freed_memory())"
    assert _run(code, {}) == "True"
    assert _run(code, {"ALLIANCE_KEEP_FREED_MEMORY": "0"}) == "False"


def test_serve_sets_it_once_at_start():
    """serve.py (the launcher of start.sh, the systemd unit and the stack) calls it."""
    text = (ROOT / "serve.py").read_text()
    assert "keep_freed_memory()" in text
