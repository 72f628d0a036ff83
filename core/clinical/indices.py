"""Clinical indices for therapists and supervisors: each session relative to the patient's own level.

- **Own level.** A patient's usual level on a measure is their mean over the sessions in the data;
  their own SD is the sample SD (ddof = 1) of those sessions. A session's deviation is
  ``score − own mean``, also in own-SD units (:func:`core.stats.decomposition.person_mean_center`).
- **Reliable change** (Jacobson & Truax, 1991). Change = last − first session score. With a
  reliable-change value RC in score points (OQ-45.2: 14; Lambert et al., 2004), change is reliable
  when ``|change| ≥ RC``. Where only a reliability r and the baseline SD are known,
  ``RC = 1.96 · √2 · SD · √(1 − r)`` (:func:`reliable_change_from_reliability`).
- **Jacobson–Truax status** for a measure where higher is worse (symptoms): *deteriorated* if the
  score rose reliably; *improved* if it fell reliably; *recovered* if it fell reliably and moved
  from the clinical range (above the cut-off) to the non-clinical range (at or below it);
  *unchanged* otherwise. Patients with one session have no status.
- **Rupture.** A session whose alliance lies more than ``threshold`` own SDs below the patient's own
  mean (default 1 SD). It is **repaired** when the patient's next session (session + 1) is back at or
  above ``own mean − threshold · own SD``; *not yet known* when there is no next session.
- **Ties.** A score exactly at a limit is treated as the definitions say: a change of exactly RC is
  reliable; a score exactly at the cut-off is in the non-clinical range; an alliance exactly
  ``threshold`` SDs below the own mean is not a rupture and counts as repaired. "Exactly" allows for
  rounding in the last digits (relative tolerance 1e-9, :data:`REL_TOL`), so ``1.9999999999999998``
  and ``2`` are the same SD and a change of 14/45 points is 14/45.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.stats.decomposition import person_mean_center

STATUS_ORDER = ("deteriorated", "unchanged", "improved", "recovered")
#: Relative tolerance of every comparison with a threshold (reliable change, cut-off, rupture limit).
REL_TOL = 1e-9


def at_limit(x, limit):
    """True where ``x`` equals ``limit`` up to rounding (relative tolerance :data:`REL_TOL`)."""
    x, limit = np.asarray(x, float), np.asarray(limit, float)
    with np.errstate(invalid="ignore"):
        return np.abs(x - limit) <= REL_TOL * np.maximum(np.abs(x), np.abs(limit))


def at_least(x, limit):
    """``x ≥ limit`` with ties up to rounding counted as equal."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(x, float) >= np.asarray(limit, float)) | at_limit(x, limit)


def below(x, limit):
    """``x < limit`` and not equal up to rounding (the complement of :func:`at_least` for numbers)."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(x, float) < np.asarray(limit, float)) & ~at_limit(x, limit)


def above(x, limit):
    """``x > limit`` and not equal up to rounding."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(x, float) > np.asarray(limit, float)) & ~at_limit(x, limit)


