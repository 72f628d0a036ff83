"""Start the dashboard on a free local port and drive Debian's Chromium with Playwright."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"


def require_chromium() -> None:
    """Skip locally without Chromium, but fail in CI, where scripts/test.sh installs it."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: scripts/test.sh should have installed Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, seconds: float = 30) -> None:
    """Wait until the dashboard at ``url`` answers its health check."""
    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=1)
            return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError("the dashboard did not start") from None
            time.sleep(0.25)


@contextlib.contextmanager
def running_app(data_dir: Path):
    port = _free_port()
    env = {**os.environ, "ALLIANCE_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "serve.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            yield page
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_patient_from_caseload(page, patient: str) -> None:
    """On the clinic overview: choose ``patient`` under *Open patient* (typed, Enter), press *Open
    patient page* and wait for the patient page's key figures."""
    page.get_by_role("combobox", name="Open patient").click()
    page.keyboard.type(patient)
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Open patient page").click()
    page.get_by_text("Jacobson–Truax status").wait_for(timeout=60000)
