"""Time reading + column mapping + validation of a 1,000,000-row long CSV.

Writes a simulated long file (125,000 patients x 8 sessions = 1,000,000 data rows, generated
with vectorised numpy, with about 0.5% awkward rows mixed in: non-numeric cells, missing-value
codes, ``n/a``, empty cells, out-of-range values, session labels such as ``S3`` / ``Session 3``,
identical and conflicting duplicates, a patient seen by two therapists), then times, in a fresh
process, ``core.intake.reading.read_table`` + ``core.intake.mapping.propose_mapping`` +
``core.intake.validation.validate_table`` (with an alliance range of 1 to 7), and reports the peak
resident memory of that process (``resource.getrusage``, including the Python interpreter and
the imported libraries).

Two variants are timed, each in its own process so that the peak memory is its own:

- ``csv``: ``,``-separated, decimal point, UTF-8 (the ``python -m core analyze`` case);
- ``es``: ``;``-separated, decimal comma, Latin-1 (cp1252) with Spanish accented headers
  (Paciente, Terapeuta, Sesión, Alianza, Síntomas), as a Buenos Aires clinic's Excel exports.

Run from the repository root: ``python bench/bench_reading.py`` (``--rows N`` for another size,
``--keep DIR`` to keep the generated files).

Measured on the development machine (2 CPUs shared with other jobs, load average about 3;
24 GiB; Python 3.11, pandas 3.1.1), 1,000,000 rows, 25 MiB file, three runs each:

- csv: reading+validation of 1,000,000 rows: 2.3 to 5.8 s (typically about 3 s), peak memory 687 MiB
- es:  reading+validation of 1,000,000 rows: 3.3 to 4.8 s, peak memory 687 MiB

The same files with the code before this benchmark's fixes (``core/intake/reading.py``: bytes parsed
directly, faster blank-row check; ``core/intake/validation.py``: reasons built only for failing rows,
a vectorised number parser): 6.1 to 9.1 s (csv) and 5.3 to 10.4 s (es), 600 to 635 MiB; same
validated table and the same 4,830 excluded rows.

For scale, the whole ``python -m core analyze`` on the csv file (reading, validation and the
six-model ladder on 995,170 rows of 125,000 patients, ``--alliance-range 1,7``) took 1 min 52 s
with a peak resident memory of 1.0 GiB (``/usr/bin/time -v``).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPANISH = {"patient": "Paciente", "therapist": "Terapeuta", "session": "Sesión",
           "alliance": "Alianza", "symptoms": "Síntomas"}


def simulate_long(n_rows: int, n_sessions: int = 8, seed: int = 1) -> pd.DataFrame:
    """A long table of ``n_rows`` rows (text cells), patients x sessions, with awkward rows mixed in."""
    rng = np.random.default_rng(seed)
    n_patients = -(-n_rows // n_sessions)
    patient = np.repeat(np.arange(n_patients), n_sessions)[:n_rows]
    session = np.tile(np.arange(1, n_sessions + 1), n_patients)[:n_rows]
    therapist = rng.integers(0, 400, n_patients)[patient]
    person_a = rng.normal(5.7, 0.6, n_patients)[patient]
    person_s = rng.normal(1.7, 0.4, n_patients)[patient]
    alliance = np.clip(person_a + rng.normal(0, 0.4, n_rows), 1, 7).round(3)
    symptoms = np.clip(person_s - 0.06 * (session - 1) + rng.normal(0, 0.2, n_rows), 0, 4).round(3)
    frame = pd.DataFrame({
        "patient": np.char.add("P", np.char.zfill(patient.astype(str), 6)),
        "therapist": np.char.add("T", np.char.zfill(therapist.astype(str), 3)),
        "session": session.astype(str),
        "alliance": alliance.astype(str),
        "symptoms": symptoms.astype(str),
    })
    # About 0.5% awkward cells, each kind at its own random rows.
    bad = rng.choice(n_rows, size=max(n_rows // 200, 9), replace=False)
    kinds = np.array_split(bad, 9)
    frame.loc[kinds[0], "alliance"] = "abc"          # non-numeric
    frame.loc[kinds[1], "symptoms"] = "-99"          # missing-value code
    frame.loc[kinds[2], "alliance"] = "n/a"          # missing text
    frame.loc[kinds[3], "symptoms"] = ""             # empty cell
    frame.loc[kinds[4], "alliance"] = "9"            # outside the range 1 to 7
    frame.loc[kinds[5], "session"] = "S" + frame.loc[kinds[5], "session"]          # label, kept
    frame.loc[kinds[6], "session"] = "Session " + frame.loc[kinds[6], "session"]   # label, kept
    frame.loc[kinds[7], "patient"] = ""              # patient ID missing
    frame.loc[kinds[8], "therapist"] = "T999"        # a second therapist for these patients
    # Duplicates: copy some rows onto the next row (identical), others with a changed score.
    dup = rng.choice(np.arange(0, n_rows - 1, 2), size=max(n_rows // 1000, 2), replace=False)
    half = len(dup) // 2
    frame.iloc[dup[:half] + 1] = frame.iloc[dup[:half]].to_numpy()
    conflicting = frame.iloc[dup[half:]].copy()
    conflicting["symptoms"] = "3.999"
    frame.iloc[dup[half:] + 1] = conflicting.to_numpy()
    return frame


def write_variant(frame: pd.DataFrame, variant: str, path: Path) -> None:
    if variant == "csv":
        frame.to_csv(path, index=False)
    else:
        es = frame.rename(columns=SPANISH)
        for col in ("Alianza", "Síntomas"):
            es[col] = es[col].str.replace(".", ",", regex=False)
        es.to_csv(path, index=False, sep=";", encoding="cp1252")


def child(path: Path) -> dict:
    """Run in a fresh process: time read + map + validate, return the figures."""
    from core.intake.mapping import propose_mapping
    from core.intake.reading import read_table
    from core.intake.validation import validate_table

    start = time.perf_counter()
    raw = read_table(path)
    t_read = time.perf_counter() - start
    mapping = propose_mapping(raw.columns)
    validated = validate_table(raw, mapping, ranges={"alliance": (1.0, 7.0)})
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"seconds": seconds, "read_seconds": t_read, "peak_mib": peak_kib / 1024,
            "rows_read": validated.n_rows_read, "used": len(validated.data),
            "excluded": len(validated.excluded), "notes": list(validated.notes),
            "mapping": mapping.as_dict(), "delimiter": raw.delimiter, "decimal": raw.decimal,
            "encoding": raw.encoding}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--variants", default="csv,es", help="comma-separated: csv, es")
    ap.add_argument("--keep", help="directory to write (and keep) the generated files in")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child))))
        return

    start = time.perf_counter()
    frame = simulate_long(args.rows)
    print(f"simulated {len(frame):,} rows in {time.perf_counter() - start:.1f} s (not timed below)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for variant in args.variants.split(","):
            path = folder / f"long_{args.rows}_{variant}.csv"
            write_variant(frame, variant, path)
            out = subprocess.run([sys.executable, __file__, "--child", str(path)],
                                 capture_output=True, text=True, cwd=ROOT, check=True)
            r = json.loads(out.stdout)
            size = path.stat().st_size / 2**20
            print(f"[{variant}: delimiter {r['delimiter']!r}, decimal {r['decimal']!r}, "
                  f"{r['encoding']}, {size:,.0f} MiB; read {r['read_seconds']:.1f} s; "
                  f"{r['used']:,} rows used, {r['excluded']:,} excluded with reasons]")
            print(f"reading+validation of {r['rows_read']:,} rows: {r['seconds']:.1f} s, "
                  f"peak memory {r['peak_mib']:,.0f} MiB")


if __name__ == "__main__":
    main()
