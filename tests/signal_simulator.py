"""Simulated clinics with planted deteriorating patients, for checking the early-warning signal.

Each patient has a true starting level and a course over sessions; the observed score is the true
level plus measurement error, on the OQ-45.2 total scale (0-180, higher = worse) unless told
otherwise. Three kinds of patients:

- **typical**: improve along a log-shaped curve with a patient-specific size of improvement
  (some hardly improve, a few get a little worse), as clinic data show (Lambert et al., 2004);
- **deteriorating** (planted, ``share_deteriorating``): symptoms rise steadily from the intake,
  by ``rise`` points per session on average (OQ-45.2 reliable change: 14 points; ``rise=4``
  puts them about 20 points above their start by session 6, ``rise=2.8`` exactly one reliable
  change);
- every patient can drop out (``dropout``) after 2 to ``n_sessions - 1`` sessions.

The first observed session is the intake. Measurement error makes a high intake partly luck, so
typical patients who start high improve more on average (regression to the mean), which a fair
signal must not mistake for being on or off track.

``shape``: ``"log"`` (improvement ``gain · ln(session)``) or ``"linear"`` (``gain · (session − 1) / 4``,
as the demo clinic's straight lines). ``scale``: ``"oq_total"`` (0-180), ``"oq_item"`` (the total / 45, 0-4) or ``"wellbeing"`` (a
1-7 scale where *lower* is worse: 7 - total / 30). ``heteroscedastic`` makes measurement error
grow with the level (floor effects). Returns ``patient, therapist, session, symptoms, kind``
(kind: typical / deteriorating) and ``intake_true``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_clinic(n_patients: int = 400, n_therapists: int = 12, n_sessions: int = 10,
                    share_deteriorating: float = 0.12, rise: float = 4.0, seed: int = 1,
                    scale: str = "oq_total", intake_mean: float = 80.0, intake_sd: float = 20.0,
                    improvement_mean: float = 10.0, improvement_sd: float = 6.0,
                    noise_sd: float = 6.5, dropout: float = 0.25, heteroscedastic: bool = False,
                    shape: str = "log", share_nonresponding: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_det = int(round(share_deteriorating * n_patients))
    kind = np.array(["deteriorating"] * n_det + ["typical"] * (n_patients - n_det))
    rng.shuffle(kind)
    therapist = rng.integers(0, n_therapists, n_patients)
    true0 = rng.normal(intake_mean, intake_sd, n_patients)
    # improvement per log-session: larger for patients who start higher (more room to improve)
    gain = rng.normal(improvement_mean, improvement_sd, n_patients) + 0.08 * (true0 - intake_mean)
    rise_i = rng.normal(rise, 1.0, n_patients).clip(min=rise / 2)
    if share_nonresponding > 0:  # drawn from a stream of their own: the other patients stay as they were
        extra = np.random.default_rng([seed, 1])
        typical = np.flatnonzero(kind == "typical")
        chosen = extra.choice(typical, min(len(typical), int(round(share_nonresponding * n_patients))), replace=False)
        kind[chosen] = "nonresponding"
        gain[chosen] = extra.normal(0.0, 1.5, len(chosen))
    attended = np.full(n_patients, n_sessions)
    drop = rng.random(n_patients) < dropout
    attended[drop] = rng.integers(2, n_sessions, drop.sum())
    rows = []
    for i in range(n_patients):
        for s in range(1, attended[i] + 1):
            if kind[i] == "deteriorating":
                level = true0[i] + rise_i[i] * (s - 1)
            else:
                level = true0[i] - gain[i] * (np.log(s) if shape == "log" else (s - 1) / 4)
            sd = noise_sd * (0.5 + level / intake_mean) if heteroscedastic else noise_sd
            y = float(np.clip(level + rng.normal(0, max(sd, 1.0)), 0, 180))
            rows.append((f"P{i:04d}", f"T{therapist[i]:02d}", s, y, kind[i], true0[i]))
    out = pd.DataFrame(rows, columns=["patient", "therapist", "session", "symptoms", "kind", "intake_true"])
    if scale == "oq_item":
        out["symptoms"] = (out["symptoms"] / 45).round(3)
    elif scale == "wellbeing":
        out["symptoms"] = (7 - out["symptoms"] / 30).round(3)
    else:
        out["symptoms"] = out["symptoms"].round()
    return out


def flag_rates(data: pd.DataFrame, sessions: pd.DataFrame, horizon: int = 8) -> dict:
    """The issue's figures on a simulated clinic (``kind`` says who was planted), from the signal's
    ``sessions``: ``det`` share of deteriorating patients with 6 sessions flagged not on track by
    session 6 (``n_det`` of them); ``typical`` share of typical patients (on the expected course)
    ever flagged by session ``horizon``; ``typical_6`` the same by session 6 among those with 6
    sessions; ``quartiles`` the ``typical`` share in each intake quartile and ``quartile_gap`` the
    largest minus the smallest; ``high`` / ``low`` for typical patients who started above / at or
    below the median intake, ``gap`` = high − low; ``nonresponding`` the share of non-responding
    patients ever flagged by session ``horizon``. An empty group gives NaN."""
    s = sessions.merge(data[["patient", "session", "kind"]], on=["patient", "session"])
    length = s.groupby("patient")["course_session"].max()
    kind = s.groupby("patient")["kind"].first()
    red = s["status"].eq("not_on_track")
    red_by_6 = set(s.loc[s["course_session"].le(6) & red, "patient"])
    red_ever = set(s.loc[s["course_session"].le(horizon) & red, "patient"])
    det = kind.index[(kind == "deteriorating") & (length >= 6)]
    typical = kind.index[kind == "typical"]
    intake = s.groupby("patient")["intake"].first()[typical]
    high, low = typical[intake > intake.median()], typical[intake <= intake.median()]

    def rate(ids, flagged=red_ever) -> float:
        return float(np.mean([p in flagged for p in ids])) if len(ids) else float("nan")

    quarter = pd.qcut(intake.rank(method="first"), 4, labels=False) if len(typical) >= 4 else pd.Series(dtype=float)
    quartiles = [rate(typical[(quarter == q).to_numpy()]) for q in range(4)] if len(quarter) else []
    six = typical[(length[typical] >= 6).to_numpy()]
    return {"det": rate(det, red_by_6), "n_det": len(det), "typical": rate(typical), "typical_6": rate(six, red_by_6),
            "quartiles": quartiles, "quartile_gap": (max(quartiles) - min(quartiles)) if quartiles else float("nan"),
            "high": rate(high), "low": rate(low), "gap": rate(high) - rate(low),
            "nonresponding": rate(kind.index[kind == "nonresponding"])}
