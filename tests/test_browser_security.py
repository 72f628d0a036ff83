"""The dashboard in Chromium and on the wire, as an attacker and a clinic's IT would try it.

- Every request the browser makes, on every page, with a data set, therapist and patient named like
  markdown images pointing elsewhere, stays on the dashboard's own origin (no font CDN, no image).
- A sign-in survives a reload and a new tab (an HttpOnly, SameSite=Strict cookie), so a
  ``?patient=`` link can be shared; a sign-out in one tab ends the other's.
- The pages listed are those the role can use; tables have no built-in CSV download.
- A raw HTTP request or WebSocket with ``Host: evil.example`` is refused (DNS rebinding), and the
  session route refuses another site's origin.
"""
from __future__ import annotations

import http.client
import socket
from urllib.parse import urlparse

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, require_chromium, running_app, screenshot

from core.demo import demo_clinic
from core.intake.mapping import ColumnMapping
from core.intake.reading import read_csv_bytes
from core.intake.validation import validate_table
from core.store import ClinicStore, demo_url

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EVIL = "http://127.0.0.1:9"
HOSTILE_DATASET = f"![d]({EVIL}/d.png)"
HOSTILE_THERAPIST = f"![t]({EVIL}/t.png)"
HOSTILE_PATIENT = f"![p]({EVIL}/p.png)"
PAGES = ["Clinic data", "Clinic overview", "Patient", "Record a session", "Model explorer", "Reciprocal dynamics",
         "Plan a study (power)", "Upload data",
         "Account", "Users and audit log"]


def seed_hostile(data_dir) -> None:
    """The demo database with a stored data set whose names are markdown images."""
    import os

    os.environ["ALLIANCE_DATA_DIR"] = str(data_dir)
    store = ClinicStore(demo_url(), bcrypt_rounds=12)
    store.seed_demo()
    data = demo_clinic(n_patients=16, n_sessions=6)
    data.loc[data["patient"] == data["patient"].iloc[0], "patient"] = HOSTILE_PATIENT
    data.loc[data["therapist"] == data["therapist"].iloc[0], "therapist"] = HOSTILE_THERAPIST
    raw = read_csv_bytes(data.to_csv(index=False).encode("utf-8"), source="hostile.csv")
    validated = validate_table(raw, ColumnMapping(patient="patient", session="session", therapist="therapist",
                                                  alliance="alliance", symptoms="symptoms"))
    sup = store.authenticate("demo-supervisor", "demo")
    store.apply_upload(sup, store.preview_upload(sup, HOSTILE_DATASET, validated))
    store.close()


def sign_in(page, url: str, username: str) -> None:
    page.goto(url + "/account")
    page.get_by_role("textbox", name="User name").fill(username)
    page.get_by_role("textbox", name="Password").fill("demo")
    page.get_by_role("button", name="Sign in").click()
    signed_in(page)


