"""The early-warning signal: each patient's expected course from where they started, and who is not on track.

Measurement feedback helps most for patients who are *not on track* (Rognstad et al., 2023;
Lambert et al., 2018): their therapist sees that the patient's scores have left the course that
patients starting at the same level usually take. This module computes that signal for every
patient and session.

**Expected course.** A linear mixed model fitted by REML (lme4's criterion: from the patients'
sums by :mod:`core.stats.profiled`, else through ``mixedlm``) to the clinic's sessions after the
intake (or to an outside norm's, :mod:`core.clinical.signal_norm`)::

    y_ij ~ intake_c + log_session + intake_c:log_session + (1 + log_session | patient)

where ``y_ij`` is patient i's symptom score at their session j, ``intake_c`` the patient's intake
score minus the mean intake, and ``log_session = ln(j)`` with ``j`` the session of the course (1 at
the patient's first session in the data, ``session − first session + 1``). The intake is the
patient's first score; when an intake column is given, its value, and then the first session is
predicted too. Expected-recovery curves of this kind (conditioned on intake, log-shaped in time)
are those of OQ-Analyst (Finch, Lambert & Schaalje, 2001; Lambert et al., 2002).

**Patients doing as expected.** With a reliable-change value, each refit leaves out the patients
whose latest score so far is a reliable deterioration from their intake (Jacobson & Truax, 1991):
they are not on the expected course, and keeping them would widen it (a clinic with 12%
deteriorating patients otherwise hides half of them). Without one, every patient is kept.

**A time split, so statuses stay put.** The model is refitted for each session t of the course
(every session up to 12, then about every 25% more: 15, 18, 22, …) on the clinic's sessions up to
t only, and a session j is judged by the last refit at or before j. Later sessions — of this
patient or of anyone else — therefore never change a status already given. At the first
predicted session (2, or 1 with an intake column) each patient has one score, so that refit is
the least-squares regression ``y ~ intake_c``; where the sessions so far cannot identify a random
slope (fewer than two per patient on average) the refit has a random intercept only. A refit is
made only where at least 10 patients have a score among the sessions it adds; sessions beyond
1.5 × the last refit session get no status.

**Prediction SD for a new patient.** For intake ``x`` at session ``j``, with ``z = (1, x − x̄, ln j,
(x − x̄) ln j)`` and ``u = (1, ln j)``: ``expected = z'β``, ``sd = sqrt(u'Gu + σ² + z'V_β z)`` (G:
the patients' random-effects covariance, σ²: residual variance, V_β: covariance of the fixed
effects) — the spread of individual patients' scores around the expected course.

**Status, calibrated per patient** (:mod:`core.clinical.signal_bounds`). Two rules:

- ``trend`` (default; personalised, empirical Bayes): all the patient's scores since the intake,
  as the mixed model sees them — their own level and rate of change, shrunk toward the expected
  course (the BLUP). The statistic is the larger of the standardised estimated current deviation
  and the standardised estimated deviation of the rate of change.
- ``session``: this session's score alone, ``(observed − expected) / sd``.

``not_on_track`` when the statistic is beyond a bound set so that a patient doing as expected is
flagged at *some* session of their first N (8) with probability 0.10 (1 in 10 patients), spent
evenly over those sessions; ``at_risk`` beyond the bound for 0.20; ``on_track`` otherwise;
``unknown``: the first session (the starting point), no score, no intake, or a session too far
beyond the data. The bounds come from simulating 20,000 patients from each refit (a fixed seed).
On simulated clinics the ``trend`` rule flags more deteriorating patients by session 6 at the
same rate of false alarms (``bench/bench_signal.py``, figures in ``bench/README.md``), hence the
default.

``lower``/``upper``: the scores at this session beyond which (on the worse side) the session would be
``not_on_track`` given the patient's earlier scores (the other side mirrored around ``expected``);
``at_risk_bound`` the same for ``at_risk``. A session's status uses only that patient's intake and
scores up to it (and the refits up to it).

**Fallback.** With fewer than 30 completed courses (patients with at least 4 sessions) — or when
the model cannot be fitted — there is no local model, and the published reliable-change rule
(Jacobson & Truax, 1991) is used relative to the intake: ``not_on_track`` when the score is worse
than the intake by at least the reliable change (OQ-45.2 total: 14 points; mean item score:
14/45; Lambert et al., 2004), ``at_risk`` when worse by at least half of it. That rule is not
calibrated per patient; the ``definition`` says which rule was used and why.

Validation: :mod:`core.clinical.signal_validation`; outside norms: :mod:`core.clinical.signal_norm`;
the command line's report: :mod:`core.clinical.signal_report`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from core.clinical.signal_bounds import (
    DEFAULT_METHOD,
    DRAWS,
    HORIZON,
    METHODS,
    RATE_AT_RISK,
    RATE_NOT_ON_TRACK,
    cov_root,
    fit_parameters,
    score_bound,
    sequential_bounds,
    statistics,
)
from core.errors import ModelError
from core.i18n import N_, _, decimals_for, fill_template, model_decimals, number, number_text, number_texts
from core.intake.mapping import role_name
from core.stats.decomposition import patient_numbers, sort_by_patient

STATUSES = ("not_on_track", "at_risk", "on_track", "unknown")
#: Each status in words (English; :func:`status_label` gives them in the current language).
STATUS_LABELS = {"not_on_track": N_("not on track"), "at_risk": N_("at risk"), "on_track": N_("on track"),
                 "unknown": N_("unknown")}
#: The rules in words (English; translate where shown).
RULE_LABELS = {"trend": N_("the patient's course so far (personalised, empirical Bayes)"),
               "session": N_("this session's score against the expected course")}


def status_label(status: str) -> str:
    """A status (``not_on_track`` …) in words, in the current language (any other value as it is)."""
    return _(STATUS_LABELS[status]) if status in STATUS_LABELS else str(status)


def rule_label(rule: str) -> str:
    """A rule (``trend``, ``session``) in words, in the current language."""
    return _(RULE_LABELS[rule]) if rule in RULE_LABELS else str(rule)


#: A local model needs this many completed courses (patients with COURSE_SESSIONS sessions or more).
MIN_COURSES = 30
COURSE_SESSIONS = 4
#: A refit needs this many patients with a score among the sessions it adds.
MIN_PATIENTS_AT_SESSION = 10
#: Sessions beyond this multiple of the last refit session get no status.
EXTRAPOLATE = 1.5
#: Published OQ-45.2 values (Lambert et al., 2004): reliable change and clinical cut-off of the total.
OQ45_RELIABLE_CHANGE = 14.0
OQ45_CUTOFF = 63.5
FORMULA = "y ~ intake_c + log_session + intake_c:log_session + (1 + log_session | patient)"


@dataclass(frozen=True)
class SignalSettings:
    """What the signal needs to know about the measure, and how it flags.

    ``higher_is_worse``: True for symptom scales (OQ-45), False where a higher score is better.
    ``reliable_change``: RC in score points (the fallback rule, the patients left out of the
    expected course, the validation's outcomes); ``cutoff``: the clinical cut-off (used in words
    only). ``intake``: a column with each patient's intake score (else their first session's
    score). ``rule``: ``trend`` or ``session`` (module docstring). ``horizon``, ``rate_not_on_track``,
    ``rate_at_risk``: the share of patients doing as expected flagged at some session of their
    first ``horizon`` sessions. ``date``: a column with each session's date (the validation's
    calendar split).
    """

    higher_is_worse: bool = True
    reliable_change: float | None = None
    cutoff: float | None = None
    intake: str | None = None
    symptoms: str = "symptoms"
    rule: str = DEFAULT_METHOD
    horizon: int = HORIZON
    rate_not_on_track: float = RATE_NOT_ON_TRACK
    rate_at_risk: float = RATE_AT_RISK
    date: str | None = None

    @property
    def sign(self) -> float:
        return 1.0 if self.higher_is_worse else -1.0

    @property
    def rates(self) -> tuple[float, float]:
        return (float(self.rate_not_on_track), float(self.rate_at_risk))


@dataclass(frozen=True)
class Message:
    """A sentence kept in English with its values and translated where it is shown (``str()``), so
    that a model fitted once serves every language. A value may itself be a :class:`Message`."""

    text: str
    values: tuple = ()

    def __str__(self) -> str:
        kw = {k: (str(v) if isinstance(v, Message) else v) for k, v in self.values}
        return _(self.text).format(**kw) if kw else _(self.text)


def message(text: str, **values) -> Message:
    """A :class:`Message` (``text`` marked with ``N_`` where it is written)."""
    return Message(text, tuple(values.items()))


TERMS = ("intercept", "intake_c", "log_session", "intake_c:log_session")
KIND_FORMULAS = {
    "random_slope": FORMULA,
    "random_intercept": "y ~ intake_c + log_session + intake_c:log_session + (1 | patient)",
    "regression": "y ~ intake_c (least squares, the first predicted session only)",
}


def fit_sessions(first: float, last: float) -> list[float]:
    """The course sessions at which the expected course is refitted: every session up to 12, then
    about every 25% more (15, 19, 24, 30, …), from ``first`` to ``last``."""
    grid, t = [], 1.0
    while t <= max(last, first):
        if t >= first:
            grid.append(t)
        t = t + 1 if t < 12 else float(math.floor(t * 1.25))
    return grid or [first]


@dataclass(frozen=True)
class CourseFit:
    """The expected course fitted on the clinic's scored sessions up to course session ``up_to``.

    ``fixed``: β = (intercept, intake_c, log_session, intake_c:log_session); ``fixed_cov``: their
    covariance; ``patient_cov``: G, the patients' random-effects covariance (intercept,
    log_session; zeros where the fit has no such term); ``residual``: σ². ``kind``:
    ``random_slope`` (the model of the module docstring), ``random_intercept`` (when the data up
    to ``up_to`` cannot identify a random slope) or ``regression`` (the first predicted session:
    one score per patient, so patient and session variance are one residual variance).
    ``n_left_out``: patients left out of this refit (latest score so far a reliable
    deterioration). ``bounds``: per rule ``(rule, not on track, at risk)``, the bounds on the
    rule's statistic (:mod:`core.clinical.signal_bounds`).
    """

    up_to: float
    kind: str
    fixed: np.ndarray = field(repr=False)
    fixed_cov: np.ndarray = field(repr=False)
    patient_cov: np.ndarray = field(repr=False)
    residual: float
    n_patients: int
    n_observations: int
    converged: bool = True
    singular: bool = False
    n_left_out: int = 0
    bounds: tuple = ()

    def predict(self, intake_c, course_session) -> tuple[np.ndarray, np.ndarray]:
        """Expected score and prediction SD of a new patient's score (``intake_c``: centred intake)."""
        x = np.asarray(intake_c, float)
        t = np.log(np.asarray(course_session, float))
        z = np.stack([np.ones_like(x * t), x + 0 * t, t + 0 * x, x * t], axis=-1)
        mean = z @ self.fixed
        g = self.patient_cov
        between = g[0, 0] + 2 * t * g[0, 1] + t * t * g[1, 1]
        fixed_var = np.einsum("...i,ij,...j->...", z, self.fixed_cov, z)
        return mean, np.sqrt(np.maximum(between + self.residual + fixed_var, 0.0))

    def bound(self, rule: str) -> tuple[float, float] | None:
        """The (not on track, at risk) bounds of ``rule`` on this refit, or None if not computed."""
        return next(((red, amber) for r, red, amber in self.bounds if r == rule), None)

    def as_dict(self) -> dict:
        return {
            "up_to_session": _num(self.up_to), "kind": self.kind, "formula": KIND_FORMULAS[self.kind],
            "fixed": {n: float(v) for n, v in zip(TERMS, self.fixed)},
            "fixed_se": {n: float(math.sqrt(max(self.fixed_cov[i, i], 0.0))) for i, n in enumerate(TERMS)},
            "variance": {"patient_intercept": float(self.patient_cov[0, 0]),
                         "patient_slope": float(self.patient_cov[1, 1]),
                         "patient_intercept_slope_cov": float(self.patient_cov[0, 1]),
                         "residual": float(self.residual)},
            "n_patients": self.n_patients, "n_observations": self.n_observations, "n_left_out": self.n_left_out,
            "converged": self.converged, "singular": self.singular,
            "bounds": {r: {"not_on_track": red, "at_risk": amber} for r, red, amber in self.bounds},
        }


