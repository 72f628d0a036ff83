"""Simultaneous users on the dashboard: one replica, or two behind nginx (scripts/stack.sh).

What it runs (``python bench/bench_load.py [--replicas 1|2] [--stop-one] [--users 20] [--seconds 180]``):

1. ``scripts/stack.sh``: a throwaway PostgreSQL, the replicas and nginx on loopback; the clinic
   database gets a supervisor, a researcher and ``users − 3`` therapists, and a clinic of 40 patients
   per therapist × 8 sessions, stored with ``store import`` (patient IDs ``pat-tNN-PPP``: therapist NN).
2. For ``--seconds``, at once:
   - every therapist but one is a **light client**: a WebSocket that speaks Streamlit's own protocol
     (``BackMsg``/``ForwardMsg`` protobufs, as the browser does), signed in with a session cookie of
     her own (minted in the clinic database as a sign-in does). She opens her caseload (the *Clinic
     overview*), then three of her patients one after the other (``/patient?patient=…``), with 1–4 s
     between clicks, again and again. Each page's time is from the request to Streamlit's
     ``script_finished``; every message of every page is searched for patient IDs of other
     therapists (a leak) and for exceptions (an error);
   - in Chromium (Playwright, Debian's /usr/bin/chromium): one therapist doing the same by clicks,
     a **supervisor** uploading a 400-row spreadsheet on *Upload data* and storing it, and a
     **researcher** typing a new formula in the *Model explorer* and waiting for its fit, each over
     and over;
   - ``--stop-one`` (two replicas): at half time the replica with the most light clients is killed;
     its users' pages reconnect through nginx to the other replica (counted, not errors).
   A browser user's action is done again once where a person would do it again (counted as
   *retried*, with a full-page screenshot, not an error): a file the uploader did not take is chosen
   again (the third time after reloading the page), a formula lost when the page reconnected to the
   other replica is typed again, and a file chosen on a replica that was stopped before it was stored
   (the page reconnected to an empty Upload page) is chosen again.
3. Afterwards: every user is still signed in (each light client runs one more page and finds
   "Signed in as <name>"); the audit log has a *patient view* entry for every patient page a
   therapist opened; and the figures: per page kind, count, median, p95 and max seconds.

Targets (issue 28): 0 errors, 0 leaks, every page view audited, every user signed in at the end,
p95 of the patient switch under 3 s. Exit status 1 when one is missed. The machine's load average is
printed: the browsers share the cores with the server.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PASSWORD = "load test password 28"
PATIENTS_PER_THERAPIST = 40
SESSIONS = 8
SWITCH_TARGET = 3.0
ID = re.compile(rb"pat-t(\d\d)-\d\d\d")


def clinic_csv(path: Path, therapists: int, seed: int = 28) -> Path:
    """40 patients per therapist, 8 sessions each (some drop out), ANS-like alliance, OQ-like symptoms."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for t in range(1, therapists + 1):
        for p in range(1, PATIENTS_PER_THERAPIST + 1):
            level, intake = rng.normal(5.2, 0.7), rng.normal(78, 15)
            slope = rng.normal(-2.5, 2.0)
            last = SESSIONS if rng.random() > 0.25 else int(rng.integers(3, SESSIONS))
            for s in range(1, last + 1):
                rows.append({"patient": f"pat-t{t:02d}-{p:03d}", "therapist": f"T{t:02d}", "session": s,
                             "alliance": round(float(np.clip(level + rng.normal(0, 0.35), 1, 7)), 2),
                             "symptoms": int(np.clip(round(intake + slope * (s - 1) + rng.normal(0, 7)), 0, 180))})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def upload_csv(path: Path, seed: int) -> Path:
    """The supervisor's spreadsheet: 50 new patients × 8 sessions (400 rows) of therapist T01."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = [{"paciente": f"up-{seed:03d}-{p:03d}", "terapeuta": "T01", "sesion": s,
             "ans": round(float(rng.uniform(3, 7)), 2), "oq": int(rng.integers(30, 120))}
            for p in range(50) for s in range(1, 9)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


class Stack:
    """scripts/stack.sh in a subprocess; ``env`` from its stack.env."""

    def __init__(self, folder: Path, replicas: int):
        from test_stack import free_ports

        self.dir = folder / "stack"
        self.port = free_ports(replicas)
        self.log = open(folder / "stack.log", "wb")
        self.proc = subprocess.Popen(["bash", "scripts/stack.sh", "--replicas", str(replicas), "--port",
                                      str(self.port), "--dir", str(self.dir)], cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while not (self.dir / "stack.env").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("the stack did not start: " + (folder / "stack.log").read_text()[-2000:])
            time.sleep(0.5)
        pairs = (line.split("=", 1) for line in (self.dir / "stack.env").read_text().splitlines() if "=" in line)
        self.env = {k: v.strip('"') for k, v in pairs}
        self.url = self.env["STACK_URL"]
        self.replicas = dict(zip(map(int, self.env["REPLICA_PORTS"].split()), map(int, self.env["REPLICA_PIDS"].split())))
        os.environ["ALLIANCE_DATABASE_URL"] = self.env["DATABASE_URL"]
        os.environ["ALLIANCE_DATA_DIR"] = self.env["DATA_DIR"]

    def store(self, *args: str, **env: str) -> None:
        run = subprocess.run([sys.executable, "-m", "core", "store", *args], cwd=ROOT, capture_output=True,
                             text=True, env={**os.environ, **env}, timeout=600)
        if run.returncode != 0:
            raise SystemExit(f"store {args[0]}: {run.stderr}")

    def replica_of(self, route: str) -> int | None:
        log = (self.dir / "nginx" / "access.log").read_text()
        tried = re.findall(rf"upstream=(\S+(?:, \S+)*) route={route}\b", log)
        return int(tried[-1].split(", ")[-1].rsplit(":", 1)[1]) if tried else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Tally:
    times: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    reconnects: int = 0
    retries: int = 0  # a browser user's action done again (a file the uploader did not take, a formula lost)
    patient_views: dict[str, set] = field(default_factory=dict)

    def add(self, kind: str, seconds: float) -> None:
        self.times.setdefault(kind, []).append(seconds)


class StreamlitClient:
    """One browser tab as Streamlit's frontend speaks to its server: a WebSocket on /_stcore/stream,
    a ``rerun_script`` BackMsg per page (page name and query string), ForwardMsgs until
    ``script_finished``."""

    def __init__(self, url: str, cookies: dict[str, str], name: str, own: str, tally: Tally,
                 browser_key: str | None = None):
        self.url, self.cookies, self.name, self.own, self.tally = url, dict(cookies), name, own, tally
        self.browser_key = browser_key  # what the dashboard's page keeps in localStorage (ui.auth)
        self.ws = None

    async def connect(self) -> None:
        import urllib.request

        import websockets

        # The routing cookie nginx sets on the first response (sticky sessions).
        request = urllib.request.Request(self.url + "/_stcore/health",
                                         headers={"Cookie": self._cookie_header()})
        response = await asyncio.to_thread(urllib.request.urlopen, request, None, 30)
        for header in response.headers.get_all("Set-Cookie") or []:
            key, value = header.split(";", 1)[0].split("=", 1)
            self.cookies.setdefault(key, value)
        self.ws = await websockets.connect(
            self.url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"],
            additional_headers={"Origin": self.url, "Cookie": self._cookie_header()},
            max_size=2 ** 26, open_timeout=60, ping_interval=None)

    def _cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    async def page(self, page_name: str, query: str = "") -> bytes:
        """Run one page; every message's bytes, joined. Raises on an exception element. A tab's
        first page asks for the browser key (ui.auth: "Checking your sign-in …"): answered as the
        page's script does, with the key's trigger value, and the page runs on."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        def rerun(proof_widget: str | None = None, page_hash: str = "") -> bytes:
            msg = BackMsg()
            state = msg.rerun_script
            state.query_string = query
            state.page_name = page_name
            state.page_script_hash = page_hash  # the same page: its widgets' states are kept
            state.context_info.url = f"{self.url}/{page_name}" + (f"?{query}" if query else "")
            state.context_info.locale = "en-US"
            state.context_info.timezone = "UTC"
            if proof_widget is not None:
                widget = state.widget_states.widgets.add()
                widget.id = f"$$STREAMLIT_INTERNAL_KEY_{proof_widget}__events"
                widget.json_trigger_value = json.dumps([{"event": "proof", "value": self.browser_key or "none"}])
            return msg.SerializeToString()

        await self.ws.send(rerun())
        seen = []
        proof_widget, page_hash = None, ""
        deadline = time.monotonic() + 120
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), timeout=max(1, deadline - time.monotonic()))
            seen.append(raw)
            fwd = ForwardMsg()
            fwd.ParseFromString(raw)
            kind = fwd.WhichOneof("type")
            if kind == "navigation":
                page_hash = fwd.navigation.page_script_hash
            if kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                element = fwd.delta.new_element
                if element.WhichOneof("type") == "exception":
                    raise RuntimeError(f"{element.exception.type}: {element.exception.message[:200]}")
                if element.WhichOneof("type") == "bidi_component" and "alliance_browser_key" in \
                        element.bidi_component.component_name:
                    proof_widget = element.bidi_component.id
            if kind == "script_finished":
                status = fwd.script_finished
                if status in (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY):
                    if proof_widget is not None:  # the page asked for the browser key and stopped
                        await self.ws.send(rerun(proof_widget, page_hash))
                        proof_widget = None
                        continue
                    return b"".join(seen)
                if status == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    continue  # the page reran itself (st.rerun); its next run follows
                raise RuntimeError(f"script finished with status {status}")

    def check(self, content: bytes, kind: str) -> None:
        others = {m.decode() for m in ID.findall(content)} - {self.own}
        if others:
            self.tally.leaks.append(f"{self.name} saw patients of therapist(s) {sorted(others)} on {kind}")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def light_therapist(url: str, token: str, key: str, name: str, number: str, deadline: float, tally: Tally,
                          rng: random.Random, ready: asyncio.Event) -> None:
    client = StreamlitClient(url, {"alliance_session": token}, name, number, tally, key)
    own = [f"pat-t{number}-{p:03d}" for p in range(1, PATIENTS_PER_THERAPIST + 1)]
    await client.connect()
    await ready.wait()
    views = tally.patient_views.setdefault(name, set())

    async def timed(kind: str, page: str, query: str = "") -> None:
        for attempt in range(3):
            start = time.monotonic()
            try:
                content = await client.page(page, query)
            except (OSError, asyncio.TimeoutError, EOFError):  # the replica went away: reconnect
                if attempt == 2:
                    raise
                tally.reconnects += 1
                await client.close()
                await asyncio.sleep(1)
                await client.connect()
                continue
            except Exception as err:  # noqa: BLE001 - websockets' ConnectionClosed and the page's own errors
                if type(err).__name__.startswith("ConnectionClosed") and attempt < 2:
                    tally.reconnects += 1
                    await asyncio.sleep(1)
                    await client.connect()
                    continue
                tally.errors.append(f"{name} {kind}: {err}")
                return
            tally.add(kind, time.monotonic() - start)
            client.check(content, kind)
            if b"Signed in as" not in content:
                tally.errors.append(f"{name} {kind}: not signed in")
            return

    while time.monotonic() < deadline:
        await timed("caseload (overview)", "overview")
        for patient in rng.sample(own, 3):
            await asyncio.sleep(rng.uniform(1, 4))
            if time.monotonic() >= deadline:
                break
            await timed("patient switch", "patient", f"patient={patient}")
            views.add(patient)
        await asyncio.sleep(rng.uniform(1, 4))
    # Still signed in at the end (after a replica stopped, too).
    await timed("final page", "overview")
    await client.close()


