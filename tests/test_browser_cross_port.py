"""Issue 25, finding 1: a page on another port of the same host, opened in a browser where a therapist
or a supervisor is signed in, gets nothing and changes nothing — and the same attack script, run
from the dashboard's own origin, does get through (so the test can fail).

The attacker page is served by a tiny ``http.server`` on another loopback port. Its script reads the
cookies it can see (Streamlit's ``_streamlit_xsrf`` is readable: cookies are not isolated by port),
opens the dashboard's WebSocket with them and asks for a page run, tries Streamlit's upload endpoint
and the dashboard's session routes (a readable ``fetch`` and a blind ``no-cors`` sign-out), frames the
dashboard, and plants a session cookie of another account (``mallory``: an account the attacker has).
"""
from __future__ import annotations

import base64
import contextlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, require_chromium, running_app, screenshot, sign_in

from core.store import ClinicStore, Role, demo_url

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MALLORY_KEY = "mallorys-own-browser-key-0123456789"

ATTACK_JS = r"""
window.attack = async function (target, plant, backmsg) {
  const out = { cookies: document.cookie, ws: { opened: false, messages: 0, bytes: 0, text: "" } };
  if (plant) {  // another account's cookie: beside the dashboard's own (a longer path), and in its place
    document.cookie = "alliance_session=" + plant + "; path=/_stcore";
    document.cookie = "alliance_session=" + plant + "; path=/";
  }
  const xsrf = (document.cookie.match(/_streamlit_xsrf=([^;]+)/) || [])[1] || "";
  out.xsrf = xsrf;
  await new Promise(function (resolve) {
    let ws;
    try {
      ws = new WebSocket(target.replace(/^http/, "ws") + "/_stcore/stream", ["streamlit", xsrf || "none"]);
    } catch (e) { out.ws.error = String(e); resolve(); return; }
    ws.binaryType = "arraybuffer";
    const timer = setTimeout(function () { try { ws.close(); } catch (e) {} resolve(); }, 12000);
    ws.onopen = function () {
      out.ws.opened = true;
      ws.send(Uint8Array.from(atob(backmsg), function (c) { return c.charCodeAt(0); }));
    };
    ws.onmessage = function (ev) {
      const bytes = new Uint8Array(ev.data);
      out.ws.messages += 1; out.ws.bytes += bytes.length;
      out.ws.text += new TextDecoder("utf-8").decode(bytes);
    };
    ws.onerror = function () { out.ws.error = "error"; };
    ws.onclose = function (ev) { out.ws.closeCode = ev.code; clearTimeout(timer); resolve(); };
  });
  async function status(path, init) {
    try { return (await fetch(target + path, init)).status; } catch (e) { return "failed: " + e; }
  }
  const form = new FormData();
  form.append("file", new Blob(["patient,session,symptoms\n1,1,50\n"]), "x.csv");
  out.upload = await status("/_stcore/upload_file/00000000-0000-0000-0000-000000000000/f1",
                            { method: "PUT", body: form, credentials: "include", headers: { "X-Xsrftoken": xsrf } });
  out.session = await status("/_alliance/session", { method: "POST", credentials: "include",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ticket: "x", browser: "y".repeat(20) }) });
  out.signOut = await status("/_alliance/sign-out", { method: "POST", credentials: "include" });
  out.blindSignOut = await status("/_alliance/sign-out", { method: "POST", mode: "no-cors", credentials: "include" });
  return out;
};
"""

ATTACK_PAGE = """<!doctype html><html><head><title>cat pictures</title><script>{js}</script></head><body>
<iframe id="frame" src="{target}/overview" width="600" height="400"></iframe>
<script>
  const cfg = JSON.parse(decodeURIComponent(location.hash.slice(1)));
  window.attack(cfg.target, cfg.plant, cfg.backmsg).then(function (r) {{ window.results = r; }});
</script></body></html>"""


def rerun_message() -> str:
    """A Streamlit ``BackMsg`` asking for a run of the main page (what the dashboard's page sends)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg

    message = BackMsg()
    message.rerun_script.query_string = ""
    return base64.b64encode(message.SerializeToString()).decode("ascii")


@contextlib.contextmanager
def attacker_site(folder: Path, target: str):
    """The attacker's page, served from another port of 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "attack.html").write_text(ATTACK_PAGE.format(js=ATTACK_JS, target=target), encoding="utf-8")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()


