"""Record a session: how soon the patient page and the caseload show a new session's status.

Run from the repository root: ``python bench/bench_record.py`` (``--rounds N``: sessions recorded,
default 8, at most 8).

The clinic database of ``tests/record_support.py`` (the demo clinic stored as a clinic's IT stores it,
eight of therapist Ana's patients cut after session 4); the dashboard (``serve.py``) in headless
Chromium at 1400 px, Ana signed in. For each round, on *Record a session*: one of the cut patients,
session 5, alliance 3.1 and a symptom score 45 points above session 4, *Save*; then *Open the patient
page*, then her caseload from the sidebar. Measured, from the browser:

- **save**: *Save* pressed → the *Saved* message (the transaction, the new version read back);
- **patient page**: the *Saved* message → the patient page's status line says *not on track* for
  session 5, with the *Open the patient page* press in between (the issue's target: < 2 s);
- **caseload**: her caseload opened from the sidebar → its count of patients not on track.

The load average of the machine is printed before and after (the development machine is shared).
Exits with status 1 when the median of *patient page* is 2 s or more.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import (CHROMIUM, CHROMIUM_ARGS, go_by_sidebar, press, running_app, sign_in,  # noqa: E402
                             type_into, wait_for_text, wait_idle)
from record_support import ANA, ANA_PASSWORD, make_clinic  # noqa: E402

TARGET = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    times = {"save": [], "patient page": [], "caseload": []}
    print(f"load average before: {os.getloadavg()[0]:.1f} (CPUs: {os.cpu_count()})")
    with tempfile.TemporaryDirectory() as folder:
        made = make_clinic(Path(folder))
        made["store"].close()
        patients = made["four_sessions"][: max(1, min(args.rounds, len(made["four_sessions"])))]
        with running_app(Path(folder)) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            sign_in(page, url, ANA, ANA_PASSWORD)
            wait_for_text(page, "not on track")
            for patient in patients:
                page.goto(f"{url}/record?patient={patient}")
                page.locator(".st-key-rec_save button").wait_for(timeout=60000)
                wait_idle(page)
                scores = page.locator('[class*="st-key-dec_"] input')
                type_into(page, scores.nth(0), "3.1")
                before = made_score(made["url"], patient)
                type_into(page, scores.nth(1), str(int(before + 45)))
                wait_idle(page)
                started = time.time()
                press(page, page.locator(".st-key-rec_save button"))
                page.get_by_text("Saved: session 5").first.wait_for(timeout=60000)
                saved = time.time()
                wait_idle(page, 0)
                press(page, page.get_by_role("link", name="Open the patient page"))
                page.locator('[data-testid="stMain"] [data-testid="stAlert"]').first.filter(
                    has_text="Not on track (session 5)").wait_for(timeout=60000)
                shown = time.time()
                wait_idle(page, 300)
                opened = time.time()
                go_by_sidebar(page, "My caseload")
                page.locator("h1", has_text="My caseload").wait_for(timeout=60000)
                wait_for_text(page, "▲ not on track")
                listed = time.time()
                times["save"].append(saved - started)
                times["patient page"].append(shown - saved)
                times["caseload"].append(listed - opened)
                print(f"{patient}: save {saved - started:.2f} s, patient page {shown - saved:.2f} s, "
                      f"caseload {listed - opened:.2f} s", flush=True)
            browser.close()
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.2f} s, max {max(values):.2f} s over {len(values)}")
    ok = statistics.median(times["patient page"]) < TARGET
    print(f"target: the patient page shows the new status within {TARGET:g} s of the save (median): "
          + ("met" if ok else "MISSED"))
    return 0 if ok else 1


def made_score(store_url: str, patient: str) -> float:
    import sqlalchemy as sa

    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT symptoms FROM observations WHERE patient = :p AND session = 4"),
                                {"p": patient}).scalar_one()
    finally:
        engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
