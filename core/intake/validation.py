"""Validation that loses nothing: from text cells to one clean long table.

The result of :func:`validate_table` is a :class:`ValidatedData` with

- ``data``: one row per patient and session: ``patient`` and ``therapist`` as text (leading zeros
  kept), ``session`` as a number, ``alliance`` and ``symptoms`` as floats, ``row`` (the
  spreadsheet row the values came from) and every other column of the file, as text (an
  unmapped column named like a role, e.g. ``alliance``, becomes ``alliance (file)``);
- ``excluded``: every row that cannot be used, as ``row`` (spreadsheet row number: header = 1)
  and ``reason`` in plain words;
- ``notes``: things the user should know that do not exclude rows (e.g. a patient seen by two
  therapists, identical duplicates kept once, missing-value codes read as missing).

A session is kept when its patient and session are readable and at least one mapped measure has a
usable value; a measure cell that is missing, not a number or out of range becomes missing (NaN) and
``cell_reasons`` says why. Each model then uses the rows complete for its own variables (lme4's
``na.omit``, :mod:`core.stats.formula`) and lists the others; descriptive views use every
available score. A session with no usable measure at all is excluded here with the reasons.
Numbers are limited to what a score or a session number can be: a value that does not fit in a
float (``1e309``), ``inf``, or a value beyond ±:data:`LARGEST_VALUE` is not used, with that reason
(no questionnaire score or session number is that large, and such values would overflow the
models' arithmetic). A valid range must be finite with its minimum below its maximum.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.errors import InputError, some_names
from core.i18n import _, ngettext
from core.intake.mapping import MEASURES, ROLES, ColumnMapping, WideLayout, role_name
from core.intake.reading import ROW, RawTable
from core.intake.reshape import wide_to_long

#: Cell texts read as "missing" (compared in lower case, stripped).
MISSING_TEXTS = frozenset({
    "", "na", "n/a", "n.a.", "nan", "null", "none", ".", "-", "--", "?", "missing", "#n/a",
    "#n/d", "#na", "s/d", "sd", "sin dato", "sin datos", "ns/nc", "no aplica", "falta",
})
#: Cell texts read as a missing patient ID or therapist. Short codes that are also plausible
#: initials or IDs (``NA``, ``SD``) are not among them: a therapist "SD" is a therapist.
ID_MISSING_TEXTS = MISSING_TEXTS - {"na", "sd"}
#: Numeric codes commonly used for "missing" in clinical spreadsheets. A code counts as missing
#: only when it lies outside the measure's valid range (explicit, or else the range of the
#: column's other values), so an OQ-45 total of 99 stays a score.
MISSING_CODES = (-999.0, -99.0, -9.0, 99.0, 999.0)

#: The largest magnitude a score or session number may have; larger values are excluded as
#: typing or export errors (they would also overflow the models' sums of squares).
LARGEST_VALUE = 1e6

_SESSION_LABEL = r"^\s*[A-Za-zÀ-ÿ.#º°:_\- ]{0,20}?(\d+)\s*$"
# Unambiguous (linear time in any regex engine): "\d+\.?\d*" backtracks quadratically on a
# long run of digits without a match (32,000 digits and an "x": 44 s in Python's re).
_PLAIN_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"


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
    #: Why a kept row's measure is missing (aligned with ``data``; one text column per measure,
    #: ``""`` where the value is present), e.g. ``"alliance 9 is outside the allowed range 1 to 7"``.
    cell_reasons: pd.DataFrame | None = field(default=None, compare=False)
    #: With a post-treatment score mapped: the patients without a usable one, as ``patient, row, reason``
    #: (``row``: the patient's first spreadsheet row); None when no post-treatment column is mapped.
    post_missing: pd.DataFrame | None = field(default=None, compare=False)

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

    def rows_missing(self, measures: list[str] | None = None) -> pd.DataFrame:
        """Kept rows without a usable value of one of ``measures`` (default: every measure),
        as ``row, reason``: what a model that needs those measures leaves out besides ``excluded``."""
        measures = self.measures if measures is None else [m for m in measures if m in self.data.columns]
        if not measures:
            return self.excluded.iloc[0:0]
        cells = self.cell_reasons
        texts = []
        for m in measures:
            why = (cells[m] if cells is not None and m in cells.columns
                   else pd.Series("", index=self.data.index)).astype(str)
            texts.append(why.where(why.ne("") | self.data[m].notna(), _("{measure} missing").format(measure=role_name(m))))
        joined = texts[0] if len(texts) == 1 else pd.concat(texts, axis=1).apply(
            lambda r: "; ".join(t for t in r if t), axis=1)
        keep = joined.ne("").to_numpy()
        return pd.DataFrame({"row": self.data.loc[keep, ROW].astype(int).to_numpy(),
                             "reason": pd.array(joined[keep].to_numpy(), dtype=object)})

    def excluded_for(self, measures: list[str] | None = None) -> pd.DataFrame:
        """``excluded`` plus :meth:`rows_missing` of ``measures``, by row."""
        both = pd.concat([self.excluded, self.rows_missing(measures)], ignore_index=True)
        return both.sort_values("row", kind="stable").reset_index(drop=True)


class _Reasons:
    """The reasons of every row, written only where a check fails (fast on large, clean files).

    Rows are addressed by position (``validate_long`` works on a 0..n-1 index). ``kinds`` counts
    each kind of problem (without the cell values) for the message when no row can be used.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self._text: np.ndarray | None = None  # made at the first reason: a clean file needs none
        self.bad = np.zeros(n, dtype=bool)
        self.kinds: dict[str, int] = {}

    @property
    def text(self) -> np.ndarray:
        if self._text is None:
            self._text = np.full(self.n, "", dtype=object)
        return self._text

    @text.setter
    def text(self, value: np.ndarray) -> None:
        self._text = value

    def text_at(self, pos: np.ndarray) -> np.ndarray:
        """The reasons at the positions ``pos`` ("" where none)."""
        return self._text[pos] if self._text is not None else np.full(len(pos), "", dtype=object)

    def add(self, mask, message, kind: str | None = None) -> None:
        """Add ``message`` where ``mask`` holds: a string, or a Series indexed by the rows concerned."""
        if isinstance(mask, pd.Series):
            mask = mask.to_numpy(dtype=bool, na_value=False)
        pos = np.flatnonzero(np.asarray(mask, dtype=bool))
        if not len(pos):
            return
        if isinstance(message, str):
            msg = np.full(len(pos), message, dtype=object)
            kind = kind or message
        else:
            msg = message.reindex(pos).to_numpy(dtype=object)
        old = self.text_at(pos)
        self.text[pos] = np.where(self.bad[pos], old + "; " + msg, msg)
        self.bad[pos] = True
        key = kind or _("other problems")
        self.kinds[key] = self.kinds.get(key, 0) + len(pos)


