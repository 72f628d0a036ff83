"""The early-warning signal: each patient's expected course from where they started, and who is not on track.

Measurement feedback helps most for patients who are *not on track* (Rognstad et al., 2023;
Lambert et al., 2018): their therapist sees that the patient's scores have left the course that
patients starting at the same level usually take. This module computes that signal for every
patient and session.

**Expected course.** A linear mixed model fitted by REML (lme4's criterion: from the patients'
sums by :mod:`core.stats.profiled`, else through ``mixedlm``) to the
*whole clinic's* sessions after the intake::

    y_ij ~ intake_c + log_session + intake_c:log_session + (1 + log_session | patient)

where ``y_ij`` is patient i's symptom score at their session j, ``intake_c`` the patient's intake
score minus the clinic's mean intake, and ``log_session = ln(j)`` with ``j`` the session of the
course (1 at the patient's first session in the data, ``session − first session + 1``). The intake
is the patient's first score; when an intake column is given, its value, and then the first session
is predicted too. Expected-recovery curves of this kind (conditioned on intake, log-shaped in
time) are those of OQ-Analyst (Finch, Lambert & Schaalje, 2001; Lambert et al., 2002).

**A time split, so statuses stay put.** The model is refitted for each session t of the course
(every session up to 12, then about every 25% more: 15, 18, 22, …) on the clinic's sessions up to
t only, and a session j is judged by the last refit at or before j. Later sessions — of this
patient or of anyone else — therefore never change a status already given. At the first
predicted session (2, or 1 with an intake column) each patient has one score, so that refit is
the least-squares regression ``y ~ intake_c`` (patient and session variance are one residual
variance there); where the sessions so far cannot identify a random slope (fewer than two per
patient on average) the refit has a random intercept only. A refit is made only where at least
10 patients have a score among the sessions it adds; sessions beyond 1.5 × the last refit session
get no status.

**Prediction interval for a new patient.** For a patient with intake ``x`` at session ``j``, with
``z = (1, x − x̄, ln j, (x − x̄) ln j)`` and ``u = (1, ln j)``::

    expected = z'β
    sd       = sqrt( u'Gu + σ² + z'V_β z )

(G: the patients' random-effects covariance, σ²: residual variance, V_β: covariance of the
fixed-effect estimates). This is the spread of *individual* patients' scores around the expected
course, not the confidence interval of the clinic's mean.

**Status** of a session, with ``d`` = (observed − expected) / sd, signed so that positive is worse
(``higher_is_worse``; for alliance and well-being scales lower is worse):

- ``not_on_track`` (red): ``d > 1.2816``: worse than the one-sided 90% prediction bound (nine in
  ten patients who started at this level score better at this session);
- ``at_risk`` (yellow): ``0.8416 < d ≤ 1.2816``: between the 80% and the 90% bound;
- ``on_track``: ``d ≤ 0.8416``;
- ``unknown``: the first session (it is the starting point), no score, no intake, or a session
  too far beyond the clinic's data (see above).

``lower``/``upper`` in the tables are the two-sided 80% interval ``expected ± 1.2816·sd``, so a
session outside it on the worse side is ``not_on_track``. The statuses are *prospective*: a
session's status uses only that patient's intake and that session's score (and the clinic's fit
up to that session), so a status a therapist saw last week does not change when this week's score
arrives.

**Fallback.** With fewer than 30 completed courses (patients with at least 4 sessions) — or when
the model cannot be fitted — there is no local model, and the published reliable-change rule
(Jacobson & Truax, 1991) is used relative to the intake: ``not_on_track`` when the score is worse
than the intake by at least the reliable change (OQ-45.2 total: 14 points; mean item score:
14/45; Lambert et al., 2004), ``at_risk`` when worse by at least half of it. The ``definition``
says which rule was used and why.

**Validation** (:func:`validate_signal`): 5-fold cross-validation by patient, so the model that
flags a patient was fitted without that patient's data; the flags by session k are compared
with the patient's outcome at their last session (deteriorated or without reliable improvement,
Jacobson–Truax).
"""
from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import ndtri  # what scipy.stats.norm.ppf computes, without loading scipy.stats

from core.errors import ModelError
from core.i18n import N_, _, decimals_for, model_decimals, ngettext, number, number_text
from core.intake.mapping import role_name

STATUSES = ("not_on_track", "at_risk", "on_track", "unknown")
#: Each status in words (English; :func:`status_label` gives them in the current language).
STATUS_LABELS = {"not_on_track": N_("not on track"), "at_risk": N_("at risk"), "on_track": N_("on track"),
                 "unknown": N_("unknown")}


def status_label(status: str) -> str:
    """A status (``not_on_track`` …) in words, in the current language (any other value as it is)."""
    return _(STATUS_LABELS[status]) if status in STATUS_LABELS else str(status)
