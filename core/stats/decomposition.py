"""Within/between decomposition, time coding, lags and descriptive summaries.

Definitions (Falkenström et al., 2017; Curran & Bauer, 2011), used by every model and view:

- ``time`` = session − the smallest session number in the data (0 at the first session).
- patient mean ``x̄_i`` = mean of patient *i*'s scores on measure *x*.
- ``between`` = ``x̄_i`` − mean of the patient means (grand mean of patient means, each patient
  weighted once, as in the reference lme4 scripts).
- ``within`` = ``x_ti`` − ``x̄_i`` (deviation from the patient's own mean); ``within_sd`` =
  ``within`` / the patient's own standard deviation (sample SD, ``ddof=1``; missing when the
  patient has fewer than two scores or no variation).
- lag-1 values by session number: the value at session ``s − 1`` of the same patient; a gap
  (session ``s − 1`` not attended) gives a missing lag, not the previous row.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def code_time(sessions: pd.Series) -> pd.Series:
    """``time = session − min(session)`` over the whole data set."""
    return sessions - sessions.min()


def patient_runs(data: pd.DataFrame, patient: str = "patient", session: str = "session") -> np.ndarray | None:
    """Each row's patient number (0, 1, … in order) when the rows are already in patient and session
    order (as ``data.sort_values([patient, session], kind="stable")`` would leave them), else None.

    The patients are then runs of rows: grouping by these numbers gives what grouping by the patient
    IDs gives, without hashing every ID (a million rows: 5 ms instead of 70 ms per grouping, 0.1 s
    per sort saved). Needs no missing patient or session.

    >>> d = pd.DataFrame({"patient": ["a", "a", "b"], "session": [1, 2, 1]})
    >>> patient_runs(d).tolist()
    [0, 0, 1]
    >>> patient_runs(d.iloc[::-1]) is None
    True
    """
    n = len(data)
    if n < 2:
        return np.zeros(n, dtype=np.intp) if n == 0 or data[patient].notna().all() else None
    ids = data[patient]
    sessions = pd.to_numeric(data[session], errors="coerce").to_numpy(float)
    if ids.isna().any() or np.isnan(sessions).any():
        return None
    values = ids.array
    try:
        same = np.asarray(values[1:] == values[:-1], dtype=bool)
        ascending = np.asarray(values[:-1] <= values[1:], dtype=bool)
    except TypeError:  # IDs that do not compare (numbers and text): sort them
        return None
    if not (ascending.all() and (~same | (sessions[1:] >= sessions[:-1])).all()):
        return None
    return np.r_[0, np.cumsum(~same)]


def sort_by_patient(data: pd.DataFrame, patient: str = "patient", session: str = "session", *,
                    with_patient: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """``data`` in patient and session order (a stable sort; ``data`` itself when it already is) and
    each row's patient number (:func:`patient_runs`; where a patient or session is missing,
    ``pd.factorize``'s codes, −1 for a missing patient). ``with_patient``: rows without a patient
    left out first, as grouping by the patient does (for one row per patient)."""
    if with_patient and data[patient].isna().any():
        data = data[data[patient].notna()]
    runs = patient_runs(data, patient, session)
    if runs is not None:
        return data, runs
    out = data.sort_values([patient, session], kind="stable")
    runs = patient_runs(out, patient, session)
    return out, runs if runs is not None else pd.factorize(out[patient], sort=False)[0]


def patient_numbers(data: pd.DataFrame, patient: str = "patient", session: str = "session") -> np.ndarray:
    """Each row's patient number, numbered in order of first appearance (``pd.factorize(…,
    sort=False)``), at the cost of a comparison when the rows are in patient and session order."""
    runs = patient_runs(data, patient, session) if session in data.columns else None
    return runs if runs is not None else pd.factorize(data[patient], sort=False)[0]


def person_mean_center(data: pd.DataFrame, value: str, patient: str = "patient",
                       groups: np.ndarray | None = None) -> pd.DataFrame:
    """Split ``value`` into a between-patient and a within-patient part.

    Returns a DataFrame aligned with ``data`` with columns ``{value}_mean`` (patient mean),
    ``{value}_between`` (patient mean − mean of patient means), ``{value}_within`` (score −
    patient mean), ``{value}_sd`` (patient's own SD) and ``{value}_within_sd`` (within / own SD).
    ``groups``: each row's patient number (:func:`patient_numbers`), when the caller has it.
    """
    groups = data[value].groupby(groups if groups is not None else data[patient], sort=False)
    mean = groups.transform("mean")
    grand = groups.mean().mean()
    sd = groups.transform("std")  # ddof=1
    within = data[value] - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        within_sd = within / sd.where(sd > 0)
    return pd.DataFrame({  # arrays, not Series: a million rows' index is not aligned five times
        f"{value}_mean": mean.to_numpy(),
        f"{value}_between": (mean - grand).to_numpy(),
        f"{value}_within": within.to_numpy(),
        f"{value}_sd": sd.to_numpy(),
        f"{value}_within_sd": within_sd.to_numpy(),
    }, index=data.index)


def lag_by_session(data: pd.DataFrame, columns: list[str], patient: str = "patient",
                   session: str = "session", suffix: str = "_lag") -> pd.DataFrame:
    """Lag-1 values of ``columns``: the same patient's value at session − 1, else missing.

    A patient who skipped session 3 has no lag at session 4 (the previous row is session 2,
    which is not one session earlier). Returns a DataFrame aligned with ``data``.
    """
    prev = data[[patient, session, *columns]].copy()
    prev[session] = prev[session] + 1
    prev = prev.drop_duplicates([patient, session])
    merged = data[[patient, session]].merge(prev, on=[patient, session], how="left")
    merged.index = data.index
    return merged[columns].add_suffix(suffix)


def add_model_terms(data: pd.DataFrame, predictor: str = "alliance", patient: str = "patient",
                    session: str = "session") -> pd.DataFrame:
    """The model columns of the contract: ``time``, and ``between``/``within`` of ``predictor``.

    Returns a copy of ``data`` with ``time`` and, when ``predictor`` is present, ``between`` and
    ``within`` added (see the module docstring for the definitions).
    """
    out = data.copy()
    out["time"] = code_time(out[session])
    if predictor in out.columns:
        parts = person_mean_center(out, predictor, patient)
        out["between"] = parts[f"{predictor}_between"].to_numpy()
        out["within"] = parts[f"{predictor}_within"].to_numpy()
    return out


def decompose(data: pd.DataFrame, measures: list[str], patient: str = "patient",
              session: str = "session") -> pd.DataFrame:
    """The full decomposition every view uses: time, means, deviations and lags of each measure."""
    out = data.copy()
    out["time"] = code_time(out[session])
    # Columns are added by position: an index with repeated labels (e.g. from pd.concat) must
    # not multiply rows, as a join on the index would.
    for m in measures:
        parts = person_mean_center(out, m, patient)
        for col in parts.columns:
            out[col] = parts[col].to_numpy()
    lags = lag_by_session(out, [*measures, *[f"{m}_within" for m in measures]], patient, session)
    for col in lags.columns:
        out[col] = lags[col].to_numpy()
    return out


def session_summary(data: pd.DataFrame, measures: list[str], session: str = "session") -> pd.DataFrame:
    """Per session: number of patients and mean and SD (ddof=1) of each measure, tidy."""
    g = data.groupby(session)
    parts = []
    for m in measures:
        s = g[m].agg(["count", "mean", "std"]).rename(columns={"count": "n", "std": "sd"})
        s.insert(0, "measure", m)
        parts.append(s.reset_index())
    return pd.concat(parts, ignore_index=True)


def measure_correlations(data: pd.DataFrame, measures: list[str], patient: str = "patient") -> pd.DataFrame:
    """Pearson r between measures: over all observations, between patient means, and within patients.

    Tidy columns: ``level`` (``observations``, ``between``, ``within``), ``measure_1``,
    ``measure_2``, ``r``, ``n``.
    """
    rows = []
    if len(measures) < 2:
        return pd.DataFrame(columns=["level", "measure_1", "measure_2", "r", "n"])
    means = data.groupby(patient)[measures].mean()
    within = data[measures] - data.groupby(patient)[measures].transform("mean")
    for i, a in enumerate(measures):
        for b in measures[i + 1:]:
            for level, frame in (("observations", data), ("between", means), ("within", within)):
                pair = frame[[a, b]].dropna()
                r = pair[a].corr(pair[b]) if len(pair) > 2 else np.nan
                rows.append({"level": level, "measure_1": a, "measure_2": b, "r": r, "n": len(pair)})
    return pd.DataFrame(rows)


def dropout(data: pd.DataFrame, k: int = 4, patient: str = "patient", session: str = "session") -> dict:
    """Patients with fewer than ``k`` sessions in the data (the ANS study: 22.9% before session 4).

    Counts distinct sessions per patient. Returns ``{"k", "n_patients", "n_dropout", "share"}``.
    """
    runs = patient_runs(data, patient, session)
    if runs is not None:  # rows in patient and session order: a new session is a new value in its run
        values = data[session].to_numpy()
        new = np.r_[True, (runs[1:] != runs[:-1]) | (values[1:] != values[:-1])]
        per_patient = np.bincount(runs, weights=new)
    else:
        per_patient = data.groupby(patient)[session].nunique().to_numpy()
    n_drop = int((per_patient < k).sum())
    n = int(len(per_patient))
    return {"k": k, "n_patients": n, "n_dropout": n_drop, "share": n_drop / n if n else np.nan}
