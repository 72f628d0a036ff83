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
  :func:`flag_ruptures` uses the mean and SD over the whole course (the published decomposition,
  for research); :func:`flag_ruptures_so_far` the mean and SD of the sessions up to and including
  that one (what the therapist could see that day; a flag never changes when later sessions come).
- **Ties.** A score exactly at a limit is treated as the definitions say: a change of exactly RC is
  reliable; a score exactly at the cut-off is in the non-clinical range; an alliance exactly
  ``threshold`` SDs below the own mean is not a rupture and counts as repaired. "Exactly" allows for
  rounding in the last digits (relative tolerance 1e-9, :data:`REL_TOL`), so ``1.9999999999999998``
  and ``2`` are the same SD and a change of 14/45 points is 14/45.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from core.i18n import _, number
from core.intake.mapping import role_name
from core.stats.decomposition import person_mean_center, sort_by_patient

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
    out, groups = sort_by_patient(data, patient)
    out = out.copy(deep=False)  # copy-on-write: the new columns never reach ``data``
    for m in measures:
        parts = person_mean_center(out, m, patient, groups=groups)
        for col in parts.columns.drop(f"{m}_between"):
            out[col] = parts[col].to_numpy()
    return out


def flag_ruptures(sessions: pd.DataFrame, threshold_sd: float = 1.0, patient: str = "patient",
                  alliance: str = "alliance") -> pd.DataFrame:
    """Add ``rupture`` (bool) and ``repaired`` (True/False, or NA when there is no next session).

    ``sessions`` comes from :func:`patient_sessions` (needs ``alliance_mean``/``alliance_sd``).
    """
    out = sessions.copy(deep=False)  # copy-on-write: the new columns never reach ``sessions``
    limit = out[f"{alliance}_mean"] - threshold_sd * out[f"{alliance}_sd"]
    return _mark_ruptures(out, limit, out[f"{alliance}_sd"], patient, alliance)


def _mark_ruptures(out: pd.DataFrame, limit: pd.Series, sd: pd.Series, patient: str, alliance: str,
                   groups: np.ndarray | None = None) -> pd.DataFrame:
    """``rupture_limit``, ``rupture`` (alliance below the limit, with the tie tolerance, and an SD
    above 0) and ``repaired`` (the next session, session + 1, at or above the limit; NA without one)."""
    out["rupture_limit"] = limit
    out["rupture"] = pd.Series(below(out[alliance], limit), index=out.index) & sd.gt(0)
    next_value = pd.Series(_next_session_values(out, patient, alliance, groups), index=out.index)
    repaired = pd.Series(pd.NA, index=out.index, dtype="boolean")
    has_next = out["rupture"] & next_value.notna()
    repaired[has_next] = at_least(next_value[has_next], limit[has_next])
    out["repaired"] = repaired
    return out


def _next_session_values(out: pd.DataFrame, patient: str, value: str, groups: np.ndarray | None = None) -> np.ndarray:
    """``value`` at the same patient's session + 1 (NaN where there is none), for every row
    (``groups``: the rows' patient numbers when they are in patient and session order)."""
    if groups is not None:
        order, codes = np.arange(len(out)), groups
    else:
        codes = pd.factorize(out[patient])[0]
        order = np.lexsort((out["session"].to_numpy(float), codes))
        codes = codes[order]
    session = out["session"].to_numpy(float)[order]
    values = out[value].to_numpy(float)[order]
    nxt = np.full(len(out), np.nan)
    if len(out) > 1:
        follows = (codes[1:] == codes[:-1]) & (session[1:] == session[:-1] + 1)
        nxt[:-1][follows] = values[1:][follows]
    result = np.empty(len(out))
    result[order] = nxt
    return result