@dataclass(frozen=True)
class SignalModel:
    """The expected course: one :class:`CourseFit` per refit session (``fits``, by ``up_to``), or
    ``method="reliable_change"`` with the reason there is no local model.

    Holds no sentence in any language: ``reason`` and ``warnings`` are translated when read, so a
    model fitted once serves every language. ``source``: where the expected course came from
    (``{"kind": "own"}``, or an outside norm's description: :mod:`core.clinical.signal_norm`).
    ``left_out_rc``: the reliable change by which patients were left out of the refits (None: none
    were); ``horizon`` and ``rates``: what the bounds were calibrated for.
    """

    method: str
    intake: str | None
    fits: tuple[CourseFit, ...] = ()
    intake_mean: float = float("nan")
    n_patients: int = 0
    n_observations: int = 0
    n_courses: int = 0
    last_session: float | None = None
    notes: tuple = ()
    reason_message: Message | None = None
    left_out_rc: float | None = None
    higher_is_worse: bool = True
    horizon: int = HORIZON
    rates: tuple = (RATE_NOT_ON_TRACK, RATE_AT_RISK)
    source: dict = field(default_factory=lambda: {"kind": "own"})

    @property
    def local(self) -> bool:
        return self.method == "mixed_model"

    @property
    def reason(self) -> str:
        """Why there is no local model, in the current language ("" when there is one)."""
        return str(self.reason_message) if self.reason_message is not None else ""

    @property
    def warnings(self) -> tuple[str, ...]:
        """The fits' notes in the current language."""
        return tuple(dict.fromkeys(str(n) for n in self.notes))

    @property
    def first_session(self) -> int:
        """The first session of the course with an expected score (1 with an intake column, else 2)."""
        return 1 if self.intake else 2

    @property
    def outside(self) -> bool:
        """True when the expected course is an outside norm, not the data's own."""
        return self.source.get("kind", "own") != "own"

    def predict(self, intake, course_session) -> tuple[np.ndarray, np.ndarray]:
        """Expected score and prediction SD for a new patient with ``intake`` at ``course_session``,
        from the fit on the sessions up to that session (the last refit at or before it; NaN
        before the first)."""
        x = np.asarray(intake, float) - self.intake_mean
        j = np.asarray(course_session, float)
        x, j = np.broadcast_arrays(x, j)
        mean, sd = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
        if not self.fits:
            return mean, sd
        which = self.fit_index(j)
        for k, fit in enumerate(self.fits):
            sel = which == k
            if sel.any():
                mean[sel], sd[sel] = fit.predict(x[sel], j[sel])
        return mean, sd

    def fit_index(self, course_session) -> np.ndarray:
        """Which refit judges each course session (−1 before the first)."""
        ups = np.array([f.up_to for f in self.fits])
        return np.searchsorted(ups, np.asarray(course_session, float), side="right") - 1

    def as_dict(self) -> dict:
        """The model's numbers for a report (plain floats)."""
        out = {"method": self.method, "n_patients": self.n_patients, "n_courses": self.n_courses,
               "source": dict(self.source)}
        if not self.local:
            return {**out, "reason": self.reason}
        return {**out, "formula": FORMULA, "intake_mean": float(self.intake_mean),
                "n_observations": self.n_observations, "last_session": _num(self.last_session),
                "left_out_reliable_change": self.left_out_rc, "horizon": self.horizon,
                "rates": {"not_on_track": self.rates[0], "at_risk": self.rates[1]},
                "fits": [f.as_dict() for f in self.fits], "warnings": list(self.warnings)}


