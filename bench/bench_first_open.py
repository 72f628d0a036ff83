"""Several openers of a fresh SQLite clinic database at once, many times (issue 25): the
reproduction of the flaky ``tests/test_storage.py::test_several_processes_opening_an_empty_database_at_once``.

Each round makes a new folder and starts ``--openers`` threads that each open
``sqlite:///…/clinic.db`` with :class:`core.store.ClinicStore` (create, migrate, seed the demo)
at the same moment, as the test does. A round fails when an opener raises (before the fix:
``OperationalError: database is locked`` from ``PRAGMA journal_mode = WAL``, which SQLite answers
at once, without waiting, while another connection writes the new file) or when the openers
see different pseudonym secrets. Run from the repository root, best on a busy machine:

    .venv/bin/python bench/bench_first_open.py --rounds 500 --openers 4

Exits 1 when any round failed. Figures of the last runs: bench/README.md.
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.store import ClinicStore  # noqa: E402


def one_round(openers: int) -> list[str]:
    """Open one fresh database from ``openers`` threads at once; the errors (empty: it held)."""
    folder = tempfile.mkdtemp(prefix="first-open-")
    url = f"sqlite:///{folder}/clinic.db"
    errors, secrets = [], []
    start = threading.Barrier(openers)

    def open_it():
        try:
            start.wait()
            store = ClinicStore(url, bcrypt_rounds=4)
            secrets.append(store._secret)
            store.seed_demo()
            store.close()
        except Exception as err:  # noqa: BLE001 - what the round reports
            errors.append(f"{type(err).__name__}: {str(err).splitlines()[0]}")

    threads = [threading.Thread(target=open_it) for _ in range(openers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not errors and len(set(secrets)) != 1:
        errors.append(f"{len(set(secrets))} different pseudonym secrets")
    shutil.rmtree(folder, ignore_errors=True)
    return errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--openers", type=int, default=4)
    args = ap.parse_args()
    started = time.monotonic()
    failures: collections.Counter[str] = collections.Counter()
    failed_rounds = 0
    for _ in range(args.rounds):
        errors = one_round(args.openers)
        failed_rounds += bool(errors)
        failures.update(errors)
    print(f"bench_first_open: {args.rounds} rounds of {args.openers} openers, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, {time.monotonic() - started:.0f} s: "
          f"{failed_rounds} rounds failed")
    for error, n in failures.most_common():
        print(f"  {n} x {error}")
    return 1 if failed_rounds else 0


if __name__ == "__main__":
    sys.exit(main())
