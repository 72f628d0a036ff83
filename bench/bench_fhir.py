"""FHIR bundles: hostile ones end in bounded time and memory with one sentence; a large legitimate one
is read within the limits; the demo clinic's round trip.

Run from the repository root: ``python bench/bench_fhir.py``. Each bundle is read in its own process
(``core.intake.fhir.read_fhir_validated``, as ``store import --format fhir`` and the Upload page do),
timed with ``/usr/bin/time -v`` (wall clock and peak resident memory). Bundles come from
``tests/fhir_support.py`` (written to a temporary folder, deleted afterwards), plus two legitimate
bundles near the JSON objects limit: 30,000 Observations of 600 patients and 4,500 OQ-45
questionnaire responses.

Targets: every hostile bundle refused (or its bad resource listed) with one sentence, each run under
60 s and 2 GB; exit status 1 otherwise.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import fhir_support as fs  # noqa: E402

RUN = r"""
import sys
from core.errors import InputError
from core.intake.fhir import read_fhir_validated
from tests import fhir_support as fs
try:
    r = read_fhir_validated(sys.argv[1], fs.mapping())
    v = r.validated
    print("read:", len(v.data), "sessions,", len(v.excluded), "resources listed")
except InputError as err:
    print("refused:", err)
"""


def legit_observations(folder: Path, n: int = 30_000) -> Path:
    path = folder / "observations_30k.ndjson"
    with path.open("w") as handle:
        for k in range(n):
            patient, session = divmod(k // 2, 25)
            code = "oq" if k % 2 else "wai"
            value = 60 + (k % 40) if code == "oq" else 5.5
            day = f"2024-{1 + session // 28:02d}-{1 + session % 28:02d}"
            handle.write(json.dumps(fs.observation(f"P{patient}", day, code, value)) + "\n")
    return path


def legit_questionnaires(folder: Path, n: int = 4_500) -> Path:
    path = folder / "oq45_4500.json"
    resources = [fs.questionnaire_response(f"P{k // 20}", f"2024-01-{1 + k % 20:02d}", [k % 5] * 45) for k in range(n)]
    path.write_text(json.dumps(fs.bundle(resources)))
    return path


def measure(path: Path) -> tuple[str, float, float]:
    proc = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", RUN, str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    seconds = (int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))) if wall else float("nan")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    said = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip().splitlines()[-1]
    return said, seconds, int(peak.group(1)) / 1024 if peak else float("nan")


def main() -> int:
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = [(name, maker) for name, maker in fs.HOSTILE.items()]
        cases += [("30,000 Observations, 600 patients (NDJSON)", legit_observations),
                  ("4,500 OQ-45 questionnaire responses (Bundle)", legit_questionnaires)]
        print(f"{'bundle':44} {'size':>8} {'wall s':>7} {'peak MB':>8}  result")
        for name, maker in cases:
            path = maker(folder)
            size = path.stat().st_size / 2 ** 20
            said, seconds, peak = measure(path)
            path.unlink()
            print(f"{name:44} {size:7.0f}M {seconds:7.1f} {peak:8.0f}  {said[:150]}")
            if not (seconds < 60 and peak < 2048) or "Traceback" in said:
                ok = False
    print("targets (under 60 s and 2 GB each, one sentence):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
