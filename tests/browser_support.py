"""Start the dashboard on a free local port and drive Debian's Chromium with Playwright."""
from __future__ import annotations

import contextlib
import json
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
    """The dashboard (``streamlit run serve.py``) on a free local port, its data in ``data_dir``: its URL."""
    with running_app_process(data_dir) as (url, _proc):
        yield url


@contextlib.contextmanager
def running_app_process(data_dir: Path, extra_args: tuple[str, ...] = (), root: Path = ROOT, env: dict | None = None,
                        output=subprocess.PIPE):
    """As :func:`running_app`, with Streamlit options added (``extra_args``), another checkout
    (``root``), more environment variables: ``(url, process)``."""
    port = _free_port()
    env = {**os.environ, "ALLIANCE_DATA_DIR": str(data_dir), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "serve.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", *extra_args],
        cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, 60)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def sign_in(page, url: str, username: str, password: str = "demo") -> None:
    """Sign in on the Account page (English labels) and wait until the navigation offers *Account*."""
    page.goto(url + "/account")
    page.get_by_role("textbox", name="User name").wait_for(timeout=120000)
    page.get_by_role("textbox", name="User name").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Account", exact=True).wait_for(timeout=120000)
    for _ in range(240):  # the page trades its ticket for the session cookie in the background
        if any(c["name"].endswith("alliance_session") for c in page.context.cookies()):
            return
        page.wait_for_timeout(250)
    raise AssertionError("the session cookie was not set within a minute of signing in")


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


def wait_idle(page, settle: int = 800) -> None:
    """Wait until the app's script run has ended, then ``settle`` ms for the page to draw."""
    page.wait_for_function("""() => { const a = document.querySelector('[data-testid="stApp"]');
        return a && a.getAttribute('data-test-script-state') === 'notRunning'; }""", timeout=180000)
    page.wait_for_timeout(settle)


def tall_screenshot(page, path: Path) -> Path:
    """A screenshot of the whole page: the window is made as tall as the main area's content (Streamlit
    scrolls its main area, so a plain full-page screenshot stops at the window's height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": min(max(size["height"], height), 12000)})
    page.wait_for_timeout(1200)
    page.screenshot(path=str(path), full_page=True, timeout=120000)
    page.set_viewport_size(size)
    page.wait_for_timeout(300)
    return path


def tab_to(page, test_js: str, limit: int = 80) -> None:
    """Press Tab until ``test_js`` (a function of the focused element) is true."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => {{ const e = document.activeElement; return !!e && ({test_js})(e); }}"):
            return
    raise AssertionError(f"Tab never reached an element for which {test_js} holds")


def wait_for_text(page, text: str, timeout: int = 60000) -> None:
    page.wait_for_function(f"""() => {{ const m = document.querySelector('[data-testid="stMain"]');
        return !!m && m.innerText.includes({json.dumps(text)}); }}""", timeout=timeout)


def sign_in_by_keyboard(page, url: str, user: str, password: str, lang: str = "en") -> None:
    """Sign in on the Account page (``?lang=``) with the keyboard; wait for the start page and the
    session cookie (which keeps the sign-in over reloads and new tabs)."""
    page.goto(f"{url}/account?lang={lang}")
    name = page.locator('[data-testid="stTextInput"] input').first
    name.wait_for(timeout=60000)
    wait_idle(page)
    name.focus()
    page.keyboard.type(user)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.locator('[data-testid="stSidebarNav"]').wait_for(state="attached", timeout=60000)
    wait_idle(page)
    for _attempt in range(80):  # the HttpOnly cookie that keeps the sign-in over reloads and new tabs
        if any(c["name"].endswith("alliance_session") for c in page.context.cookies()):
            return
        page.wait_for_timeout(250)
    raise AssertionError("the session cookie was never set")


def go_by_sidebar(page, title: str) -> None:
    """Open a page from the sidebar with the keyboard (on a narrow window: unfolding it first, and
    folding it again once the page is open)."""
    folded = page.locator('[data-testid="stSidebar"]').get_attribute("data-collapsed") == "true"
    if folded:
        tab_to(page, "(e) => !!e.closest('[data-testid=\"stExpandSidebarButton\"], "
                     "[data-testid=\"stSidebarCollapsedControl\"]')")
        page.keyboard.press("Enter")
        page.wait_for_timeout(800)
    link = page.locator('[data-testid="stSidebarNavLink"]').filter(has_text=title).first
    link.focus()
    page.keyboard.press("Enter")
    if folded:
        wait_idle(page, 300)
        fold = page.locator('[data-testid="stSidebarCollapseButton"] button')
        if page.locator('[data-testid="stSidebar"]').get_attribute("data-collapsed") == "false" and fold.count():
            fold.first.focus()
            page.keyboard.press("Enter")
            page.wait_for_timeout(600)


def press(page, locator) -> None:
    """A button pressed from the keyboard."""
    locator.focus()
    page.keyboard.press("Enter")


def type_into(page, locator, text: str) -> None:
    locator.focus()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    wait_idle(page, 400)
