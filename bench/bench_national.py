"""A national programme's year of session-by-session data through ``python -m core analyze``.

The issue (19): ``analyze`` on 9.8 million rows (1.4 million patients) in under 5 minutes with
under 4 GB peak memory, with the same estimates as the code before the change (to 1e-6 of their SE).

What the script does (run from the repository root: ``python bench/bench_national.py``):

1. Simulates 1,400,000 patients with 7,000 therapists, up to 8 sessions and 25% dropout (about
   9.8 million rows) with ``bench/simulation.py``'s vectorised generator (the model of
   ``tests/data/simulate_reference.py``), written once to ``bench/out/national_1400000.csv``
   (268 MB; git-ignored, reused when present).
2. Runs ``python -m core analyze FILE …`` (no ``--max-rows``: a file given by path is limited by the
   free memory, issue 28) under ``/usr/bin/time -v`` (wall clock,
   user and system CPU, "Maximum resident set size": the peak memory of the whole process) and checks
   the targets (exit 0, < 300 s, < 4 GB) and that every model of the ladder was fitted.
3. Compares with the code before the change on a size that code can do in reasonable time: the same
   generator with 140,000 patients (about 980,000 rows, within the old reading limits). The old code
   is the commit ``--baseline`` (default ``5a4513f``, main before issue 19), extracted with
   ``git archive`` into ``bench/out/baseline-<commit>/`` and run with the same interpreter; both
   reports are compared on every model and term: |Δ estimate| / SE (target <= 1e-6), relative Δ SE,
   Δ df (Satterthwaite: the old code's were mixedlm's approximation, the new ones lmerTest's
   method), variance components and log-likelihoods; time and peak memory of both runs are printed.

Options: ``--extra-columns`` (the same rows with five more columns that ``analyze`` does not use: a
date, a site, an age, a gender, a code; 535 MB), ``--patients N`` (default 1,400,000), ``--baseline REV``, ``--baseline-patients N`` (default
140,000), ``--no-baseline``, ``--python PATH``. Exit status 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from simulation import simulate_vectorised, write_csv  # noqa: E402

OUT = ROOT / "bench" / "out"
WALL_TARGET = 300.0
PEAK_TARGET_MB = 4096.0
ESTIMATE_TARGET = 1e-6
ROLES = ["--patient", "patient", "--session", "session", "--symptoms", "symptoms", "--alliance", "alliance",
         "--therapist", "therapist"]


def dataset(n_patients: int) -> Path:
    """The simulated CSV with ``n_patients`` patients (one therapist per 200 patients), made once."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"national_{n_patients}.csv"
    if not path.exists():
        start = time.perf_counter()
        table = simulate_vectorised(n_patients=n_patients, n_therapists=max(2, n_patients // 200))
        rows = write_csv(table, path)
        print(f"  simulated {path.relative_to(ROOT)}: {rows:,} rows, {path.stat().st_size / 2 ** 20:,.0f} MB "
              f"in {time.perf_counter() - start:.1f} s (not timed below)")
    return path


def with_extra_columns(path: Path) -> Path:
    """The same file with five more columns of the kind a records system exports beside the roles
    (a date, a site, an age, a gender, a code), which ``analyze`` does not use; made once."""
    wide = path.with_name(path.stem + "_extra.csv")
    if not wide.exists():
        start = time.perf_counter()
        with open(path, encoding="utf-8") as src, open(wide, "w", encoding="utf-8") as out:
            out.write(next(src).rstrip("\n") + ",date,site,age,gender,code\n")
            for i, line in enumerate(src):
                out.write(f"{line.rstrip()},2025-{i % 12 + 1:02d}-{i % 28 + 1:02d},Site-{i % 37},{18 + i % 60},"
                          f"{'FM'[i % 2]},C{i % 997}\n")
        print(f"  wrote {wide.relative_to(ROOT)} ({wide.stat().st_size / 2 ** 20:,.0f} MB) in "
              f"{time.perf_counter() - start:.1f} s (not timed below)")
    return wide


def timed(cmd: list[str], cwd: Path) -> dict:
    """Run ``cmd`` under ``/usr/bin/time -v``: exit code, wall s, user s, system s, peak MB, stderr."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, capture_output=True, text=True, check=False)
    err = proc.stderr

    def field(name: str) -> str:
        m = re.search(rf"{re.escape(name)}: (.+)", err)
        return m.group(1).strip() if m else "nan"

    clock = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    parts = [float(x) for x in clock.split(":")] if clock != "nan" else [math.nan]
    wall = sum(v * 60 ** i for i, v in enumerate(reversed(parts)))
    return {"exit": proc.returncode, "wall": wall, "user": float(field("User time (seconds)")),
            "system": float(field("System time (seconds)")),
            "peak_mb": float(field("Maximum resident set size (kbytes)")) / 1024,
            "stderr": "\n".join(line for line in err.splitlines() if not line.startswith("\t")).strip()}


def analyze(python: str, code: Path, data: Path, report: Path, extra: list[str] = ()) -> dict:
    env_cmd = [python, "-m", "core", "analyze", str(data), *ROLES, *extra, "--out", str(report)]
    run = timed(env_cmd, code)
    if run["exit"] != 0:
        print(f"  FAILED (exit {run['exit']}): {run['stderr'][-2000:]}")
    return run


def show(label: str, run: dict) -> None:
    print(f"  {label}: exit {run['exit']}, wall {run['wall']:.1f} s, user {run['user']:.1f} s, "
          f"system {run['system']:.1f} s, peak {run['peak_mb']:,.0f} MB")


def baseline_code(rev: str) -> Path:
    """The repository at ``rev`` (``git archive``) in ``bench/out/baseline-<commit>/``."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    target = OUT / f"baseline-{sha}"
    if not (target / "core").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def compare(old: dict, new: dict) -> dict:
    """Largest differences of ``new`` from ``old`` over every model and term (``(value, where)``)."""
    worst: dict[str, tuple[float, str]] = {}

    def bump(key, value, where):
        if value > worst.get(key, (-1.0, ""))[0]:
            worst[key] = (value, where)

    problems = []
    for key, m in old["models"].items():
        n = new["models"].get(key)
        if n is None:
            problems.append(f"model {key} missing")
            continue
        for term, f in m["fixed"].items():
            g = n["fixed"][term]
            bump("|d estimate| / SE", abs(g["estimate"] - f["estimate"]) / f["se"], f"{key}/{term}")
            bump("|d SE| / SE", abs(g["se"] / f["se"] - 1), f"{key}/{term}")
            bump("|d df| / df", abs(g["df"] / f["df"] - 1), f"{key}/{term}")
        for name, v in m["variance"].items():
            bump("|d variance| / variance", abs(n["variance"][name] / v - 1) if v else abs(n["variance"][name]),
                 f"{key}/{name}")
        for ll in ("loglik_reml", "loglik_ml"):
            bump(f"|d {ll}|", abs(n[ll] - m[ll]), key)
        for flag in ("n_observations", "n_patients", "singular", "converged"):
            if m[flag] != n[flag]:
                problems.append(f"{key}: {flag} {m[flag]} before, {n[flag]} now")
    for name, c in old["comparisons"].items():
        bump("|d LRT chi-square|", abs(new["comparisons"][name]["chisq"] - c["chisq"]), name)
    worst["problems"] = problems
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1_400_000)
    ap.add_argument("--baseline", default="5a4513f", help="the code before the change (a git revision)")
    ap.add_argument("--baseline-patients", type=int, default=140_000)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--extra-columns", action="store_true",
                    help="five more columns beside the roles (date, site, age, gender, code), as an export has")
    args = ap.parse_args()
    python = str(Path(args.python).absolute())
    print(f"bench_national: {time.strftime('%Y-%m-%d %H:%M')}, {platform.node() or 'machine'}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    ok = True

    data = dataset(args.patients)
    if args.extra_columns:
        data = with_extra_columns(data)
    print(f"\n{args.patients:,} patients: {data.relative_to(ROOT)} ({data.stat().st_size / 2 ** 20:,.0f} MB)")
    report = OUT / f"national_{args.patients}.json"
    run = analyze(python, ROOT, data, report, [])
    show("python -m core analyze (no --max-rows)", run)
    if run["exit"] == 0:
        rep = json.loads(report.read_text())
        print(f"  rows read {rep['n_rows_read']:,}, used {rep['n_observations']:,}, patients {rep['n_patients']:,}, "
              f"therapists {rep['n_therapists']:,}; models fitted: {', '.join(rep['models'])}"
              + (f"; not fitted: {rep['model_errors']}" if rep["model_errors"] else ""))
        for key, m in rep["models"].items():
            terms = ", ".join(f"{t} {f['estimate']:.5f} (SE {f['se']:.2g}, df {f['df']:,.0f})" for t, f in m["fixed"].items())
            print(f"    {key}: {terms}")
        ok &= not rep["model_errors"] and len(rep["models"]) == 6
    met = run["exit"] == 0 and run["wall"] < WALL_TARGET and run["peak_mb"] < PEAK_TARGET_MB
    ok &= met
    print(f"  target: under {WALL_TARGET:.0f} s and {PEAK_TARGET_MB / 1024:.0f} GB -> {'met' if met else 'MISSED'}")

    if not args.no_baseline:
        small = dataset(args.baseline_patients)
        code = baseline_code(args.baseline)
        print(f"\nthe code before the change ({args.baseline}, in {code.relative_to(ROOT)}) on {args.baseline_patients:,} "
              f"patients ({small.relative_to(ROOT)}):")
        old_report, new_report = OUT / "national_baseline_old.json", OUT / "national_baseline_new.json"
        old_run = analyze(python, code, small, old_report)
        show("before", old_run)
        new_run = analyze(python, ROOT, small, new_report)
        show("now   ", new_run)
        if old_run["exit"] == 0 and new_run["exit"] == 0:
            worst = compare(json.loads(old_report.read_text()), json.loads(new_report.read_text()))
            for key, value in worst.items():
                if key != "problems":
                    print(f"    {key:<28} {value[0]:.2e}  ({value[1]})")
            for p in worst["problems"]:
                print(f"    PROBLEM: {p}")
            same = worst["|d estimate| / SE"][0] <= ESTIMATE_TARGET and not worst["problems"]
            print(f"  estimates within {ESTIMATE_TARGET:g} of their SE: {'yes' if same else 'NO'}")
            ok &= same
        else:
            ok = False
    print("\nbench_national: " + ("every target met" if ok else "a target was missed"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