#: One-sided prediction levels: beyond LEVEL_AT_RISK → at risk, beyond LEVEL_NOT_ON_TRACK → not on track.
LEVEL_AT_RISK = 0.80
LEVEL_NOT_ON_TRACK = 0.90
Z_AT_RISK = float(ndtri(LEVEL_AT_RISK))
Z_NOT_ON_TRACK = float(ndtri(LEVEL_NOT_ON_TRACK))
#: A local model needs this many completed courses (patients with COURSE_SESSIONS sessions or more).
MIN_COURSES = 30
COURSE_SESSIONS = 4
#: A refit needs this many patients with a score among the sessions it adds.
MIN_PATIENTS_AT_SESSION = 10
#: Sessions beyond this multiple of the last refit session get no status (too far from the data).
EXTRAPOLATE = 1.5
#: Published OQ-45.2 values (Lambert et al., 2004): reliable change and clinical cut-off of the total.
OQ45_RELIABLE_CHANGE = 14.0
OQ45_CUTOFF = 63.5
FORMULA = "y ~ intake_c + log_session + intake_c:log_session + (1 + log_session | patient)"
VALIDATION_FOLDS = 5


@dataclass(frozen=True)
class SignalSettings:
    """What the signal needs to know about the measure.

    ``higher_is_worse``: True for symptom scales (OQ-45), False where a higher score is better.
    ``reliable_change``: RC in score points for the fallback rule and the validation's outcome;
    ``cutoff``: the clinical cut-off (used in words only). ``intake``: a column with each patient's
    intake score (else their first session's score).
    """

    higher_is_worse: bool = True
    reliable_change: float | None = None
    cutoff: float | None = None
    intake: str | None = None
    symptoms: str = "symptoms"


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

    def as_dict(self) -> dict:
        return {
            "up_to_session": _num(self.up_to), "kind": self.kind, "formula": KIND_FORMULAS[self.kind],
            "fixed": {n: float(v) for n, v in zip(TERMS, self.fixed)},
            "fixed_se": {n: float(math.sqrt(max(self.fixed_cov[i, i], 0.0))) for i, n in enumerate(TERMS)},
            "variance": {"patient_intercept": float(self.patient_cov[0, 0]),
                         "patient_slope": float(self.patient_cov[1, 1]),
                         "patient_intercept_slope_cov": float(self.patient_cov[0, 1]),
                         "residual": float(self.residual)},
            "n_patients": self.n_patients, "n_observations": self.n_observations,
            "converged": self.converged, "singular": self.singular,
        }