def _expanding_mean_sd(values: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the mean and SD (ddof = 1) of the group's non-missing values up to that row, rows
    grouped by ``codes`` and in order within each group (pandas' ``groupby().expanding()``, from
    running sums of the values less each group's first value, which keeps them well conditioned)."""
    n = len(values)
    valid = ~np.isnan(values)
    starts = np.r_[True, codes[1:] != codes[:-1]] if n else np.zeros(0, bool)
    group = np.cumsum(starts) - 1
    first = pd.Series(values).groupby(group).transform("first").to_numpy(float)  # first non-missing
    shifted = np.where(valid, values - first, 0.0)

    def running(x):  # cumulative sum within each group
        return pd.Series(x).groupby(group).cumsum().to_numpy(float)

    count = running(valid.astype(float))
    s1, s2 = running(shifted), running(shifted * shifted)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, first + s1 / count, np.nan)
        var = np.where(count > 1, np.maximum(s2 - s1 * s1 / count, 0.0) / (count - 1), np.nan)
    return mean, np.sqrt(var)


def flag_ruptures_so_far(sessions: pd.DataFrame, threshold_sd: float = 1.0, patient: str = "patient",
                         alliance: str = "alliance") -> pd.DataFrame:
    """Rupture flags against the patient's mean and SD *so far* (prospective).

    For session t: ``alliance_mean_so_far`` and ``alliance_sd_so_far`` (ddof = 1) over that
    patient's alliance scores at sessions up to and including t; ``alliance_within_so_far`` =
    alliance − mean so far (points) and ``alliance_within_so_far_sd`` (in SDs so far);
    ``rupture_limit`` = mean so far − ``threshold_sd`` · SD so far; ``rupture`` when alliance lies
    below it (needs two scores so far and an SD above 0); ``repaired`` when the next session
    (session + 1) is at or above that limit, NA when there is no next session. At the patient's last
    session these equal :func:`flag_ruptures`' full-course values; before it they never use later
    sessions, so a flag a therapist saw does not change when the next score arrives.

    >>> d = pd.DataFrame({"patient": "A", "session": [1, 2, 3, 4], "alliance": [5.5, 5.5, 3.5, 5.5]})
    >>> flag_ruptures_so_far(d)[["rupture", "repaired"]].values.tolist()
    [[False, <NA>], [False, <NA>], [True, True], [False, <NA>]]
    """
    out, groups = sort_by_patient(sessions, patient)
    out = out.copy(deep=False)  # copy-on-write: the new columns never reach ``sessions``
    mean, sd = _expanding_mean_sd(out[alliance].to_numpy(float), groups)
    out[f"{alliance}_mean_so_far"] = mean
    out[f"{alliance}_sd_so_far"] = sd
    dev = out[alliance] - out[f"{alliance}_mean_so_far"]
    out[f"{alliance}_within_so_far"] = dev
    sdv = out[f"{alliance}_sd_so_far"]
    out[f"{alliance}_within_so_far_sd"] = dev / sdv.where(sdv > 0)
    limit = out[f"{alliance}_mean_so_far"] - threshold_sd * sdv
    return _mark_ruptures(out, limit, sdv, patient, alliance, groups)


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


def _deviation_clauses():
    """The clause for one measure's deviation from the patient's usual level, by (where, first
    clause, plural name): the first clause names "this patient's usual level", later ones "theirs"."""
    return {
        ("at", True, False): _("{measure} was at this patient's usual level"),
        ("at", True, True): _("{measure} were at this patient's usual level"),
        ("above", True, False): _("{measure} was {amount:.2f} points above this patient's usual level"),
        ("above", True, True): _("{measure} were {amount:.2f} points above this patient's usual level"),
        ("below", True, False): _("{measure} was {amount:.2f} points below this patient's usual level"),
        ("below", True, True): _("{measure} were {amount:.2f} points below this patient's usual level"),
        ("at", False, False): _("{measure} was at theirs"),
        ("at", False, True): _("{measure} were at theirs"),
        ("above", False, False): _("{measure} was {amount:.2f} points above theirs"),
        ("above", False, True): _("{measure} were {amount:.2f} points above theirs"),
        ("below", False, False): _("{measure} was {amount:.2f} points below theirs"),
        ("below", False, True): _("{measure} were {amount:.2f} points below theirs"),
    }


def describe_session(row: pd.Series, measures: list[str], session_word: str | None = None) -> str:
    """One plain sentence: how far each measure lay from the patient's usual level in this session.

    e.g. "In session 3 alliance was 0.80 points below this patient's usual level; symptoms were
    0.10 points above theirs."
    """
    clauses = _deviation_clauses()
    parts = []
    for i, m in enumerate(measures):
        dev = row.get(f"{m}_within")
        if dev is None or pd.isna(dev):
            continue
        size = abs(dev)
        where = "at" if size < 0.005 else ("above" if dev > 0 else "below")
        parts.append(clauses[(where, not parts, m.endswith("s"))].format(measure=role_name(m), amount=size))
    if not parts:
        return ""
    return _("In {session_word} {session:g} {clauses}.").format(
        session_word=_("session") if session_word is None else session_word, session=row["session"],
        clauses="; ".join(parts))


#: Caseload order: the signal first (red, then yellow), then a rupture not repaired, then the rest.
PRIORITY = {"not_on_track": 64, "at_risk": 32, "unrepaired": 16, "deteriorated": 8, "no_improvement": 4,
            "above_cutoff": 1}


def caseload(sessions: pd.DataFrame, *, reliable_change: float | None, cutoff: float | None,
             higher_is_worse: bool = True, improvement_by: int = 4, patient: str = "patient",
             symptoms: str = "symptoms", alliance: str | None = "alliance",
             signal: pd.DataFrame | None = None, reasons: bool = True) -> pd.DataFrame:
    """One row per patient, sorted by need for attention.

    Columns: ``patient``, ``therapist`` (if present), ``signal`` (the early-warning status of the
    latest session, from ``signal``: :func:`core.clinical.signal.patient_signal`), ``attention``
    (the reasons, in words), ``sessions``, ``first_session``, ``last_session``, ``first``/``last``
    symptom score, ``change`` (last − first), ``status`` (Jacobson–Truax; needs
    ``reliable_change``), ``no_reliable_improvement`` (True when the patient has reached session
    ``improvement_by`` and has *still* not improved reliably from the first session: it clears once
    they have), ``ruptures`` and ``unrepaired`` (needs ``rupture`` columns from
    :func:`flag_ruptures_so_far` or :func:`flag_ruptures`), ``above_cutoff`` (last score on the
    clinical side) and ``priority``: not on track 64, at risk 32, a rupture not repaired (or no
    session since) 16, reliable deterioration 8, no reliable improvement by session N 4, above the
    cut-off 1; summed, highest first — so the red patients come first, then the yellow, then those
    with an unrepaired rupture, then the rest. ``signal_session`` and ``rupture_session`` (the
    session of the signal and of the last unrepaired rupture) are what the reasons say.

    ``reasons=False``: every ``attention`` is "" (the rest is the same, in no language): 130,000
    patients' reasons cost a second, and a page shows 200; :func:`attention_reasons` writes the
    reasons of the rows shown, or of every row for an export.
    """
    ordered, codes = sort_by_patient(sessions, patient, with_patient=True)
    g = ordered.groupby(codes, sort=False)  # patients as runs of rows: no ID hashed
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else np.zeros(0, int)
    out = pd.DataFrame({
        "sessions": g["session"].count().to_numpy(),
        "first_session": g["session"].first().to_numpy(),
        "last_session": g["session"].last().to_numpy(),
        "first": g[symptoms].first().to_numpy(),
        "last": g[symptoms].last().to_numpy(),
    }, index=pd.Index(ordered[patient].iloc[starts].array))  # the IDs' own type: no million Python strings
    if "therapist" in sessions.columns:
        out.insert(0, "therapist", g["therapist"].last().to_numpy())
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
        # the current state: reached session N, and not (yet) reliably improved from the first session
        reached = out["last_session"].ge(improvement_by)
        out["no_reliable_improvement"] = reached & improvement.notna() & below(improvement, reliable_change)
    else:
        out["status"] = "unknown"
        out["no_reliable_improvement"] = False
    last_unrepaired_session = pd.Series(np.nan, index=out.index)
    if "rupture" in sessions.columns:
        rupture = ordered["rupture"].to_numpy(dtype=bool, na_value=False)
        unrepaired = rupture & ~ordered["repaired"].to_numpy(dtype=bool, na_value=False)
        out["ruptures"] = np.bincount(codes, weights=rupture, minlength=len(out)).astype(int)
        out["unrepaired"] = np.bincount(codes, weights=unrepaired, minlength=len(out)).astype(int)
        last_unrepaired_session = pd.Series(pd.Series(ordered["session"].to_numpy(float)).where(unrepaired)
                                            .groupby(codes, sort=False).max().to_numpy(), index=out.index)
    else:
        out["ruptures"] = 0
        out["unrepaired"] = 0
    if cutoff is not None:
        out["above_cutoff"] = above(out["last"], cutoff) if higher_is_worse else below(out["last"], cutoff)
    else:
        out["above_cutoff"] = False
    if signal is not None and len(signal):
        sig = signal.set_index("patient")
        out["signal"] = sig["status"].reindex(out.index).fillna("unknown")
        signal_reason = (sig["summary"] if "summary" in sig else sig["reason"]).reindex(out.index).fillna("")
        signal_session = sig["session"].reindex(out.index)
    else:
        out["signal"] = "unknown"
        signal_reason = pd.Series("", index=out.index)
        signal_session = pd.Series(np.nan, index=out.index)
    red = out["signal"].eq("not_on_track")
    yellow = out["signal"].eq("at_risk")
    det = out["status"].eq("deteriorated")
    noimp = out["no_reliable_improvement"].astype(bool)
    rup = out["unrepaired"].gt(0)
    over = out["above_cutoff"].astype(bool)
    out["priority"] = (PRIORITY["not_on_track"] * red + PRIORITY["at_risk"] * yellow + PRIORITY["unrepaired"] * rup
                       + PRIORITY["deteriorated"] * det + PRIORITY["no_improvement"] * noimp
                       + PRIORITY["above_cutoff"] * over)
    out["signal_session"] = signal_session.to_numpy(float)
    out["rupture_session"] = last_unrepaired_session.to_numpy(float)
    out["attention"] = (attention_reasons(out, dict(zip(out.index, signal_reason.to_numpy())), improvement_by)
                        if reasons else "")
    out = out.reset_index().rename(columns={"index": patient})
    lead = [c for c in (patient, "therapist", "signal", "attention") if c in out.columns]
    out = out[lead + [c for c in out.columns if c not in lead]]
    return out.sort_values(["priority", "change"], ascending=[False, not higher_is_worse],
                           kind="stable").reset_index(drop=True)


def attention_reasons(rows: pd.DataFrame, summaries, improvement_by: int = 4, patient: str = "patient") -> list[str]:
    """The reasons of :func:`caseload` rows in words (its ``attention``), in the current language:
    the signal with its session and ``summaries[patient]`` (the signal's short reason of that
    session, :func:`core.clinical.signal.patient_signal`'s ``summary``), an unrepaired rupture,
    reliable deterioration, no reliable improvement by session ``improvement_by``, above the
    cut-off; joined by "; ". ``rows``: caseload rows (the patient as a column or the index)."""
    from core.clinical.signal import status_label

    # 130,000 patients' reasons: plain templates filled with numbers written once per distinct value
    # (LocalText.format writes each number the language's way one call at a time: seconds)
    status_at = _plain_template(_("{status} at session {session:g}"))
    rupture_at = _plain_template(_("rupture in session {session:g} not repaired (or no session since)"))
    rupture_no_session = str(_("rupture not repaired (or no session since)"))
    deterioration = _plain_template(_("reliable deterioration since the first session ({change:+.3g})"))
    no_improvement = _("no reliable improvement by session {session} (still none)").format(session=improvement_by)
    above_cutoff = str(_("above the clinical cut-off"))
    labels = {s: status_label(s) for s in ("not_on_track", "at_risk")}
    session_text, change_text = _number_memo("g"), _number_memo("+.3g")
    ids = rows[patient] if patient in rows.columns else rows.index
    reasons = []
    columns = (ids.to_numpy(), rows["signal"].to_numpy(), rows["signal_session"].to_numpy(float),
               rows["unrepaired"].gt(0).to_numpy(), rows["rupture_session"].to_numpy(float),
               rows["status"].eq("deteriorated").to_numpy(), rows["change"].to_numpy(),
               rows["no_reliable_improvement"].astype(bool).to_numpy(), rows["above_cutoff"].astype(bool).to_numpy())
    for who, sig_status, when, has_rup, rup_when, is_det, change, is_noimp, is_above in zip(*columns):
        parts = []
        if sig_status in labels:
            label = labels[sig_status]
            why = summaries.get(who, "")
            text = status_at.format(status=label, session=session_text(when)) if when == when else label
            parts.append(f"{text}: {why}" if why else text)
        if has_rup:
            parts.append(rupture_at.format(session=session_text(rup_when)) if rup_when == rup_when
                         else rupture_no_session)
        if is_det:
            parts.append(deterioration.format(change=change_text(change)))
        if is_noimp:
            parts.append(no_improvement)
        if is_above:
            parts.append(above_cutoff)
        reasons.append("; ".join(parts))
    return reasons


def caseload_reasons(rows: pd.DataFrame, signal_sessions: pd.DataFrame, improvement_by: int = 4,
                     decimals: tuple[int, int] | None = None) -> pd.DataFrame:
    """``rows`` of a :func:`caseload` made with ``reasons=False``, with their ``attention`` written
    (:func:`attention_reasons`), the signal's summaries from ``signal_sessions`` (every session's
    signal, :func:`core.clinical.signal.session_signal`; only the rows' patients are read) with the
    whole table's ``decimals`` (:func:`core.clinical.signal.summary_decimals`)."""
    from core.clinical.signal import patient_summaries, summary_decimals

    if decimals is None:
        decimals = summary_decimals(signal_sessions["observed"])
    if rows.empty:
        return rows
    ids = rows["patient"]
    mine = signal_sessions[signal_sessions["patient"].isin(ids)] if len(ids) < 10_000 else signal_sessions
    return rows.assign(attention=attention_reasons(rows, patient_summaries(mine, decimals), improvement_by))


def _plain_template(template: str) -> str:
    """A template with its fields' format specs removed (``{session:g}`` → ``{session}``), to be
    filled with numbers already written (:func:`_number_memo`) by the built-in ``str.format``."""
    return re.sub(r"\{(\w+):[^{}]*\}", r"{\1}", str(template))


def _number_memo(spec: str):
    """``number(value, spec)`` (the language's separators and minus sign), each distinct value written once."""
    memo: dict = {}

    def write(value) -> str:
        text = memo.get(value)
        if text is None:
            text = memo[value] = number(value, spec)
        return text
    return write


def therapist_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per therapist, from :func:`caseload`: ``patients``, and for *not on track now* (the latest
    session's signal), *deteriorated* (Jacobson–Truax, first to last session) and *unrepaired
    rupture* the count and the percentage of that therapist's patients. Sorted by therapist.
    Case mix differs between therapists, so these are not a ranking of therapists."""
    if "therapist" not in table.columns:
        return pd.DataFrame()
    g = table.groupby("therapist", sort=True)
    out = pd.DataFrame({"patients": g.size()})
    for name, mask in (("not on track now", table["signal"].eq("not_on_track")),
                       ("deteriorated", table["status"].eq("deteriorated")),
                       ("unrepaired rupture", table["unrepaired"].gt(0))):
        n = mask.groupby(table["therapist"]).sum().reindex(out.index).fillna(0).astype(int)
        out[name] = n
        out[f"{name} (%)"] = (100.0 * n / out["patients"]).round(1)
    return out.reset_index()


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


#: Fewest patients at a session for a therapist's 95% CI: with 2, t(1) = 12.7 makes the interval span
#: the whole scale many times over (−800 to +950 on a 0–180 scale), which says nothing and flattens
#: every line; the mean and its n are shown instead.
MIN_PATIENTS_FOR_CI = 3


def therapist_trajectories(data: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Mean of ``measure`` per therapist and session with a 95% CI (mean ± t(n−1) · SD/√n), where at
    least :data:`MIN_PATIENTS_FOR_CI` patients have a score at that session (``low``, ``high``
    missing elsewhere); ``n``: the patients with a score."""
    from scipy.special import stdtrit  # scipy.stats.t.ppf's function, without loading scipy.stats

    g = data.groupby(["therapist", "session"])[measure]
    out = g.agg(n="count", mean="mean", sd="std").reset_index()
    q = stdtrit((out["n"] - 1).clip(lower=1), 0.975)
    half = (q * out["sd"] / np.sqrt(out["n"])).where(out["n"] >= MIN_PATIENTS_FOR_CI)
    out["low"] = out["mean"] - half
    out["high"] = out["mean"] + half
    return out


def therapist_share(data: pd.DataFrame, outcome: str = "symptoms") -> float | None:
    """The therapists' share of the variance of ``outcome``: τ²_therapist / (τ²_therapist +
    τ²_patient + σ²) of the REML three-level unconditional model ``outcome ~ 1 + (1 | therapist) +
    (1 | therapist:patient)`` (lme4: ``lmer(outcome ~ 1 + (1 | therapist/patient), REML = TRUE)``;
    :func:`core.stats.models.compute_iccs`). None without a therapist column or when the model
    cannot be fitted (e.g. a single therapist).

    >>> from pathlib import Path
    >>> d = pd.read_csv(Path(__file__).parents[2] / "tests" / "data" / "multistudy_public.csv")
    >>> round(therapist_share(d), 3)  # lme4 (tests/expected/multistudy_public_ladder.json): 0.191554
    0.192
    """
    from core.errors import ModelError
    from core.stats.decomposition import add_model_terms
    from core.stats.models import build_model, compute_iccs, fit_model

    if "therapist" not in data.columns:
        return None
    spec = build_model(outcome, None, therapist_level=True, key="unconditional_3level")
    try:
        model = fit_model(add_model_terms(data), spec, ml=False)
    except ModelError:
        return None
    return compute_iccs({"unconditional_3level": model})["therapist"]


def therapist_icc_sentence(icc_therapist: float | None, outcome: str = "symptoms") -> str:
    """The therapist ICC in plain words."""
    if icc_therapist is None:
        return _("With fewer than two therapists, differences between therapists cannot be estimated.")
    pct = 100 * icc_therapist
    size = (_("almost none") if pct < 1 else _("a small part") if pct < 5 else _("a notable part") if pct < 10
            else _("a large part"))
    return _("{percent:.1f}% of the differences in {outcome} lie between therapists ({size}); the rest lies "
             "between patients of the same therapist and between sessions of the same patient.").format(
        percent=pct, outcome=role_name(outcome), size=size)
