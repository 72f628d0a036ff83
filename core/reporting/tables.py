"""Tables in the shape of the ANS study's Tables 2 and 3, and plain-language sentences for effects.

The tables are tidy DataFrames (one row per model and effect) so that the page, the CSV
downloads and the HTML report show the same numbers.
"""
from __future__ import annotations

import pandas as pd

from core.stats.models import LadderResult, ModelResult

TERM_LABELS = {
    "intercept": "Intercept",
    "time": "Time (sessions since the first)",
    "between": "Between: patient mean {p} (centred)",
    "within": "Within: session deviation from own mean {p}",
    "between:within": "Between × within",
}
VARIANCE_LABELS = {
    "patient_intercept": "Patient intercept variance",
    "patient_slope": "Patient slope variance",
    "patient_intercept_slope_cov": "Patient intercept–slope covariance",
    "therapist_intercept": "Therapist intercept variance",
    "residual": "Residual (session) variance",
}


def term_label(term: str, model: ModelResult) -> str:
    """Readable name of a fixed-effect term (covariates keep the builder's labels)."""
    labels = dict(model.spec.labels)
    if term in labels:
        return labels[term]
    predictor = model.spec.predictor or "predictor"
    if model.spec.random_slope == "within" and term == "within":
        return TERM_LABELS["within"].format(p=predictor) + " (varies by patient)"
    return TERM_LABELS.get(term, term).format(p=predictor)


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
    rows = [{"model": key, "component": VARIANCE_LABELS.get(name, name), "key": name, "value": value}
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
    """Likelihood-ratio tests (ML fits): χ², df, p."""
    return pd.DataFrame([{"comparison": name, "simpler": c.simpler, "fuller": c.fuller,
                          "chisq": c.chisq, "df": c.df, "p": c.p, "note": c.note}
                         for name, c in ladder.comparisons.items()])


def _p_phrase(p: float) -> str:
    if p < 0.001:
        return "p < .001"
    return f"p = {p:.3f}".replace("0.", ".")


def _size(x: float) -> str:
    return f"{abs(x):.2f}"


def describe_effect(term: str, row: dict, model: ModelResult) -> str:
    """One plain-language sentence for a fixed effect, with its 95% CI and p.

    e.g. "Patients whose average alliance was one point higher had 0.23 points lower symptoms";
    "In sessions where alliance was one point above the patient's own average, symptoms were 0.10
    points lower".
    """
    est = row["estimate"]
    out = model.spec.outcome
    pred = model.spec.predictor or "the predictor"
    direction = "lower" if est < 0 else "higher"
    stats_text = f" (95% CI {row['ci_low']:.2f} to {row['ci_high']:.2f}; {_p_phrase(row['p'])})"
    if term == "intercept":
        if "between" in model.spec.fixed:
            where = "a patient with average " + pred + ", in a session at their own average"
            where += ", at the first session" if "time" in model.spec.fixed else ""
            return f"For {where}, the expected {out} score was {est:.2f}{stats_text}."
        if "time" in model.spec.fixed:
            return f"At the first session, the average {out} score was {est:.2f}{stats_text}."
        return f"The average {out} score was {est:.2f}{stats_text}."
    if term == "between":
        return (f"Patients whose average {pred} was one point higher had {_size(est)} points {direction} "
                f"{out}{stats_text}.")
    if term == "within":
        verb = "were" if out.endswith("s") else "was"
        extra = " on average (the effect varies between patients)" if model.spec.random_slope == "within" else ""
        return (f"In sessions where {pred} was one point above the patient's own average, {out} {verb} "
                f"{_size(est)} points {direction}{extra}{stats_text}.")
    if term == "time":
        control = f"Controlling for {pred}, with" if "between" in model.spec.fixed else "With"
        return f"{control} each further session, {out} changed by {est:+.2f} points on average{stats_text}."
    if term == "between:within":
        stronger = "more negative" if est < 0 else "more positive"
        return (f"For patients whose average {pred} was one point higher, the within-patient effect of {pred} "
                f"on {out} was {_size(est)} points {stronger}{stats_text}.")
    label = term_label(term, model)
    return f"{label}: {out} {direction} by {_size(est)} points{stats_text}."


def describe_model(model: ModelResult) -> list[str]:
    """Sentences for every fixed effect of a model, in table order."""
    return [describe_effect(r["term"], r, model) for r in model.fixed.to_dict("records")]
