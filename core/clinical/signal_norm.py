"""Outside norms for the early-warning signal: an expected course from somewhere else.

A clinic's own expected course is the clinic itself: where 60% of patients do not respond, a
patient who does not respond looks on track. OQ-Analyst and similar systems judge against large
outside reference samples (Lambert et al., 2004; Finch, Lambert & Schaalje, 2001). A **norm** is
the expected course of :mod:`core.clinical.signal` fitted on another clinic's (or a network's, or
a published sample's) completed courses, kept as a small JSON document: per refit the fixed
effects and their covariance, the patients' random-effects covariance and the residual variance,
the mean intake they are centred on, and the scale the scores were on. No patient's row is in it.

- :func:`norm_document` fits the expected course on a data set and writes the document
  (``python -m core signal --save-norm FILE``);
- :func:`model_from_norm` reads one back (``--norm FILE``, the overview's *Expected course from*),
  refusing in one plain sentence what cannot be used (another format, another direction of
  "worse", another kind of intake, scores on another scale);
- :func:`compare_with_norm` says how the clinic's own courses differ from the norm's: the mean
  difference between the clinic's scores at session 8 (or the last refit session before it) and
  what the norm expects for the same intakes, in points and in the norm's prediction SDs; worse by
  more than half an SD is a warning (the norm may not fit this clinic — or the clinic does worse).

Statuses judged against a norm depend only on the patient's own scores: later sessions of anyone
never change them.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd

from core.clinical.signal import (
    CourseFit,
    KIND_FORMULAS,
    SignalModel,
    SignalSettings,
    courses,
    fit_signal_model,
    left_out_rows,
    with_bounds,
)
from core.errors import InputError, ModelError
from core.i18n import _, number

NORM_FORMAT = "alliance-dashboard signal norm"
NORM_VERSION = 1
#: The session at which the clinic's courses are compared with the norm, and the warning's size.
COMPARE_AT = 8
WORSE_BY_SD = 0.5
#: A comparison needs this many patients with a score at the compared session.
MIN_COMPARED = 10


def _matrix(a) -> list:
    return [[float(v) for v in row] for row in np.atleast_2d(np.asarray(a, float))]


def norm_document(data: pd.DataFrame, settings: SignalSettings = SignalSettings(), *, name: str | None = None,
                  created: str | None = None, patient: str = "patient", model: SignalModel | None = None) -> dict:
    """The expected course fitted on ``data`` (every patient; ``model`` if already fitted) as a
    norm document (plain JSON values). Raises :class:`ModelError` when there is no local model."""
    model = model if model is not None else fit_signal_model(data, settings, patient=patient)
    if not model.local:
        raise ModelError(_("A norm needs an expected course fitted on these data, and there is none: {reason}").format(
            reason=model.reason))
    table = courses(data, settings.symptoms, settings.intake, patient)
    intakes = table.groupby("patient")["intake"].first().dropna()
    scores = table["observed"].dropna()
    return {
        "format": NORM_FORMAT, "version": NORM_VERSION, "name": name, "created": created,
        "measure": {"symptoms": settings.symptoms, "higher_is_worse": bool(settings.higher_is_worse),
                    "reliable_change": settings.reliable_change, "cutoff": settings.cutoff,
                    "intake": "column" if model.intake else "first_session",
                    "intake_mean": float(intakes.mean()), "intake_sd": float(intakes.std(ddof=1)) if len(intakes) > 1 else 0.0,
                    "intake_range": [float(intakes.min()), float(intakes.max())],
                    "score_range": [float(scores.min()), float(scores.max())]},
        "n_patients": int(model.n_patients), "n_courses": int(model.n_courses),
        "n_observations": int(model.n_observations),
        "model": {"intake_mean": float(model.intake_mean), "last_session": float(model.last_session),
                  "left_out_reliable_change": model.left_out_rc,
                  "fits": [{"up_to": float(f.up_to), "kind": f.kind, "fixed": [float(v) for v in f.fixed],
                            "fixed_cov": _matrix(f.fixed_cov), "patient_cov": _matrix(f.patient_cov),
                            "residual": float(f.residual), "n_patients": int(f.n_patients),
                            "n_observations": int(f.n_observations), "n_left_out": int(f.n_left_out),
                            "converged": bool(f.converged), "singular": bool(f.singular)} for f in model.fits]},
        "bounds": {"rule": settings.rule, "horizon": int(model.horizon),
                   "rates": {"not_on_track": model.rates[0], "at_risk": model.rates[1]},
                   "by_refit": [{"up_to": float(f.up_to),
                                 **{r: {"not_on_track": red, "at_risk": amber} for r, red, amber in f.bounds}}
                                for f in model.fits]},
    }


def read_norm(text: str | bytes) -> dict:
    """A norm document from its JSON text; one plain sentence when it is not one."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise InputError(_("The norm file is not JSON; choose a file written by --save-norm (or the overview's "
                           "“Save as a norm”).")) from None
    if not isinstance(doc, dict) or doc.get("format") != NORM_FORMAT:
        raise InputError(_("This JSON file is not a signal norm (written by --save-norm or the overview's “Save as "
                           "a norm”)."))
    if doc.get("version") != NORM_VERSION:
        raise InputError(_("This norm file has version {version}; this dashboard reads version {expected}.").format(
            version=doc.get("version"), expected=NORM_VERSION))
    return doc


