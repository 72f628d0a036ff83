"""Time the two-stage IPD meta-analysis on a Flückiger-sized data set.

17 studies, 5,350 patients, up to 7 sessions (about 34,000 rows), simulated with
``tests/data/simulate_reference.py``'s ``multi_study(n_studies=17, total=5350, seed=7)``.
Times ``core.stats.meta.ipd_meta_analysis`` end to end (stage 1 in every study + stage 2), once with
REML and once with DL pooling; simulating the data is timed separately and not included.

Run from the repository root: ``python bench/bench_ipd_meta.py``
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from simulation import load_simulator  # noqa: E402

sys.path.insert(0, str(ROOT))

from core.stats.meta import ipd_meta_analysis  # noqa: E402


def main() -> None:
    simulator = load_simulator()
    start = time.perf_counter()
    data = simulator.multi_study(n_studies=17, total=5350, seed=7)
    simulate_seconds = time.perf_counter() - start
    print(f"data: {data['study'].nunique()} studies, {data['patient'].nunique()} patients, "
          f"{len(data)} rows (simulated in {simulate_seconds:.2f} s, not timed below)")

    import mixedlm  # noqa: F401  importing the engine once is not part of the analysis

    total = 0.0
    for method in ("reml", "dl"):
        start = time.perf_counter()
        result = ipd_meta_analysis(data, method=method)
        seconds = time.perf_counter() - start
        total += seconds
        pooled = result.pooled["alliance_to_symptoms"]
        print(f"ipd_meta_analysis method={method}: {seconds:.2f} s "
              f"(alliance->symptoms {pooled.estimate:.4f}, tau2 {pooled.tau2:.5f}, "
              f"I2 {pooled.i2:.1f}%)")
    print(f"total: {total:.2f} s")


if __name__ == "__main__":
    main()
