"""Recording one session where it happens: the *Record a session* page, ``python -m core store record``
and patient mode (the waiting-room tablet) store one patient-session in the clinic database.

The rules, kept here in the queries as :mod:`core.store.access` keeps the access rule:

- **Who**: a therapist records sessions of *her* patients — those whose latest stored session names
  her therapist code — and may add a new patient (a code not yet in the data set), who becomes hers;
  a supervisor records any patient (a new one with the therapist she names); researchers never.
- **What**: the data set's measures (:meth:`SessionRecords.record_form`): alliance and symptoms when
  the data set has them, and any other column whose stored values are numbers that change from
  session to session (e.g. a second questionnaire; not a patient's age). Each is entered as a score,
  or as the items of the instrument the data set was scored with (:func:`recording_instrument`;
  reverse keys, prorating and valid ranges as the definition gives them, :func:`score_answers`).
  A score outside the measure's valid range — the instrument's score range, else the range given at
  upload — is refused with one sentence before anything is written (:func:`check_score`).
- **One transaction**: the observation row is inserted (or, for a correction, updated), the data
  set's version goes up by one (so every page cached on the version shows it at once, as after an
  upload), the values before and after go into ``session_history`` with who, when, the session's date
  and a correction's reason, and the audit log gets the entry. Nothing is written when any step fails.
- **Two people at once**: the data set's row is locked for the transaction (``BEGIN IMMEDIATE`` on
  SQLite, ``SELECT … FOR UPDATE`` on PostgreSQL, with the unique key on patient and session behind it),
  and each save says what it saw stored (:attr:`StoredSession.revision`; nothing for a new session).
  When the stored row is not what the saver saw — someone recorded or corrected it meanwhile — the
  save is refused with :class:`RecordConflict` and a sentence naming who changed it; nothing is
  overwritten silently and the first save stays as it was.
- **Patient mode** (:meth:`SessionRecords.start_kiosk`): the staff member's sign-in session becomes a
  *kiosk* session (``kiosk_sessions``, keyed by the session's id) restricted to one patient, one
  session and the questionnaire. :meth:`core.store.sessions.Sessions.session_user` no longer returns a
  user for it, so no page, route or download can act for the staff member from the tablet; the
  dashboard serves only the questionnaire (:meth:`SessionRecords.kiosk_of`) until a staff member signs
  in again (:meth:`SessionRecords.end_kiosk`), also after a reload or in a new tab.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from core.errors import InputError
from core.i18n import LANGUAGES, N_, _, number
from core.intake.instruments import InstrumentDefinition, load_instrument, score_items
from core.intake.mapping import role_name
from core.intake.validation import STUDY, parse_numbers
from core.store.engine import _data_dir, _now
from core.store.errors import AccessDenied, NoSuchPatient
from core.store.sessions import _live_session
from core.store.schema import (
    datasets,
    kiosk_sessions,
    observations,
    session_history,
    sessions,
    uploads,
    users,
)
from core.store.users import Role, User, _user

#: How a session came in (``session_history.via``; never translated).
VIA_PAGE, VIA_CLI, VIA_KIOSK = "page", "command line", "patient mode"
#: No score or session number is this large (the README's limit for uploads too).
SCORE_LIMIT = 1_000_000
#: Stored rows read to judge which other columns are session measures.
EXTRA_SAMPLE = 2_000
ROLE_MEASURES = ("alliance", "symptoms")
#: The roles that may record sessions and sign a tablet out of patient mode.
STAFF = (Role.THERAPIST, Role.SUPERVISOR)


class RecordConflict(RuntimeError):
    """The session was recorded or changed by someone else since it was read; nothing was saved.
    ``str(err)`` is one plain sentence."""


# --------------------------------------------------------------------------- what can be recorded
@dataclass(frozen=True)
class Measure:
    """One measure that a session can record.

    ``low``/``high``: the valid range (``None``: none is known; then any number within ±1,000,000).
    ``instrument``: the definition that scores it from items (``None``: scores only), ``no_items``:
    the sentence why items cannot be entered when an instrument is named but cannot score (keys not
    sourced). ``whole``: the stored scores are whole numbers (OQ-45.2 totals)."""

    name: str
    low: float | None = None
    high: float | None = None
    instrument: InstrumentDefinition | None = None
    no_items: str | None = None
    whole: bool = False

    @property
    def label(self) -> str:
        """The measure's name in the interface language (other columns as they are called)."""
        return role_name(self.name)

    @property
    def title(self) -> str:
        """:attr:`label` with a capital first letter (``Alliance``, ``BDI``)."""
        return self.label[:1].upper() + self.label[1:]