def at_most(x, limit):
    """``x ≤ limit`` with ties up to rounding counted as equal."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(x, float) <= np.asarray(limit, float)) | at_limit(x, limit)


def reliable_change_from_reliability(sd: float, reliability: float) -> float:
    """Jacobson & Truax (1991): ``RC = 1.96 · S_diff``, ``S_diff = √2 · SD · √(1 − r)``."""
    if not (0 <= reliability < 1) or not sd > 0:
        raise ValueError("reliability must be in [0, 1) and SD positive")
    return 1.96 * math.sqrt(2.0) * sd * math.sqrt(1.0 - reliability)


def jacobson_truax_status(first: float, last: float, reliable_change: float,
                          cutoff: float | None = None, higher_is_worse: bool = True) -> str:
    """``recovered``, ``improved``, ``unchanged`` or ``deteriorated`` (see module docstring).

    ``cutoff`` is the boundary between clinical and non-clinical range (OQ-45.2: 63.5, i.e. 64 and
    above is clinical). For measures where higher is better, the signs are mirrored.
    """
    if any(x is None or (isinstance(x, float) and math.isnan(x)) for x in (first, last)):
        return "unknown"
    improvement = (first - last) if higher_is_worse else (last - first)
    if at_most(improvement, -reliable_change):
        return "deteriorated"
    if below(improvement, reliable_change):
        return "unchanged"
    if cutoff is not None:
        clinical_before = above(first, cutoff) if higher_is_worse else below(first, cutoff)
        normal_after = at_most(last, cutoff) if higher_is_worse else at_least(last, cutoff)
        if clinical_before and normal_after:
            return "recovered"
    return "improved"


def patient_sessions(data: pd.DataFrame, measures: list[str], patient: str = "patient") -> pd.DataFrame:
    """Per session of every patient: each measure with its own mean, own SD and deviations.

    Columns per measure ``m``: ``m``, ``m_mean``, ``m_sd``, ``m_within`` (points) and
    ``m_within_sd`` (own-SD units); sorted by patient and session.
    """
    out = data.sort_values([patient, "session"]).copy()
    for m in measures:
        parts = person_mean_center(out, m, patient).drop(columns=[f"{m}_between"])
        out = out.join(parts)
    return out


def flag_ruptures(sessions: pd.DataFrame, threshold_sd: float = 1.0, patient: str = "patient",
                  alliance: str = "alliance") -> pd.DataFrame:
    """Add ``rupture`` (bool) and ``repaired`` (True/False, or NA when there is no next session).

    ``sessions`` comes from :func:`patient_sessions` (needs ``alliance_mean``/``alliance_sd``).
    """
    out = sessions.copy()
    limit = out[f"{alliance}_mean"] - threshold_sd * out[f"{alliance}_sd"]
    out["rupture_limit"] = limit
    out["rupture"] = pd.Series(below(out[alliance], limit), index=out.index) & out[f"{alliance}_sd"].gt(0)
    nxt = out[[patient, "session", alliance]].copy()
    nxt["session"] = nxt["session"] - 1
    nxt = nxt.rename(columns={alliance: "_next"})
    merged = out[[patient, "session"]].merge(nxt, on=[patient, "session"], how="left")
    next_value = pd.Series(merged["_next"].to_numpy(), index=out.index)
    repaired = pd.Series(pd.NA, index=out.index, dtype="boolean")
    has_next = out["rupture"] & next_value.notna()
    repaired[has_next] = at_least(next_value[has_next], limit[has_next])
    out["repaired"] = repaired
    return out


def expected_line(time_fixed: pd.DataFrame, fixed_cov: np.ndarray, times) -> pd.DataFrame:
    """The clinic's expected trajectory from a time model: ``b0 + b1·time`` with its 95% CI.

    ``time_fixed`` is the model's fixed table (terms ``intercept``, ``time``), ``fixed_cov`` the
    covariance matrix of those two estimates. The band is the confidence interval of the clinic
    average (normal quantile), not the spread of individual patients.
    """
    est = time_fixed.set_index("term")["estimate"]
    t = np.asarray(times, float)
    x = np.column_stack([np.ones_like(t), t])
    mean = x @ np.array([est["intercept"], est["time"]])
    se = np.sqrt(np.einsum("ij,jk,ik->i", x, fixed_cov, x))
    return pd.DataFrame({"time": t, "expected": mean, "low": mean - 1.96 * se, "high": mean + 1.96 * se})


def describe_session(row: pd.Series, measures: list[str], session_word: str = "session") -> str:
    """One plain sentence: how far each measure lay from the patient's usual level in this session.

    e.g. "In session 3 alliance was 0.80 points below this patient's usual level; symptoms were
    0.10 points above theirs."
    """
    parts = []
    for i, m in enumerate(measures):
        dev = row.get(f"{m}_within")
        if dev is None or pd.isna(dev):
            continue
        size = abs(dev)
        where = "at" if size < 0.005 else ("above" if dev > 0 else "below")
        amount = "" if where == "at" else f"{size:.2f} points "
        whose = "this patient's usual level" if not parts else "theirs"
        verb = "were" if m.endswith("s") else "was"
        parts.append(f"{m} {verb} {amount}{where} {whose}")
    if not parts:
        return ""
    text = f"In {session_word} {row['session']:g} " + "; ".join(parts) + "."
    return text


def caseload(sessions: pd.DataFrame, *, reliable_change: float | None, cutoff: float | None,
             higher_is_worse: bool = True, improvement_by: int = 4, patient: str = "patient",
             symptoms: str = "symptoms", alliance: str | None = "alliance") -> pd.DataFrame:
    """One row per patient, sorted by need for attention.

    Columns: ``patient``, ``therapist`` (if present), ``sessions``, ``first_session``,
    ``last_session``, ``first``/``last`` symptom score, ``change`` (last − first), ``status``
    (Jacobson–Truax; needs ``reliable_change``), ``no_reliable_improvement`` (True when the patient
    has reached session ``improvement_by`` and is not improved or recovered by then),
    ``ruptures`` and ``unrepaired`` (needs ``rupture`` columns from :func:`flag_ruptures`),
    ``above_cutoff`` (last score on the clinical side), ``attention`` (a short reason list) and
    ``priority`` (sort key: reliable deterioration 8, no reliable improvement by session N 4,
    unrepaired or unresolved rupture 2, above cut-off 1; summed).
    """
    g = sessions.sort_values([patient, "session"]).groupby(patient, sort=False)
    out = pd.DataFrame({
        "sessions": g["session"].count(),
        "first_session": g["session"].first(),
        "last_session": g["session"].last(),
        "first": g[symptoms].first(),
        "last": g[symptoms].last(),
    })
    if "therapist" in sessions.columns:
        out.insert(0, "therapist", g["therapist"].last())
    out["change"] = out["last"] - out["first"]
    if reliable_change is not None:
        improvement = -out["change"] if higher_is_worse else out["change"]
        status = np.where(at_most(improvement, -reliable_change), "deteriorated",
                          np.where(below(improvement, reliable_change), "unchanged", "improved"))
        if cutoff is not None:
            clinical_before = above(out["first"], cutoff) if higher_is_worse else below(out["first"], cutoff)
            normal_after = at_most(out["last"], cutoff) if higher_is_worse else at_least(out["last"], cutoff)
            status = np.where((status == "improved") & clinical_before & normal_after, "recovered", status)
        # first and last are the first and last sessions with a symptom score (blank cells skipped)
        status = np.where(g[symptoms].count().to_numpy() < 2, "unknown", status)
        out["status"] = status
        # status at session N: first score vs the score at session improvement_by
        at_n = sessions.loc[sessions["session"] == improvement_by].set_index(patient)[symptoms]
        first = out["first"]
        imp_n = (first - at_n.reindex(out.index)) if higher_is_worse else (at_n.reindex(out.index) - first)
        out["no_reliable_improvement"] = imp_n.notna() & below(imp_n, reliable_change)
    else:
        out["status"] = "unknown"
        out["no_reliable_improvement"] = False
    if "rupture" in sessions.columns:
        out["ruptures"] = g["rupture"].sum().astype(int)
        unrepaired = sessions["rupture"] & ~sessions["repaired"].fillna(False).astype(bool)
        out["unrepaired"] = unrepaired.groupby(sessions[patient]).sum().reindex(out.index).fillna(0).astype(int)
    else:
        out["ruptures"] = 0
        out["unrepaired"] = 0
    if cutoff is not None:
        out["above_cutoff"] = above(out["last"], cutoff) if higher_is_worse else below(out["last"], cutoff)
    else:
        out["above_cutoff"] = False
    det = out["status"].eq("deteriorated")
    noimp = out["no_reliable_improvement"]
    rup = out["unrepaired"].gt(0)
    over = out["above_cutoff"]
    out["priority"] = 8 * det + 4 * noimp + 2 * rup + 1 * over
    reasons = pd.Series("", index=out.index)
    for mask, text in ((det, "reliable deterioration"), (noimp, f"no reliable improvement by session {improvement_by}"),
                       (rup, "rupture not repaired (or no session since)"), (over, "above cut-off")):
        reasons = reasons.where(~mask, reasons + np.where(reasons.eq(""), "", "; ") + text)
    out["attention"] = reasons
    out = out.reset_index().rename(columns={"index": patient})
    return out.sort_values(["priority", "change"], ascending=[False, not higher_is_worse],
                           kind="stable").reset_index(drop=True)


def find_patients(patients: list[str], query: str, limit: int = 500) -> tuple[list[str], int]:
    """Patient IDs matching ``query`` (case-insensitive): the exact match first, then IDs starting
    with it, then IDs containing it, each group in the order of ``patients``. Returns at most
    ``limit`` IDs and the number of all matches. An empty query matches every ID."""
    q = (query or "").strip().casefold()
    if not q:
        return list(patients[:limit]), len(patients)
    exact, starts, contains = [], [], []
    for p in patients:
        f = str(p).casefold()
        if f == q:
            exact.append(p)
        elif f.startswith(q):
            starts.append(p)
        elif q in f:
            contains.append(p)
    found = exact + starts + contains
    return found[:limit], len(found)


def therapist_trajectories(data: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Mean of ``measure`` per therapist and session with a 95% CI (mean ± t(n−1) · SD/√n)."""
    from scipy import stats

    g = data.groupby(["therapist", "session"])[measure]
    out = g.agg(n="count", mean="mean", sd="std").reset_index()
    q = stats.t.ppf(0.975, (out["n"] - 1).clip(lower=1))
    half = q * out["sd"] / np.sqrt(out["n"])
    out["low"] = out["mean"] - half.where(out["n"] > 1)
    out["high"] = out["mean"] + half.where(out["n"] > 1)
    return out


def therapist_icc_sentence(icc_therapist: float | None, outcome: str = "symptoms") -> str:
    """The therapist ICC in plain words."""
    if icc_therapist is None:
        return "With fewer than two therapists, differences between therapists cannot be estimated."
    pct = 100 * icc_therapist
    size = "almost none" if pct < 1 else "a small part" if pct < 5 else "a notable part" if pct < 10 else "a large part"
    return (f"{pct:.1f}% of the differences in {outcome} lie between therapists ({size}); the rest lies "
            "between patients of the same therapist and between sessions of the same patient.")
