"""Power simulations per second: ``core.stats.power`` against the R loop (lme4 + lmerTest), same design.

The design: tests/data/paperlike_public.csv (96 patients, 4 sessions, 328 rows),
``symptoms ~ alliance_between + alliance_within + (1 | patient)``, the within effect set to −0.05,
N = 96 (``--large``: also N = 1,600 patients, recycled, 5,467 rows). Both sides do the same work
per simulation: draw the outcome from the fitted model, refit by REML, test the term by
Kenward–Roger (``--test kr``, the default as simr's; R: pbkrtest through lmerTest's
``summary(ddf = "Kenward-Roger")``) or Satterthwaite (``--test satterthwaite``) (R:
tests/r/reference_power.R's loop, ``lmer`` + ``summary``; ours: ``core.stats.power_sim.simulate_one``).
``--r-nsim`` sets R's number of simulations separately (the R loop with pbkrtest is slow). Setup (reading, the fit on the data, the design) is not
counted on either side: R's loop times itself (``seconds_per_simulation``), ours times
``runner.run`` after ``prepare``.

Measured in the same run, interleaved (R, ours on 1 process, ours on every core, R again), so that
both see the same machine load:

- ours, 1 process: the simulations in this process (after 5 untimed ones: the first refit imports
  the engine's inference modules, about 1 s);
- ours, every core: ``LocalRunner()`` with its worker processes already started (a second run;
  the first run's time, which includes starting the processes, is printed too).

``--agreement`` also runs every case of tests/expected/power_paperlike_public.json (R, 1,000
simulations per case) with 1,000 simulations of ours and prints both powers, the difference in
units of its Monte Carlo SD and the mean estimate (about 2 min on 2 cores).

``--dask`` (issue 28) also runs the simulations on a Dask cluster on loopback: a scheduler and one
single-threaded worker, then two, started from ``/`` with this environment's ``dask`` (as the README's
recipe does), and prints the speed-up of two workers over one (goal ≥ 1.7 on a 2-core machine) and
that the powers equal the local run's (same seed, same simulations).

The goal of issue 16: at least 5 × R's rate. Exit status 1 when it is missed (or, with ``--dask``,
the speed-up).
Run from the repository root: ``python bench/bench_power.py [--nsim 200] [--large] [--agreement] [--no-r] [--dask]``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.stats.power import power_analysis, prepare  # noqa: E402
from core.stats.power_run import LocalRunner  # noqa: E402
from core.stats.power_sim import simulate_chunk  # noqa: E402
from tests.power_cases import DATA, HYBRID, paperlike, r_power_reference  # noqa: E402

TERM, EFFECT = "alliance_within", -0.05
GOAL = 5.0


def r_rate(n_patients: int, nsim: int, test: str = "kr") -> float | None:
    """Simulations per second of R's loop (tests/r/reference_power.R) on the design for ``n_patients``."""
    if not shutil.which("Rscript"):
        return None
    roles = {r: r for r in ("patient", "session", "alliance", "symptoms", "therapist")}
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"bench": {"data": str(DATA), "roles": roles, "formula": HYBRID, "term": TERM, "effect": EFFECT,
                           "sizes": [n_patients], "nsim": nsim, "seed": 1, "test": test}}
        # reference_power.R reads data relative to the cases file: give it an absolute path's relative form
        cases["bench"]["data"] = os.path.relpath(DATA, tmp)
        (Path(tmp) / "cases.json").write_text(json.dumps(cases))
        out = Path(tmp) / "out.json"
        subprocess.run(["Rscript", str(ROOT / "tests" / "r" / "reference_power.R"), str(Path(tmp) / "cases.json"),
                        str(out)], check=True, capture_output=True, text=True)
        seconds = json.loads(out.read_text())["bench"]["power"][str(n_patients)]["seconds_per_simulation"]
    return 1.0 / seconds


def our_rate(data, n_patients: int, nsim: int, runner, warm_up: bool = False, test: str = "kr") -> tuple[float, float]:
    """``(simulations per second, power)`` of ``runner`` on the design for ``n_patients``
    (``warm_up``: first 5 untimed simulations in this process, for the imports of the first refit)."""
    designs, _ = prepare(data, HYBRID, TERM, effect=EFFECT, patients=[n_patients], seed=1, test=test)
    if warm_up:
        simulate_chunk(designs[0], nsim, nsim + 5)
    started = time.perf_counter()
    out = runner.run(designs, nsim)
    seconds = time.perf_counter() - started
    p = out[n_patients][:, 1]
    return nsim / seconds, float((p < 0.05).mean())