@dataclass(frozen=True)
class SignalModel:
    """The clinic's expected course: one :class:`CourseFit` per refit session (``fits``, by
    ``up_to``), or ``method="reliable_change"`` with the ``reason`` there is no local model."""

    method: str
    intake: str | None
    fits: tuple[CourseFit, ...] = ()
    intake_mean: float = float("nan")
    n_patients: int = 0
    n_observations: int = 0
    n_courses: int = 0
    last_session: float | None = None
    warnings: tuple[str, ...] = ()
    reason: str = ""

    @property
    def local(self) -> bool:
        return self.method == "mixed_model"

    def predict(self, intake, course_session) -> tuple[np.ndarray, np.ndarray]:
        """Expected score and prediction SD for a new patient with ``intake`` at ``course_session``,
        from the fit on the clinic's sessions up to that session (the last refit at or before it;
        NaN before the first)."""
        x = np.asarray(intake, float) - self.intake_mean
        j = np.asarray(course_session, float)
        x, j = np.broadcast_arrays(x, j)
        mean, sd = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
        if not self.fits:
            return mean, sd
        ups = np.array([f.up_to for f in self.fits])
        which = np.searchsorted(ups, j, side="right") - 1
        for k, fit in enumerate(self.fits):
            sel = which == k
            if sel.any():
                mean[sel], sd[sel] = fit.predict(x[sel], j[sel])
        return mean, sd

    def as_dict(self) -> dict:
        """The model's numbers for a report (plain floats)."""
        out = {"method": self.method, "n_patients": self.n_patients, "n_courses": self.n_courses}
        if not self.local:
            return {**out, "reason": self.reason}
        return {**out, "formula": FORMULA, "intake_mean": float(self.intake_mean),
                "n_observations": self.n_observations, "last_session": _num(self.last_session),
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
    out = out.sort_values(["patient", "session"], kind="stable").reset_index(drop=True)
    out["observed"] = pd.to_numeric(out["observed"], errors="coerce").astype(float)
    first = out["session"].where(out["observed"].notna()).groupby(out["patient"]).transform("min")
    out["course_session"] = (out["session"] - first + 1).astype(float)
    if intake is not None:
        values = out[intake if intake != symptoms else "observed"]
        if not pd.api.types.is_numeric_dtype(values):
            from core.intake.validation import parse_numbers

            values = parse_numbers(values.astype(str))[0]
        values = pd.to_numeric(values, errors="coerce")
        out["intake"] = values.groupby(out["patient"]).transform("first").astype(float)
    else:
        out["intake"] = out["observed"].where(out["course_session"] == 1).groupby(out["patient"]).transform("first")
    return out[["patient", "session", "course_session", "observed", "intake"]]


def fit_signal_model(data: pd.DataFrame, settings: SignalSettings = SignalSettings(), *,
                     patient: str = "patient", min_courses: int = MIN_COURSES) -> SignalModel:
    """Fit the clinic's expected course (module docstring) to ``data``: every patient in it.

    Returns ``method="reliable_change"`` with a plain ``reason`` when there are fewer than
    ``min_courses`` completed courses or the model cannot be fitted.
    """
    table = courses(data, settings.symptoms, settings.intake, patient)
    return _fit_table(table, settings.intake is not None, min_courses)


def _fit_table(table: pd.DataFrame, with_intake_column: bool, min_courses: int = MIN_COURSES) -> SignalModel:
    scored = table.loc[table["observed"].notna()]
    n_courses = int((scored.groupby("patient")["course_session"].max() >= COURSE_SESSIONS).sum())
    base = dict(intake="column" if with_intake_column else None, n_patients=int(scored["patient"].nunique()),
                n_courses=n_courses)
    if n_courses < min_courses:
        return SignalModel(method="reliable_change", reason=ngettext(
            "This clinic has {n} completed course (patients with at least {sessions} sessions); a local expected "
            "course needs at least {min}.",
            "This clinic has {n} completed courses (patients with at least {sessions} sessions); a local expected "
            "course needs at least {min}.", n_courses).format(n=n_courses, sessions=COURSE_SESSIONS, min=min_courses),
            **base)
    first = 1.0 if with_intake_column else 2.0
    rows = scored.loc[scored["intake"].notna() & scored["course_session"].ge(first)]
    if rows["patient"].nunique() < MIN_PATIENTS_AT_SESSION:
        return SignalModel(method="reliable_change", reason=_("Too few patients have sessions after the intake."),
                           **base)
    intake_mean = float(scored.groupby("patient")["intake"].first().mean())
    frame = pd.DataFrame({
        "patient": rows["patient"].astype(str).to_numpy(),
        "code": pd.factorize(rows["patient"].astype(str), sort=True)[0],  # for the profiled engine's sums
        "y": rows["observed"].to_numpy(float),
        "intake_c": rows["intake"].to_numpy(float) - intake_mean,
        "log_session": np.log(rows["course_session"].to_numpy(float)),
        "course_session": rows["course_session"].to_numpy(float),
    })
    fits, notes, errors = [], [], []
    previous = -np.inf
    start: dict[str, np.ndarray] = {}  # each refit starts from the last refit of its kind
    for t in fit_sessions(first, float(frame["course_session"].max())):
        window = frame["course_session"].gt(previous) & frame["course_session"].le(t)
        if frame.loc[window, "patient"].nunique() < MIN_PATIENTS_AT_SESSION:
            continue  # too few new sessions: the previous fit goes on
        previous = t
        part = frame.loc[frame["course_session"] <= t]
        try:
            fit, messages = _fit_course(part, t, regression=not fits, start=start)
        except ModelError as err:
            errors.append(_("session {session:g}: {error}").format(session=t, error=err))
            continue
        fits.append(fit)
        notes += messages
    if not fits or fits[0].up_to > first:
        reason = "; ".join(errors[:2]) or _("fewer than {n} patients have a score at session {session:g}").format(
            n=MIN_PATIENTS_AT_SESSION, session=first)
        return SignalModel(method="reliable_change",
                           reason=_("The clinic's expected course could not be fitted ({reason}).").format(reason=reason),
                           **base)
    if errors:
        notes.append(_("Some refits failed and the previous session's fit is used there: {errors}.").format(
            errors="; ".join(errors[:3])))
    return SignalModel(method="mixed_model", fits=tuple(fits), intake_mean=intake_mean, n_observations=len(frame),
                       last_session=EXTRAPOLATE * fits[-1].up_to, warnings=tuple(dict.fromkeys(notes)), **base)


def _fit_course(frame: pd.DataFrame, up_to: float, regression: bool,
                start: dict | None = None) -> tuple[CourseFit, list[str]]:
    """One fit of the expected course on ``frame`` (the clinic's sessions up to ``up_to``).
    ``start``: the relative covariance factors (lme4's theta) of the last refit of each kind, used
    as starting values (about half the time; same optimum) and updated."""
    n, n_pat = len(frame), frame["patient"].nunique()
    if frame["y"].nunique() < 2:
        raise ModelError(_("every score is the same"))
    if frame["intake_c"].nunique() < 2:
        raise ModelError(_("the intake scores do not vary"))
    if regression or frame["log_session"].nunique() < 2:
        if n < 4:
            raise ModelError(_("fewer than 4 patients"))
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
    raise ModelError(errors[-1] if errors else _("too few sessions per patient"))


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
        raise ModelError(_("a term of the model could not be estimated (the predictors are collinear)"))
    fixed = np.array([float(fe[name]) for name in order])
    fixed_cov = np.asarray(result.vcov(), float)
    vc = result.VarCorr()
    cov = np.atleast_2d(np.asarray(vc.groups["patient"].cov, float))
    g = np.zeros((2, 2))
    g[: cov.shape[0], : cov.shape[1]] = cov
    residual = float(vc.residual)
    if not (np.all(np.isfinite(fixed)) and np.all(np.isfinite(fixed_cov)) and math.isfinite(residual)):
        raise ModelError(_("the fit gave no finite estimates"))
    notes = [str(w.message).strip() for w in caught if "singular" not in str(w.message).lower()]
    converged = bool(result.converged)
    if not converged:
        notes.append(_("The fit up to session {session:g} did not converge; treat its bounds with caution.").format(
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


def session_signal(data: pd.DataFrame, model: SignalModel, settings: SignalSettings = SignalSettings(),
                   *, patient: str = "patient") -> pd.DataFrame:
    """Every session's expected score, bounds and status (module docstring).

    Columns: ``patient, session, course_session, observed, intake, expected, sd, lower, upper``
    (two-sided interval at the not-on-track level; the fallback: intake ± reliable change),
    ``at_risk_bound`` (the worse-side at-risk boundary), ``deviation`` (observed − expected, in
    points, positive = worse), ``status`` and ``reason`` (plain words). ``data``: any rows of the
    clinic (e.g. one therapist's patients); the model comes from :func:`fit_signal_model`.
    """
    table = courses(data, settings.symptoms, settings.intake, patient)
    sign = 1.0 if settings.higher_is_worse else -1.0
    obs, intake, j = table["observed"].to_numpy(float), table["intake"].to_numpy(float), table["course_session"].to_numpy(float)
    n = len(table)
    status = np.full(n, "unknown", dtype=object)
    reason = np.full(n, "", dtype=object)
    expected = np.full(n, np.nan)
    sd = np.full(n, np.nan)
    lower = np.full(n, np.nan)
    upper = np.full(n, np.nan)
    risk = np.full(n, np.nan)
    with_column = settings.intake is not None
    first = (j == 1) & (not with_column)
    no_score = np.isnan(obs)
    no_intake = np.isnan(intake)
    reason[no_score] = _("no score in this session")
    reason[~no_score & no_intake] = _("no intake score")
    reason[~no_score & ~no_intake & first] = _("first session: the starting point of the expected course")
    usable = ~no_score & ~no_intake & ~first
    if model.local:
        beyond = usable & (j > (model.last_session if model.last_session is not None else -np.inf))
        reason[beyond] = _("too little data: this clinic's courses do not reach far enough to say what is usual "
                           "at this session")
        idx = np.flatnonzero(usable & ~beyond)
        mean, spread = model.predict(intake[idx], j[idx])
        good = np.isfinite(mean) & np.isfinite(spread) & (spread > 0)
        reason[idx[~good]] = _("the clinic's data cannot say what is usual at this session")
        idx, mean, spread = idx[good], mean[good], spread[good]
        expected[idx], sd[idx] = mean, spread
        lower[idx], upper[idx] = mean - Z_NOT_ON_TRACK * spread, mean + Z_NOT_ON_TRACK * spread
        risk[idx] = mean + sign * Z_AT_RISK * spread
        d = sign * (obs[idx] - mean) / spread
        st = np.where(d > Z_NOT_ON_TRACK, "not_on_track", np.where(d > Z_AT_RISK, "at_risk", "on_track"))
        status[idx] = st
        bound = np.where(sign > 0, upper[idx], lower[idx])
        # d > z > 0 for not_on_track and at_risk, so the score is worse than expected there
        red = _("score {observed} is {gap} points worse than the expected {expected} for patients who started at "
                "this level, beyond the bound {bound} that {level:.0%} of them stay within")
        yellow = _("score {observed} is {gap} points worse than the expected {expected}, beyond the bound {bound} "
                   "that {level:.0%} of patients who started at this level stay within")
        worse_than = _("score {observed} is {gap} points worse than the expected {expected}")
        better_than = _("score {observed} is {gap} points better than the expected {expected}")
        d_obs, d_model = decimals_for(obs), model_decimals(obs)
        for k, o, m, b, r, s_ in zip(idx, obs[idx], mean, bound, risk[idx], st):
            gap = sign * (o - m)
            if s_ == "not_on_track":
                text = red.format(observed=_fmt(o, d_obs), gap=_fmt(abs(gap), d_model), expected=_fmt(m, d_model),
                                  bound=_fmt(b, d_model), level=LEVEL_NOT_ON_TRACK)
            elif s_ == "at_risk":
                text = yellow.format(observed=_fmt(o, d_obs), gap=_fmt(abs(gap), d_model), expected=_fmt(m, d_model),
                                     bound=_fmt(r, d_model), level=LEVEL_AT_RISK)
            else:
                text = (worse_than if gap > 0 else better_than).format(
                    observed=_fmt(o, d_obs), gap=_fmt(abs(gap), d_model), expected=_fmt(m, d_model))
            reason[k] = text
    else:
        rc = settings.reliable_change
        if rc is None or not rc > 0:
            reason[usable] = _("no local model and no reliable-change value to fall back on")
        else:
            ok = usable
            expected[ok] = intake[ok]
            lower[ok], upper[ok] = intake[ok] - rc, intake[ok] + rc
            risk[ok] = intake[ok] + sign * rc / 2
            worse = sign * (obs[ok] - intake[ok])
            st = np.where(worse >= rc, "not_on_track", np.where(worse >= rc / 2, "at_risk", "on_track"))
            status[ok] = st
            # worse >= rc / 2 > 0 for not_on_track and at_risk
            red = _("{change} points worse than at intake: a reliable deterioration (reliable change {rc})")
            yellow = _("{change} points worse than at intake: at least half the reliable change ({rc})")
            worse_than = _("{change} points worse than at intake")
            better_than = _("{change} points better than at intake")
            d_obs = decimals_for(obs)
            for k, w, s_ in zip(np.flatnonzero(ok), worse, st):
                template = red if s_ == "not_on_track" else yellow if s_ == "at_risk" else \
                    worse_than if w > 0 else better_than
                reason[k] = template.format(change=_fmt(abs(w), d_obs), rc=_fmt(rc))
    out = table.copy()
    out["expected"], out["sd"], out["lower"], out["upper"] = expected, sd, lower, upper
    out["at_risk_bound"] = risk
    out["deviation"] = sign * (obs - expected)
    out["status"] = status
    out["reason"] = reason
    return out


def patient_signal(sessions: pd.DataFrame) -> pd.DataFrame:
    """One row per patient: the status of their latest session (``status``, ``session``,
    ``reason``, and ``summary``: a short version, e.g. "score 141, expected 105 (36 points
    worse)"), and how many of their sessions were ``not_on_track`` / ``at_risk``."""
    cols = ["patient", "status", "session", "reason", "summary", "n_not_on_track", "n_at_risk"]
    if sessions.empty:
        return pd.DataFrame(columns=cols)
    last = sessions.groupby("patient", sort=False).tail(1).set_index("patient")
    out = pd.DataFrame({"status": last["status"], "session": last["session"], "reason": last["reason"]})
    summary = []
    worse, better = _("score {observed}, expected {expected} ({gap} points worse)"), \
        _("score {observed}, expected {expected} ({gap} points better)")
    d_obs, d_model = decimals_for(sessions["observed"]), model_decimals(sessions["observed"])
    for o, e, d, st_ in zip(last["observed"], last["expected"], last["deviation"], last["status"]):
        if st_ == "unknown" or pd.isna(e):
            summary.append("")
            continue
        summary.append((worse if d > 0 else better).format(observed=_fmt(o, d_obs), expected=_fmt(e, d_model),
                                                           gap=_fmt(abs(d), d_model)))
    out["summary"] = summary
    for s in ("not_on_track", "at_risk"):  # counted per patient (a crosstab of a million rows takes seconds)
        hits = sessions["status"].eq(s).groupby(sessions["patient"], sort=False).sum()
        out[f"n_{s}"] = hits.reindex(out.index).fillna(0).astype(int)
    return out.reset_index()[cols]


def status_sentence(status: str, session, reason: str) -> str:
    """One plain summary line, e.g. "Not on track (session 6): score 92 is 21 points worse …"."""
    label = status_label(status).capitalize()
    if isinstance(session, (int, float, np.number)) and not pd.isna(session):
        template = _("{status} (session {session:g}): {reason}.") if reason else _("{status} (session {session:g}).")
    else:
        template = _("{status}: {reason}.") if reason else "{status}."
    return template.format(status=label, session=session, reason=reason)


# --------------------------------------------------------------------------------- definition

def definition(model: SignalModel, settings: SignalSettings = SignalSettings()) -> str:
    """How the expected course, its bounds and the statuses were computed, in plain words."""
    worse = _("higher scores are worse") if settings.higher_is_worse else _("lower scores are worse")
    start = (_("the patient's intake score (column '{column}')").format(column=settings.intake) if settings.intake
             else _("the patient's score at their first session"))
    if model.local:
        return _(
            "Expected course: the linear mixed model {formula}, fitted by REML (lme4's method, mixedlm) to the "
            "sessions of all {n} patients of this clinic, where y is the score, intake_c {start} "
            "minus the clinic's mean intake ({intake_mean:.4g}), and log_session the natural log of the "
            "session of the course (1 at the patient's first session). The model is refitted for each session t of "
            "the course on the clinic's sessions up to t only (every session up to 12, then about every 25% more), so "
            "later sessions — of this patient or any other — never change a status already given; at the first "
            "predicted session (session {first}) the fit is a regression of its scores on the intake, and where the "
            "sessions so far cannot identify a random slope, a random intercept only. Expected score = the fixed "
            "part at the patient's intake and session; prediction interval for an individual patient = expected ± "
            "z·sqrt(random-effects variance at that session + residual variance + the fixed part's standard error "
            "squared). Status ({direction}): not_on_track when the score is worse than the one-sided "
            "{level_red:.0%} bound (z = {z_red:.4f}; lower and upper are the two-sided "
            "{level_interval:.0%} interval, expected ± {z_red:.4f}·sd), at_risk when worse than "
            "the {level_yellow:.0%} bound (z = {z_yellow:.4f}), on_track otherwise; unknown at the first session "
            "(the starting point) unless an intake column is given, without a score, or after session "
            "{last} ({extrapolate:g} × the last session with at least "
            "{min_patients} patients' scores; beyond it the clinic's data say too little). A refit is "
            "made where at least {min_patients} patients have a score among the sessions it adds, else the "
            "previous fit is used. A session's status uses only that "
            "patient's intake and that session's score.").format(
            formula=FORMULA, n=model.n_patients, start=start, intake_mean=model.intake_mean,
            first=1 if settings.intake else 2, direction=worse, level_red=LEVEL_NOT_ON_TRACK, z_red=Z_NOT_ON_TRACK,
            level_interval=2 * LEVEL_NOT_ON_TRACK - 1, level_yellow=LEVEL_AT_RISK, z_yellow=Z_AT_RISK,
            last=_fmt(model.last_session) if model.last_session else "—", extrapolate=EXTRAPOLATE,
            min_patients=MIN_PATIENTS_AT_SESSION)
    rc = settings.reliable_change
    rule = (_("reliable change {rc:.4g} points").format(rc=rc) if rc
            else _("no reliable-change value given, so every status is unknown"))
    return _(
        "No local model: {reason} Fallback: the published reliable-change rule (Jacobson & Truax, 1991) "
        "relative to {start} ({rule}; OQ-45.2 total: 14 points, cut-off 63.5; mean item score: 14/45, "
        "Lambert et al., 2004). Status ({direction}): not_on_track when the score is worse than the "
        "intake by at least the reliable change (a reliable deterioration); at_risk when worse by at least half "
        "of it; on_track otherwise; unknown at the first session. expected = the intake; lower/upper = intake ± "
        "reliable change. A session's status uses only the intake and that session's score.").format(
        reason=model.reason, start=start, rule=rule, direction=worse)


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
    """The signal for every patient in ``data``. ``model``: the clinic's model fitted elsewhere
    (e.g. on the whole clinic when ``data`` is one therapist's patients); else fitted on ``data``."""
    model = model if model is not None else fit_signal_model(data, settings, patient=patient)
    sessions = session_signal(data, model, settings, patient=patient)
    return SignalResult(model=model, sessions=sessions, patients=patient_signal(sessions),
                        definition=definition(model, settings), settings=settings)


# --------------------------------------------------------------------------------- validation

def _fold(patient_id: str, folds: int) -> int:
    return int(hashlib.sha1(str(patient_id).encode("utf-8")).hexdigest()[:8], 16) % folds


def cross_validated_sessions(data: pd.DataFrame, settings: SignalSettings = SignalSettings(), *,
                             folds: int = VALIDATION_FOLDS, patient: str = "patient") -> tuple[pd.DataFrame, list[str]]:
    """Every session's status from a model fitted *without* that patient: patients are split into
    ``folds`` groups by a hash of their ID (the same split on any machine); each group is flagged by
    the model fitted on the other groups. Returns the sessions and the methods the folds used."""
    table = courses(data, settings.symptoms, settings.intake, patient)
    ids = table["patient"].astype(str)
    fold = ids.map(lambda p: _fold(p, folds)).to_numpy()
    parts, methods = [], []
    for k in range(folds):
        held = fold == k
        if not held.any():
            continue
        model = _fit_table(table.loc[~held], settings.intake is not None)
        methods.append(model.method)
        parts.append(session_signal(data.loc[data[patient].astype(str).isin(set(ids[held]))], model, settings,
                                    patient=patient))
    out = pd.concat(parts, ignore_index=True) if parts else session_signal(data.iloc[:0], SignalModel("reliable_change", None))
    return out.sort_values(["patient", "session"], kind="stable").reset_index(drop=True), methods


RANK = {"not_on_track": 3, "at_risk": 2, "on_track": 1, "unknown": 0}


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def validate_signal(data: pd.DataFrame, settings: SignalSettings = SignalSettings(), *,
                    by_sessions=(3, 4, 5, 6), folds: int = VALIDATION_FOLDS, patient: str = "patient") -> dict:
    """How well the signal predicted outcomes in this clinic's own data.

    For each k in ``by_sessions``: the patients whose course went beyond session k (so that the
    outcome lies later than the flags), grouped by their worst status at sessions 2…k from
    :func:`cross_validated_sessions` (red = ``not_on_track`` at least once; yellow = ``at_risk`` at
    least once and never red; on track = neither; patients with no status by k are left out).
    Outcome: *poor* when the Jacobson–Truax change from intake to the last session is a reliable
    deterioration or not a reliable improvement (needs ``settings.reliable_change``).
    Sensitivity = red & poor / poor; specificity = not red & good / good; PPV = red & poor / red;
    NPV = not red & good / not red; each with its counts.
    """
    rc = settings.reliable_change
    sign = 1.0 if settings.higher_is_worse else -1.0
    out = {"method": _("{folds}-fold cross-validation by patient: patients are split into {folds} groups by a hash "
                       "of their ID, and each group is flagged by the expected course fitted on the other groups, so "
                       "a patient's own outcome never informs the model that flags them.").format(folds=folds),
           "outcome": _("Poor outcome = at the last session, a reliable deterioration from the intake or no reliable "
                        "improvement (reliable change {rc}, Jacobson & Truax, 1991).").format(rc=_fmt(rc) if rc else "—"),
           "flag": _("Flagged = not on track in at least one session up to session k of the course; patients whose "
                     "course ended by session k are left out (their outcome is not later than the flag)."),
           "by_session": [], "sentences": []}
    if not rc or not rc > 0:
        out["sentences"].append(_("The validation needs a reliable-change value to tell good from poor outcomes."))
        return out
    sessions, methods = cross_validated_sessions(data, settings, folds=folds, patient=patient)
    out["fold_methods"] = methods
    scored = sessions.loc[sessions["observed"].notna()]
    if scored.empty:
        return out
    last = scored.groupby("patient").agg(last_session=("course_session", "max"), last=("observed", "last"),
                                         intake=("intake", "first"))
    improvement = -sign * (last["last"] - last["intake"])
    poor = improvement < rc  # deteriorated or without reliable improvement
    rank = sessions["status"].map(RANK)
    for k in by_sessions:
        upto = sessions.loc[sessions["course_session"].le(k)]
        worst = rank.loc[upto.index].groupby(upto["patient"]).max()
        eligible = last.index[(last["last_session"] > k) & last["intake"].notna()]
        worst = worst.reindex(eligible)
        worst = worst[worst.notna() & worst.gt(0)]
        if worst.empty:
            continue
        p = poor.reindex(worst.index).astype(bool)
        red = worst.eq(3)
        yellow = worst.eq(2)
        green = worst.eq(1)
        tp, fp = int((red & p).sum()), int((red & ~p).sum())
        fn, tn = int((~red & p).sum()), int((~red & ~p).sum())
        row = {
            "session": int(k) if float(k).is_integer() else float(k),
            "n_patients": int(len(worst)), "n_poor": int(p.sum()),
            "not_on_track": {"n": int(red.sum()), "poor": tp, "share_poor": _share(tp, int(red.sum()))},
            "at_risk": {"n": int(yellow.sum()), "poor": int((yellow & p).sum()),
                        "share_poor": _share(int((yellow & p).sum()), int(yellow.sum()))},
            "on_track": {"n": int(green.sum()), "poor": int((green & p).sum()),
                         "share_poor": _share(int((green & p).sum()), int(green.sum()))},
            "sensitivity": {"value": _share(tp, tp + fn), "n": tp, "of": tp + fn},
            "specificity": {"value": _share(tn, tn + fp), "n": tn, "of": tn + fp},
            "ppv": {"value": _share(tp, tp + fp), "n": tp, "of": tp + fp},
            "npv": {"value": _share(tn, tn + fn), "n": tn, "of": tn + fn},
        }
        out["by_session"].append(row)
        out["sentences"].append(_validation_sentence(row))
    return out


def _pct(part: dict) -> str:
    return "—" if part["share_poor"] is None else f"{part['share_poor']:.0%}"


def _validation_sentence(row: dict) -> str:
    red, green = row["not_on_track"], row["on_track"]
    sens, spec = row["sensitivity"], row["specificity"]
    return _("By session {session}: of {red} patients flagged not on track, {red_poor} ({red_share}) ended "
             "deteriorated or without reliable improvement; of {green} on track, {green_poor} ({green_share}) did. "
             "The flag caught {caught} of {poor} poor outcomes (sensitivity {sensitivity}) and left {unflagged} of "
             "{good} good outcomes unflagged (specificity {specificity}).").format(
        session=row["session"], red=red["n"], red_poor=red["poor"], red_share=_pct(red), green=green["n"],
        green_poor=green["poor"], green_share=_pct(green), caught=sens["n"], poor=sens["of"],
        sensitivity="—" if sens["value"] is None else format(sens["value"], ".0%"), unflagged=spec["n"],
        good=spec["of"], specificity="—" if spec["value"] is None else format(spec["value"], ".0%"))


def validation_table(validation: dict) -> pd.DataFrame:
    """The validation for people: one row per session k, every share written with its counts
    ("11 of 16 (69%)")."""
    with_percent, without = _("{k} of {n} ({percent:.0f}%)"), _("{k} of {n}")

    def share(k, n):
        return with_percent.format(k=k, n=n, percent=100 * k / n) if n else without.format(k=k, n=n)

    rows = []
    for r in validation.get("by_session", []):
        rows.append({
            _("by session"): r["session"], _("patients seen beyond it"): r["n_patients"],
            _("poor outcomes"): share(r["n_poor"], r["n_patients"]),
            _("flagged not on track: poor outcome"): share(r["not_on_track"]["poor"], r["not_on_track"]["n"]),
            _("at risk only: poor outcome"): share(r["at_risk"]["poor"], r["at_risk"]["n"]),
            _("on track: poor outcome"): share(r["on_track"]["poor"], r["on_track"]["n"]),
            _("sensitivity"): share(r["sensitivity"]["n"], r["sensitivity"]["of"]),
            _("specificity"): share(r["specificity"]["n"], r["specificity"]["of"]),
            _("positive predictive value"): share(r["ppv"]["n"], r["ppv"]["of"]),
            _("negative predictive value"): share(r["npv"]["n"], r["npv"]["of"]),
        })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------- report

def published_settings(symptoms: pd.Series, higher_is_worse: bool = True, reliable_change: float | None = None,
                       cutoff: float | None = None, intake: str | None = None) -> tuple[SignalSettings, str | None]:
    """Settings with the published OQ-45.2 values (Lambert et al., 2004) filled in where not given
    and higher is worse: mean item scores (every score at most 4): RC 14/45, cut-off 63.5/45;
    otherwise totals: RC 14, cut-off 63.5. Returns the settings and, when values were assumed, a
    plain sentence saying so (for the report's definition)."""
    note = None
    if higher_is_worse and (reliable_change is None or cutoff is None):
        item = bool(pd.to_numeric(symptoms, errors="coerce").max() <= 4)
        rc0, cut0 = (OQ45_RELIABLE_CHANGE / 45, OQ45_CUTOFF / 45) if item else (OQ45_RELIABLE_CHANGE, OQ45_CUTOFF)
        if reliable_change is None:
            note = (_("Reliable change and cut-off not given: the published values of the OQ-45.2 mean item score "
                      "(14/45, cut-off 63.5/45) were used (--reliable-change and --cutoff set others).") if item else
                    _("Reliable change and cut-off not given: the published values of the OQ-45.2 total (14 points, "
                      "cut-off 63.5) were used (--reliable-change and --cutoff set others)."))
        reliable_change = rc0 if reliable_change is None else reliable_change
        cutoff = cut0 if cutoff is None else cutoff
    return SignalSettings(higher_is_worse=higher_is_worse, reliable_change=reliable_change, cutoff=cutoff,
                          intake=intake), note


def _clean(value):
    """Plain JSON values: floats (NaN → None), ints, strings, lists, dicts."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
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


def _session_number(v):
    v = float(v)
    return int(v) if v.is_integer() else v


def signal_report(data: pd.DataFrame, settings: SignalSettings = SignalSettings(), *,
                  model: SignalModel | None = None, validation: bool = True, patient: str = "patient") -> dict:
    """The signal as the contract's JSON (``python -m core signal``): ``definition``, ``method``,
    ``model``, ``patients.<id>: {status, session, reason, sessions: [{session, observed, expected,
    lower, upper, at_risk_bound, status, reason}]}`` and ``validation`` (:func:`validate_signal`)."""
    result = compute_signal(data, settings, model=model, patient=patient)
    sessions = result.sessions
    patients: dict[str, dict] = {}
    current = result.patients.set_index("patient")
    for pid, g in sessions.groupby("patient", sort=True):
        rows = [{"session": _session_number(r.session), "observed": r.observed, "expected": r.expected,
                 "lower": r.lower, "upper": r.upper, "at_risk_bound": r.at_risk_bound, "status": r.status,
                 "reason": r.reason} for r in g.itertuples(index=False)]
        now = current.loc[pid]
        patients[str(pid)] = {"status": now["status"], "session": _session_number(now["session"]),
                              "reason": now["reason"], "sessions": rows}
    counts = sessions.groupby("patient")["status"].last().value_counts()
    report = {
        "definition": result.definition,
        "method": result.model.method,
        "settings": {"higher_is_worse": settings.higher_is_worse, "reliable_change": settings.reliable_change,
                     "cutoff": settings.cutoff, "intake": settings.intake,
                     "levels": {"at_risk": LEVEL_AT_RISK, "not_on_track": LEVEL_NOT_ON_TRACK},
                     "z": {"at_risk": Z_AT_RISK, "not_on_track": Z_NOT_ON_TRACK}},
        "model": result.model.as_dict(),
        "n_patients": int(sessions["patient"].nunique()),
        "current": {s: int(counts.get(s, 0)) for s in STATUSES},
        "patients": patients,
    }
    if validation:
        report["validation"] = validate_signal(data, settings, patient=patient)
    return _clean(report)