async def browser_users(url: str, tally: Tally, deadline: float, therapist: tuple[str, str], folder: Path,
                        ready: asyncio.Event, rng: random.Random) -> None:
    from browser_support import CHROMIUM, CHROMIUM_ARGS
    from playwright.async_api import TimeoutError as PlaywrightTimeout
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        async def signed_in(username: str):
            context = await browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
            context.set_default_timeout(180000)
            page = await context.new_page()
            await page.goto(url + "/account")
            await page.get_by_role("textbox", name="User name").fill(username)
            await page.get_by_role("textbox", name="Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_text("Signed in as").first.wait_for(timeout=120000)
            return page

        async def idle(page) -> None:
            """Until Streamlit's run flag says the page is not running (data-test-script-state)."""
            await page.wait_for_function("""() => document.querySelector('[data-testid="stApp"]')
                ?.getAttribute('data-test-script-state') === 'notRunning'""", timeout=120000)

        async def nav(page, title: str) -> None:
            await page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()

        async def choose_file(page, n: int) -> None:
            for attempt in range(3):  # a file chosen while the page reruns can be dropped: choose it again,
                if attempt == 2:  # the last time after reloading the page, as a person would
                    await page.screenshot(path=str(folder / f"supervisor_file_not_taken_{n}.png"), full_page=True)
                    tally.retries += 1
                    await page.goto(url + "/upload")
                await idle(page)
                await page.locator('input[type="file"]').set_input_files(str(upload_csv(folder / f"up{n}.csv", n)))
                try:
                    await page.get_by_text(f"up{n}.csv").first.wait_for(timeout=30000)
                    return
                except PlaywrightTimeout:
                    if attempt == 2:
                        raise

        async def store_upload(page, n: int) -> None:
            """From the file's report to "Stored:" (each step within 60 s: a p95 upload takes under 10 s)."""
            button = page.get_by_role("button", name="Preview what changes in the clinic database")
            name = page.get_by_role("textbox", name="Name for this data set")
            # the new file's report has replaced the last one (its name box proposes the file's name);
            # typed earlier, the name went into the last report's box and was lost with it
            await expect(name).to_have_value(f"up{n}", timeout=60000)
            await name.fill("Uploads")
            await name.press("Enter")
            await button.click(timeout=60000)
            await page.get_by_role("button", name="Store in 'Uploads'").click(timeout=60000)
            await page.get_by_text("Stored:").wait_for(timeout=60000)

        async def supervisor() -> None:
            page = await signed_in("head")
            await ready.wait()
            n = 0
            while time.monotonic() < deadline:
                n += 1
                start = time.monotonic()
                try:
                    await nav(page, "Upload data")
                    for whole in range(2):  # a replica stopped before the file was stored took it along
                        await choose_file(page, n)
                        try:
                            await store_upload(page, n)
                            break
                        except (PlaywrightTimeout, AssertionError):  # AssertionError: expect()'s timeout
                            # the page reconnected to the other replica and shows an empty Upload page: the
                            # file is gone with its replica, so a person chooses it again
                            if whole == 1 or await page.get_by_text(f"up{n}.csv").count():
                                raise
                            await page.screenshot(path=str(folder / f"supervisor_file_lost_{n}.png"), full_page=True)
                            tally.retries += 1
                    tally.add("supervisor upload (browser)", time.monotonic() - start)
                except Exception as err:  # noqa: BLE001 - counted
                    tally.errors.append(f"supervisor upload {n}: {str(err)[:300]}")
                    await page.screenshot(path=str(folder / f"supervisor_error_{n}.png"))
                await asyncio.sleep(rng.uniform(5, 10))
            await nav(page, "Clinic data")
            await page.get_by_text("Signed in as head").wait_for(timeout=120000)

        async def researcher() -> None:
            page = await signed_in("rita")
            await ready.wait()
            formulas = ["symptoms ~ alliance_between + alliance_within + time + (1 | patient)",
                        "symptoms ~ alliance_between + alliance_within + (time | patient)",
                        "symptoms ~ alliance_between * alliance_within + time + (1 | patient)",
                        "symptoms ~ alliance_within + I(time^2) + time + (1 | patient)",
                        "alliance ~ symptoms_between + symptoms_within + time + (1 | patient)",
                        "symptoms ~ alliance + time + (1 | therapist) + (1 | patient)"]
            await nav(page, "Model explorer")
            box = page.get_by_role("textbox", name="Formula (lme4 notation)")
            await box.wait_for(timeout=180000)
            n = 0
            while time.monotonic() < deadline:
                # after the six, each again with a power of time added (a new formula: a new fit)
                formula = formulas[n % len(formulas)] if n < len(formulas) else \
                    formulas[n % len(formulas)].replace("time +", f"time + I(time^{3 + n // len(formulas)}) +", 1)
                n += 1
                start = time.monotonic()
                try:
                    for attempt in range(2):  # a page that reconnected to the other replica lost what was typed
                        await box.fill(formula)
                        await box.press("Enter")
                        try:
                            await page.wait_for_function(
                                """f => [...document.querySelectorAll('[data-testid="stCode"]')].some(
                                       e => e.innerText.replace(/\\s+/g, '') === f)""",
                                arg=formula.replace(" ", ""), timeout=90000)
                            break
                        except PlaywrightTimeout:
                            if attempt == 1:
                                raise
                            await page.screenshot(path=str(folder / f"researcher_retry_{n}.png"), full_page=True)
                            tally.retries += 1
                    await page.locator('[data-testid="stSpinner"]').wait_for(state="detached", timeout=180000)
                    tally.add("researcher formula fit (browser)", time.monotonic() - start)
                except Exception as err:  # noqa: BLE001 - counted
                    tally.errors.append(f"researcher formula {n}: {str(err)[:300]}")
                    await page.screenshot(path=str(folder / f"researcher_error_{n}.png"))
                await asyncio.sleep(rng.uniform(3, 8))
            await page.get_by_text("Signed in as rita").wait_for(timeout=120000)

        async def therapist_by_clicks() -> None:
            name, number = therapist
            page = await signed_in(name)
            await ready.wait()
            views = tally.patient_views.setdefault(name, set())
            own = [f"pat-t{number}-{p:03d}" for p in range(1, PATIENTS_PER_THERAPIST + 1)]
            while time.monotonic() < deadline:
                start = time.monotonic()
                try:
                    await nav(page, "My caseload")  # a therapist's name for the overview (issue 26)
                    await page.get_by_text("Caseload, most in need of attention first").wait_for(timeout=120000)
                    tally.add("caseload (browser)", time.monotonic() - start)
                    for patient in rng.sample(own, 2):
                        await asyncio.sleep(rng.uniform(1, 4))
                        start = time.monotonic()
                        await page.goto(f"{url}/patient?patient={patient}")
                        await page.get_by_text("Jacobson–Truax status").wait_for(timeout=120000)
                        tally.add("patient page by URL (browser)", time.monotonic() - start)
                        views.add(patient)
                        text = (await page.locator('[data-testid="stMain"]').inner_text()).encode()
                        others = {m.decode() for m in ID.findall(text)} - {number}
                        if others:
                            tally.leaks.append(f"{name} (browser) saw patients of {sorted(others)}")
                except Exception as err:  # noqa: BLE001 - counted
                    tally.errors.append(f"{name} (browser): {str(err)[:300]}")
                await asyncio.sleep(rng.uniform(1, 4))

        await asyncio.gather(supervisor(), researcher(), therapist_by_clicks())
        await browser.close()


def summary(tally: Tally) -> list[str]:
    lines = []
    for kind, times in sorted(tally.times.items()):
        ordered = sorted(times)
        p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
        lines.append(f"  {kind:36s} n={len(times):4d}  median {statistics.median(times):6.2f} s  "
                     f"p95 {p95:6.2f} s  max {max(times):6.2f} s")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--stop-one", action="store_true", help="kill one replica at half time (needs 2 replicas)")
    ap.add_argument("--seed", type=int, default=28)
    args = ap.parse_args()
    if args.stop_one and args.replicas < 2:
        ap.error("--stop-one needs --replicas 2 or more")
    therapists = args.users - 2  # and a supervisor and a researcher
    print(f"bench_load: {time.strftime('%Y-%m-%d %H:%M')}, {platform.node() or 'machine'}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; {args.users} users ({therapists} therapists, of which "
          f"{therapists - 1} light clients and 1 in Chromium; a supervisor and a researcher in Chromium), "
          f"{args.replicas} replica(s) behind nginx, {args.seconds:.0f} s" + (", one replica stopped at half time"
                                                                               if args.stop_one else ""))
    folder = Path(tempfile.mkdtemp(prefix="alliance-load-"))
    stack = Stack(folder, args.replicas)
    try:
        from core.store import ClinicStore

        stack.store("add-user", "head", "--role", "supervisor", ALLIANCE_NEW_PASSWORD=PASSWORD)
        auth = {"ALLIANCE_PASSWORD": PASSWORD, "ALLIANCE_NEW_PASSWORD": PASSWORD}
        stack.store("add-user", "rita", "--role", "researcher", "--user", "head", **auth)
        for t in range(1, therapists + 1):
            stack.store("add-user", f"t{t:02d}", "--role", "therapist", "--therapist-code", f"T{t:02d}",
                        "--user", "head", **auth)
        data = clinic_csv(folder / "clinic.csv", therapists, args.seed)
        stack.store("import", str(data), "--dataset", "Clinic", "--user", "head", "--patient", "patient",
                    "--session", "session", "--symptoms", "symptoms", "--alliance", "alliance", "--therapist",
                    "therapist", **{"ALLIANCE_PASSWORD": PASSWORD})
        clinic = ClinicStore(stack.env["DATABASE_URL"])
        tokens, keys = {}, {}
        for t in range(2, therapists + 1):  # t01 is the one in Chromium
            name = f"t{t:02d}"
            user = clinic.authenticate(name, PASSWORD)
            _, ticket = clinic.start_session(user)
            keys[name] = secrets.token_urlsafe(32)  # the browser key a sign-in binds the session to
            tokens[name] = clinic.redeem_ticket(ticket, keys[name])[0]
        print(f"  clinic: {therapists * PATIENTS_PER_THERAPIST:,} patients, "
              f"{sum(1 for _ in open(data)) - 1:,} sessions; stack at {stack.url}, files in {folder}")

        async def run() -> Tally:
            tally = Tally()
            rng = random.Random(args.seed)
            ready = asyncio.Event()
            warm = Tally()
            # Cold start: the first caseload and patient page on each replica fit the models.
            for port in stack.replicas:
                start = time.monotonic()
                client = StreamlitClient(f"http://127.0.0.1:{port}", {"alliance_session": tokens["t02"]}, "t02",
                                         "02", warm, keys["t02"])
                await client.connect()
                await client.page("overview")
                await client.page("patient", "patient=pat-t02-001")
                await client.close()
                print(f"  warm-up of the replica on {port} (first caseload and patient page): "
                      f"{time.monotonic() - start:.1f} s")
            deadline = time.monotonic() + args.seconds + 30  # the browsers sign in first
            tasks = [asyncio.create_task(light_therapist(stack.url, token, keys[name], name, name[1:], deadline, tally,
                                                         random.Random(rng.random()), ready))
                     for name, token in tokens.items()]
            tasks.append(asyncio.create_task(browser_users(stack.url, tally, deadline, ("t01", "01"), folder,
                                                           ready, random.Random(rng.random()))))
            await asyncio.sleep(30)
            ready.set()
            start = time.monotonic()
            if args.stop_one:
                await asyncio.sleep(args.seconds / 2)
                counts = {}
                for port in stack.replicas:
                    counts[port] = sum(1 for line in (stack.dir / "nginx" / "access.log").read_text().splitlines()
                                       if "_stcore/stream" in line and f":{port}" in line)
                victim = max(counts, key=counts.get)
                os.kill(stack.replicas[victim], signal.SIGKILL)
                print(f"  at {time.monotonic() - start:.0f} s: the replica on {victim} was killed")
            for task in asyncio.as_completed(tasks):
                try:
                    await task
                except Exception as err:  # noqa: BLE001 - a user that could not go on is an error
                    tally.errors.append(f"a user stopped: {type(err).__name__}: {err}")
            return tally

        tally = asyncio.run(run())
        audit = clinic.audit_log(clinic.authenticate("head", PASSWORD), limit=1_000_000)
        viewed = audit[audit["action"] == "patient view"]
        missing = []
        for name, patients in tally.patient_views.items():
            logged = set(viewed.loc[viewed["username"] == name, "detail"].str.split(": ", n=1).str[-1])
            missing += [f"{name}: {p}" for p in sorted(patients - logged)]
        print("\n".join(summary(tally)))
        print(f"  errors {len(tally.errors)}, leaks {len(tally.leaks)}, reconnects {tally.reconnects}, "
              f"browser actions retried {tally.retries}, "
              f"patient views not in the audit log {len(missing)}, load average {os.getloadavg()[0]:.1f}")
        for line in (tally.errors + tally.leaks + missing)[:20]:
            print("   ", line)
        switches = sorted(tally.times.get("patient switch", [float("inf")]))
        p95 = switches[min(len(switches) - 1, int(round(0.95 * (len(switches) - 1))))]
        met = not tally.errors and not tally.leaks and not missing and p95 < SWITCH_TARGET
        print(f"  target: 0 errors, 0 leaks, every view audited, everyone signed in at the end, p95 patient switch "
              f"< {SWITCH_TARGET:.0f} s -> {'met' if met else 'MISSED'} (p95 {p95:.2f} s)")
        (folder / "summary.json").write_text(json.dumps({k: v for k, v in tally.times.items()}))
        return 0 if met else 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
