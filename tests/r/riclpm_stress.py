"""Compare `fit_riclpm` with lavaan on many simulated data sets (needs R with lavaan; not part of
the test suite). Usage: .venv/bin/python tests/r/riclpm_stress.py N SEED  (files in /tmp/riclpm_stress)

Each data set: one of the two simulators in tests/data, 50-320 patients, 3-7 sessions, dropout
5-50%, equal lags or (35%) free lags. Prints per data set the time and the differences to lavaan
(log-likelihood, chi-square, alliance -> symptoms estimate in SE units and its SE, relative).
"""
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "data")]
import simulate_reference  # noqa: E402
import simulate_riclpm  # noqa: E402

from core.errors import ModelError  # noqa: E402
from core.stats.riclpm import fit_riclpm  # noqa: E402

OUT = Path("/tmp/riclpm_stress")


def main(n: int, seed: int) -> None:
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(n):
        kind = rng.choice(["ri", "ref"])
        patients, waves = int(rng.integers(50, 320)), int(rng.integers(3, 8))
        free, sim_seed = bool(rng.random() < 0.35), int(rng.integers(1000))
        if kind == "ri":
            data = simulate_riclpm.simulate(patients, waves + 1, sim_seed, dropout=float(rng.uniform(0.05, 0.5)),
                                            skip=float(rng.uniform(0, 0.15)))
        else:
            data = simulate_reference.simulate(patients, 8, waves, sim_seed, dropout=float(rng.uniform(0.05, 0.5)))
        csv, ref_path = OUT / f"s{seed}_{k}.csv", OUT / f"s{seed}_{k}.json"
        data.to_csv(csv, index=False)
        subprocess.run(["Rscript", str(ROOT / "tests" / "r" / "riclpm_reference.R"), str(csv), "1", str(waves),
                        str(ref_path)] + (["free"] if free else []), capture_output=True, check=True)
        ref = json.loads(ref_path.read_text())
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = fit_riclpm(pd.read_csv(csv, dtype={"patient": str}), 1, waves, free_lags=free)
        except ModelError as err:
            print(k, kind, patients, waves, free, "refused:", err, "| lavaan:", ref["fit"]["loglik"], ref["warnings"])
            continue
        got, want = fit.lagged["alliance_to_symptoms"], ref["lagged"]["alliance_to_symptoms"]
        if free:
            got, want = got[-1], want[-1]
        print(k, kind, patients, waves, free, f"{time.perf_counter() - start:.2f}s",
              f"dlogL={fit.fit['loglik'] - ref['fit']['loglik']:.2e}", f"dchisq={fit.fit['chisq'] - ref['fit']['chisq']:.2e}",
              f"dest/se={(got['estimate'] - want['estimate']) / want['se']:.1e}", f"dse={got['se'] / want['se'] - 1:.1e}",
              "lavaan warns" if ref["warnings"] else "", "we warn" if fit.warnings else "")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 99)