def _to_float(text: pd.Series) -> pd.Series:
    """Floats from stripped text cells (decimal point); NaN where a cell is not a finite number.

    Plain numbers (``-1.5``, ``2``, ``1e3``) take a fast vectorised path; anything else goes
    through :func:`pandas.to_numeric`.
    """
    values = np.full(len(text), np.nan)
    plain = text.str.fullmatch(_PLAIN_NUMBER).to_numpy(dtype=bool, na_value=False)
    if plain.any():
        subset = text[plain]
        try:  # pyarrow's cast is about ten times faster than parsing through Python floats
            values[plain] = subset.astype("float64[pyarrow]").to_numpy(dtype=float, na_value=np.nan)
        except Exception:  # no pyarrow, or a cell its cast refuses
            values[plain] = pd.to_numeric(subset, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    rest = ~plain & text.ne("").to_numpy(dtype=bool, na_value=False)
    if rest.any():
        values[rest] = pd.to_numeric(text[rest], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    values[~np.isfinite(values)] = np.nan
    return pd.Series(values, index=text.index)


def parse_numbers(cells: pd.Series, decimal: str = ".") -> tuple[pd.Series, pd.Series, pd.Series]:
    """Parse text cells to floats.

    Returns ``(values, is_missing, is_non_numeric)``: ``is_missing`` marks empty cells and
    missing texts such as ``n/a``; ``is_non_numeric`` marks other text that is not a number.
    A decimal comma (``4,5``) is accepted in any file, and is the rule when ``decimal == ","``.
    """
    text = cells.astype(str).str.strip()
    is_missing = text.str.lower().isin(MISSING_TEXTS)
    has_comma = text.str.contains(",", regex=False).to_numpy(dtype=bool, na_value=False)
    if has_comma.any():
        text = text.copy()
        text[has_comma] = text[has_comma].str.replace(r"^([-+]?\d*),(\d+)$", r"\1.\2", regex=True)
    values = _to_float(text)
    is_non_numeric = values.isna() & ~is_missing
    return values, is_missing, is_non_numeric


def parse_sessions(cells: pd.Series) -> pd.Series:
    """Session numbers from cells like ``3``, ``3.0``, ``Session 3``, ``S3``, ``Sesión 3`` (NaN if none)."""
    text = cells.astype(str).str.strip()
    has_comma = text.str.contains(",", regex=False).to_numpy(dtype=bool, na_value=False)
    values = _to_float(text.str.replace(",", ".", regex=False) if has_comma.any() else text)
    todo = values.isna() & text.ne("")
    if todo.any():
        extracted = text[todo].str.extract(_SESSION_LABEL, expand=False)
        values[todo] = pd.to_numeric(extracted, errors="coerce")
    return values


def _fmt(x: float) -> str:
    return f"{x:g}"


_MARK = re.compile("\x00(\\d+)\x00")


def format_rows(template: str, **values) -> pd.Series:
    """``template.format(**values)`` for every row at once: Series values are per row (text),
    other values the same in every row. The template is formatted once, with a marker where each
    Series goes, and the rows' texts are joined around the markers (vectorised).

    >>> list(format_rows("{measure} '{value}' is not a number", measure="alliance", value=pd.Series(["x", "y"])))
    ["alliance 'x' is not a number", "alliance 'y' is not a number"]
    """
    series = {k: v for k, v in values.items() if isinstance(v, pd.Series)}
    names = list(series)
    marks = {k: f"\x00{i}\x00" for i, k in enumerate(names)}
    parts = _MARK.split(template.format(**{**values, **marks}))
    out = parts[0]
    for k in range(1, len(parts), 2):
        out = out + series[names[int(parts[k])]].astype(str) + parts[k + 1]
    return out


def _short(text: pd.Series, width: int = 40) -> pd.Series:
    """Cell texts for a reason, cut to ``width`` characters (a cell may hold 32,767)."""
    long = text.str.len() > width
    if long.any():
        text = text.where(~long, text.str.slice(0, width - 1) + "…")
    return text


def _beyond_float(text: pd.Series, where: pd.Series | None = None) -> pd.Series:
    """Where a text cell is a number too large for a float (``1e309``) or infinite (``inf``);
    only the cells marked in ``where`` are looked at (the others are False)."""
    out = pd.Series(False, index=text.index)
    if where is not None:
        mask = where.to_numpy(dtype=bool, na_value=False)
        if not mask.any():
            return out
        out[mask] = _beyond_float(text[mask]).to_numpy()
        return out
    if len(text):
        numbers = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce")
        out = pd.Series(np.isinf(numbers.to_numpy(dtype=float, na_value=np.nan)), index=text.index)
    return out


def check_ranges(ranges: dict[str, tuple[float, float]]) -> None:
    """Raise :class:`InputError` unless each range is two finite numbers, minimum below maximum."""
    for measure, bounds in ranges.items():
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise InputError(_("The {measure} range must be two numbers, a minimum and a maximum "
                               "(for example 1 and 7).").format(measure=role_name(measure))) from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InputError(_("The {measure} range {lo:g} to {hi:g} is not a range of finite numbers; give "
                               "a finite minimum and maximum (for example 1 and 7).").format(
                measure=role_name(measure), lo=lo, hi=hi))
        if not lo < hi:
            raise InputError(_("The {measure} range {lo:g} to {hi:g} has its minimum not below its maximum; "
                               "give a minimum below the maximum (for example 1 and 7).").format(
                measure=role_name(measure), lo=lo, hi=hi))


def validate_long(frame: pd.DataFrame, mapping: ColumnMapping, *, decimal: str = ".",
                  ranges: dict[str, tuple[float, float]] | None = None, source: str = "upload",
                  missing_codes=MISSING_CODES, notes=(), name_sessions: bool = False,
                  explanations: dict[str, pd.Series] | None = None, allow_empty: bool = False) -> ValidatedData:
    """Validate a long table of text cells (one row per patient-session, with a ``row`` column).

    Checks, each row excluded with its reason(s): patient ID, therapist and session present and
    readable; each mapped measure a number (decimal point or comma), not a missing code, within
    ``ranges[measure] = (min, max)`` when given; then patient-session duplicates (identical rows
    kept once; conflicting rows all excluded, each naming the other rows).

    ``name_sessions`` starts each reason with the session (``"session 3: ..."``), for tables
    stacked from a wide file, where one spreadsheet row holds several sessions.

    ``explanations[measure]`` (optional, indexed like ``frame``) says in words why a measure
    cell is empty, e.g. ``"2 of 12 items missing (more than 10%)"`` from item scoring
    (:mod:`core.intake.instruments`); such a row's reason becomes ``"symptoms missing: 2 of 12 ..."``.

    ``allow_empty``: when no row can be used, return the empty table with every row's reason
    instead of refusing (for a caller that validates parts of one input, e.g. each measure of a
    FHIR bundle, and refuses only when no part is usable).
    """
    columns = [c for c in frame.columns if c != ROW]
    mapping.check(columns)
    ranges = dict(ranges or {})
    check_ranges(ranges)
    notes = list(notes)
    n = len(frame)
    if n == 0:
        raise InputError(_("{source} has a header but no data rows.").format(source=source))
    why = {}
    for measure, texts in (explanations or {}).items():
        if not texts.index.equals(frame.index):
            texts = texts.reindex(frame.index)
        why[measure] = pd.Series(texts.fillna("").astype(str).str.strip().to_numpy(dtype=object))
    frame = frame.reset_index(drop=True)  # rows are addressed by position below
    reasons = _Reasons(n)
    out = pd.DataFrame(index=frame.index)
    out[ROW] = frame[ROW].astype(int).values

    patient = frame[mapping.patient].astype(str).str.strip()
    reasons.add(patient.str.lower().isin(ID_MISSING_TEXTS), _("patient ID missing"))
    out["patient"] = patient
    if mapping.therapist:
        therapist = frame[mapping.therapist].astype(str).str.strip()
        reasons.add(therapist.str.lower().isin(ID_MISSING_TEXTS), _("therapist missing"))
        out["therapist"] = therapist

    raw_session = frame[mapping.session].astype(str).str.strip()
    session = parse_sessions(raw_session)
    session_missing = raw_session.str.lower().isin(MISSING_TEXTS)
    reasons.add(session_missing, _("session missing"))
    bad_session = session.isna() & ~session_missing
    huge_session = (bad_session & _beyond_float(raw_session, bad_session)) | (session.abs() > LARGEST_VALUE)
    bad_session &= ~huge_session
    reasons.add(bad_session, format_rows(_("session '{value}' is not a session number"), value=_short(raw_session[bad_session])),
                kind=_("session is not a session number"))
    reasons.add(huge_session, format_rows(_("session {value} is beyond ±{limit:,.0f}, larger than a session number can be"),
                                    value=_short(raw_session[huge_session]), limit=LARGEST_VALUE),
                kind=_("session beyond ±{limit:,.0f}").format(limit=LARGEST_VALUE))
    out["session"] = session.where(~huge_session)

    measure_reasons: dict[str, _Reasons] = {}
    row_reasons = reasons
    for measure in MEASURES:
        col = getattr(mapping, measure)
        if not col:
            continue
        reasons = measure_reasons[measure] = _Reasons(n)
        name = role_name(measure)
        raw = frame[col].astype(str).str.strip()
        values, missing, non_numeric = parse_numbers(raw, decimal)
        if measure in why:
            explained = missing & why[measure].ne("")
            reasons.add(explained, format_rows(_("{measure} missing: {why}"), measure=name, why=why[measure][explained]),
                        kind=_("{measure} missing").format(measure=name))
            missing = missing & ~explained
        reasons.add(missing, _("{measure} missing").format(measure=name))
        huge = (non_numeric & _beyond_float(raw, non_numeric)) | (values.abs() > LARGEST_VALUE)
        non_numeric = non_numeric & ~huge
        reasons.add(non_numeric, format_rows(_("{measure} '{value}' is not a number"), measure=name,
                                       value=_short(raw[non_numeric])),
                    kind=_("{measure} is not a number").format(measure=name))
        reasons.add(huge, format_rows(_("{measure} {value} is beyond ±{limit:,.0f}, larger than any score can be"),
                                measure=name, value=_short(raw[huge]), limit=LARGEST_VALUE),
                    kind=_("{measure} beyond ±{limit:,.0f}").format(measure=name, limit=LARGEST_VALUE))
        values = values.where(~huge)
        lo, hi = ranges.get(measure, (None, None))
        is_code = values.isin(missing_codes)
        if lo is None:
            ordinary = values[~is_code & values.notna()]
            lo_c, hi_c = (ordinary.min(), ordinary.max()) if len(ordinary) else (np.inf, -np.inf)
            code_missing = is_code & ((values < lo_c) | (values > hi_c))
        else:
            code_missing = is_code & ((values < lo) | (values > hi))
        if code_missing.any():
            reasons.add(code_missing, format_rows(_("{measure} missing (code {value})"), measure=name, value=raw[code_missing]),
                        kind=_("{measure} missing (missing-value code)").format(measure=name))
            k = int(code_missing.sum())
            notes.append(ngettext("{n} {measure} value was a missing-value code ({codes}) and was read as missing.",
                                  "{n} {measure} values were missing-value codes ({codes}) and were read as missing.",
                                  k).format(n=k, measure=name, codes=", ".join(sorted(set(raw[code_missing])))))
        if lo is not None:
            outside = values.notna() & ~code_missing & ((values < lo) | (values > hi))
            reasons.add(outside, format_rows(_("{measure} {value} is outside the allowed range {lo:g} to {hi:g}"),
                                       measure=name, value=raw[outside], lo=lo, hi=hi),
                        kind=_("{measure} outside the allowed range {lo:g} to {hi:g}").format(measure=name, lo=lo, hi=hi))
        out[measure] = values.where(~code_missing & ~reasons.bad)
    reasons = row_reasons
    if measure_reasons:
        # A session is kept when at least one measure is usable; with none, its reasons exclude it.
        none_usable = np.logical_and.reduce([r.bad for r in measure_reasons.values()])
        for r in measure_reasons.values():
            for kind, count in r.kinds.items():
                reasons.kinds[kind] = reasons.kinds.get(kind, 0) + count
            pos = np.flatnonzero(none_usable & r.bad)
            if len(pos):
                old = reasons.text_at(pos)
                reasons.text[pos] = np.where(old != "", old + "; " + r.text[pos], r.text[pos])
        reasons.bad = reasons.bad | none_usable
        # A session with a measure missing that repeats the patient and session of a complete
        # row adds nothing: it is left out (with its own reason), not counted as a conflict.
        partial = np.logical_or.reduce([r.bad for r in measure_reasons.values()]) & ~reasons.bad
        if partial.any():
            key = out["patient"].astype(str) + "\x1f" + out["session"].astype(str)
            complete_keys = set(key[~reasons.bad & ~partial])
            shadowed = partial & key.isin(complete_keys).to_numpy()
            if shadowed.any():
                why = np.full(n, "", dtype=object)
                for r in measure_reasons.values():
                    why = np.where(r.bad, np.where(why == "", r.text, why + "; " + r.text), why)
                msg = format_rows(_("{reasons}; another row has the same patient and session"),
                            reasons=pd.Series(why, index=out.index)[shadowed])
                reasons.add(pd.Series(shadowed, index=out.index), msg.reindex(out.index),
                            kind=_("incomplete duplicate of a complete row"))

    post_missing = None
    if mapping.post:
        post_missing = _post_scores(frame, mapping, out, reasons.bad, decimal, ranges.get("symptoms"), missing_codes,
                                    notes)
    # Everything else in the file comes along as text, renamed when it is called like a role:
    # an unmapped "alliance" column of text must not pass for the alliance measure.
    # All at once: adding columns one by one costs time quadratic in their number.
    used = set(mapping.used().values())
    taken = set(out.columns) | set(ROLES)
    kept = [col for col in columns if col not in used]
    names = [col if col not in taken else f"{col} (file)" for col in kept]
    if kept and len(set(names)) == len(names):  # one selection keeps a wide table's single block
        out = pd.concat([out, frame[kept].set_axis(names, axis=1)], axis=1)
    elif kept:
        others = {name: frame[col].values for name, col in zip(names, kept)}
        out = pd.concat([out, pd.DataFrame(others, index=out.index)], axis=1)

    _duplicate_reasons(out, reasons, notes)
    bad = reasons.bad
    reason_text = reasons.text_at(np.flatnonzero(bad))
    if name_sessions:
        reason_text = format_rows(_("session {session}: {reason}"), session=frame.loc[bad, mapping.session].astype(str).str.strip(),
                            reason=pd.Series(reason_text, index=frame.index[bad])).to_numpy(dtype=object)
    excluded = pd.DataFrame({"row": out.loc[bad, ROW].astype(int).values,
                             "reason": pd.array(reason_text, dtype=object)}
                            ).sort_values("row", kind="stable")
    data = out.loc[~bad].copy() if bad.any() else out
    kept_pos = np.flatnonzero(~bad)

    def cell_texts(r: _Reasons) -> np.ndarray:
        """Why each kept row's measure is missing ("" where it is not), built only where it is."""
        texts = np.full(len(kept_pos), "", dtype=object)
        hit = np.flatnonzero(r.bad[kept_pos])
        if len(hit):
            pos = kept_pos[hit]
            why = r.text_at(pos)
            if name_sessions:
                session_text = frame[mapping.session].iloc[pos].astype(str).str.strip().reset_index(drop=True)
                why = format_rows(_("session {session}: {reason}"), session=session_text,
                                  reason=pd.Series(why, dtype=object)).to_numpy(dtype=object)
            texts[hit] = why
        return texts
    cells = pd.DataFrame({m: cell_texts(r) for m, r in measure_reasons.items()}, index=data.index)
    if data.empty and not allow_empty:
        kind, count = max(reasons.kinds.items(), key=lambda kv: kv[1])
        raise InputError(ngettext("None of the {n} rows of {source} can be used. Most common problem: {kind} "
                                  "({count} row). Check the column choices and ranges.",
                                  "None of the {n} rows of {source} can be used. Most common problem: {kind} "
                                  "({count} rows). Check the column choices and ranges.",
                                  count).format(n=n, source=source, kind=kind, count=count))
    if (data["session"] % 1 == 0).all():
        data["session"] = data["session"].astype(np.int64)
    if "therapist" in data:
        # patients whose rows name more than one therapist: by codes (a two-key group-by of text
        # on millions of rows costs a gigabyte)
        p_codes, p_labels = pd.factorize(data["patient"], sort=False)
        t_codes = pd.factorize(data["therapist"], sort=False)[0]
        first = np.full(len(p_labels), -1, dtype=np.int64)
        first[p_codes[::-1]] = t_codes[::-1]  # each patient's therapist in its first row
        differs = np.zeros(len(p_labels), dtype=bool)
        differs[p_codes[t_codes != first[p_codes]]] = True
        several = [str(p) for p in p_labels[differs]] if differs.any() else []
        if several:
            shown = ", ".join(several[:10]) + (" …" if len(several) > 10 else "")
            notes.append(ngettext("{n} patient was seen by more than one therapist ({patients}); their rows are "
                                  "kept, each under the therapist named in that row.",
                                  "{n} patients were seen by more than one therapist ({patients}); their rows "
                                  "are kept, each under the therapist named in that row.",
                                  len(several)).format(n=len(several), patients=shown))
    if not _sorted_by_patient_and_session(data):
        data = data.sort_values(["patient", "session"], kind="stable")
        cells = cells.loc[data.index]
    cells = cells.reset_index(drop=True)
    data = data.reset_index(drop=True)
    lead = ["patient", "therapist", "session", "alliance", "symptoms", ROW]
    data = data[[c for c in lead if c in data.columns] + [c for c in data.columns if c not in lead]]
    partial = {m: int(cells[m].ne("").sum()) for m in cells.columns}
    partial = {m: k for m, k in partial.items() if k}
    if partial:
        said = [_("{n} without a usable {measure} score").format(n=k, measure=role_name(m)) for m, k in partial.items()]
        said = said[0] if len(said) == 1 else _("{first} and {second}").format(first=said[0], second=said[1])
        notes.append(_("Sessions kept with one measure missing: {counts}. Each model uses the sessions that have "
                       "every variable it needs and lists the others; the figures use every score.").format(counts=said))
    return ValidatedData(data=data, excluded=excluded.reset_index(drop=True), notes=tuple(notes),
                         mapping=mapping, source=source, n_rows_read=n, ranges=ranges, cell_reasons=cells,
                         post_missing=post_missing)


def _post_scores(frame: pd.DataFrame, mapping: ColumnMapping, out: pd.DataFrame, bad: np.ndarray, decimal: str,
                 symptoms_range: tuple[float, float] | None, missing_codes, notes: list[str]) -> pd.DataFrame:
    """The post-treatment score (one value per patient) into ``out["post"]``, and the patients without one.

    Every row with a readable patient ID counts (also a row left out for another reason, so that a
    post-treatment score written on a row of its own is not lost); a cell that is not a number, beyond
    ±:data:`LARGEST_VALUE`, a missing-value code or outside the symptoms' range is not used. A patient
    whose rows give two different scores gets none (both are listed). Returns ``patient, row, reason``
    for the patients without a usable score, and adds a note naming them.
    """
    raw = frame[mapping.post].astype(str).str.strip()
    values, missing, non_numeric = parse_numbers(raw, decimal)
    problem = pd.Series("", index=frame.index, dtype=object)
    huge = (non_numeric & _beyond_float(raw, non_numeric)) | (values.abs() > LARGEST_VALUE)
    problem[non_numeric & ~huge] = format_rows(_("post-treatment score '{value}' is not a number"),
                                               value=_short(raw[non_numeric & ~huge]))
    problem[huge] = format_rows(_("post-treatment score {value} is beyond ±{limit:,.0f}"), value=_short(raw[huge]),
                                limit=LARGEST_VALUE)
    values = values.where(~huge)
    if symptoms_range is not None:
        lo, hi = symptoms_range
        outside = values.notna() & ((values < lo) | (values > hi))
        coded = outside & values.isin(missing_codes)
        problem[outside & ~coded] = format_rows(
            _("post-treatment score {value} is outside the allowed range {lo:g} to {hi:g}"),
            value=raw[outside & ~coded], lo=lo, hi=hi)
        values = values.where(~outside)
    else:
        ordinary = values[values.notna() & ~values.isin(missing_codes)]
        if len(ordinary):
            coded = values.isin(missing_codes) & ((values < ordinary.min()) | (values > ordinary.max()))
            values = values.where(~coded)
    patient = out["patient"].astype(str)
    readable = ~patient.str.lower().isin(ID_MISSING_TEXTS)
    known = pd.DataFrame({"patient": patient[readable], "value": values[readable], "row": out.loc[readable, ROW]})
    distinct = known.dropna(subset=["value"]).groupby("patient", sort=False)["value"].unique()
    single = distinct[distinct.map(len) == 1].map(lambda v: float(v[0]))
    conflicting = distinct[distinct.map(len) > 1]
    out["post"] = patient.map(single).astype(float).to_numpy()
    kept = ~pd.Series(bad, index=out.index)
    first_rows = known.groupby("patient", sort=False)["row"].min()
    lacking = [p for p in dict.fromkeys(patient[kept & readable]) if p not in single.index]
    problems = pd.DataFrame({"patient": patient, "problem": problem})
    problems = problems[problems["problem"].ne("")].groupby("patient", sort=False)["problem"].first()
    rows = []
    for p in lacking:
        if p in conflicting.index:
            why = _("different post-treatment scores in its rows ({values})").format(
                values=", ".join(f"{v:g}" for v in conflicting[p][:4]))
        elif p in problems.index:
            why = problems[p]
        else:
            why = _("no post-treatment score")
        rows.append({"patient": p, "row": int(first_rows[p]), "reason": why})
    table = pd.DataFrame(rows, columns=["patient", "row", "reason"])
    if len(table):
        shown = ", ".join(table["patient"].head(10)) + (" …" if len(table) > 10 else "")
        notes.append(ngettext("{n} patient has no usable post-treatment score ({patients}); the early alliance → "
                              "outcome analysis leaves them out.",
                              "{n} patients have no usable post-treatment score ({patients}); the early alliance → "
                              "outcome analysis leaves them out.", len(table)).format(n=len(table), patients=shown))
    return table


def _sorted_by_patient_and_session(data: pd.DataFrame) -> bool:
    """True when the rows are already in patient order and, within a patient, in session order
    (as an export usually is): then sorting them would change nothing."""
    patient = data["patient"]
    if len(patient) < 2:
        return True
    # element-wise comparisons of neighbours (done by pyarrow for text columns; pandas'
    # is_monotonic_increasing would first make a Python string of every cell)
    after = patient.iloc[1:].reset_index(drop=True)
    before = patient.iloc[:-1].reset_index(drop=True)
    if not after.ge(before).to_numpy(dtype=bool, na_value=False).all():
        return False
    same = after.eq(before).to_numpy(dtype=bool, na_value=False)
    session = data["session"].to_numpy(dtype=float)
    return bool(np.all(session[1:][same] >= session[:-1][same]))


def _duplicate_reasons(out: pd.DataFrame, reasons: _Reasons, notes: list[str]) -> None:
    """Add reasons for rows that repeat a patient and session among the otherwise valid rows."""
    valid = out.loc[~reasons.bad] if reasons.bad.any() else out
    dup = valid.duplicated(["patient", "session"], keep=False)
    if not dup.any():
        return
    d = valid.loc[dup]
    sig_cols = [c for c in ("therapist", "alliance", "symptoms") if c in d.columns]
    signature = pd.util.hash_pandas_object(d[sig_cols], index=False) if sig_cols else pd.Series(0, index=d.index)
    key = [d["patient"], d["session"]]
    n_distinct = signature.groupby(key).transform("nunique")
    first_row = d[ROW].groupby(key).transform("first")
    identical = n_distinct.eq(1)
    repeat = identical & d[ROW].ne(first_row)
    reasons.add(pd.Series(repeat, index=out.index),
                format_rows(_("identical duplicate of row {row} (that row is used)"), row=first_row[repeat].astype(str)),
                kind=_("identical duplicate"))
    conflicting = d.loc[~identical]
    if len(conflicting):
        rows = conflicting[ROW].astype(str).groupby([conflicting["patient"], conflicting["session"]]).agg(", ".join)
        joined = pd.Series(list(zip(conflicting["patient"], conflicting["session"])), index=conflicting.index).map(rows)
        message = format_rows(_("conflicting duplicate: patient {patient}, session {session} has different values in rows {rows}"),
                        patient=conflicting["patient"], session=conflicting["session"].map(_fmt), rows=joined)
        reasons.add(pd.Series(True, index=conflicting.index).reindex(out.index, fill_value=False),
                    message, kind=_("conflicting duplicate patient-session rows"))
    n_identical = int(repeat.sum())
    if n_identical:
        notes.append(ngettext("{n} row was an identical copy of another row; that row was used once.",
                              "{n} rows were identical copies of another row; each was used once.",
                              n_identical).format(n=n_identical))


def validate_table(raw: RawTable, mapping: ColumnMapping, *,
                   ranges: dict[str, tuple[float, float]] | None = None,
                   wide: WideLayout | None = None,
                   explanations: dict[str, pd.Series] | None = None) -> ValidatedData:
    """Validate a file as read. For a wide file, stack it to long first (:mod:`core.intake.reshape`).

    With ``wide``, ``mapping`` names the id columns (patient, therapist); the session numbers
    come from the column names and the measures from ``wide.measures``. Each reason of a wide
    file names the session (``"session 3: symptoms 'abc' is not a number"``), since the row
    number is the patient's row. ``explanations`` (indexed like ``raw.frame``): see
    :func:`validate_long`.
    """
    if wide is not None:
        if not mapping.patient:
            raise InputError(_("Choose the column that holds the patient ID."))
        ids = [c for c in (mapping.patient, mapping.therapist) if c]
        if not wide.measures:
            raise InputError(_("Say which repeated columns hold the alliance and which the symptoms."))
        long = wide_to_long(raw.frame, wide, ids, session_name="session")
        if long.empty:
            raise InputError(_("{source} has no scores in its session columns: every cell of {columns} is empty.").format(
                source=raw.source, columns=some_names(c for s in wide.columns.values() for c in s.values())))
        long_mapping = ColumnMapping(patient=mapping.patient, therapist=mapping.therapist,
                                     session="session", alliance=wide.measures.get("alliance"),
                                     symptoms=wide.measures.get("symptoms"), post=mapping.post)
        long_why = None
        if explanations:  # from the patient's row to each of its sessions, by row number
            long_why = {m: long[ROW].map(pd.Series(t.reindex(raw.frame.index).to_numpy(),
                                                   index=raw.frame[ROW].to_numpy()))
                        for m, t in explanations.items()}
        return validate_long(long, long_mapping, decimal=raw.decimal, ranges=ranges,
                             source=raw.source, notes=raw.notes, name_sessions=True,
                             explanations=long_why)
    return validate_long(raw.frame, mapping, decimal=raw.decimal, ranges=ranges,
                         source=raw.source, notes=raw.notes, explanations=explanations)


STUDY = "study"
#: The most studies one file may hold: each is validated and fitted on its own.
MAX_STUDIES = 200


def validate_studies(raw: RawTable, mapping: ColumnMapping, study_column: str, *,
                     ranges: dict[str, tuple[float, float]] | None = None) -> ValidatedData:
    """Validate a multi-study file (one row per patient-session, a column naming the study).

    Each study is validated on its own (so two studies may use the same patient IDs and session
    numbers); rows without a study are excluded with that reason. The result holds every study's
    rows with a ``study`` column; when a patient ID occurs in more than one study, patient IDs are
    written ``"<study> / <patient>"`` so that they stay distinct (a note says so).
    """
    if study_column not in raw.columns:
        raise InputError(_("{source} has no column '{column}' for the study; its columns are: {columns}.").format(
            source=raw.source, column=study_column, columns=some_names(raw.columns)))
    labels = raw.frame[study_column].astype(str).str.strip()
    missing = labels.str.lower().isin(MISSING_TEXTS)
    n_studies = labels[~missing].nunique()
    if n_studies > MAX_STUDIES:  # each study is validated and fitted on its own
        raise InputError(_("{source} names {n:,} different studies in column '{column}'; at most {max:,} are "
                           "pooled. Check that this column names the study.").format(
            source=raw.source, n=n_studies, column=study_column, max=MAX_STUDIES))
    parts = {}
    for label, frame in raw.frame.loc[~missing].groupby(labels[~missing], sort=True):
        try:
            parts[label] = validate_long(frame.drop(columns=[study_column]), mapping,
                                         decimal=raw.decimal, ranges=ranges, source=raw.source)
        except InputError as err:
            raise InputError(_("Study '{study}': {error}").format(study=label, error=err)) from None
    if not parts:
        raise InputError(_("{source}: no row names a study in column '{column}'.").format(
            source=raw.source, column=study_column))
    lost = pd.DataFrame({"row": raw.frame.loc[missing, ROW].astype(int).to_numpy(), "reason": _("study missing")})
    return combine_studies(parts, extra_excluded=lost, source=raw.source, notes=raw.notes,
                           n_rows_read=len(raw.frame))


def combine_studies(parts: dict[str, ValidatedData], *, extra_excluded: pd.DataFrame | None = None,
                    source: str = "several files", notes=(), n_rows_read: int | None = None) -> ValidatedData:
    """Stack validated studies (e.g. one file per study) into one table with a ``study`` column.

    Excluded rows keep their own file's row numbers, with the study named in the reason when the
    studies come from different files.
    """
    frames, excluded, all_notes, post_missing = [], [], list(notes), []
    several_files = len({p.source for p in parts.values()}) > 1
    for label, part in parts.items():
        data = part.data.copy()
        data.insert(0, STUDY, label)
        frames.append(data)
        if part.post_missing is not None:
            post_missing.append(part.post_missing.assign(**{STUDY: label}))
        ex = part.excluded.copy()
        if several_files:
            ex["reason"] = f"{part.source}: " + ex["reason"]
        excluded.append(ex)
        all_notes += [_("Study {study}: {note}").format(study=label, note=n) for n in part.notes]
    data = pd.concat(frames, ignore_index=True)
    per_patient = data.groupby("patient")[STUDY].nunique()
    post_table = pd.concat(post_missing, ignore_index=True) if post_missing else None
    if (per_patient > 1).any():
        data["patient"] = data[STUDY] + " / " + data["patient"]
        if post_table is not None:
            post_table["patient"] = post_table[STUDY] + " / " + post_table["patient"]
        all_notes.append(_("Some patient IDs occur in more than one study; they are written "
                           "'study / patient' so that they stay distinct."))
    if extra_excluded is not None and len(extra_excluded):
        excluded.append(extra_excluded)
    excluded = pd.concat(excluded, ignore_index=True).sort_values("row", kind="stable").reset_index(drop=True)
    first = next(iter(parts.values()))
    return ValidatedData(data=data, excluded=excluded, notes=tuple(all_notes), mapping=first.mapping,
                         source=source, n_rows_read=n_rows_read if n_rows_read is not None
                         else sum(p.n_rows_read for p in parts.values()),
                         ranges=first.ranges, post_missing=post_table)