@dataclass(frozen=True)
class RecordForm:
    """What the *Record a session* page offers one user for one data set."""

    dataset: str
    version: int
    measures: tuple[Measure, ...]
    #: patient → (latest session number, therapist of that session) for the patients she may record
    patients: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    #: therapist codes a new patient can be given (a therapist: her own only)
    therapists: tuple[str, ...] = ()
    has_therapist: bool = False

    def measure(self, name: str) -> Measure:
        for m in self.measures:
            if m.name == name:
                return m
        raise InputError(_("'{measure}' is not a measure of the data set '{dataset}' (its measures: {measures}).")
                         .format(measure=name, dataset=self.dataset,
                                 measures=", ".join(m.name for m in self.measures)))

    def next_session(self, patient: str | None) -> int:
        """The session number to propose: the patient's latest + 1 (a new patient: 1)."""
        last = self.patients.get(patient, (0.0, None))[0] if patient is not None else 0.0
        return int(math.floor(last)) + 1


@dataclass(frozen=True)
class StoredSession:
    """A patient-session as stored now. ``revision``: a digest of the stored row, what a save says it
    saw; ``recorded_by``/``recorded_at``: the latest entry of its history, if it was recorded here."""

    patient: str
    session: float
    therapist: str | None
    values: dict[str, float | None]
    revision: str
    recorded_by: str | None = None
    recorded_at: datetime | None = None
    session_date: str | None = None


@dataclass(frozen=True)
class RecordResult:
    dataset: str
    patient: str
    session: float
    version: int
    action: str                      # 'recorded' or 'corrected'
    values: dict[str, float | None]  # the stored values of the session's measures after the save
    therapist: str | None = None


@dataclass(frozen=True)
class KioskState:
    """A sign-in session in patient mode: which questionnaire it is for (never another patient's data)."""

    session_id: int
    dataset: str
    patient: str
    session: float
    language: str
    session_date: str | None
    answers: dict[str, dict[int, float | None]]
    finished: bool
    outcome: str | None
    #: the measures answered item by item, in order (each has an ``instrument``)
    measures: tuple[Measure, ...] = ()


# --------------------------------------------------------------------------- pure helpers
def parse_score(text) -> float | None:
    """A typed score as a number: ``5.5`` and ``5,5`` both read 5.5; blank is ``None``; anything
    else (a word, ``inf``, ``1e309``) is refused with one sentence.

    >>> parse_score(" 5,5 "), parse_score("71"), parse_score("")
    (5.5, 71.0, None)
    """
    if text is None:
        return None
    if isinstance(text, (int, float, np.integer, np.floating)) and not isinstance(text, bool):
        value = float(text)
    else:
        raw = str(text).strip()
        if not raw:
            return None
        values, _missing, non_numeric = parse_numbers(pd.Series([raw]))
        value = float(values.iloc[0])
        if bool(non_numeric.iloc[0]) or math.isnan(value):
            raise InputError(_("'{text}' is not a number; type the score with digits (e.g. 5.5 or 5,5).").format(
                text=raw[:40]))
    if not math.isfinite(value) or abs(value) > SCORE_LIMIT:
        raise InputError(_("{value} is not a score; a score is a number below one million.").format(value=str(text)[:40]))
    return value


def check_score(measure: Measure, value: float | None) -> float | None:
    """``value`` when it lies in the measure's valid range (or is missing), else one sentence saying
    which range, e.g. "The alliance score 8 is outside its valid range 1–7; check it and enter it
    again." Ends within the limits exactly (a score equal to the top of the range is valid)."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value) or abs(value) > SCORE_LIMIT:
        raise InputError(_("{value} is not a score; a score is a number below one million.").format(value=value))
    if measure.low is not None and measure.high is not None and not (
            measure.low - 1e-9 <= value <= measure.high + 1e-9):
        raise InputError(_("The {measure} score {value} is outside its valid range {low}–{high}; check it and "
                           "enter it again.").format(measure=measure.label, value=number(value, "g"),
                                                     low=number(measure.low, "g"), high=number(measure.high, "g")))
    return value


def parse_session_number(value) -> float:
    """A session number: a whole number from 0 to 1,000,000 (``5``, ``5.0``)."""
    try:
        x = float(str(value).strip().replace(",", "."))
    except ValueError:
        x = math.nan
    if not math.isfinite(x) or x < 0 or x > SCORE_LIMIT or not float(x).is_integer():
        raise InputError(_("The session number must be a whole number from 0 to 1,000,000, not '{value}'.").format(
            value=str(value)[:40]))
    return float(x)


def parse_session_date(value, today: date | None = None) -> str | None:
    """The session's date as ``YYYY-MM-DD`` (``None`` stays ``None``); a date after today is refused."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        try:
            value = date.fromisoformat(str(value).strip())
        except ValueError:
            raise InputError(_("The session date must be written YYYY-MM-DD (e.g. 2026-03-31), not '{value}'.").format(
                value=str(value)[:40])) from None
    if value > (today or date.today()):
        raise InputError(_("The session date {date} is in the future; enter the day the session took place.").format(
            date=value.isoformat()))
    return value.isoformat()


