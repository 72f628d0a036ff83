"""Resident memory of the dashboard's server under a burst of large uploads (issue 25).

The issue: four uploads of a 161 MB CSV (within every limit), from tabs that were then closed, took
the server from 205 MB to 7.35 GB; one such upload peaked at 2.6 GB. This script starts the dashboard
(``streamlit run serve.py``) on a free port, drives Debian's Chromium, and samples the server
process's resident memory (psutil, every 0.2 s) through each scenario:

- ``one``: one supervisor uploads the file (the single upload's peak);
- ``burst``: four supervisors' tabs upload it at once (signed in: the largest files a session may
  upload), then the tabs are closed and the server is watched past Streamlit's reconnect window
  (``server.disconnectedSessionTTL``, set to 20 s here, 120 s by default) and the reaper's round;
- ``visitors``: four signed-out visitors' tabs try it (their limit is 20 MB).

Each tab's outcome is read from the page: the validation report ("Rows read"), or the sentence that
the server is holding as much uploaded data as it can, or the uploader's own refusal.

Run from the repository root: ``python bench/bench_upload_memory.py`` (``--root DIR`` measures
another checkout with this venv, e.g. the code before the change; ``--scenarios one``). The CSV
(161 MB, 999,999 rows × 10 columns, under the 10,000,000-cell limit) is made once in ``bench/out/``.
Figures: bench/README.md.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser_support import running_app_process, sign_in  # noqa: E402

OUT = ROOT / "bench" / "out"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
TTL = 20


def make_csv(path: Path, rows: int = 999_999) -> Path:
    """A long CSV of about 161 MB: patient, therapist, session, two scores and five note columns."""
    if path.exists():
        return path
    rnd = random.Random(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("paciente,terapeuta,sesion,ans,oq,nota1,nota2,nota3,nota4,nota5\n")
        for i in range(rows):
            p = i // 8
            notes = ",".join(" ".join(rnd.choice(WORDS) for _ in range(4)) + " ." for _ in range(5))
            f.write(f"P{p:08d},T{p % 97:03d},{i % 8 + 1},{rnd.randint(10, 70) / 10},{rnd.randint(0, 180)},{notes}\n")
    return path


class Sampler:
    """Resident memory of a process and its children, sampled every 0.2 s."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, float]] = []
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss_mb(self) -> float:
        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total / 2 ** 20

    def _run(self):
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic() - self.start, self.rss_mb()))
            time.sleep(0.2)

    def peak(self, since: float = 0.0) -> float:
        return max((mb for t, mb in self.samples if t >= since), default=0.0)

    def now(self) -> float:
        return time.monotonic() - self.start

    def stop(self):
        self._stop.set()
        self._thread.join()


OUTCOMES = {"read": "Rows read", "busy": "holding as much uploaded data", "refused": "was not uploaded",
            "too large (browser)": "or smaller", "memory": "more memory than one session"}


def outcome(page) -> str | None:
    text = page.locator("body").inner_text()
    return next((name for name, marker in OUTCOMES.items() if marker in text), None)


def scenario(browser, url: str, sampler: Sampler, csv: Path, tabs: int, signed_in: bool) -> dict:
    start = sampler.now()
    contexts, pages = [], []
    for k in range(tabs):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        if signed_in:
            sign_in(page, url, "demo-supervisor")
        page.goto(url + "/upload")
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').wait_for(state="attached", timeout=120000)
        contexts.append(context)
        pages.append(page)
    baseline = sampler.rss_mb()
    for page in pages:  # the files are sent in the background: the uploads overlap
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(csv))
    results: list[str | None] = [None] * tabs
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and any(r is None for r in results):
        for k, page in enumerate(pages):
            if results[k] is None:
                results[k] = outcome(page)
        time.sleep(1)
    time.sleep(5)  # a busy tab's sentence, a finishing read
    results = [outcome(p) or "none after 900 s" for p in pages]
    done = sampler.now()
    for context in contexts:
        context.close()
    closed = sampler.now()
    time.sleep(TTL + 75)  # past the reconnect window and two of the reaper's 30 s rounds
    return {"tabs": tabs, "signed_in": signed_in, "outcomes": results, "rss_before_mb": round(baseline),
            "peak_mb": round(sampler.peak(start)), "seconds": round(done - start),
            "rss_after_close_mb": round(sampler.rss_mb()), "peak_after_close_mb": round(sampler.peak(closed))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--scenarios", default="one,burst,visitors")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    csv = make_csv(OUT / "upload_161mb.csv")
    report = {"file_mb": round(csv.stat().st_size / 1e6, 1), "root": str(args.root), "scenarios": {}}
    for name in args.scenarios.split(","):
        with tempfile.TemporaryDirectory() as data, \
                running_app_process(Path(data), ("--server.disconnectedSessionTTL", str(TTL)), root=args.root,
                                    env={"PYTHONPATH": str(args.root)}, output=subprocess.DEVNULL) as (url, proc), \
                sync_playwright() as p:
            sampler = Sampler(proc.pid)
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            warm = browser.new_page()
            warm.goto(url)
            warm.locator('[data-testid="stSidebarNav"]').wait_for(timeout=120000)
            warm.close()
            report["rss_idle_mb"] = round(sampler.rss_mb())
            if name == "one":
                report["scenarios"][name] = scenario(browser, url, sampler, csv, 1, True)
            elif name == "burst":
                report["scenarios"][name] = scenario(browser, url, sampler, csv, 4, True)
            elif name == "visitors":
                report["scenarios"][name] = scenario(browser, url, sampler, csv, 4, False)
            browser.close()
            sampler.stop()
        print(json.dumps({name: report["scenarios"][name]}), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
