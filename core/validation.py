"""Validation that loses nothing: from text cells to one clean long table.

The result of :func:`validate_table` is a :class:`ValidatedData` with

- ``data``: one row per patient and session: ``patient`` and ``therapist`` as text (leading zeros
  kept), ``session`` as a number, ``alliance`` and ``symptoms`` as floats, ``row`` (the
  spreadsheet row the values came from) and every other column of the file, as text;
- ``excluded``: every row that cannot be used, as ``row`` (spreadsheet row number: header = 1)
  and ``reason`` in plain words;
- ``notes``: things the user should know that do not exclude rows (e.g. a patient seen by two
  therapists, identical duplicates kept once, missing-value codes read as missing).

A row is used only when every mapped column has a valid value (as lme4 uses complete cases).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.errors import InputError
from core.mapping import ColumnMapping, WideLayout, MEASURES
from core.reading import ROW, RawTable
from core.reshape import wide_to_long

#: Cell texts read as "missing" (compared in lower case, stripped).
MISSING_TEXTS = frozenset({
    "", "na", "n/a", "n.a.", "nan", "null", "none", ".", "-", "--", "?", "missing", "#n/a",
    "#n/d", "#na", "s/d", "sd", "sin dato", "sin datos", "ns/nc", "no aplica", "falta",
})
#: Numeric codes commonly used for "missing" in clinical spreadsheets. A code counts as missing
#: only when it lies outside the measure's valid range (explicit, or else the range of the
#: column's other values), so an OQ-45 total of 99 stays a score.
MISSING_CODES = (-999.0, -99.0, -9.0, 99.0, 999.0)

_SESSION_LABEL = r"^\s*[A-Za-zÀ-ÿ.#º°:_\- ]{0,12}?(\d+)\s*$"


@dataclass(frozen=True)
class ValidatedData:
    """One validated long table, the rows left out with reasons, and notes for the user."""

    data: pd.DataFrame
    excluded: pd.DataFrame
    notes: tuple[str, ...]
    mapping: ColumnMapping
    source: str = "upload"
    n_rows_read: int = 0
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def measures(self) -> list[str]:
        """The measures present (``alliance``, ``symptoms``)."""
        return [m for m in MEASURES if m in self.data.columns]

    @property
    def has_therapist(self) -> bool:
        return "therapist" in self.data.columns

    def excluded_records(self) -> list[dict]:
        """Excluded rows as ``[{"row": N, "reason": "..."}]`` (the report format)."""
        return [{"row": int(r), "reason": str(t)} for r, t in
                zip(self.excluded["row"], self.excluded["reason"])]


def _append_reason(reasons: pd.Series, mask, message) -> pd.Series:
    """Add ``message`` (a string or a Series of strings) to ``reasons`` where ``mask`` holds."""
    mask = pd.Series(mask, index=reasons.index).fillna(False).astype(bool)
    if not mask.any():
        return reasons
    sep = np.where(reasons.eq(""), "", "; ")
    combined = reasons + sep + message
    return reasons.where(~mask, combined)


def parse_numbers(cells: pd.Series, decimal: str = ".") -> tuple[pd.Series, pd.Series, pd.Series]:
    """Parse text cells to floats.

    Returns ``(values, is_missing, is_non_numeric)``: ``is_missing`` marks empty cells and
    missing texts such as ``n/a``; ``is_non_numeric`` marks other text that is not a number.
    A decimal comma (``4,5``) is accepted in any file, and is the rule when ``decimal == ","``.
    """
    text = cells.astype(str).str.strip()
    is_missing = text.str.lower().isin(MISSING_TEXTS)
    if decimal == "," or text.str.contains(",", regex=False).any():
        text = text.str.replace(r"^([-+]?\d*),(\d+)$", r"\1.\2", regex=True)
    values = pd.to_numeric(text, errors="coerce").astype(float)
    values[~np.isfinite(values)] = np.nan
    is_non_numeric = values.isna() & ~is_missing
    return values, is_missing, is_non_numeric


def parse_sessions(cells: pd.Series) -> pd.Series:
    """Session numbers from cells like ``3``, ``3.0``, ``Session 3``, ``S3``, ``Sesión 3`` (NaN if none)."""
    text = cells.astype(str).str.strip()
    values = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce").astype(float)
    todo = values.isna() & text.ne("")
    if todo.any():
        extracted = text[todo].str.extract(_SESSION_LABEL, expand=False)
        values[todo] = pd.to_numeric(extracted, errors="coerce")
    return values


def _fmt(x: float) -> str:
    return f"{x:g}"


def validate_long(frame: pd.DataFrame, mapping: ColumnMapping, *, decimal: str = ".",
                  ranges: dict[str, tuple[float, float]] | None = None, source: str = "upload",
                  missing_codes=MISSING_CODES, notes=()) -> ValidatedData:
    """Validate a long table of text cells (one row per patient-session, with a ``row`` column).

    Checks, each row excluded with its reason(s): patient ID, therapist and session present and
    readable; each mapped measure a number (decimal point or comma), not a missing code, within
    ``ranges[measure] = (min, max)`` when given; then patient-session duplicates (identical rows
    kept once; conflicting rows all excluded, each naming the other rows).
    """
    columns = [c for c in frame.columns if c != ROW]
    mapping.check(columns)
    ranges = dict(ranges or {})
    notes = list(notes)
    n = len(frame)
    if n == 0:
        raise InputError(f"{source} has a header but no data rows.")
    idx = frame.index
    reasons = pd.Series("", index=idx, dtype=object)
    out = pd.DataFrame(index=idx)
    out[ROW] = frame[ROW].astype(int).values

    patient = frame[mapping.patient].astype(str).str.strip()
    reasons = _append_reason(reasons, patient.str.lower().isin(MISSING_TEXTS), "patient ID missing")
    out["patient"] = patient
    if mapping.therapist:
        therapist = frame[mapping.therapist].astype(str).str.strip()
        reasons = _append_reason(reasons, therapist.str.lower().isin(MISSING_TEXTS), "therapist missing")
        out["therapist"] = therapist

    raw_session = frame[mapping.session].astype(str).str.strip()
    session = parse_sessions(raw_session)
    reasons = _append_reason(reasons, raw_session.str.lower().isin(MISSING_TEXTS), "session missing")
    bad_session = session.isna() & ~raw_session.str.lower().isin(MISSING_TEXTS)
    reasons = _append_reason(reasons, bad_session, "session '" + raw_session + "' is not a session number")
    out["session"] = session

    for measure in MEASURES:
        col = getattr(mapping, measure)
        if not col:
            continue
        raw = frame[col].astype(str).str.strip()
        values, missing, non_numeric = parse_numbers(raw, decimal)
        reasons = _append_reason(reasons, missing, f"{measure} missing")
        reasons = _append_reason(reasons, non_numeric, f"{measure} '" + raw + "' is not a number")
        lo, hi = ranges.get(measure, (None, None))
        is_code = values.isin(missing_codes)
        if lo is None:
            ordinary = values[~is_code & values.notna()]
            lo_c, hi_c = (ordinary.min(), ordinary.max()) if len(ordinary) else (np.inf, -np.inf)
            code_missing = is_code & ((values < lo_c) | (values > hi_c))
        else:
            code_missing = is_code & ((values < lo) | (values > hi))
        if code_missing.any():
            reasons = _append_reason(reasons, code_missing,
                                     f"{measure} missing (code " + raw + ")")
            notes.append(f"{int(code_missing.sum())} {measure} values were missing-value codes "
                         f"({', '.join(sorted(set(raw[code_missing])))}) and were read as missing.")
        if lo is not None:
            outside = values.notna() & ~code_missing & ((values < lo) | (values > hi))
            reasons = _append_reason(reasons, outside, f"{measure} " + raw +
                                     f" is outside the allowed range {_fmt(lo)} to {_fmt(hi)}")
        out[measure] = values.where(~code_missing)

    # Everything else in the file comes along as text (renamed if it clashes with a role name).
    used = set(mapping.used().values())
    for col in columns:
        if col in used:
            continue
        name = col if col not in out.columns else f"{col} (file)"
        out[name] = frame[col].values

    ok = reasons.eq("")
    reasons = _duplicate_reasons(out, ok, mapping, reasons, notes)
    ok = reasons.eq("")
    excluded = pd.DataFrame({"row": out.loc[~ok, ROW].astype(int).values,
                             "reason": reasons[~ok].values}).sort_values("row", kind="stable")
    data = out.loc[ok].copy()
    if data.empty:
        top = excluded["reason"].str.split("; ").explode().value_counts()
        raise InputError(f"None of the {n} rows of {source} can be used. Most common problem: "
                         f"{top.index[0]} ({top.iloc[0]} rows). Check the column choices and ranges.")
    if (data["session"] % 1 == 0).all():
        data["session"] = data["session"].astype(np.int64)
    if "therapist" in data:
        per_patient = data.groupby("patient", sort=False)["therapist"].nunique()
        several = per_patient[per_patient > 1].index.tolist()
        if several:
            shown = ", ".join(several[:10]) + (" …" if len(several) > 10 else "")
            notes.append(f"{len(several)} patients were seen by more than one therapist ({shown}); "
                         "their rows are kept, each under the therapist named in that row.")
    data = data.sort_values(["patient", "session"], kind="stable").reset_index(drop=True)
    lead = ["patient", "therapist", "session", "alliance", "symptoms", ROW]
    data = data[[c for c in lead if c in data.columns] + [c for c in data.columns if c not in lead]]
    return ValidatedData(data=data, excluded=excluded.reset_index(drop=True), notes=tuple(notes),
                         mapping=mapping, source=source, n_rows_read=n, ranges=ranges)


def _duplicate_reasons(out: pd.DataFrame, ok: pd.Series, mapping: ColumnMapping,
                       reasons: pd.Series, notes: list[str]) -> pd.Series:
    """Reasons for rows that repeat a patient and session among the otherwise valid rows."""
    valid = out.loc[ok]
    dup = valid.duplicated(["patient", "session"], keep=False)
    if not dup.any():
        return reasons
    d = valid.loc[dup]
    sig_cols = [c for c in ("therapist", "alliance", "symptoms") if c in d.columns]
    signature = pd.util.hash_pandas_object(d[sig_cols], index=False) if sig_cols else pd.Series(0, index=d.index)
    key = [d["patient"], d["session"]]
    n_distinct = signature.groupby(key).transform("nunique")
    first_row = d[ROW].groupby(key).transform("first")
    identical = n_distinct.eq(1)
    repeat = identical & d[ROW].ne(first_row)
    message = pd.Series("", index=reasons.index, dtype=object)
    message[repeat[repeat].index] = ("identical duplicate of row " + first_row[repeat].astype(str)
                                     + " (that row is used)")
    conflicting = d.loc[~identical]
    if len(conflicting):
        rows = conflicting[ROW].astype(str).groupby([conflicting["patient"], conflicting["session"]]).agg(", ".join)
        joined = pd.Series(list(zip(conflicting["patient"], conflicting["session"])), index=conflicting.index).map(rows)
        message[conflicting.index] = ("conflicting duplicate: patient " + conflicting["patient"]
                                      + ", session " + conflicting["session"].map(_fmt)
                                      + " has different values in rows " + joined)
    n_identical = int(repeat.sum())
    if n_identical:
        notes.append(f"{n_identical} rows were identical copies of another row; each was used once.")
    return _append_reason(reasons, message.ne(""), message)


def validate_table(raw: RawTable, mapping: ColumnMapping, *,
                   ranges: dict[str, tuple[float, float]] | None = None,
                   wide: WideLayout | None = None) -> ValidatedData:
    """Validate a file as read. For a wide file, stack it to long first (:mod:`core.reshape`).

    With ``wide``, ``mapping`` names the id columns (patient, therapist); the session numbers
    come from the column names and the measures from ``wide.measures``.
    """
    if wide is not None:
        ids = [c for c in (mapping.patient, mapping.therapist) if c]
        if not mapping.patient:
            raise InputError("Choose the column that holds the patient ID.")
        if not wide.measures:
            raise InputError("Say which repeated columns hold the alliance and which the symptoms.")
        long = wide_to_long(raw.frame, wide, ids, session_name="session")
        long_mapping = ColumnMapping(patient=mapping.patient, therapist=mapping.therapist,
                                     session="session", alliance=wide.measures.get("alliance"),
                                     symptoms=wide.measures.get("symptoms"))
        return validate_long(long, long_mapping, decimal=raw.decimal, ranges=ranges,
                             source=raw.source, notes=raw.notes)
    return validate_long(raw.frame, mapping, decimal=raw.decimal, ranges=ranges,
                         source=raw.source, notes=raw.notes)
