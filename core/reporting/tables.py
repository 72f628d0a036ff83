"""Tables in the shape of the ANS study's Tables 2 and 3, and plain-language sentences for effects.

The tables are tidy DataFrames (one row per model and effect) so that the page, the CSV
downloads and the HTML report show the same numbers. Their column keys stay English (code and CSV
rely on them); :func:`table_headers` gives the headers people read, in the current language, and
the labels and sentences inside are written in the current language (:mod:`core.i18n`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.i18n import N_, _, number
from core.intake.mapping import role_name
from core.reporting.formatting import format_number
from core.stats.models import LadderResult, ModelResult

#: Labels of the ladder's fixed effects (English; :func:`term_label` translates them).
TERM_LABELS = {
    "intercept": N_("Intercept"),
    "time": N_("Time (sessions since the first)"),
    "between": N_("Between: patient mean {p} (centred)"),
    "within": N_("Within: session deviation from own mean {p}"),
    "within_varies": N_("Within: session deviation from own mean {p} (varies by patient)"),
    "between:within": N_("Between × within"),
}
#: Labels of the variance components (English; :func:`variance_table` translates them).
VARIANCE_LABELS = {
    "patient_intercept": N_("Patient intercept variance"),
    "patient_slope": N_("Patient slope variance"),
    "patient_intercept_slope_cov": N_("Patient intercept–slope covariance"),
    "therapist_intercept": N_("Therapist intercept variance"),
    "residual": N_("Residual (session) variance"),
}
#: Headers people read for the columns of this module's tables (keys stay English).
HEADERS = {
    "model": N_("model"), "effect": N_("effect"), "term": N_("term"), "estimate": N_("estimate"), "se": N_("SE"),
    "df": N_("df"), "t": N_("t"), "p": N_("p"), "ci_low": N_("95% CI low"), "ci_high": N_("95% CI high"),
    "component": N_("component"), "value": N_("value"), "formula": N_("formula"),
    "observations": N_("observations"), "patients": N_("patients"), "rows_left_out": N_("rows left out"),
    "loglik_reml": N_("log-likelihood (REML)"), "loglik_ml": N_("log-likelihood (ML)"),
    "parameters_ml": N_("parameters (ML)"), "aic": N_("AIC"), "bic": N_("BIC"), "r2_marginal": N_("marginal R²"),
    "r2_conditional": N_("conditional R²"), "converged": N_("converged"), "singular": N_("singular"),
    "warnings": N_("warnings"), "comparison": N_("comparison"), "simpler": N_("simpler model"),
    "fuller": N_("fuller model"), "chisq": N_("χ²"), "note": N_("note"), "quantity": N_("quantity"),
}


#: The ladder's models as people read them (the CSV downloads, the report's JSON and the command line
#: keep the keys).
MODEL_LABELS = {"unconditional": N_("unconditional"), "unconditional_3level": N_("unconditional, 3 levels"),
                "time": N_("time"), "hybrid": N_("hybrid"), "hybrid_detrended": N_("hybrid, detrended"),
                "interaction": N_("interaction"), "custom": N_("builder")}


def model_name(key: str) -> str:
    """A model key (``hybrid``) in the interface language; any other name as it is."""
    return _(MODEL_LABELS[key]) if key in MODEL_LABELS else key


def with_model_names(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the model keys of its model / fuller / simpler columns as translated names."""
    out = frame.copy()
    for col in ("model", "fuller", "simpler"):
        if col in out:
            out[col] = out[col].map(lambda k: model_name(str(k)))
    return out