def _num(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------------- courses

def courses(data: pd.DataFrame, symptoms: str = "symptoms", intake: str | None = None,
            patient: str = "patient") -> pd.DataFrame:
    """Each patient's sessions with their place in the course.

    Columns: ``patient, session, course_session`` (session − the patient's first scored session
    + 1), ``observed`` (the score), ``intake`` (the intake column's first non-missing value, or the
    score at the first scored session). Sessions without a score are kept with ``observed`` NaN
    (they get status ``unknown``); sorted by patient and session.
    """
    if symptoms not in data.columns:
        raise ModelError(_("The signal needs a {measure} score; this data set has none.").format(
            measure=role_name(symptoms)))
    if intake is not None and intake not in data.columns:
        raise ModelError(_("There is no column '{column}' to use as the intake score.").format(column=intake))
    cols = [patient, "session", symptoms] + ([intake] if intake and intake != symptoms else [])
    out = data[cols].rename(columns={patient: "patient", symptoms: "observed"})
    out, groups = sort_by_patient(out)  # sorted once; patients as runs of rows (no ID hashed)
    out = out.reset_index(drop=True)
    if len(out) and groups.min() < 0:  # a missing patient ID: grouped by the IDs, as pandas does
        groups = out["patient"]
    out["observed"] = pd.to_numeric(out["observed"], errors="coerce").astype(float)
    first = out["session"].where(out["observed"].notna()).groupby(groups).transform("min")
    out["course_session"] = (out["session"] - first + 1).astype(float)
    if intake is not None:
        values = out[intake if intake != symptoms else "observed"]
        if not pd.api.types.is_numeric_dtype(values):
            from core.intake.validation import parse_numbers

            values = parse_numbers(values.astype(str))[0]
        values = pd.to_numeric(values, errors="coerce")
        out["intake"] = values.groupby(groups).transform("first").astype(float)
    else:
        out["intake"] = out["observed"].where(out["course_session"] == 1).groupby(groups).transform("first")
    return out[["patient", "session", "course_session", "observed", "intake"]]


def fit_signal_model(data: pd.DataFrame, settings: SignalSettings = SignalSettings(), *,
                     patient: str = "patient", min_courses: int = MIN_COURSES, rules=None) -> SignalModel:
    """Fit the expected course (module docstring) to ``data``: every patient in it, less — at each
    refit — those whose latest score so far is a reliable deterioration (with
    ``settings.reliable_change``). ``rules``: the rules to compute bounds for (default:
    ``settings.rule``; :data:`METHODS` for both).

    Returns ``method="reliable_change"`` with a plain ``reason`` when there are fewer than
    ``min_courses`` completed courses or the model cannot be fitted.
    """
    table = courses(data, settings.symptoms, settings.intake, patient)
    return fit_table(table, settings, min_courses, rules)


def _left_out_rc(settings: SignalSettings) -> float | None:
    rc = settings.reliable_change
    return float(rc) if rc is not None and rc > 0 else None


def fit_table(table: pd.DataFrame, settings: SignalSettings, min_courses: int = MIN_COURSES,
               rules=None) -> SignalModel:
    with_intake_column = settings.intake is not None
    scored = table.loc[table["observed"].notna()]
    n_courses = int((scored.groupby("patient")["course_session"].max() >= COURSE_SESSIONS).sum())
    base = dict(intake="column" if with_intake_column else None, n_patients=int(scored["patient"].nunique()),
                n_courses=n_courses, higher_is_worse=settings.higher_is_worse, horizon=int(settings.horizon),
                rates=settings.rates)
    if n_courses < min_courses:
        return SignalModel(method="reliable_change", reason_message=message(N_(
            "This clinic's completed courses (patients with at least {sessions} sessions): {n}; a local expected "
            "course needs at least {min}."), n=n_courses, sessions=COURSE_SESSIONS, min=min_courses), **base)
    first = 1.0 if with_intake_column else 2.0
    rows = scored.loc[scored["intake"].notna() & scored["course_session"].ge(first)]
    if rows["patient"].nunique() < MIN_PATIENTS_AT_SESSION:
        return SignalModel(method="reliable_change",
                           reason_message=message(N_("Too few patients have sessions after the intake.")), **base)
    intake_mean = float(scored.groupby("patient")["intake"].first().mean())
    codes = pd.factorize(rows["patient"].astype(str), sort=True)[0]
    frame = pd.DataFrame({
        "patient": rows["patient"].astype(str).to_numpy(),
        "code": codes,  # for the profiled engine's sums
        "y": rows["observed"].to_numpy(float),
        "intake_c": rows["intake"].to_numpy(float) - intake_mean,
        "log_session": np.log(rows["course_session"].to_numpy(float)),
        "course_session": rows["course_session"].to_numpy(float),
    })
    rc = _left_out_rc(settings)
    left_out_at = left_out_rows(codes, rows["observed"].to_numpy(float) - rows["intake"].to_numpy(float),
                                 settings.sign, rc)
    fits, notes, errors = [], [], []
    previous = -np.inf
    start: dict[str, np.ndarray] = {}  # each refit starts from the last refit of its kind
    for t in fit_sessions(first, float(frame["course_session"].max())):
        window = frame["course_session"].gt(previous) & frame["course_session"].le(t)
        if frame.loc[window, "patient"].nunique() < MIN_PATIENTS_AT_SESSION:
            continue  # too few new sessions: the previous fit goes on
        previous = t
        part, n_left = _without_deteriorated(frame, left_out_at, t)
        try:
            fit, messages = _fit_course(part, t, regression=not fits, start=start)
        except ModelError as err:
            errors.append(message(N_("session {session:g}: {error}"), session=t, error=Message(str(err))))
            continue
        fits.append(replace(fit, n_left_out=n_left))
        notes += messages
    if not fits or fits[0].up_to > first:
        reason = errors[0] if errors else message(N_("fewer than {n} patients have a score at session {session:g}"),
                                                  n=MIN_PATIENTS_AT_SESSION, session=first)
        return SignalModel(method="reliable_change", reason_message=message(
            N_("The clinic's expected course could not be fitted ({reason})."), reason=reason), **base)
    if errors:
        notes.append(message(N_("Some refits failed and the previous session's fit is used there: {errors}."),
                             errors=_Joined(tuple(errors[:3]))))
    model = SignalModel(method="mixed_model", fits=tuple(fits), intake_mean=intake_mean, n_observations=len(frame),
                        last_session=EXTRAPOLATE * fits[-1].up_to, notes=tuple(dict.fromkeys(notes)),
                        left_out_rc=rc, **base)
    return with_bounds(model, settings, rules)


@dataclass(frozen=True)
class _Joined:
    """Messages joined by "; " when shown (each translated)."""

    parts: tuple

    def __str__(self) -> str:
        return "; ".join(str(p) for p in self.parts)


def left_out_rows(codes: np.ndarray, change: np.ndarray, sign: float, rc: float | None) -> np.ndarray:
    """Per row (sorted by patient and session): True when this score is worse than the patient's
    intake by at least ``rc`` and their score before it by at least ``rc / 2`` — a reliable
    deterioration that is not one bad day (a single noisy score would leave out patients who are
    doing as expected, and narrow their course)."""
    if rc is None:
        return np.zeros(len(change), dtype=bool)
    worse = sign * change
    before = np.r_[False, (worse[:-1] >= rc / 2) & (codes[1:] == codes[:-1])]
    return (worse >= rc) & before


def _without_deteriorated(frame: pd.DataFrame, worse: np.ndarray, t: float) -> tuple[pd.DataFrame, int]:
    """The rows up to course session ``t`` of the patients whose latest score up to ``t`` is not a
    reliable deterioration (rows are sorted by patient and session), and how many were left out."""
    j = frame["course_session"].to_numpy()
    upto = j <= t
    if not worse.any():
        return frame.loc[upto], 0
    codes = frame["code"].to_numpy()
    # the latest row up to t of each patient: up to t, and the next row is another patient's or later than t
    next_same = np.r_[codes[1:] == codes[:-1], False]
    next_upto = np.r_[upto[1:], False]
    latest = upto & ~(next_same & next_upto)
    bad = np.zeros(int(codes.max()) + 1, dtype=bool)
    bad[codes[latest & worse]] = True
    keep = upto & ~bad[codes]
    part = frame.loc[keep]
    if not bad.any():
        return part, 0
    # codes 0 … n−1 again (the profiled engine counts groups from the largest code)
    recode = np.cumsum(~bad) - 1
    part = part.assign(code=recode[codes[keep]])
    return part, int(bad.sum())


def with_bounds(model: SignalModel, settings: SignalSettings, rules=None) -> SignalModel:
    """``model`` with the bounds of ``rules`` (default ``settings.rule``) on every refit, for
    ``settings``' horizon and rates (computed where missing, by
    :func:`core.clinical.signal_bounds.sequential_bounds`; the same numbers on any machine)."""
    if not model.local:
        return model
    rules = tuple(rules) if rules is not None else (settings.rule,)
    horizon, rates = int(settings.horizon), settings.rates
    same = model.horizon == horizon and tuple(model.rates) == rates and \
        model.higher_is_worse == settings.higher_is_worse
    if same and all(f.bound(r) is not None for f in model.fits for r in rules):
        return model
    have = [{r: (red, amber) for r, red, amber in f.bounds} if same else {} for f in model.fits]
    refits = [(f.up_to, fit_parameters(f, settings.sign)) for f in model.fits]
    for r in rules:
        if r not in METHODS:
            raise ValueError(f"unknown signal rule {r!r}")
        if all(r in h for h in have):
            continue
        for h, b in zip(have, sequential_bounds(r, refits, model.first_session, horizon, rates)):
            h[r] = b
    fits = tuple(replace(f, bounds=tuple((r, float(a), float(b)) for r, (a, b) in sorted(h.items())))
                 for f, h in zip(model.fits, have))
    return replace(model, fits=fits, horizon=horizon, rates=rates, higher_is_worse=settings.higher_is_worse)


def _fit_course(frame: pd.DataFrame, up_to: float, regression: bool,
                start: dict | None = None) -> tuple[CourseFit, list[str]]:
    """One fit of the expected course on ``frame`` (the clinic's sessions up to ``up_to``).
    ``start``: the relative covariance factors (lme4's theta) of the last refit of each kind, used
    as starting values (about half the time; same optimum) and updated."""
    n, n_pat = len(frame), frame["patient"].nunique()
    if frame["y"].nunique() < 2:
        raise ModelError(N_("every score is the same"))
    if frame["intake_c"].nunique() < 2:
        raise ModelError(N_("the intake scores do not vary"))
    if regression or frame["log_session"].nunique() < 2:
        if n < 4:
            raise ModelError(N_("fewer than 4 patients"))
        return _regression(frame, up_to), []
    errors = []
    for slope in (True, False):
        if slope and n <= 2 * n_pat:
            continue
        kind = "random_slope" if slope else "random_intercept"
        try:
            fit, notes, theta = _lmer(frame, up_to, slope, None if start is None else start.get(kind))
        except ModelError as err:
            errors.append(str(err))
            continue
        if start is not None:
            start[kind] = theta
        return fit, notes
    raise ModelError(errors[-1] if errors else N_("too few sessions per patient"))


def _regression(frame: pd.DataFrame, up_to: float) -> CourseFit:
    """Least squares of the scores at the first predicted session on the intake."""
    x = frame["intake_c"].to_numpy(float)
    design = np.column_stack([np.ones_like(x), x])
    y = frame["y"].to_numpy(float)
    beta = np.linalg.lstsq(design, y, rcond=None)[0]
    resid = y - design @ beta
    s2 = float(resid @ resid / (len(y) - 2))
    cov2 = s2 * np.linalg.inv(design.T @ design)
    fixed = np.zeros(4)
    fixed[:2] = beta
    fixed_cov = np.zeros((4, 4))
    fixed_cov[:2, :2] = cov2
    return CourseFit(up_to=up_to, kind="regression", fixed=fixed, fixed_cov=fixed_cov, patient_cov=np.zeros((2, 2)),
                     residual=s2, n_patients=int(frame["patient"].nunique()), n_observations=len(frame))


def _lmer(frame: pd.DataFrame, up_to: float, random_slope: bool,
          start: np.ndarray | None = None) -> tuple[CourseFit, list[str], np.ndarray]:
    """REML fit of the signal model (lme4's criterion): by :mod:`core.stats.profiled` from the
    patients' sums (seconds for 100,000 patients), else — a fit that does not end at a clean
    optimum, or collinear predictors — by mixedlm; ``start``: theta to start from."""
    profiled = _lmer_profiled(frame, up_to, random_slope, start)
    if profiled is not None:
        return profiled
    return _lmer_mixedlm(frame, up_to, random_slope, start)


def _lmer_profiled(frame: pd.DataFrame, up_to: float, random_slope: bool,
                   start: np.ndarray | None = None) -> tuple[CourseFit, list[str], np.ndarray] | None:
    from core.stats.profiled import block_covariances, fit_profiled, grouped_sums

    if "code" not in frame.columns:
        return None
    x = frame["intake_c"].to_numpy(float)
    t = frame["log_session"].to_numpy(float)
    one = np.ones(len(frame))
    X = np.column_stack([one, x, t, x * t])
    sums = grouped_sums(frame["y"].to_numpy(float), X,
                        [(frame["code"].to_numpy(np.int64), [one, t] if random_slope else [one])])
    if sums is None:
        return None
    width = 3 if random_slope else 1
    try:
        with np.errstate(all="ignore"):
            fit = fit_profiled(sums, reml=True, start=start if start is not None and len(start) == width else None)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError):
        return None
    if not fit.clean:
        return None
    fixed = np.asarray(fit.beta, float)
    fixed_cov = fit.vcov()
    cov = block_covariances(fit)[0]
    g = np.zeros((2, 2))
    g[: cov.shape[0], : cov.shape[1]] = cov
    residual = float(fit.sigma ** 2)
    if not (np.all(np.isfinite(fixed)) and np.all(np.isfinite(fixed_cov)) and math.isfinite(residual)):
        return None
    course = CourseFit(up_to=up_to, kind="random_slope" if random_slope else "random_intercept", fixed=fixed,
                       fixed_cov=fixed_cov, patient_cov=g, residual=residual,
                       n_patients=int(frame["patient"].nunique()), n_observations=len(frame), converged=True,
                       singular=fit.isSingular())
    return course, [], np.asarray(fit.theta, float)