def _array(value, shape: tuple) -> np.ndarray:
    a = np.asarray(value, float)
    if a.shape != shape or not np.all(np.isfinite(a)):
        raise ValueError
    return a


def model_from_norm(doc: dict, settings: SignalSettings = SignalSettings(), *, name: str | None = None,
                    kind: str = "file") -> SignalModel:
    """The expected course of a norm document, with the bounds of ``settings`` (recomputed from the
    norm's refits: the same numbers as the norm's maker got). Refuses, in one plain sentence, a
    norm made for the other direction of "worse" or the other kind of intake."""
    measure = doc.get("measure") or {}
    if bool(measure.get("higher_is_worse", True)) != bool(settings.higher_is_worse):
        raise InputError(_("The norm was made for a measure where {norm}, but here {here}: use a norm made for this "
                           "measure.").format(
            norm=_("higher scores are worse") if measure.get("higher_is_worse", True) else _("lower scores are worse"),
            here=_("higher scores are worse") if settings.higher_is_worse else _("lower scores are worse")))
    column = measure.get("intake") == "column"
    if column != (settings.intake is not None):
        raise InputError(_("The norm's expected course starts from an intake column; choose an intake column here too "
                           "(--intake).") if column else
                         _("The norm's expected course starts from each patient's first score; leave out the intake "
                           "column here (or use a norm made with one)."))
    m = doc.get("model") or {}
    try:
        fits = []
        for f in m["fits"]:
            if f["kind"] not in KIND_FORMULAS:
                raise ValueError
            fits.append(CourseFit(up_to=float(f["up_to"]), kind=f["kind"], fixed=_array(f["fixed"], (4,)),
                                  fixed_cov=_array(f["fixed_cov"], (4, 4)), patient_cov=_array(f["patient_cov"], (2, 2)),
                                  residual=float(f["residual"]), n_patients=int(f["n_patients"]),
                                  n_observations=int(f["n_observations"]), n_left_out=int(f.get("n_left_out", 0)),
                                  converged=bool(f.get("converged", True)), singular=bool(f.get("singular", False))))
        intake_mean = float(m["intake_mean"])
        last = float(m["last_session"])
        if not fits or not math.isfinite(intake_mean) or not math.isfinite(last) or \
                any(not (f.residual > 0) for f in fits) or [f.up_to for f in fits] != sorted(f.up_to for f in fits):
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise InputError(_("The norm file is damaged: its expected course cannot be read (write it again with "
                           "--save-norm).")) from None
    rc = m.get("left_out_reliable_change")
    model = SignalModel(method="mixed_model", intake="column" if column else None, fits=tuple(fits),
                        intake_mean=intake_mean, n_patients=int(doc.get("n_patients", 0)),
                        n_observations=int(doc.get("n_observations", 0)), n_courses=int(doc.get("n_courses", 0)),
                        last_session=last, left_out_rc=float(rc) if rc is not None else None,
                        higher_is_worse=settings.higher_is_worse,
                        source={"kind": kind, "name": name or doc.get("name") or "", "created": doc.get("created"),
                                "n_patients": int(doc.get("n_patients", 0)),
                                "intake_mean": measure.get("intake_mean"), "intake_sd": measure.get("intake_sd"),
                                "intake_range": measure.get("intake_range")})
    return with_bounds(model, settings)


def as_norm(model: SignalModel, name: str, data: pd.DataFrame | None = None,
            settings: SignalSettings = SignalSettings(), kind: str = "dataset") -> SignalModel:
    """Another data set's own expected course used as the norm (its source named; ``data``: that
    data set, for the intakes' mean and SD that :func:`compare_with_norm` checks the scale by)."""
    source = {"kind": kind, "name": name, "n_patients": model.n_patients}
    if data is not None and settings.symptoms in data.columns:
        intakes = courses(data, settings.symptoms, settings.intake).groupby("patient")["intake"].first().dropna()
        if len(intakes) > 1:
            source.update(intake_mean=float(intakes.mean()), intake_sd=float(intakes.std(ddof=1)))
    return replace(model, source=source)