def recording_instrument(instrument_id: str, declared: tuple[float, float] | None = None) -> InstrumentDefinition:
    """The definition a measure's items are scored with: the clinic's own copy,
    ``$ALLIANCE_DATA_DIR/instruments/<id>.json`` (where a clinic marks reverse keys the shipped file
    leaves unsourced, or adds the item wording it holds the licence for), else the shipped one. When
    the data set's valid range for the measure is the mean item score's range of a sum-scored
    definition (or the other way round), it is scored that way."""
    own = _data_dir() / "instruments" / f"{Path(str(instrument_id)).name}.json"
    defn = load_instrument(own if own.is_file() else instrument_id)
    if declared is not None:
        for scoring in ("sum", "mean"):
            other = defn.with_scoring(scoring)
            if other.scoring != defn.scoring and all(abs(float(a) - float(b)) < 1e-9
                                                     for a, b in zip(other.score_range, declared)):
                return other
    return defn


def score_answers(measure: Measure, answers: Mapping[int, float | None]) -> float:
    """One questionnaire's score from its item answers (``{item number: code or None}``), with the
    measure's instrument: reverse keys, prorating and the missing-item rule of
    :func:`core.intake.instruments.score_items`. Refused with one sentence when an answer is not a code
    of the scale or too many items are missing."""
    defn = measure.instrument
    if defn is None:
        raise InputError(_("The {measure} score cannot be computed from items here: {why}").format(
            measure=measure.label, why=measure.no_items or _("no instrument scores it.")))
    row = {}
    for item in range(1, defn.n_items + 1):
        value = answers.get(item, answers.get(str(item)))
        if value is not None and not (defn.item_min - 1e-9 <= float(value) <= defn.item_max + 1e-9):
            raise InputError(_("Item {item} of {name} is {value}; its answers run from {low} to {high}.").format(
                item=item, name=defn.name, value=number(float(value), "g"), low=number(defn.item_min, "g"),
                high=number(defn.item_max, "g")))
        row[item] = np.nan if value is None else float(value)
    result = score_items(pd.DataFrame([row]), defn, item_columns={i: i for i in row})
    total = result.total.iloc[0]
    if pd.isna(total):
        raise InputError(_("The {measure} score cannot be computed: {reason}; answer more items.").format(
            measure=measure.label, reason=result.scores["reason"].iloc[0]))
    return float(total)


def answers_needed(measure: Measure) -> int:
    """How many of the instrument's items must be answered for a score (its missing-item rule)."""
    defn = measure.instrument
    allowed = math.floor(defn.missing_rule["max_missing_fraction"] * defn.n_items + 1e-9)
    return defn.n_items - allowed