def table_headers(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the headers of :data:`HEADERS` in the current language (for display; the
    columns not named there keep theirs)."""
    return frame.rename(columns={c: _(HEADERS[c]) for c in frame.columns if c in HEADERS})


def term_label(term: str, model: ModelResult) -> str:
    """Readable name of a fixed-effect term (covariates keep the builder's labels)."""
    labels = dict(model.spec.labels)
    if term in labels:
        return labels[term]
    predictor = role_name(model.spec.predictor) if model.spec.predictor else _("predictor")
    if model.spec.random_slope == "within" and term == "within":
        return _(TERM_LABELS["within_varies"]).format(p=predictor)
    return _(TERM_LABELS[term]).format(p=predictor) if term in TERM_LABELS else term


def fixed_effects_table(models: dict[str, ModelResult]) -> pd.DataFrame:
    """One row per model and fixed effect: coefficient, SE, df, t, p, 95% CI (REML, Satterthwaite)."""
    parts = []
    for key, m in models.items():
        f = m.fixed.copy()
        f.insert(0, "effect", [term_label(t, m) for t in f["term"]])
        f.insert(0, "model", key)
        parts.append(f)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def variance_table(models: dict[str, ModelResult]) -> pd.DataFrame:
    """One row per model and variance component."""
    rows = [{"model": key, "component": _(VARIANCE_LABELS[name]) if name in VARIANCE_LABELS else name, "key": name,
             "value": value}
            for key, m in models.items() for name, value in m.variance.items()]
    return pd.DataFrame(rows)


def fit_table(models: dict[str, ModelResult]) -> pd.DataFrame:
    """One row per model: formula, N, rows left out, log-likelihoods, parameters, AIC and BIC (ML),
    Nakagawa's marginal and conditional R², convergence, singularity."""
    return pd.DataFrame([{
        "model": key, "formula": m.formula, "observations": m.n_observations, "patients": m.n_patients,
        "rows_left_out": len(m.excluded),
        "loglik_reml": m.loglik_reml, "loglik_ml": m.loglik_ml, "parameters_ml": m.n_params_ml,
        "aic": m.aic, "bic": m.bic, "r2_marginal": m.r2_marginal, "r2_conditional": m.r2_conditional,
        "converged": m.converged, "singular": m.singular, "warnings": " ".join(m.warnings),
    } for key, m in models.items()])


def excluded_table(model: ModelResult) -> pd.DataFrame:
    """The rows a model leaves out (a variable it needs is missing), with the reasons."""
    return model.excluded.reset_index(drop=True)


def comparison_table(ladder: LadderResult) -> pd.DataFrame:
    """Likelihood-ratio tests (ML fits): χ², df, p. The note is given in the current language even
    when the ladder was fitted (and cached) in another: it is a fixed sentence of the catalogue."""
    return pd.DataFrame([{"comparison": name, "simpler": c.simpler, "fuller": c.fuller,
                          "chisq": c.chisq, "df": c.df, "p": c.p, "note": _(c.note) if c.note else c.note}
                         for name, c in ladder.comparisons.items()])


def _p_phrase(p: float) -> str:
    """APA style: ``p < .001``, ``p = .023`` (no leading zero; the language's decimal separator)."""
    if p < 0.001:
        return _("p < .001")
    text = number(float(p), ".3f")
    return "p = " + (text[1:] if text.startswith("0") else text)


def _size(x: float) -> str:
    """The size of an effect without its sign: two decimals, or two significant digits when it
    would round to 0.00 (never "0.00 points lower")."""
    x = abs(float(x))
    return number(x, ".2f") if x >= 0.005 or x == 0 else number(x, ".2g")


#: A measure as the subject of a sentence ("the symptom score was …") and in the plural ("had
#: symptom scores … lower"); other variables keep their own names.
NOUNS = {"symptoms": (N_("symptom score"), N_("symptom scores")),
         "alliance": (N_("alliance score"), N_("alliance scores"))}


def _noun(name: str) -> str:
    return _(NOUNS[name][0]) if name in NOUNS else name


def _plural(name: str) -> str:
    return _(NOUNS[name][1]) if name in NOUNS else name


#: One whole sentence per effect and direction ("lower", "higher", "same": an estimate of exactly
#: 0), with {placeholders}, so that each can be translated as it stands (English; :func:`describe_effect`
#: translates them).
SENTENCES = {
    ("between", "lower"): N_("Patients whose average {predictor} was one point higher had {outcomes} {size} points "
                             "lower{stats}."),
    ("between", "higher"): N_("Patients whose average {predictor} was one point higher had {outcomes} {size} points "
                              "higher{stats}."),
    ("between", "same"): N_("Patients whose average {predictor} was one point higher had the same {outcomes}{stats}."),
    ("within", "lower"): N_("In sessions where the {predictor} was one point above the patient's own average, the "
                            "{outcome} was {size} points lower{stats}."),
    ("within", "higher"): N_("In sessions where the {predictor} was one point above the patient's own average, the "
                             "{outcome} was {size} points higher{stats}."),
    ("within", "same"): N_("In sessions where the {predictor} was one point above the patient's own average, the "
                           "{outcome} was the same{stats}."),
    ("within_varies", "lower"): N_("In sessions where the {predictor} was one point above the patient's own average, "
                                   "the {outcome} was {size} points lower on average (the effect varies between "
                                   "patients){stats}."),
    ("within_varies", "higher"): N_("In sessions where the {predictor} was one point above the patient's own "
                                    "average, the {outcome} was {size} points higher on average (the effect varies "
                                    "between patients){stats}."),
    ("within_varies", "same"): N_("In sessions where the {predictor} was one point above the patient's own average, "
                                  "the {outcome} was the same on average (the effect varies between patients){stats}."),
    ("between:within", "lower"): N_("For patients whose average {predictor} was one point higher, the within-patient "
                                    "effect of the {predictor} on the {outcome} was {size} points more negative{stats}."),
    ("between:within", "higher"): N_("For patients whose average {predictor} was one point higher, the within-patient "
                                     "effect of the {predictor} on the {outcome} was {size} points more positive{stats}."),
    ("between:within", "same"): N_("For patients whose average {predictor} was one point higher, the within-patient "
                                   "effect of the {predictor} on the {outcome} was the same{stats}."),
    ("intercept", "hybrid_time"): N_("For a patient with an average {predictor}, in a session at their own average "
                                     "and at the first session, the expected {outcome} was {estimate}{stats}."),
    ("intercept", "hybrid"): N_("For a patient with an average {predictor}, in a session at their own average, the "
                                "expected {outcome} was {estimate}{stats}."),
    ("intercept", "time"): N_("At the first session, the average {outcome} was {estimate}{stats}."),
    ("intercept", "plain"): N_("The average {outcome} was {estimate}{stats}."),
    ("time", "controlled"): N_("Controlling for the {predictor}, with each further session the {outcome} changed by "
                               "{signed} points on average{stats}."),
    ("time", "plain"): N_("With each further session the {outcome} changed by {signed} points on average{stats}."),
    ("other", "any"): N_("{label}: a difference of {signed} points in the {outcome}{stats}."),
}


def describe_effect(term: str, row: dict, model: ModelResult) -> str:
    """One plain-language sentence for a fixed effect, with its 95% CI and p.

    e.g. "Patients whose average alliance score was one point higher had symptom scores 0.23 points
    lower (95% CI …)"; "In sessions where the alliance score was one point above the patient's own
    average, the symptom score was 0.10 points lower (…)". An effect that would round to 0.00 is
    given to two significant digits ("0.0031 points lower"); an estimate of exactly 0 is "the same".
    """
    est = float(row["estimate"])
    direction = "lower" if est < 0 else "higher" if est > 0 else "same"
    names = dict(predictor=_noun(model.spec.predictor) if model.spec.predictor else _("predictor"),
                 outcome=_noun(model.spec.outcome),
                 outcomes=_plural(model.spec.outcome), size=_size(est), estimate=format_number(est, 2),
                 signed=format_number(est, 2, signed=True) if abs(est) >= 0.005 or est == 0
                 else ("+" if est > 0 else "−") + _size(est),
                 stats=" " + _("(95% CI {low} to {high}; {p})").format(low=format_number(row["ci_low"], 2),
                                                                      high=format_number(row["ci_high"], 2),
                                                                      p=_p_phrase(row["p"])))
    fixed = model.spec.fixed
    if term == "intercept":
        kind = ("hybrid_time" if "time" in fixed else "hybrid") if "between" in fixed else \
            "time" if "time" in fixed else "plain"
        return _(SENTENCES[("intercept", kind)]).format(**names)
    if term == "between":
        return _(SENTENCES[("between", direction)]).format(**names)
    if term == "within":
        kind = "within_varies" if model.spec.random_slope == "within" else "within"
        return _(SENTENCES[(kind, direction)]).format(**names)
    if term == "time":
        return _(SENTENCES[("time", "controlled" if "between" in fixed else "plain")]).format(**names)
    if term == "between:within":
        return _(SENTENCES[("between:within", direction)]).format(**names)
    return _(SENTENCES[("other", "any")]).format(label=term_label(term, model), **names)


def describe_model(model: ModelResult) -> list[str]:
    """Sentences for every fixed effect of a model, in table order."""
    return [describe_effect(r["term"], r, model) for r in model.fixed.to_dict("records")]


def pooled_summary_table(result, decimals: int = 3) -> pd.DataFrame:
    """A pooled random-effects estimate (:class:`core.stats.meta.PoolResult`) as a two-column table,
    one quantity per row, so that no interval is cut short on a narrow screen: the estimate, its
    95% CI and p, τ² and I², the 95% prediction interval, Cochran's Q and the number of studies."""
    def num(x, d=decimals) -> str:
        return format_number(x, d)

    def interval(low, high) -> str:
        return _("{low} to {high}").format(low=num(low), high=num(high))

    rows = [
        (_("Pooled estimate"), num(result.estimate)),
        (_("95% confidence interval"), interval(result.ci_low, result.ci_high)),
        ("p", _p_value(result.p)),
        (_("τ² (between-study variance)"), num(result.tau2, 4)),
        (_("I² (share of variation between studies)"), "{i2}%".format(i2=num(result.i2, 1))),
        (_("95% prediction interval (a new study's true effect)"), interval(result.pi_low, result.pi_high)),
        (_("Cochran's Q"), _("{q} (df = {df}; {p})").format(
            q=num(result.q, 2), df=str(result.k - 1),
            p="p " + _p_value(result.q_p) if _p_value(result.q_p).startswith("<") else "p = " + _p_value(result.q_p))),
        (_("Studies"), str(result.k)),
        (_("Method"), result.method.upper() + (" + Knapp–Hartung" if result.knapp_hartung else "")),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value"])


def _p_value(p) -> str:
    """``"< 0.0001"`` or the p value with 4 decimals (the model tables' convention)."""
    if p is None or not np.isfinite(p):
        return "—"
    return "< " + number(0.0001, ".4f") if p < 1e-4 else number(float(p), ".4f")