def speed(data, n_patients: int, nsim: int, use_r: bool, test: str = "kr", r_nsim: int | None = None) -> dict:
    print(f"\nN = {n_patients} patients, {nsim} simulations per measurement, test {test}", flush=True)
    r1 = r_rate(n_patients, r_nsim or nsim, test) if use_r else None
    if r1:
        print(f"  R loop (lme4 + lmerTest/pbkrtest): {r1:7.2f} simulations/s", flush=True)
    one, power_one = our_rate(data, n_patients, nsim, LocalRunner(1), warm_up=True, test=test)
    print(f"  ours, 1 process:                {one:7.1f} simulations/s (power {power_one:.3f})", flush=True)
    cores = os.cpu_count() or 1
    cold, _ = our_rate(data, n_patients, nsim, LocalRunner(cores), test=test)
    warm, power_all = our_rate(data, n_patients, nsim, LocalRunner(cores), test=test)
    print(f"  ours, {cores} processes (started):  {warm:7.1f} simulations/s (first run, starting the "
          f"processes: {cold:.1f}/s; power {power_all:.3f})", flush=True)
    r2 = r_rate(n_patients, r_nsim or nsim, test) if use_r else None
    if r2:
        print(f"  R loop again:                   {r2:7.1f} simulations/s", flush=True)
    r = (r1 + r2) / 2 if r1 and r2 else None
    result = {"test": test, "n_patients": n_patients, "nsim": nsim, "r_nsim": r_nsim or nsim, "r_per_s": r, "ours_1_process_per_s": one,
              "ours_all_cores_per_s": warm, "ours_all_cores_cold_per_s": cold, "cores": cores}
    if r:
        result["ratio_1_process"] = one / r
        result["ratio_all_cores"] = warm / r
        print(f"  ratio to R: {one / r:.1f}x on 1 process, {warm / r:.1f}x on {cores} processes "
              f"(goal: {GOAL:.0f}x)", flush=True)
    return result


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dask_speed_up(data, n_patients: int, nsim: int, test: str = "kr") -> dict:
    """Simulations per second on a loopback Dask cluster with one and with two single-threaded workers
    (each a second run, the first warming the workers), and the powers against the local run's."""
    from core.stats.power_run import DaskRunner

    dask = Path(sys.executable).with_name("dask")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    print(f"\nDask on loopback ({address}), N = {n_patients}, {nsim} simulations", flush=True)
    _, local_power = our_rate(data, n_patients, nsim, LocalRunner(1), test=test)
    procs = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    rates, powers = {}, {}
    try:
        for workers in (1, 2):
            procs.append(subprocess.Popen([str(dask), "worker", address, "--nthreads", "1", "--no-dashboard",
                                           "--name", f"w{workers}"], cwd="/", stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            from distributed import Client

            with Client(address, timeout=60) as client:
                client.wait_for_workers(workers, timeout=120)
            runner = DaskRunner(address, timeout=60)
            our_rate(data, n_patients, max(10, nsim // 10), runner, test=test)  # the workers import the engine
            rates[workers], powers[workers] = our_rate(data, n_patients, nsim, runner, test=test)
            print(f"  {workers} worker(s): {rates[workers]:7.1f} simulations/s (power {powers[workers]:.3f})", flush=True)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    up = rates[2] / rates[1]
    same = powers[1] == powers[2] == local_power
    print(f"  speed-up of 2 workers over 1: {up:.2f} (goal ≥ 1.7); power local {local_power:.3f}, "
          f"Dask {powers[1]:.3f} / {powers[2]:.3f}: {'the same' if same else 'DIFFERENT'}", flush=True)
    return {"n_patients": n_patients, "nsim": nsim, "one_worker_per_s": rates[1], "two_workers_per_s": rates[2],
            "speed_up": up, "same_power": same, "local_power": local_power}


def agreement(data) -> list[dict]:
    rows = []
    print("\nAgreement with R (1,000 simulations each side)")
    print(f"  {'case':26} {'N':>4} {'ours':>7} {'R':>7} {'z':>6}  mean estimate / effect")
    for name, case in r_power_reference().items():
        chosen = None if case["effect"] == case["observed"] else case["effect"]
        result = power_analysis(data, case["formula"], case["term"], effect=chosen,
                                patients=[int(n) for n in case["power"]], nsim=1000, seed=2027, runner=LocalRunner(),
                                test=case.get("test", "satterthwaite"))
        for point in result.points:
            r = case["power"][str(point.n_patients)]
            pooled = (point.power + r["power"]) / 2
            sd = math.sqrt(max(pooled * (1 - pooled), 1e-4) * 2 / 1000)
            z = (point.power - r["power"]) / sd
            rows.append({"case": name, "n": point.n_patients, "ours": point.power, "r": r["power"], "z": z,
                         "mean_estimate": point.mean_estimate, "effect": result.effect,
                         "failed": point.n_failed})
            print(f"  {name:26} {point.n_patients:>4} {point.power:7.3f} {r['power']:7.3f} {z:6.2f}  "
                  f"{point.mean_estimate:.4f} / {result.effect:.4f}", flush=True)
    worst = max(abs(r["z"]) for r in rows)
    print(f"  largest |z| over {len(rows)} comparisons: {worst:.2f}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsim", type=int, default=200)
    parser.add_argument("--large", action="store_true", help="also N = 1,600 patients")
    parser.add_argument("--agreement", action="store_true", help="also every R case at 1,000 simulations")
    parser.add_argument("--no-r", action="store_true")
    parser.add_argument("--test", choices=("kr", "satterthwaite"), default="kr")
    parser.add_argument("--r-nsim", type=int, help="R's simulations per measurement (default: --nsim)")
    parser.add_argument("--dask", action="store_true", help="also 1 and 2 Dask workers on loopback (issue 28)")
    parser.add_argument("--dask-only", action="store_true", help="only the Dask speed-up")
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    data = paperlike()
    if args.dask_only:
        dask = dask_speed_up(data, 96, max(args.nsim, 2000), args.test)
        return 0 if dask["speed_up"] >= 1.7 and dask["same_power"] else 1
    results = [speed(data, 96, args.nsim, not args.no_r, args.test, args.r_nsim)]
    dask = dask_speed_up(data, 96, max(args.nsim, 2000), args.test) if args.dask else None
    if args.large:
        results.append(speed(data, 1600, max(20, args.nsim // 10), not args.no_r, args.test,
                             max(5, (args.r_nsim or args.nsim) // 10)))
    rows = agreement(data) if args.agreement else []
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"power_{args.test}.json").write_text(json.dumps({"speed": results, "agreement": rows, "dask": dask},
                                                           indent=1))
    missed = [r for r in results if r.get("ratio_all_cores") is not None and r["ratio_all_cores"] < GOAL]
    if dask is not None and not (dask["speed_up"] >= 1.7 and dask["same_power"]):
        missed.append(dask)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