def signed_in_as(page, entry: str) -> None:
    """Wait until the navigation offers ``entry`` ("Account" when signed in, "Sign in" when not)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(entry, exact=True).wait_for(timeout=90000)


def run_attack(page, attack_url: str, target: str, plant: str | None = None) -> dict:
    config = json.dumps({"target": target, "plant": plant, "backmsg": rerun_message()})
    from urllib.parse import quote

    page.goto(f"{attack_url}/attack.html#{quote(config)}")
    page.wait_for_function("window.results !== undefined", timeout=60000)
    return page.evaluate("window.results")


def assert_got_nothing(results: dict) -> None:
    assert not results["ws"]["opened"] and results["ws"]["messages"] == 0, results["ws"]
    for route in ("upload", "session", "signOut"):                # refused: the browser never saw a status
        assert str(results[route]).startswith("failed"), (route, results[route])


def audit_rows(store: ClinicStore, supervisor) -> list[tuple]:
    return [tuple(r) for r in store.audit_log(supervisor)[["username", "action", "detail"]].itertuples(index=False)]


def test_a_page_on_another_port_gets_nothing_and_changes_nothing(tmp_path, monkeypatch):
    require_chromium()
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path))
    store = ClinicStore(demo_url(), bcrypt_rounds=4)
    store.seed_demo()
    head = store.authenticate("demo-supervisor", "demo")
    mallory = store.create_user(head, "mallory", "mallory's long passphrase", Role.THERAPIST, therapist_code="T99")
    _sid, ticket = store.start_session(mallory)
    mallory_token, _ = store.redeem_ticket(ticket, MALLORY_KEY)      # the attacker's own account's cookie

    with running_app(tmp_path) as url, attacker_site(tmp_path / "evil", url) as evil, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for who in ("demo-therapist-ana", "demo-supervisor"):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            sign_in(page, url, who)
            # on the Account page (which reads no patient), restored from the cookie: the start page's own views are
            # logged before the count is taken, and the check below logs nothing of its own
            page.goto(url + "/account")
            signed_in_as(page, "Account")
            page.wait_for_timeout(1000)
            users_before = [u.username for u in store.users(head)]
            audit_before = audit_rows(store, head)

            attack = context.new_page()
            results = run_attack(attack, evil, url)
            assert results["xsrf"], "Streamlit's XSRF cookie is readable from another port (and useless there)"
            assert "alliance_session" not in results["cookies"]        # HttpOnly: not readable
            assert_got_nothing(results)
            frame = next(f for f in attack.frames if f != attack.main_frame)
            assert not frame.url.startswith(url), frame.url             # framing refused (frame-ancestors 'none')
            screenshot(attack, f"cross_port_attack_{who}")

            # nothing changed: still signed in, no new user, nothing read or done in the audit log
            page.goto(url + "/account")
            signed_in_as(page, "Account")
            assert [u.username for u in store.users(head)] == users_before
            assert audit_rows(store, head) == audit_before

            # the control: the same script from the dashboard's own origin gets through
            control = context.new_page()
            control.goto(url + "/_stcore/health")
            control.add_script_tag(content=ATTACK_JS)
            same = control.evaluate("([t, b]) => window.attack(t, null, b)", [url, rerun_message()])
            assert same["ws"]["opened"] and same["ws"]["messages"] > 0, same["ws"]
            assert "Checking your sign-in" in same["ws"]["text"]       # it reads what the dashboard draws
            assert same["upload"] == 400                               # Streamlit's own answer: no such session
            assert same["session"] == 400 and same["signOut"] == 204   # the routes answer ...
            page.reload()
            signed_in_as(page, "Sign in")                              # ... and its sign-out ended the session
            context.close()

        # a planted cookie of another account signs nobody in: in a browser where nobody is signed in ...
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        run_attack(context.new_page(), evil, url, plant=mallory_token)
        assert any(c["name"] == "alliance_session" and c["value"] == mallory_token for c in context.cookies())
        page = context.new_page()
        page.goto(url + "/overview")
        page.get_by_text("A sign-in this browser did not receive from the dashboard was refused").wait_for(timeout=90000)
        signed_in_as(page, "Sign in")
        screenshot(page, "cross_port_planted_cookie_refused")
        assert page.locator('[data-testid="stMain"] h1').first.inner_text() == "Clinic overview"  # the page asked for
        # ... and beside a signed-in therapist's own cookie
        sign_in(page, url, "demo-therapist-ana")
        run_attack(context.new_page(), evil, url, plant=mallory_token)
        tab = context.new_page()
        tab.goto(url + "/account")
        tab.get_by_text("(demo-therapist-ana)").wait_for(timeout=90000)
        assert "mallory" not in tab.locator('[data-testid="stSidebar"]').inner_text()
        browser.close()
    log = store.audit_log(head)
    assert not ((log["username"] == "mallory") & (log["action"] == "sign-in")).any()