def _digest(therapist, values: Mapping[str, float | None], extra_text: str | None) -> str:
    payload = json.dumps([therapist, {k: values.get(k) for k in sorted(values)}, extra_text or "{}"],
                         sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _number(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _describe(values: Mapping[str, float | None]) -> str:
    """``alliance 5.5, symptoms 71`` (as stored: the audit log and history stay in one language)."""
    return ", ".join(f"{k} {'—' if v is None else format(v, 'g')}" for k, v in values.items())


# --------------------------------------------------------------------------- the store's part
class SessionRecords:
    """The recording part of :class:`core.store.ClinicStore` (see the module docstring)."""

    # ---------------------------------------------------------------- reading
    def _require_staff(self, user: User) -> None:
        self._require(user, N_("record sessions"), *STAFF)

    def _measures(self, conn, ds, detail: bool = True) -> tuple[Measure, ...]:
        """The data set's measures; ``detail=False`` (patient mode, every page run): the role measures
        only, without reading the stored scores."""
        roles = json.loads(ds.columns)
        instruments = dict(tuple(x) for x in json.loads(ds.instruments))
        ranges = {}
        for (text,) in conn.execute(sa.select(uploads.c.ranges).where(uploads.c.dataset_id == ds.id)
                                    .order_by(uploads.c.id.desc())).all():
            for key, value in json.loads(text or "{}").items():
                ranges.setdefault(key, tuple(float(v) for v in value))
        out = []
        for m in ROLE_MEASURES:
            if m not in roles:
                continue
            whole = detail and not conn.execute(sa.select(observations.c.id).where(
                observations.c.dataset_id == ds.id, observations.c[m].is_not(None),
                observations.c[m] != sa.func.round(observations.c[m])).limit(1)).first()
            low, high = ranges.get(m, (None, None))
            defn, why = None, None
            if m in instruments:
                try:
                    defn = recording_instrument(instruments[m], ranges.get(m))
                    low, high = defn.score_range
                    if defn.reverse_keyed is None:
                        why = _("the reverse-keyed items of {name} are not sourced (a supervisor can mark them in "
                                "the clinic's copy of its definition).").format(name=defn.name)
                        defn = None
                except InputError as err:
                    why = str(err)
            out.append(Measure(m, low, high, defn, why, whole))
        if detail:
            out += [Measure(c) for c in self._session_columns(conn, ds)]
        return tuple(out)

    @staticmethod
    def _session_columns(conn, ds) -> list[str]:
        """The other columns that hold session scores: every stored value a number (or blank), and
        different between two sessions of one patient in the rows read (a patient's age is not)."""
        extras = [c for c in json.loads(ds.extra_columns) if c != STUDY]
        if not extras:
            return []
        rows = conn.execute(sa.select(observations.c.patient, observations.c.extra)
                            .where(observations.c.dataset_id == ds.id).limit(EXTRA_SAMPLE)).all()
        parsed = pd.DataFrame([{"patient": r.patient, **json.loads(r.extra or "{}")} for r in rows])
        out = []
        for col in extras:
            if col not in parsed.columns:
                continue
            values, missing, non_numeric = parse_numbers(parsed[col].fillna("").astype(str))
            if non_numeric.any() or missing.all():
                continue
            known = pd.DataFrame({"patient": parsed["patient"], "v": values})[~missing.to_numpy()]
            if (known.groupby("patient")["v"].nunique() > 1).any():
                out.append(col)
        return out

    def _latest(self, conn, ds, patient: str | None = None):
        """Per patient: the latest session number and its therapist (one query)."""
        o = observations
        last = (sa.select(o.c.patient, sa.func.max(o.c.session).label("last"))
                .where(o.c.dataset_id == ds.id).group_by(o.c.patient))
        if patient is not None:
            last = last.where(o.c.patient == patient)
        last = last.subquery()
        query = (sa.select(o.c.patient, o.c.session, o.c.therapist)
                 .join(last, sa.and_(o.c.patient == last.c.patient, o.c.session == last.c.last))
                 .where(o.c.dataset_id == ds.id))
        return {r.patient: (float(r.session), r.therapist) for r in conn.execute(query)}

    def record_form(self, actor: User, dataset: str) -> RecordForm:
        """The measures, patients and therapists the *Record a session* page offers ``actor``."""
        with self._read() as conn:
            user = self._actor(conn, actor)
            self._require_staff(user)
            ds = self._visible_dataset(conn, user, dataset)
            measures = self._measures(conn, ds)
            latest = self._latest(conn, ds)
            has_therapist = "therapist" in json.loads(ds.columns)
            if user.role is Role.THERAPIST:
                latest = {p: v for p, v in latest.items() if v[1] == user.therapist_code}
                therapists = (user.therapist_code,)
            else:
                therapists = tuple(sorted({t for _s, t in latest.values() if t})) if has_therapist else ()
        return RecordForm(dataset=ds.name, version=int(ds.version), measures=measures,
                          patients=dict(sorted(latest.items())), therapists=therapists, has_therapist=has_therapist)

    def _stored_row(self, conn, ds, patient: str, session: float):
        return conn.execute(sa.select(observations).where(
            observations.c.dataset_id == ds.id, observations.c.patient == patient,
            observations.c.session == session)).first()

    def _as_stored(self, conn, ds, row, measures: tuple[Measure, ...]) -> StoredSession:
        extra = json.loads(row.extra or "{}")
        values = {}
        for m in measures:
            if m.name in ROLE_MEASURES:
                values[m.name] = _number(getattr(row, m.name))
            else:
                try:
                    values[m.name] = parse_score(extra.get(m.name, ""))
                except InputError:
                    values[m.name] = None
        last = conn.execute(sa.select(session_history.c.username, session_history.c.at,
                                      session_history.c.session_date)
                            .where(session_history.c.dataset_id == ds.id, session_history.c.patient == row.patient,
                                   session_history.c.session == row.session)
                            .order_by(session_history.c.id.desc()).limit(1)).first()
        return StoredSession(patient=row.patient, session=float(row.session), therapist=row.therapist,
                             values=values, revision=_digest(row.therapist, {"alliance": _number(row.alliance),
                                                                             "symptoms": _number(row.symptoms)},
                                                             row.extra),
                             recorded_by=last.username if last else None,
                             recorded_at=_aware(last.at) if last else None,
                             session_date=last.session_date if last else None)

    def _check_patient(self, conn, user: User, ds, patient: str, *, new_patient: bool, therapist: str | None):
        """The therapist the session is recorded under, after the access rule (module docstring)."""
        latest = self._latest(conn, ds, patient).get(patient)
        has_therapist = "therapist" in json.loads(ds.columns)
        if latest is not None and new_patient:
            raise InputError(_("There is already a patient '{patient}' in this data set; choose that patient instead "
                               "of adding a new one, or give the new patient another code.").format(patient=patient))
        mine = latest is not None and (user.role is not Role.THERAPIST or latest[1] == user.therapist_code)
        if not mine and not new_patient:  # the same words whether the patient is someone else's or unknown
            raise NoSuchPatient(_("Patient '{patient}' is not among the patients you can record in '{dataset}'; a "
                                  "new patient must be added as new.").format(patient=patient, dataset=ds.name))
        if user.role is Role.THERAPIST:
            if therapist not in (None, user.therapist_code):
                raise AccessDenied(_("A therapist records sessions under her own therapist code only."))
            return user.therapist_code if has_therapist else None
        if not has_therapist:
            return None
        chosen = (str(therapist).strip() or None) if therapist is not None else None
        if chosen is None:
            if latest is None:
                raise InputError(_("Choose the therapist of the new patient '{patient}'.").format(patient=patient))
            chosen = latest[1]
        return chosen

    def stored_session(self, actor: User, dataset: str, patient: str, session) -> StoredSession | None:
        """The patient-session as stored now (``None``: not recorded yet), for a user who may record it."""
        session = parse_session_number(session)
        with self._read() as conn:
            user = self._actor(conn, actor)
            self._require_staff(user)
            ds = self._visible_dataset(conn, user, dataset)
            row = self._stored_row(conn, ds, str(patient), session)
            if row is None:
                return None
            self._check_patient(conn, user, ds, str(patient), new_patient=False, therapist=None)
            return self._as_stored(conn, ds, row, self._measures(conn, ds))

    # ---------------------------------------------------------------- writing
    def record_session(self, actor: User, dataset: str, patient: str, session, values: Mapping[str, object], *,
                       session_date=None, reason: str | None = None, expected: str | None = None,
                       therapist: str | None = None, new_patient: bool = False, via: str = VIA_PAGE) -> RecordResult:
        """Store one patient-session in ONE transaction (module docstring): ``values`` maps measure
        names to scores (numbers or typed text; ``None`` or blank leaves a measure empty — in a
        correction, clears it). A session already stored is changed only with a ``reason`` (a
        correction); ``expected`` is the :attr:`StoredSession.revision` the caller saw (``None``: it
        saw nothing stored). Refused with one sentence: :class:`core.errors.InputError` (a value out
        of range, no such measure, no reason for a stored session …), :class:`NoSuchPatient` (not her
        patient), :class:`AccessDenied` (role), :class:`RecordConflict` (changed meanwhile)."""
        patient = str(patient or "").strip()
        if not patient:
            raise InputError(_("Give the patient's code."))
        if len(patient) > 200 or any(ord(ch) < 32 for ch in patient):
            raise InputError(_("A patient code must be at most 200 characters, without line breaks or tabs."))
        session = parse_session_number(session)
        day = parse_session_date(session_date)
        reason = str(reason).strip()[:2000] if reason is not None and str(reason).strip() else None
        now = _now()
        try:
            with self._write() as conn:
                user = self._actor(conn, actor)
                self._require_staff(user)
                ds = self._visible_dataset(conn, user, dataset)
                ds = conn.execute(sa.select(datasets).where(datasets.c.id == ds.id).with_for_update()).first()
                measures = self._measures(conn, ds)
                by_name = {m.name: m for m in measures}
                form = RecordForm(dataset=ds.name, version=int(ds.version), measures=measures)
                given = {}
                for name, raw in values.items():
                    measure = form.measure(str(name))
                    given[measure.name] = check_score(measure, parse_score(raw))
                code = self._check_patient(conn, user, ds, patient, new_patient=new_patient, therapist=therapist)
                row = self._stored_row(conn, ds, patient, session)
                before = self._as_stored(conn, ds, row, measures) if row is not None else None
                if before is not None:
                    who = (_("by {user} on {when}").format(user=before.recorded_by,
                                                          when=before.recorded_at.strftime("%Y-%m-%d %H:%M UTC"))
                           if before.recorded_by and before.recorded_at else _("by an upload"))
                    if expected is not None and expected != before.revision:
                        raise RecordConflict(_(
                            "Session {session:g} of patient {patient} was changed {who} since you opened it (now "
                            "{values}); nothing was saved: check the values now stored and correct them again if "
                            "needed.").format(session=session, patient=patient, who=who,
                                              values=_describe(before.values)))
                    if reason is None:
                        raise RecordConflict(_(
                            "Session {session:g} of patient {patient} is already recorded {who} ({values}); nothing "
                            "was saved: to change it, correct it and give the reason.").format(
                            session=session, patient=patient, who=who, values=_describe(before.values)))
                if before is None and not any(v is not None for v in given.values()):
                    raise InputError(_("Enter at least one score for session {session:g}.").format(session=session))
                after = dict(before.values) if before is not None else {m.name: None for m in measures}
                after.update(given)
                if before is not None and not any(v is not None for v in after.values()):
                    raise InputError(_("A corrected session must keep at least one score."))
                extra = json.loads(row.extra or "{}") if row is not None else {}
                for m in measures:
                    if m.name not in ROLE_MEASURES and m.name in given:
                        extra[m.name] = "" if given[m.name] is None else format(given[m.name], "g")
                extra_text = json.dumps(extra, ensure_ascii=False) if extra else "{}"
                columns = {m: after.get(m) for m in ROLE_MEASURES if m in by_name}
                if row is None:
                    with conn.begin_nested():  # the unique key stops a second insert (PostgreSQL, no lock)
                        conn.execute(observations.insert().values(
                            dataset_id=ds.id, patient=patient, session=session, therapist=code, extra=extra_text,
                            source_row=None, upload_id=None, **columns))
                else:
                    conn.execute(observations.update().where(observations.c.id == row.id).values(
                        therapist=code if code is not None else row.therapist, extra=extra_text, source_row=None,
                        upload_id=None, **columns))
                version = int(ds.version) + 1
                conn.execute(datasets.update().where(datasets.c.id == ds.id).values(version=version, updated_at=now))
                action = "recorded" if before is None else "corrected"
                conn.execute(session_history.insert().values(
                    dataset_id=ds.id, patient=patient, session=session, version=version, at=now, user_id=user.id,
                    username=user.username, action=action, via=via, reason=reason, session_date=day, therapist=code,
                    before=json.dumps(before.values) if before is not None else None, after=json.dumps(after)))
                detail = (f"{ds.name}: patient {patient}, session {session:g}"
                          + (f" ({day})" if day else "") + f"; {_describe(after)}; version {version}; {via}"
                          + (f"; before: {_describe(before.values)}; reason: {reason}" if before is not None else ""))
                self._audit(conn, user, f"session {action}", detail)
        except sa_exc.IntegrityError:
            raise RecordConflict(_("Session {session:g} of patient {patient} was recorded by someone else at the same "
                                   "moment; nothing was saved: look at the values now stored.").format(
                session=session, patient=patient)) from None
        return RecordResult(dataset=ds.name, patient=patient, session=session, version=version, action=action,
                            values=after, therapist=code)

    def session_history(self, actor: User, dataset: str, patient: str) -> pd.DataFrame:
        """Every recorded and corrected value of one patient, oldest first (``session, at, username,
        action, via, reason, session_date, before, after, version``; ``before``/``after`` as dicts),
        for a therapist of that patient or a supervisor."""
        with self._read() as conn:
            user = self._actor(conn, actor)
            self._require_staff(user)
            ds = self._visible_dataset(conn, user, dataset)
            if user.role is Role.THERAPIST and not conn.execute(sa.select(observations.c.id).where(
                    observations.c.dataset_id == ds.id, observations.c.patient == str(patient),
                    self._row_filter(user)).limit(1)).first():
                raise NoSuchPatient(_("There is no patient '{patient}' among the patients you can see in '{dataset}'.")
                                    .format(patient=patient, dataset=dataset))
            h = session_history
            rows = conn.execute(sa.select(h.c.session, h.c.at, h.c.username, h.c.action, h.c.via, h.c.reason,
                                          h.c.session_date, h.c.before, h.c.after, h.c.version)
                                .where(h.c.dataset_id == ds.id, h.c.patient == str(patient))
                                .order_by(h.c.id)).all()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=["session", "at", "username", "action", "via", "reason",
                                                                "session_date", "before", "after", "version"])
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        frame["before"] = [json.loads(t) if isinstance(t, str) else None for t in frame["before"]]
        frame["after"] = [json.loads(t) for t in frame["after"]]
        return frame

    # ---------------------------------------------------------------- patient mode (kiosk)
    def start_kiosk(self, actor: User, session_id: int, dataset: str, patient: str, session, language: str, *,
                    session_date=None, new_patient: bool = False) -> None:
        """Turn ``actor``'s sign-in session ``session_id`` into patient mode for one patient and session:
        from now on the session signs no one in (:meth:`core.store.sessions.Sessions.session_user`), and
        :meth:`kiosk_of` gives only this questionnaire. Refused with one sentence when the session is
        already recorded, no measure can be answered item by item, or she may not record the patient."""
        patient = str(patient or "").strip()
        session = parse_session_number(session)
        day = parse_session_date(session_date)
        if language not in LANGUAGES:
            raise InputError(_("The interface language must be one of {codes}.").format(codes=", ".join(LANGUAGES)))
        with self._write() as conn:
            user = self._actor(conn, actor)
            self._require_staff(user)
            live = conn.execute(sa.select(sessions.c.id).where(
                sessions.c.id == int(session_id), sessions.c.user_id == user.id,
                *_live_session(of_active_user=False))).first()
            if live is None or conn.execute(sa.select(kiosk_sessions.c.session_id).where(
                    kiosk_sessions.c.session_id == int(session_id))).first():
                raise AccessDenied(_("Patient mode needs a sign-in of your own on this device; sign in again."))
            ds = self._visible_dataset(conn, user, dataset)
            if not patient:
                raise InputError(_("Give the patient's code."))
            self._check_patient(conn, user, ds, patient, new_patient=new_patient, therapist=None)
            if self._stored_row(conn, ds, patient, session) is not None:
                raise InputError(_("Session {session:g} of patient {patient} is already recorded; patient mode is for a "
                                   "session not recorded yet.").format(session=session, patient=patient))
            asked = [m for m in self._measures(conn, ds) if m.instrument is not None]
            if not asked:
                raise InputError(_("No questionnaire of this data set can be answered item by item here, so patient "
                                   "mode has nothing to ask; enter the scores instead."))
            conn.execute(kiosk_sessions.insert().values(
                session_id=int(session_id), dataset_id=ds.id, patient=patient, session=session, session_date=day,
                language=language, user_id=user.id, started_at=_now(), answers="{}"))
            self._audit(conn, user, "patient mode started",
                        f"{ds.name}: patient {patient}, session {session:g}; questionnaires: "
                        + ", ".join(m.instrument.id for m in asked))

    def kiosk_of(self, *, token: str | None = None, session_id: int | None = None) -> KioskState | None:
        """The patient-mode state of a live sign-in session (by its signed token or its id), else ``None``
        (not in patient mode, ended, expired, or its staff member deactivated)."""
        if token is not None:  # its signature covers the session's id and nonce: the id names the session
            session_id = self.session_id_of(token)
        if session_id is None:
            return None
        k = kiosk_sessions
        query = (sa.select(k, datasets.c.name.label("dataset_name"))
                 .select_from(k.join(sessions, sessions.c.id == k.c.session_id)
                              .join(users, users.c.id == k.c.user_id).join(datasets, datasets.c.id == k.c.dataset_id))
                 .where(k.c.session_id == int(session_id), *_live_session()))
        with self._read() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            ds = conn.execute(sa.select(datasets).where(datasets.c.id == row.dataset_id)).first()
            asked = tuple(m for m in self._measures(conn, ds, detail=False) if m.instrument is not None)
        answers = {m: {int(i): (None if v is None else float(v)) for i, v in items.items()}
                   for m, items in json.loads(row.answers or "{}").items()}
        return KioskState(session_id=int(row.session_id), dataset=row.dataset_name, patient=row.patient,
                          session=float(row.session), language=row.language, session_date=row.session_date,
                          answers=answers, finished=row.finished_at is not None, outcome=row.outcome, measures=asked)

    def kiosk_answer(self, session_id: int, measure: str, item: int, value: float | None) -> None:
        """Keep one answer of an unfinished questionnaire on the server (a reload resumes there)."""
        with self._write() as conn:
            row = conn.execute(sa.select(kiosk_sessions).where(kiosk_sessions.c.session_id == int(session_id))
                               .with_for_update()).first()
            if row is None or row.finished_at is not None:
                return
            answers = json.loads(row.answers or "{}")
            answers.setdefault(str(measure), {})[str(int(item))] = None if value is None else float(value)
            conn.execute(kiosk_sessions.update().where(kiosk_sessions.c.session_id == row.session_id)
                         .values(answers=json.dumps(answers)))

    def finish_kiosk(self, session_id: int) -> str:
        """Score the answers and store the session as the staff member who started patient mode
        (:meth:`record_session`, ``via`` patient mode); the tablet stays locked either way. Returns
        ``'stored'`` or the sentence why the answers were not stored (kept in ``kiosk_sessions``)."""
        state = self.kiosk_of(session_id=session_id)
        if state is None or state.finished:
            return state.outcome if state is not None and state.outcome else "stored"
        with self._read() as conn:
            row = conn.execute(sa.select(kiosk_sessions.c.user_id, kiosk_sessions.c.dataset_id).where(
                kiosk_sessions.c.session_id == int(session_id))).first()
            starter = _user(conn.execute(sa.select(users).where(users.c.id == row.user_id)).first())
            new = conn.execute(sa.select(observations.c.id).where(  # patient mode for a new patient's first session
                observations.c.dataset_id == row.dataset_id, observations.c.patient == state.patient).limit(1)).first() is None
        try:
            values = {m.name: score_answers(m, state.answers.get(m.name, {})) for m in state.measures}
            self.record_session(starter, state.dataset, state.patient, state.session, values,
                                session_date=state.session_date, via=VIA_KIOSK, new_patient=new)
            outcome = "stored"
        except (InputError, RecordConflict, AccessDenied, NoSuchPatient) as err:
            outcome = str(err)
        with self._write() as conn:
            conn.execute(kiosk_sessions.update().where(kiosk_sessions.c.session_id == int(session_id),
                                                       kiosk_sessions.c.finished_at.is_(None))
                         .values(finished_at=_now(), outcome=outcome))
            if outcome != "stored":
                self._audit(conn, starter, "patient mode not stored",
                            f"{state.dataset}: patient {state.patient}, session {state.session:g}; {outcome}")
        return outcome

    def end_kiosk(self, actor: User, session_id: int) -> None:
        """A staff member who just signed in on the tablet ends its patient mode (and with it that
        sign-in session); logged."""
        with self._write() as conn:
            user = self._actor(conn, actor)
            self._require(user, N_("end patient mode"), *STAFF)
            row = conn.execute(sa.select(kiosk_sessions.c.patient, kiosk_sessions.c.session,
                                         kiosk_sessions.c.outcome)
                               .where(kiosk_sessions.c.session_id == int(session_id))).first()
            conn.execute(sessions.update().where(sessions.c.id == int(session_id), sessions.c.ended_at.is_(None))
                         .values(ended_at=_now(), ticket_hash=None))
            if row is not None:
                self._audit(conn, user, "patient mode ended",
                            f"patient {row.patient}, session {row.session:g}; answers: {row.outcome or 'not finished'}")

    def kiosk_outcomes(self, actor: User, limit: int = 5) -> pd.DataFrame:
        """The latest patient-mode questionnaires ``actor`` started: patient, session, started, finished,
        outcome (``'stored'`` or why not)."""
        k = kiosk_sessions
        with self._read() as conn:
            user = self._actor(conn, actor)
            rows = conn.execute(sa.select(datasets.c.name, k.c.patient, k.c.session, k.c.started_at, k.c.finished_at,
                                          k.c.outcome).join(datasets, datasets.c.id == k.c.dataset_id)
                                .where(k.c.user_id == user.id).order_by(k.c.started_at.desc()).limit(int(limit))).all()
        return pd.DataFrame([tuple(r) for r in rows], columns=["dataset", "patient", "session", "started", "finished",
                                                                "outcome"])


def _aware(value):
    return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)