def _lmer_mixedlm(frame: pd.DataFrame, up_to: float, random_slope: bool,
                  start: np.ndarray | None = None) -> tuple[CourseFit, list[str], np.ndarray]:
    """REML fit of the signal model with mixedlm (lme4's algorithm); ``start``: theta to start from."""
    import mixedlm

    terms = ["intake_c", "log_session", "intake_c:log_session"]
    formula = "y ~ " + " + ".join(terms) + (" + (log_session | patient)" if random_slope else " + (1 | patient)")
    data = frame[["patient", "y", "intake_c", "log_session"]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # L-BFGS-B with exact gradients: near-singular refits (common in small clinics) take a
            # tenth of the time of mixedlm's default, which then polishes with COBYQA; the REML
            # criterion and estimates agree with tight tolerances. The default takes over when it does not converge.
            result = mixedlm.lmer(formula, data, REML=True, control=mixedlm.LmerControl(
                optimizer="L-BFGS-B", use_analytic_gradient=True, ftol=1e-14, gtol=1e-10),
                **({"start": start} if start is not None else {}))
            if not result.converged:
                result = mixedlm.lmer(formula, data, REML=True)
        except (RuntimeError, ValueError, np.linalg.LinAlgError) as err:
            raise ModelError(str(err)) from None
    fe = result.fixef()
    order = ["(Intercept)", *terms]
    if any(name not in fe for name in order):
        raise ModelError(N_("a term of the model could not be estimated (the predictors are collinear)"))
    fixed = np.array([float(fe[name]) for name in order])
    fixed_cov = np.asarray(result.vcov(), float)
    vc = result.VarCorr()
    cov = np.atleast_2d(np.asarray(vc.groups["patient"].cov, float))
    g = np.zeros((2, 2))
    g[: cov.shape[0], : cov.shape[1]] = cov
    residual = float(vc.residual)
    if not (np.all(np.isfinite(fixed)) and np.all(np.isfinite(fixed_cov)) and math.isfinite(residual)):
        raise ModelError(N_("the fit gave no finite estimates"))
    notes = [Message(str(w.message).strip()) for w in caught if "singular" not in str(w.message).lower()]
    converged = bool(result.converged)
    if not converged:
        notes.append(message(N_("The fit up to session {session:g} did not converge; treat its bounds with caution."),
                             session=up_to))
    fit = CourseFit(up_to=up_to, kind="random_slope" if random_slope else "random_intercept", fixed=fixed,
                    fixed_cov=fixed_cov, patient_cov=g, residual=residual, n_patients=int(frame["patient"].nunique()),
                    n_observations=len(frame), converged=converged, singular=bool(result.isSingular()))
    return fit, notes, np.asarray(result.theta, float)


# --------------------------------------------------------------------------------- statuses

def _fmt(v: float, decimals: int | None = None) -> str:
    """A score for a sentence. With ``decimals`` (those the tables show: the scores' own, one more for
    what the model computes; :func:`core.i18n.model_decimals`) written by the interface's one formatter, so that
    a reason says "expected 111.5" where the table shows 111.5; without, whole numbers as such, else
    3 significant digits (1 decimal from 10)."""
    if decimals is not None:
        return number_text(v, decimals)
    v = float(v)
    if v.is_integer():
        return f"{v:.0f}"
    return number(v, ".3g" if abs(v) < 10 else ".0f" if abs(v) >= 100 else ".1f")


def _running_sums(codes: np.ndarray, use: np.ndarray, lt: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row, over the patient's rows up to and including it where ``use``: the count and the sums
    of ln j, ln² j, y and y·ln j (each patient summed on its own, so other patients' rows never
    touch a patient's numbers)."""
    values = np.empty((len(use), 5))  # one block: a frame of five columns is copied into one first
    values[:, 0] = use
    values[:, 1] = np.where(use, lt, 0.0)
    values[:, 2] = values[:, 1] * lt
    values[:, 3] = np.where(use, y, 0.0)
    values[:, 4] = values[:, 3] * lt
    return pd.DataFrame(values).groupby(codes, sort=False).cumsum().to_numpy()


def signal_numbers(table: pd.DataFrame, model: SignalModel, settings: SignalSettings) -> dict:
    """The signal's numbers for every row of :func:`courses` (no sentences): ``usable`` (a score,
    an intake, after the starting point), ``beyond`` (too far beyond the data), ``expected, sd,
    lower, upper, at_risk_bound, z`` (the rule's statistic), ``estimate`` (points, positive =
    worse), ``slope``, ``part`` (which part of the ``trend`` statistic is larger: 0 now, 1 the rate
    of change), ``bound, bound_at_risk`` (the bounds on ``z``) and ``status``. ``model`` must be
    local; its bounds for ``settings.rule`` are computed if missing."""
    model = with_bounds(model, settings)
    sign = settings.sign
    obs, intake = table["observed"].to_numpy(float), table["intake"].to_numpy(float)
    j = table["course_session"].to_numpy(float)
    n = len(table)
    out = {k: np.full(n, np.nan) for k in ("expected", "sd", "lower", "upper", "at_risk_bound", "z", "estimate",
                                           "slope", "part", "bound", "bound_at_risk")}
    code = np.zeros(n, dtype=np.int8)  # the status as its place in STATUS_NAMES
    first = (j == 1) & (model.intake is None)
    usable = ~np.isnan(obs) & ~np.isnan(intake) & ~first & (j >= model.first_session)
    beyond = usable & (j > (model.last_session if model.last_session is not None else -np.inf))
    which = model.fit_index(np.where(np.isnan(j), -np.inf, j))
    ok = usable & ~beyond & (which >= 0)
    lt = np.log(np.where(ok, j, 1.0))
    ys = sign * np.where(ok, obs, 0.0)
    codes = patient_numbers(table)
    sums = _running_sums(codes, ok, lt, ys)
    x = intake - model.intake_mean
    for k, fit in enumerate(model.fits):
        sel = np.flatnonzero(ok & (which == k))
        if not len(sel):
            continue
        mean, spread = fit.predict(x[sel], j[sel])
        good = np.isfinite(mean) & np.isfinite(spread) & (spread > 0)
        sel, mean, spread = sel[good], mean[good], spread[good]
        res = statistics(settings.rule, fit_parameters(fit, sign), x[sel], lt[sel], *sums[sel].T, ys[sel])
        red, amber = fit.bound(settings.rule)
        r_red, r_amber = score_bound(res["parts"], red), score_bound(res["parts"], amber)
        out["expected"][sel], out["sd"][sel] = mean, spread
        out["lower"][sel], out["upper"][sel] = mean - r_red, mean + r_red
        out["at_risk_bound"][sel] = mean + sign * r_amber
        out["z"][sel], out["estimate"][sel], out["slope"][sel] = res["T"], res["estimate"], res["slope"]
        out["part"][sel] = np.argmax(np.stack(res["T_parts"]), axis=0)
        out["bound"][sel], out["bound_at_risk"][sel] = red, amber
        code[sel] = np.where(res["T"] > red, 3, np.where(res["T"] > amber, 2, 1))
    out.update(status=STATUS_NAMES[code], status_code=code, usable=usable, beyond=beyond, model=model)
    return out


#: The statuses by number (``signal_numbers``' ``status_code``).
STATUS_NAMES = np.array(["unknown", "on_track", "at_risk", "not_on_track"], dtype=object)


def _texts(n: int, text: str) -> np.ndarray:
    """An object array of ``n`` times ``text`` (``np.full`` makes ``n`` new strings: 0.1 s for a million)."""
    out = np.empty(n, dtype=object)
    out.fill(text)
    return out


def _text_column(codes: np.ndarray, names) -> pd.api.extensions.ExtensionArray:
    """``names[codes]`` as a column of pandas' text type, built from the few names (a million rows:
    15 ms; from a million Python strings: 0.1 s)."""
    try:
        import pyarrow as pa

        names = pa.array([str(x) for x in names], type=pa.large_string())
        return pd.array(pa.DictionaryArray.from_arrays(pa.array(codes), names).cast(pa.large_string()), dtype="str")
    except (ImportError, TypeError, ValueError):  # pandas' text type without pyarrow
        return pd.array(np.asarray(names, dtype=object)[codes], dtype="str")


def status_table(table: pd.DataFrame, model: SignalModel, settings: SignalSettings) -> pd.DataFrame:
    """The rows of :func:`courses` with each session's ``status`` only (no sentences; the fallback
    rule where ``model`` is not local): what the validation and the calibration count."""
    out = table[["patient", "course_session", "observed", "intake"]].copy()
    if model.local:
        out["status"] = signal_numbers(table, model, settings)["status"]
        return out
    status = np.full(len(out), "unknown", dtype=object)
    rc = settings.reliable_change
    obs, intake = out["observed"].to_numpy(float), out["intake"].to_numpy(float)
    first = (out["course_session"].to_numpy(float) == 1) & (settings.intake is None)
    ok = ~np.isnan(obs) & ~np.isnan(intake) & ~first
    if rc is not None and rc > 0:
        worse = settings.sign * (obs[ok] - intake[ok])
        status[ok] = np.where(worse >= rc, "not_on_track", np.where(worse >= rc / 2, "at_risk", "on_track"))
    out["status"] = status
    return out


def session_signal(data: pd.DataFrame, model: SignalModel, settings: SignalSettings = SignalSettings(),
                   *, patient: str = "patient", reasons: bool = True, decimals: int | None = None) -> pd.DataFrame:
    """Every session's expected score, bounds and status (module docstring).

    Columns: ``patient, session, course_session, observed, intake, expected, sd`` (the prediction
    SD of an individual score at that session), ``lower, upper`` (the scores at this session beyond
    which, on the worse side, it is ``not_on_track`` given the earlier scores; the other side
    mirrored; the fallback: intake ± reliable change), ``at_risk_bound`` (the same for ``at_risk``),
    ``flag_bound`` (the worse one of ``lower``/``upper`` where it lies on the worse side of
    ``expected``; NaN where the earlier scores alone keep the session not on track, whatever its
    score), ``deviation`` (observed − expected, in points, positive = worse), ``z`` (the rule's
    statistic), ``estimate`` (``trend``: the estimated current deviation, points, positive =
    worse), ``bound`` / ``bound_at_risk`` (the bounds on ``z``), ``status`` and ``reason`` (plain
    words). ``data``: any rows of the clinic (e.g. one therapist's patients); the model comes from
    :func:`fit_signal_model` (or an outside norm).

    ``reasons=False``: every ``reason`` is "" (the numbers and statuses are the same): a national
    data set's million sentences cost seconds, and a page shows a few of them; it writes those for
    the rows it shows with ``reasons=True`` on those rows and ``decimals`` (the decimals of the
    scores, :func:`core.i18n.decimals_for` of the whole table's ``observed``), so that they read as
    they would in the whole table.
    """
    table = courses(data, settings.symptoms, settings.intake, patient)
    sign = settings.sign
    obs, intake, j = table["observed"].to_numpy(float), table["intake"].to_numpy(float), table["course_session"].to_numpy(float)
    n = len(table)
    reason = _texts(n, "")
    no_score = np.isnan(obs)
    no_intake = np.isnan(intake)
    first = (j == 1) & (settings.intake is None)
    d_obs = decimals_for(obs) if decimals is None else int(decimals)
    reason[no_score] = _("no score in this session")
    reason[~no_score & no_intake] = _("no intake score")
    reason[~no_score & ~no_intake & first] = _("first session: the starting point of the expected course")
    usable = ~no_score & ~no_intake & ~first
    names = ("expected", "sd", "lower", "upper", "at_risk_bound", "z", "estimate", "bound", "bound_at_risk")
    status = code = None
    if model.local:
        nums = signal_numbers(table, model, settings)
        cols = {k: nums[k] for k in names}
        status, code = nums["status"], nums["status_code"]
        reason[nums["beyond"]] = _("too little data: this clinic's courses do not reach far enough to say what is "
                                   "usual at this session")
        judged = status != "unknown"
        reason[usable & ~nums["beyond"] & ~judged] = _("the clinic's data cannot say what is usual at this session")
        if reasons:
            _model_reasons(reason, judged, obs, nums, settings, d_obs)
    else:
        cols = {k: np.full(n, np.nan) for k in names}
        status = _texts(n, "unknown")
        rc = settings.reliable_change
        if rc is None or not rc > 0:
            reason[usable] = _("no local model and no reliable-change value to fall back on")
        else:
            ok = usable
            cols["expected"][ok] = intake[ok]
            cols["lower"][ok], cols["upper"][ok] = intake[ok] - rc, intake[ok] + rc
            cols["at_risk_bound"][ok] = intake[ok] + sign * rc / 2
            worse = sign * (obs[ok] - intake[ok])
            st = np.where(worse >= rc, "not_on_track", np.where(worse >= rc / 2, "at_risk", "on_track"))
            status[ok] = st
            # worse >= rc / 2 > 0 for not_on_track and at_risk
            red = _("{change} points worse than at intake: a reliable deterioration (reliable change {rc})")
            yellow = _("{change} points worse than at intake: at least half the reliable change ({rc})")
            worse_than = _("{change} points worse than at intake")
            better_than = _("{change} points better than at intake")
            for k, w, s_ in zip(np.flatnonzero(ok) if reasons else (), worse, st):
                template = red if s_ == "not_on_track" else yellow if s_ == "at_risk" else \
                    worse_than if w > 0 else better_than
                reason[k] = template.format(change=_fmt(abs(w), d_obs), rc=_fmt(rc))
    out = table.copy(deep=False)  # copy-on-write: the new columns never reach ``table``
    for k in ("expected", "sd", "lower", "upper", "at_risk_bound"):
        out[k] = cols[k]
    # the not-on-track bound on this session's score where it lies on the worse side of the expected
    # score (else NaN: the earlier scores alone decide, whatever this score)
    worse_edge = cols["upper"] if sign > 0 else cols["lower"]
    with np.errstate(invalid="ignore"):
        out["flag_bound"] = np.where(sign * (worse_edge - cols["expected"]) > 0, worse_edge, np.nan)
    out["deviation"] = sign * (obs - cols["expected"])
    for k in ("z", "estimate", "bound", "bound_at_risk"):
        out[k] = cols[k]
    out["status"] = _text_column(code, STATUS_NAMES) if code is not None else status
    out["reason"] = reason if reasons else _text_column(np.zeros(n, dtype=np.int8), [""])
    return out


#: The sentences of judged sessions (English; translated where used): per rule and status; ``now`` and
#: ``slope`` are the two parts of the ``trend`` rule; ``bound``: what is said about the score bound.
REASONS = {
    ("session", "not_on_track"): N_("score {observed} is {gap} points worse than the expected {expected}, beyond "
                                    "this session's not-on-track bound {bound}"),
    ("session", "at_risk"): N_("score {observed} is {gap} points worse than the expected {expected}, beyond this "
                               "session's at-risk bound {bound}"),
    ("session", "worse"): N_("score {observed} is {gap} points worse than the expected {expected}"),
    ("session", "better"): N_("score {observed} is {gap} points better than the expected {expected}"),
    ("now", "not_on_track"): N_("score {observed}, expected {expected}: with the scores so far the course is about "
                                "{gap} points worse than expected now, past the not-on-track bound"),
    ("now", "at_risk"): N_("score {observed}, expected {expected}: with the scores so far the course is about {gap} "
                           "points worse than expected now, past the at-risk bound"),
    ("now", "worse"): N_("score {observed}, expected {expected}: with the scores so far, about {gap} points worse "
                         "than expected now"),
    ("now", "better"): N_("score {observed}, expected {expected}: with the scores so far, about {gap} points better "
                          "than expected now"),
    ("slope", "not_on_track"): N_("score {observed}, expected {expected}: the scores so far move away from the "
                                  "expected course (about {gap} points worse each time the number of sessions "
                                  "doubles), past the not-on-track bound"),
    ("slope", "at_risk"): N_("score {observed}, expected {expected}: the scores so far move away from the expected "
                             "course (about {gap} points worse each time the number of sessions doubles), past the "
                             "at-risk bound"),
    ("bound", "at"): N_("{reason} (at this session, any score worse than {bound})"),
    ("bound", "carried"): N_("{reason} (the earlier scores alone keep the course past it: even the expected score "
                             "would)"),
}


def _model_reasons(reason: np.ndarray, judged: np.ndarray, obs: np.ndarray, nums: dict,
                   settings: SignalSettings, d_obs: int) -> None:
    """The sentences of the judged sessions (in place). Their numbers are written for all rows at
    once (:func:`core.i18n.number_texts`) and the templates are plain strings filled with text:
    a national data set's million sentences in about a second rather than twenty."""
    sign = settings.sign
    idx = np.flatnonzero(judged)
    if not len(idx):
        return
    expected, status = nums["expected"][idx], nums["status"][idx]
    worse_bound = np.where(sign > 0, nums["upper"][idx], nums["lower"][idx])
    risk_bound = nums["at_risk_bound"][idx]
    t = {key: str(_(text)) for key, text in REASONS.items()}  # translated once per call, not per row
    d_model = max(d_obs, 1)  # as the tables show them (issue 24; core.i18n.model_decimals)
    o_text, m_text = number_texts(obs[idx], d_obs), number_texts(expected, d_model)
    bound = np.where(status == "not_on_track", worse_bound, risk_bound)
    b_text = number_texts(bound, d_model)

    if settings.rule == "session":
        gap = sign * (obs[idx] - expected)
        g_text = number_texts(np.abs(gap), d_model)
        for i, (k, s_) in enumerate(zip(idx.tolist(), status.tolist())):
            template = t[("session", s_)] if s_ in ("not_on_track", "at_risk") else \
                t[("session", "worse" if gap[i] > 0 else "better")]
            reason[k] = template.format(observed=o_text[i], gap=g_text[i], expected=m_text[i], bound=b_text[i])
        return
    estimate, per_log, part = nums["estimate"][idx], nums["slope"][idx], nums["part"][idx]
    flagged = (status == "not_on_track") | (status == "at_risk")
    by_slope = flagged & (part == 1) & np.isfinite(per_log)  # a flag said by the rate of change
    g_text = number_texts(np.where(by_slope, np.abs(per_log) * math.log(2), np.abs(estimate)), d_model)
    with np.errstate(invalid="ignore"):
        at_edge = sign * (bound - expected) > 0  # the bound lies on the worse side of the expected score
    finite = np.isfinite(bound)
    for i, (k, s_) in enumerate(zip(idx.tolist(), status.tolist())):
        if flagged[i]:
            text = t[("slope" if by_slope[i] else "now", s_)].format(observed=o_text[i], expected=m_text[i],
                                                                    gap=g_text[i])
            if not finite[i]:
                reason[k] = text
            elif at_edge[i]:
                reason[k] = t[("bound", "at")].format(reason=text, bound=b_text[i])
            else:
                reason[k] = t[("bound", "carried")].format(reason=text)
        else:
            reason[k] = t[("now", "worse" if estimate[i] > 0 else "better")].format(
                observed=o_text[i], expected=m_text[i], gap=g_text[i])


def patient_signal(sessions: pd.DataFrame, summaries: bool = True) -> pd.DataFrame:
    """One row per patient: the status of their latest session (``status``, ``session``,
    ``reason``, and ``summary``: a short version, e.g. "score 141, expected 105 (36 points
    worse)"), and how many of their sessions were ``not_on_track`` / ``at_risk``.
    ``summaries=False``: every ``summary`` is "" (no language: a page writes those it shows)."""
    cols = ["patient", "status", "session", "reason", "summary", "n_not_on_track", "n_at_risk"]
    sessions, codes, last = _latest_rows(sessions)
    if last.empty:
        return pd.DataFrame(columns=cols)
    last = last.set_index("patient")
    out = pd.DataFrame({"status": last["status"], "session": last["session"], "reason": last["reason"]})
    if not summaries:
        out["summary"] = _text_column(np.zeros(len(out), dtype=np.int8), [""])
    else:
        out["summary"] = _summaries(last, *summary_decimals(sessions["observed"]))
    status = sessions["status"]
    for s in ("not_on_track", "at_risk"):  # counted per patient (a crosstab of a million rows takes seconds)
        out[f"n_{s}"] = np.bincount(codes, weights=status.eq(s).to_numpy(dtype=bool, na_value=False),
                                    minlength=len(out)).astype(int)
    return out.reset_index()[cols]


def _latest_rows(sessions: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """``sessions`` of patients (rows without one left out) in patient and session order (the
    signal's own table is already), each row's patient number, and each patient's latest row."""
    sessions, codes = sort_by_patient(sessions, with_patient=True)
    if sessions.empty:
        return sessions, codes, sessions
    return sessions, codes, sessions.iloc[np.flatnonzero(np.r_[codes[1:] != codes[:-1], True])]


def summary_decimals(observed) -> tuple[int, int]:
    """The decimals :func:`patient_signal`'s summaries write scores and model numbers with (those of
    the tables: the scores' own, one more for what the model computes), from every score ``observed``."""
    return decimals_for(observed), model_decimals(observed)


def patient_summaries(sessions: pd.DataFrame, decimals: tuple[int, int] | None = None) -> dict:
    """``{patient: summary}`` of :func:`patient_signal` for the patients of ``sessions`` (rows of
    :func:`session_signal`): what a page writes for the patients it shows. ``decimals``: the whole
    table's (:func:`summary_decimals`), so that the summaries read as in the whole table."""
    sessions, _codes, last = _latest_rows(sessions)
    if last.empty:
        return {}
    texts = _summaries(last, *(decimals or summary_decimals(sessions["observed"])))
    return dict(zip(last["patient"].tolist(), list(texts)))


def _summaries(last: pd.DataFrame, d_obs: int, d_model: int):
    """The short reasons of the latest sessions ``last``, numbers with these decimals."""
    expected, deviation = last["expected"].to_numpy(float), last["deviation"].to_numpy(float)
    # the numbers written at once and the sentences joined column by column (130,000 patients)
    texts = {"observed": number_texts(last["observed"], d_obs), "expected": number_texts(expected, d_model),
             "gap": number_texts(np.abs(deviation), d_model)}
    worse = fill_template(_("score {observed}, expected {expected} ({gap} points worse)"), texts, len(last))
    better = fill_template(_("score {observed}, expected {expected} ({gap} points better)"), texts, len(last))
    blank = last["status"].eq("unknown").to_numpy(dtype=bool, na_value=True) | np.isnan(expected)
    summary = pd.Series(better).where(~(deviation > 0), pd.Series(worse))
    return summary.where(~blank, "").array


def status_sentence(status: str, session, reason: str) -> str:
    """One plain summary line, e.g. "Not on track (session 6): score 92 is 21 points worse …"."""
    label = status_label(status).capitalize()
    if isinstance(session, (int, float, np.number)) and not pd.isna(session):
        template = _("{status} (session {session:g}): {reason}.") if reason else _("{status} (session {session:g}).")
    else:
        template = _("{status}: {reason}.") if reason else "{status}."
    return template.format(status=label, session=session, reason=reason)


# --------------------------------------------------------------------------------- definition

def share_in_words(rate: float) -> str:
    """A share as a therapist says it: 0.10 → "1 in 10", 0.2 → "1 in 5", 0.15 → "15 in 100"."""
    rate = float(rate)
    if rate > 0:
        inverse = 1 / rate
        if abs(inverse - round(inverse)) < 1e-6:
            return _("1 in {n}").format(n=int(round(inverse)))
    return _("{k} in 100").format(k=number(100 * rate, "g"))


def calibration_sentence(settings: SignalSettings) -> str:
    """What the rates mean, in words: "1 in 10 patients who are doing as expected …"."""
    return _("{red} patients who are doing as expected will be flagged not on track at some point in their first "
             "{horizon} sessions, and {amber} at risk or worse.").format(
        red=share_in_words(settings.rate_not_on_track), amber=share_in_words(settings.rate_at_risk),
        horizon=int(settings.horizon))


def source_sentence(model: SignalModel) -> str:
    """Where the expected course came from, in words (this clinic, an outside norm)."""
    source = model.source
    kind = source.get("kind", "own")
    if kind == "own":
        return _("this data set's own courses ({n} patients)").format(n=number(model.n_patients, ","))
    name = source.get("name") or "—"
    if kind == "dataset":
        return _("an outside norm: the courses of data set “{name}” ({n} patients)").format(
            name=name, n=number(model.n_patients, ","))
    made = source.get("created")
    text = _("an outside norm: the norm file “{name}” ({n} patients)").format(name=name,
                                                                             n=number(model.n_patients, ","))
    return text + (" " + _("made on {date}").format(date=made) if made else "")


def definition(model: SignalModel, settings: SignalSettings = SignalSettings()) -> str:
    """How the expected course, its bounds and the statuses were computed, in plain words."""
    worse = _("higher scores are worse") if settings.higher_is_worse else _("lower scores are worse")
    start = (_("the patient's intake score (column '{column}')").format(column=settings.intake) if settings.intake
             else _("the patient's score at their first session"))
    if model.local:
        parts = [calibration_sentence(settings)]
        parts.append(_(
            "Expected course: from {source}: the linear mixed model {formula}, fitted by REML (lme4's method, "
            "mixedlm), where y is the score, intake_c {start} minus the mean intake ({intake_mean:.4g}), and "
            "log_session the natural log of the session of the course (1 at the patient's first session).").format(
            source=source_sentence(model), formula=FORMULA, start=start, intake_mean=model.intake_mean))
        if model.left_out_rc is not None:
            parts.append(_("Each refit leaves out the patients whose latest score so far was a reliable deterioration "
                           "from their intake ({rc} points or more) and whose score before it was already at least "
                           "half that much worse: they are not doing as expected.").format(
                rc=_fmt(model.left_out_rc)))
        if settings.rule == "trend":
            parts.append(_(
                "Status ({direction}): from all the patient's scores since the intake — their own level and rate of "
                "change, shrunk toward the expected course as the model does (empirical Bayes) — not on track when "
                "the estimated deviation now, or that of the rate of change, is beyond the not-on-track bound; at "
                "risk when beyond the at-risk bound; on track otherwise.").format(direction=worse))
        else:
            parts.append(_(
                "Status ({direction}): this session's score against the expected score, in prediction SDs "
                "(random-effects variance at that session + residual variance + the fixed part's standard error "
                "squared): not on track when beyond the not-on-track bound; at risk when beyond the at-risk bound; "
                "on track otherwise.").format(direction=worse))
        parts.append(_(
            "The bounds were set by simulating {draws} patients doing as expected from each refit of the expected "
            "course, spending the shares above evenly over the first {horizon} sessions (a bound for each session; "
            "after session {horizon}, each refit's bound alone would give the shares over {horizon} sessions; a fixed "
            "seed: the same bounds on any machine).").format(draws=number(DRAWS, ","), horizon=int(settings.horizon)))
        parts.append(_(
            "The model is refitted for each session t of the course on the sessions up to t only (every session up "
            "to 12, then about every 25% more), so later sessions — of this patient or any other — never change a "
            "status already given; at the first predicted session (session {first}) the fit is a regression of its "
            "scores on the intake, and where the sessions so far cannot identify a random slope, a random intercept "
            "only. A refit is made where at least {min_patients} patients have a score among the sessions it adds, "
            "else the previous fit is used. Unknown at the first session (the starting point) unless an intake "
            "column is given, without a score, or after session {last} ({extrapolate:g} × the last refit session). "
            "lower/upper: the score at this session beyond which (on the worse side) it would be not on track, "
            "given the earlier scores.").format(
            first=model.first_session, min_patients=MIN_PATIENTS_AT_SESSION,
            last=_fmt(model.last_session) if model.last_session else "—", extrapolate=EXTRAPOLATE))
        return " ".join(parts)
    rc = settings.reliable_change
    rule = (_("reliable change {rc:.4g} points").format(rc=rc) if rc
            else _("no reliable-change value given, so every status is unknown"))
    return _(
        "No local model: {reason} Fallback: the published reliable-change rule (Jacobson & Truax, 1991) "
        "relative to {start} ({rule}; OQ-45.2 total: 14 points, cut-off 63.5; mean item score: 14/45, "
        "Lambert et al., 2004). Status ({direction}): not_on_track when the score is worse than the "
        "intake by at least the reliable change (a reliable deterioration); at_risk when worse by at least half "
        "of it; on_track otherwise; unknown at the first session. expected = the intake; lower/upper = intake ± "
        "reliable change. A session's status uses only the intake and that session's score. This rule is not "
        "calibrated per patient.").format(reason=model.reason, start=start, rule=rule, direction=worse)


# --------------------------------------------------------------------------------- one call

@dataclass(frozen=True)
class SignalResult:
    """The model, every session's status, every patient's current status, and the definition."""

    model: SignalModel
    sessions: pd.DataFrame
    patients: pd.DataFrame
    definition: str
    settings: SignalSettings


def compute_signal(data: pd.DataFrame, settings: SignalSettings = SignalSettings(), *,
                   model: SignalModel | None = None, patient: str = "patient") -> SignalResult:
    """The signal for every patient in ``data``. ``model``: the expected course fitted elsewhere
    (e.g. on the whole clinic when ``data`` is one therapist's patients, or an outside norm); else
    fitted on ``data``."""
    model = with_bounds(model, settings) if model is not None else fit_signal_model(data, settings, patient=patient)
    sessions = session_signal(data, model, settings, patient=patient)
    return SignalResult(model=model, sessions=sessions, patients=patient_signal(sessions),
                        definition=definition(model, settings), settings=settings)


# --------------------------------------------------------------------------------- settings

def published_settings(symptoms: pd.Series, higher_is_worse: bool = True, reliable_change: float | None = None,
                       cutoff: float | None = None, intake: str | None = None,
                       **more) -> tuple[SignalSettings, str | None]:
    """Settings with the published OQ-45.2 values (Lambert et al., 2004) filled in where not given
    and higher is worse: mean item scores (every score at most 4): RC 14/45, cut-off 63.5/45;
    otherwise totals: RC 14, cut-off 63.5. Returns the settings and, when values were assumed, a
    plain sentence saying so (for the report's definition). ``more``: other settings (``rule`` …)."""
    note = None
    if higher_is_worse and (reliable_change is None or cutoff is None):
        item = bool(pd.to_numeric(symptoms, errors="coerce").max() <= 4)
        cut0, rc0 = SCALE_PRESETS["mean_item" if item else "total"]
        if reliable_change is None:
            note = (_("Reliable change and cut-off not given: the published values of the OQ-45.2 mean item score "
                      "(14/45, cut-off 63.5/45) were used (--reliable-change and --cutoff set others).") if item else
                    _("Reliable change and cut-off not given: the published values of the OQ-45.2 total (14 points, "
                      "cut-off 63.5) were used (--reliable-change and --cutoff set others)."))
        reliable_change = rc0 if reliable_change is None else reliable_change
        cutoff = cut0 if cutoff is None else cutoff
    return SignalSettings(higher_is_worse=higher_is_worse, reliable_change=reliable_change, cutoff=cutoff,
                          intake=intake, **more), note


#: The dashboard's symptom-measure presets, (clinical cut-off, reliable change): the OQ-45.2 total, its
#: mean item score, or another measure (the user enters both; Lambert et al., 2004).
SCALE_PRESETS = {"total": (OQ45_CUTOFF, OQ45_RELIABLE_CHANGE),
                 "mean_item": (OQ45_CUTOFF / 45, OQ45_RELIABLE_CHANGE / 45),
                 "other": (None, None)}
#: Column names taken as each session's date (the validation's calendar split).
DATE_COLUMNS = ("date", "session_date", "fecha")


def guess_scale(symptoms: pd.Series, instrument: str | None = None) -> str:
    """Which preset the dashboard starts from (:data:`SCALE_PRESETS`): the OQ-45.2 total when the
    instrument that scored it is the OQ-45.2; else by the largest score: at most 4, mean item scores;
    above 10 and at most 180, totals; otherwise another measure."""
    if instrument == "oq45":
        return "total"
    top = pd.to_numeric(symptoms, errors="coerce").max()
    return "mean_item" if top <= 4 else "total" if 10 < top <= 180 else "other"


def date_column(columns) -> str | None:
    """The column with each session's date, if one has a usual name (:data:`DATE_COLUMNS`)."""
    return next((c for c in columns if str(c).strip().lower() in DATE_COLUMNS), None)


def dashboard_settings(data: pd.DataFrame, instrument: str | None = None) -> SignalSettings:
    """The signal's settings as the clinician pages start: the guessed preset's cut-off and reliable
    change, higher scores worse, the first session as intake, the date column if any. The command
    line's ``store import`` fits this model once, so that the first caseload after an import finds it."""
    cutoff, rc = SCALE_PRESETS[guess_scale(data["symptoms"], instrument)]
    return SignalSettings(higher_is_worse=True, reliable_change=rc if rc else None, cutoff=cutoff,
                          date=date_column(data.columns))


def clean(value):
    """Plain JSON values: floats (NaN → None), ints, strings, lists, dicts."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or value is pd.NA:
        return None
    return value


def session_number(v):
    """A session as a plain number: 3, not 3.0."""
    v = float(v)
    return int(v) if v.is_integer() else v


# --------------------------------------------------------------------------------- calibration

#: Simulated patients for the achieved rates (their session patterns and intakes drawn from the data).
CALIBRATION_PATIENTS = 8000


def calibration(data: pd.DataFrame, model: SignalModel, settings: SignalSettings = SignalSettings(), *,
                patient: str = "patient", patients: int = CALIBRATION_PATIENTS, seed: int = 20231208) -> dict:
    """How often patients doing as expected are flagged, by simulation from the expected course.

    ``patients`` simulated patients, each with the intake and the scored course sessions of a
    patient of ``data`` drawn at random (with replacement, a fixed seed; from a random subset of
    ``patients`` patients when there are more), their scores drawn from
    the last refit of ``model`` (fixed part at their intake + random effects from G + residual);
    then flagged exactly as the data's patients are (every refit, every bound). Returns
    ``target_ever_flagged`` / ``achieved_ever_flagged`` (not on track at some session of the first
    ``settings.horizon``), the same for ``at_risk`` (at risk or worse), ``over_the_course`` (every
    session the data show, up to the last with a status) and the numbers behind them.
    """
    target = {"target_ever_flagged": settings.rate_not_on_track, "horizon": int(settings.horizon),
              "at_risk": {"target_ever_flagged": settings.rate_at_risk}}
    if not model.local:
        return {**target, "achieved_ever_flagged": None, "at_risk": {**target["at_risk"], "achieved_ever_flagged": None},
                "note": _("No local model: the reliable-change rule is not calibrated per patient.")}
    rng = np.random.default_rng(seed)
    # sorted as text (pandas' sort of the text type: 130,000 IDs in milliseconds, np.sort of objects: 0.1 s)
    ids = pd.Series(pd.unique(data[patient].astype(str))).sort_values().to_numpy(dtype=object)
    if len(ids) > patients:  # the patterns of a random subset are enough (a million rows need not be sorted)
        data = data.loc[data[patient].astype(str).isin(set(rng.choice(ids, patients, replace=False)))]
    table = courses(data, settings.symptoms, settings.intake, patient)
    first = model.first_session
    rows = table.loc[table["observed"].notna() & table["intake"].notna() & table["course_session"].ge(first)
                     & table["course_session"].le(model.last_session or np.inf)]
    if rows.empty:
        return {**target, "achieved_ever_flagged": None, "at_risk": {**target["at_risk"], "achieved_ever_flagged": None}}
    codes, ids = pd.factorize(rows["patient"], sort=True)
    chosen = np.sort(rng.integers(0, len(ids), patients))
    # every row of each chosen patient, once per time the patient was chosen
    starts = np.searchsorted(codes, np.arange(len(ids)))
    counts = np.bincount(codes, minlength=len(ids))
    take = np.concatenate([np.arange(starts[c], starts[c] + counts[c]) for c in chosen])
    sim = np.repeat(np.arange(patients), counts[chosen])
    j = rows["course_session"].to_numpy(float)[take]
    intake = rows["intake"].to_numpy(float)[take]
    g = model.fits[-1]
    mean, _sd = g.predict(intake - model.intake_mean, j)
    b = rng.standard_normal((patients, 2)) @ cov_root(g.patient_cov).T
    y = mean + b[sim, 0] + b[sim, 1] * np.log(j) + rng.standard_normal(len(j)) * math.sqrt(g.residual)
    start_rows = pd.DataFrame({"patient": np.arange(patients), "course_session": 1.0, "observed": np.nan,
                               "intake": rows.groupby(codes)["intake"].first().to_numpy()[chosen]})
    simulated = pd.DataFrame({"patient": sim, "course_session": j, "observed": y, "intake": intake})
    if first > 1:  # the starting point: a row at session 1 whose score is the intake
        start_rows["observed"] = start_rows["intake"]
        simulated = pd.concat([start_rows, simulated], ignore_index=True)
    simulated = simulated.sort_values(["patient", "course_session"], kind="stable").reset_index(drop=True)
    nums = signal_numbers(simulated, model, settings)
    status = pd.Series(nums["status"])
    red = status.eq("not_on_track").to_numpy()
    amber = red | status.eq("at_risk").to_numpy()
    within = simulated["course_session"].le(settings.horizon).to_numpy()
    who = simulated["patient"].to_numpy()

    def share(flag):
        return float(np.bincount(who[flag], minlength=patients).astype(bool).mean())

    last = float(np.nanmax(j))
    return {
        "target_ever_flagged": settings.rate_not_on_track, "achieved_ever_flagged": share(red & within),
        "horizon": int(settings.horizon),
        "at_risk": {"target_ever_flagged": settings.rate_at_risk, "achieved_ever_flagged": share(amber & within)},
        "over_the_course": {"sessions": session_number(last), "not_on_track": share(red), "at_risk": share(amber)},
        "simulated_patients": patients, "rule": settings.rule,
    }


def calibration_summary(cal: dict) -> str:
    """The calibration in one sentence, with the achieved rates."""
    achieved = cal.get("achieved_ever_flagged")
    if achieved is None:
        return cal.get("note", "")
    course = cal.get("over_the_course", {})
    return _("Checked by simulating {n} patients doing as expected with this data set's intakes and sessions: "
             "{red:.1%} were flagged not on track at some point in their first {horizon} sessions (target at most "
             "{target:.0%}), {amber:.1%} at risk or worse (target {target_amber:.0%}); over every session up to "
             "{last} the data show, {red_all:.1%} and {amber_all:.1%}.").format(
        n=number(cal["simulated_patients"], ","), red=achieved, horizon=cal["horizon"],
        target=cal["target_ever_flagged"], amber=cal["at_risk"]["achieved_ever_flagged"],
        target_amber=cal["at_risk"]["target_ever_flagged"], last=course.get("sessions", "—"),
        red_all=course.get("not_on_track", float("nan")), amber_all=course.get("at_risk", float("nan")))
