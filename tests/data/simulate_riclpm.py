"""Session-by-session alliance and symptoms from a random-intercept cross-lagged panel model.

Stable person means (random intercepts, correlated) plus within-person components that follow a
bivariate VAR(1) with cross-lagged effects, observed with dropout, skipped sessions and sessions
where only one of the two questionnaires was filled in (written as an empty cell), as clinics
record them. Used to make ``tests/data/riclpm_gaps.csv``:

    python tests/data/simulate_riclpm.py tests/data/riclpm_gaps.csv --patients 150 --sessions 8 --seed 5
"""
import argparse

import numpy as np
import pandas as pd


def simulate(n_patients=150, n_sessions=8, seed=5, phi_a=0.35, phi_s=0.45, lag_as=-0.12, lag_sa=-0.20,
             sd_ria=0.55, sd_ris=0.35, r_ri=-0.3, sd_wa=0.45, sd_ws=0.25, r_w=-0.2, dropout=0.3,
             skip=0.08, partial=0.04, late_start=0.1):
    rng = np.random.default_rng(seed)
    ri_cov = np.array([[sd_ria**2, r_ri * sd_ria * sd_ris], [r_ri * sd_ria * sd_ris, sd_ris**2]])
    ri = rng.multivariate_normal([5.5, 1.8], ri_cov, n_patients)
    w_cov = np.array([[sd_wa**2, r_w * sd_wa * sd_ws], [r_w * sd_wa * sd_ws, sd_ws**2]])
    b = np.array([[phi_a, lag_sa], [lag_as, phi_s]])  # rows: alliance, symptoms at t; columns: at t-1
    trend = np.array([0.05, -0.06])  # the sample means move over sessions
    rows = []
    for i in range(n_patients):
        last = n_sessions if rng.random() > dropout else int(rng.integers(1, n_sessions))
        first = int(rng.integers(2, 4)) if rng.random() < late_start else 1
        w = rng.multivariate_normal([0, 0], w_cov)
        for t in range(1, last + 1):
            if t > 1:
                w = b @ w + rng.multivariate_normal([0, 0], w_cov)
            if t < first or (1 < t < last and rng.random() < skip):
                continue
            a, s = ri[i] + trend * (t - 1) + w
            if rng.random() < partial:
                if rng.random() < 0.5:
                    a = np.nan
                else:
                    s = np.nan
            rows.append((f"R{i:03d}", t, round(a, 3), round(s, 3)))
    return pd.DataFrame(rows, columns=["patient", "session", "alliance", "symptoms"])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--patients", type=int, default=150)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    df = simulate(a.patients, a.sessions, a.seed)
    df.to_csv(a.out, index=False)
    print(a.out, len(df), "rows", df["patient"].nunique(), "patients")
