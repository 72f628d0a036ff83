"""The clinic network's stack on loopback (scripts/stack.sh: a throwaway PostgreSQL, two dashboard
replicas, nginx with sticky sessions from deploy/nginx/): a supervisor signs in through nginx in
Chromium, the replica that serves her is stopped, and her next page comes from the other replica,
still signed in and still on the clinic's data set (sign-in sessions live in the database)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser_support import browser_page, require_chromium, screenshot

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a long stack password"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def require(program: str, where: str) -> None:
    if shutil.which(program) is None and not Path(where).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{program} is missing in CI")
        pytest.skip(f"{program} is not installed")


def free_ports(n: int) -> int:
    """A base port P with P … P+n free on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65535:
            continue
        try:
            socks = []
            for p in range(base, base + n + 1):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


class Stack:
    def __init__(self, folder: Path, replicas: int = 2):
        self.dir = folder / "stack"
        self.port = free_ports(replicas)
        self.proc = subprocess.Popen(["bash", "scripts/stack.sh", "--port", str(self.port), "--replicas",
                                      str(replicas), "--dir", str(self.dir)], cwd=ROOT, start_new_session=True,
                                     stdout=open(folder / "stack.log", "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not (self.dir / "stack.env").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the stack did not start: " + (folder / "stack.log").read_text()[-2000:])
            time.sleep(0.5)
        values = dict(line.split("=", 1) for line in (self.dir / "stack.env").read_text().splitlines() if "=" in line)
        self.env = {k: v.strip('"') for k, v in values.items()}
        self.url = self.env["STACK_URL"]
        self.replicas = dict(zip(map(int, self.env["REPLICA_PORTS"].split()), map(int, self.env["REPLICA_PIDS"].split())))

    def store(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        run = subprocess.run([sys.executable, "-m", "core", "store", *args], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "ALLIANCE_DATABASE_URL": self.env["DATABASE_URL"],
                                  "ALLIANCE_DATA_DIR": self.env["DATA_DIR"], **env}, timeout=300)
        assert run.returncode == 0, run.stderr
        return run

    def upstreams(self, route: str) -> list[int]:
        """The replica ports that served the requests of the browser with routing cookie ``route``."""
        log = (self.dir / "nginx" / "access.log").read_text()
        # "upstream=A, B" when A failed and B answered: the last one answered.
        tried = re.findall(rf"upstream=(\S+(?:, \S+)*) route={route}\b", log)
        return [int(t.split(", ")[-1].rsplit(":", 1)[1]) for t in tried]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def test_a_sign_in_survives_its_replica_stopping(tmp_path):
    require_chromium()
    require("nginx", "/usr/sbin/nginx")
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        require("initdb", "/nonexistent")
    stack = Stack(tmp_path)
    try:
        stack.store("add-user", "head", "--role", "supervisor", ALLIANCE_NEW_PASSWORD=PASSWORD)
        stack.store("import", str(ROOT / "examples" / "visits.csv"), "--dataset", "Clinic", "--user", "head",
                    "--patient", "paciente", "--session", "sesion", "--symptoms", "oq", "--alliance", "ans",
                    "--therapist", "terapeuta", ALLIANCE_PASSWORD=PASSWORD)
        with browser_page() as page:
            page.goto(stack.url + "/account")
            page.get_by_role("textbox", name="User name").fill("head")
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            sidebar = page.locator('[data-testid="stSidebar"]')
            sidebar.get_by_text("Signed in as").wait_for(timeout=60000)
            page.locator('[data-testid="stSidebarNav"]').get_by_text("Clinic data").click()
            page.get_by_text("Clinic", exact=True).first.wait_for(timeout=60000)
            route = next(c["value"] for c in page.context.cookies() if c["name"] == "alliance_replica")
            served = set(stack.upstreams(route))
            assert len(served) == 1, served  # sticky: every request of this browser on one replica
            (first,) = served
            screenshot(page, "stack_before_failover")

            os.kill(stack.replicas[first], signal.SIGKILL)  # the replica goes away mid-session
            page.wait_for_timeout(3000)  # the page notices the WebSocket is gone and reconnects
            # (nginx logs a WebSocket when it closes: the dead replica's is logged by now)
            before = len(stack.upstreams(route))
            page.locator('[data-testid="stSidebarNav"]').get_by_text("Clinic overview").click()
            page.get_by_text("Caseload, most in need of attention first").wait_for(timeout=60000)
            sidebar.get_by_text("Signed in as head").wait_for(timeout=60000)
            main = page.locator('[data-testid="stMain"]').inner_text()
            screenshot(page, "stack_after_failover")
            assert "DEMO DATA" not in main
            after = set(stack.upstreams(route)[before:])
            assert after and first not in after, (first, after)
    finally:
        stack.stop()