def signed_in(page) -> None:
    """Signed in: the navigation offers "Account" instead of "Sign in"."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Account", exact=True).wait_for(timeout=60000)


def nav_entries(page) -> list[str]:
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.get_by_text("Clinic data", exact=True).wait_for(timeout=60000)   # app.py's navigation, not the folder's
    idle(page)
    return [t.strip().split("\n")[-1] for t in nav.locator("a").all_inner_texts()]  # without the icon name


def idle(page) -> None:
    page.wait_for_timeout(500)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=120000)
    page.wait_for_timeout(500)


def test_requests_stay_on_the_origin_and_sign_in_survives_reload_and_new_tab(tmp_path):
    require_chromium()
    from playwright.sync_api import sync_playwright

    seed_hostile(tmp_path)
    with running_app(tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        requests: list[str] = []
        context.on("request", lambda r: requests.append(r.url))
        page = context.new_page()

        page.goto(url)
        assert "Users and audit log" not in nav_entries(page) and "Sign in" in nav_entries(page)
        sign_in(page, url, "demo-supervisor")
        assert nav_entries(page) == PAGES                               # the supervisor's pages
        cookie = next(c for c in context.cookies() if c["name"] == "alliance_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie").find("alliance_session") < 0   # not readable by scripts

        # every page on the hostile data set (chosen in the sidebar), the table toolbar without download
        page.locator('[data-testid="stSidebarNav"]').get_by_text("Clinic data").click()
        idle(page)
        page.get_by_role("combobox", name="Data set").click()
        page.get_by_role("option", name=HOSTILE_DATASET).click()
        idle(page)
        assert HOSTILE_DATASET in page.locator('[data-testid="stMain"]').inner_text()   # shown as typed
        assert page.locator('[data-testid="stMain"] img').count() == 0
        screenshot(page, "security_hostile_names")
        for entry in PAGES:
            page.locator('[data-testid="stSidebarNav"]').get_by_text(entry, exact=True).click()
            idle(page)
            if entry == "Clinic overview":
                table = page.locator('[data-testid="stDataFrame"]').first
                table.hover()
                page.wait_for_timeout(500)
                toolbar = page.locator('[data-testid="stElementToolbar"]').first
                assert toolbar.locator("button").count() >= 1              # the toolbar is there ...
                assert toolbar.get_by_role("button", name="Download as CSV").count() == 0   # ... without it

        # reload, a shared patient link in a new tab, then sign out there
        page.reload()
        signed_in(page)
        link = page.context.new_page()
        link.goto(url + "/patient?patient=D002")
        signed_in(link)
        link.get_by_text("Jacobson–Truax status").wait_for(timeout=60000)
        assert link.get_by_role("combobox", name="Patient ID (type to search)").input_value() == "D002"
        screenshot(link, "security_shared_patient_link")
        link.locator('[data-testid="stSidebarNav"]').get_by_text("Account", exact=True).click()
        link.get_by_role("button", name="Sign out", exact=True).click()
        link.get_by_role("button", name="Sign in").wait_for(timeout=60000)
        page.locator('[data-testid="stSidebarNav"]').get_by_text("Clinic overview").click()  # the first tab
        page.locator('[data-testid="stSidebarNav"]').get_by_text("Sign in", exact=True).wait_for(timeout=60000)
        assert "Signed in as" not in page.locator('[data-testid="stSidebar"]').inner_text()
        page.reload()
        page.locator('[data-testid="stSidebarNav"]').get_by_text("Sign in", exact=True).wait_for(timeout=60000)
        assert not any(c["name"] == "alliance_session" for c in context.cookies())

        # a therapist's pages: no upload, no users
        sign_in(page, url, "demo-therapist-ana")
        assert nav_entries(page) == ["Clinic data", "My caseload", "Patient", "Record a session", "Model explorer",
                                     "Reciprocal dynamics", "Plan a study (power)", "Account"]
        page.set_viewport_size({"width": 800, "height": 1000})
        page.wait_for_timeout(800)
        screenshot(page, "security_therapist_800")
        browser.close()

    origin = urlparse(url)
    outside = sorted({r for r in requests if urlparse(r).scheme in ("http", "https", "ws", "wss")
                      and (urlparse(r).hostname, urlparse(r).port) != (origin.hostname, origin.port)})
    assert len(requests) > 20 and not outside, outside


def raw_status(url: str, path: str, host: str, method: str = "GET", headers: dict | None = None) -> int:
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.putrequest(method, path, skip_host=True)
    conn.putheader("Host", host)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.putheader("Content-Length", "0")
    conn.endheaders()
    status = conn.getresponse().status
    conn.close()
    return status


def websocket_status_line(url: str, host: str) -> str:
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall((f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   f"Origin: http://{host}\r\n\r\n").encode())
        return s.recv(200).decode("latin-1").split("\r\n", 1)[0]


def test_other_host_names_and_origins_are_refused(tmp_path):
    with running_app(tmp_path) as url:
        own = urlparse(url).netloc
        for path in ("/", "/_stcore/health", "/overview", "/_alliance/session"):
            assert raw_status(url, path, "evil.example") == 400, path
            assert raw_status(url, path, "evil.example:" + str(urlparse(url).port)) == 400, path
        assert raw_status(url, "/", own) == 200
        assert raw_status(url, "/", f"localhost:{urlparse(url).port}") == 200
        assert " 101 " in websocket_status_line(url, own)
        assert " 101 " not in websocket_status_line(url, "evil.example")
        # the session routes: only this origin, only a real ticket
        assert raw_status(url, "/_alliance/session", own, "POST", {"Origin": "http://evil.example"}) == 403
        assert raw_status(url, "/_alliance/session", own, "POST", {"Origin": f"http://{own}"}) == 400
        assert raw_status(url, "/_alliance/sign-out", own, "POST", {"Origin": "http://evil.example"}) == 403