def compare_with_norm(data: pd.DataFrame, model: SignalModel, settings: SignalSettings = SignalSettings(), *,
                      patient: str = "patient", at: int = COMPARE_AT) -> dict:
    """How this data set's courses differ from the expected course of ``model`` (an outside norm).

    At course session ``at`` (8) — or, when fewer than 10 patients have a score there, the latest
    session before it where 10 do — the mean over this data set's patients of (score − the
    norm's expected score for their intake), signed so that positive is worse, in points and in
    the norm's prediction SDs (the spread of individual patients' scores at that session). A
    warning when worse by more than half an SD. Also a note when the data set's intakes lie far
    from the norm's (another scale?)."""
    out: dict = {"session": None, "n_patients": 0, "mean_difference": None, "standardised": None,
                 "worse": False, "warnings": []}
    if not model.local:
        return out
    table = courses(data, settings.symptoms, settings.intake, patient)
    scored = table.loc[table["observed"].notna() & table["intake"].notna()]
    source = model.source
    mean0, sd0 = source.get("intake_mean"), source.get("intake_sd")
    intakes = scored.groupby("patient")["intake"].first()
    if mean0 is not None and sd0 and len(intakes):
        gap = (float(intakes.mean()) - float(mean0)) / float(sd0)
        out["intake_difference_sd"] = gap
        if abs(gap) > 2:
            out["warnings"].append(_(
                "This data set's intake scores (mean {here}) lie far from the norm's (mean {norm}, SD {sd}): check "
                "that both use the same measure and scale.").format(
                here=number(float(intakes.mean()), ".3g"), norm=number(float(mean0), ".3g"),
                sd=number(float(sd0), ".3g")))
    counts = scored.loc[scored["course_session"].ge(model.first_session)].groupby("course_session")["patient"].nunique()
    candidates = [s for s in counts.index if s <= at and counts[s] >= MIN_COMPARED]
    if not candidates:
        return out
    session = float(max(candidates))
    if model.left_out_rc is not None:  # like the norm, leave out the patients who reliably deteriorated
        after = scored.loc[scored["course_session"].ge(model.first_session)]
        gone = left_out_rows(pd.factorize(after["patient"])[0],
                             after["observed"].to_numpy(float) - after["intake"].to_numpy(float),
                             settings.sign, model.left_out_rc)
        scored = after.loc[~gone]
    rows = scored.loc[scored["course_session"].eq(session)]
    expected, sd = model.predict(rows["intake"].to_numpy(float), rows["course_session"].to_numpy(float))
    ok = np.isfinite(expected) & np.isfinite(sd) & (sd > 0)
    if ok.sum() < MIN_COMPARED:
        return out
    diff = settings.sign * (rows["observed"].to_numpy(float)[ok] - expected[ok])
    mean_diff, mean_sd = float(diff.mean()), float(np.sqrt(np.mean(sd[ok] ** 2)))
    d = mean_diff / mean_sd
    out.update(session=int(session) if session.is_integer() else session, n_patients=int(ok.sum()),
               mean_difference=mean_diff, sd=mean_sd, standardised=d, worse=bool(d > WORSE_BY_SD))
    if d > WORSE_BY_SD:
        out["warnings"].append(_(
            "This data set's patients score markedly worse than the norm expects: at session {session:g}, on average "
            "{gap} points ({d} SD) worse than patients of the norm who started at the same level ({n} patients). "
            "Either this clinic's patients do worse, or the norm does not fit them (another population, another "
            "measure): more of them will be flagged than the norm's rates say.").format(
            session=session, gap=number(mean_diff, ".3g"), d=number(d, ".2f"), n=int(ok.sum())))
    elif d < -WORSE_BY_SD:
        out["warnings"].append(_(
            "This data set's patients score markedly better than the norm expects: at session {session:g}, on average "
            "{gap} points ({d} SD) better than patients of the norm who started at the same level ({n} patients); "
            "fewer will be flagged.").format(session=session, gap=number(abs(mean_diff), ".3g"),
                                             d=number(abs(d), ".2f"), n=int(ok.sum())))
    return out


def norm_summary(model: SignalModel, comparison: dict | None = None) -> dict:
    """The report's ``norm``: where the expected course came from, and how this data set compares."""
    source = dict(model.source)
    out = {"kind": source.get("kind", "own"), "name": source.get("name"), "created": source.get("created"),
           "n_patients": int(source.get("n_patients", model.n_patients))}
    if comparison is not None:
        out["comparison"] = {k: v for k, v in comparison.items() if k != "warnings"}
        out["warnings"] = list(comparison.get("warnings", []))
    return out
