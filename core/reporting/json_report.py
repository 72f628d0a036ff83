"""Machine-readable reports (JSON) with the keys fixed by ``docs/cli-and-reports.md``.

Numbers are plain JSON numbers; a value that does not exist (or is not finite) is ``null``.
"""
from __future__ import annotations

import math
import platform

import numpy as np

from core.i18n import N_, _
from core.intake.validation import ValidatedData
from core.stats.models import LadderResult, ModelResult

#: The reports' definitions (English; :func:`definitions` gives them in the current language).
DEFINITIONS = {
    "time": N_("session number minus the smallest session number in the data (0 at the first session)"),
    "patient_mean": N_("mean of that patient's alliance scores"),
    "between": N_("patient mean minus the mean of the patient means"),
    "within": N_("alliance score minus that patient's mean"),
    "estimation": N_("fixed effects and variance components from REML fits; likelihood-ratio tests on ML fits"),
    "df": N_("Satterthwaite degrees of freedom (as lmerTest); p-values and 95% CIs from the t distribution with "
             "that df"),
    "icc": N_("patient: patient variance / (patient + residual variance), REML unconditional model; "
              "therapist: therapist variance / total variance, REML three-level unconditional model"),
    "rows": N_("a session is kept when its patient and session are readable and at least one measure has a "
               "usable value (excluded_rows lists the others, with their spreadsheet row number, header = row 1); "
               "each model uses the sessions with every variable it names (lme4's na.omit) and lists the rows it "
               "leaves out in models.<key>.excluded_rows"),
    "r2": N_("Nakagawa's marginal (fixed effects) and conditional (fixed and random effects) R², as "
             "performance::r2_nakagawa; null for a singular fit"),
    "aic_bic": N_("AIC = -2 logLik + 2k and BIC = -2 logLik + k log(n) of the ML fit (k = n_params_ml)"),
}


def definitions() -> dict[str, str]:
    """:data:`DEFINITIONS` in the current language (the keys never change)."""
    return {key: _(text) for key, text in DEFINITIONS.items()}


def clean_number(x):
    """A JSON-safe number: float/int, or None for NaN/inf/None."""
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else None


def clean(obj):
    """Recursively make an object JSON-safe (NaN → null, numpy → Python)."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, str) or obj is None:
        return obj
    if isinstance(obj, (int, float, np.integer, np.floating, np.bool_, bool)):
        return clean_number(obj)
    return str(obj)


def model_to_dict(model: ModelResult, validated: ValidatedData | None = None) -> dict:
    """One model's report entry: fixed effects by term, variance, likelihoods, AIC/BIC, R²,
    diagnostics, and the rows it leaves out (with ``validated``: the file's excluded rows too)."""
    fixed = {
        row["term"]: {k: row[k] for k in ("estimate", "se", "df", "t", "p", "ci_low", "ci_high")}
        for row in model.fixed.to_dict("records")
    }
    return {
        "formula": model.formula,
        "fixed": fixed,
        "variance": dict(model.variance),
        "variance_components": [dict(r) for r in model.variance_rows],
        "loglik_reml": model.loglik_reml,
        "loglik_ml": model.loglik_ml,
        "n_params_ml": model.n_params_ml,
        "aic": model.aic,
        "bic": model.bic,
        "r2_marginal": model.r2_marginal,
        "r2_conditional": model.r2_conditional,
        "converged": model.converged,
        "singular": model.singular,
        "warnings": list(model.warnings),
        "n_observations": model.n_observations,
        "n_patients": model.n_patients,
        "excluded_rows": excluded_rows(model.excluded, validated),
    }


def excluded_rows(model_rows, validated: ValidatedData | None = None) -> list[dict]:
    """Rows a model leaves out, with the file's excluded rows when ``validated`` is given, by row."""
    import pandas as pd

    parts = [model_rows] if model_rows is not None and len(model_rows) else []
    if validated is not None and len(validated.excluded):
        parts.append(validated.excluded)
    if not parts:
        return []
    rows = pd.concat(parts, ignore_index=True).sort_values("row", kind="stable")
    return [{"row": int(r), "reason": str(t)} for r, t in zip(rows["row"], rows["reason"])]


def analysis_report(validated: ValidatedData, ladder: LadderResult | None) -> dict:
    """The ``analyze`` report: data counts, excluded rows, ICCs, models and comparisons."""
    data = validated.data
    report = {
        "source": validated.source,
        "n_rows_read": validated.n_rows_read,
        "n_observations": int(len(data)),
        "n_patients": int(data["patient"].nunique()),
        "n_therapists": int(data["therapist"].nunique()) if validated.has_therapist else None,
        "excluded_rows": validated.excluded_records(),
        "notes": list(validated.notes),
        "definitions": definitions(),
        "software": software_versions(),
    }
    if ladder is not None:
        report["icc"] = {"patient": ladder.icc["patient"], "therapist": ladder.icc["therapist"],
                         "patient_3level": ladder.icc["patient_3level"]}
        report["level_advice"] = list(ladder.advice)
        report["models"] = {k: model_to_dict(m, validated) for k, m in ladder.models.items()}
        report["model_errors"] = dict(ladder.errors)
        report["comparisons"] = {
            name: {"chisq": c.chisq, "df": c.df, "p": c.p, "simpler": c.simpler, "fuller": c.fuller,
                   **({"note": c.note} if c.note else {})}
            for name, c in ladder.comparisons.items()
        }
    return clean(report)


def software_versions() -> dict:
    """Versions of the software that computed the numbers."""
    import importlib.metadata as md

    import core

    versions = {"python": platform.python_version(), "alliance-dashboard": core.__version__}
    for pkg in ("mixedlm", "numpy", "scipy", "pandas", "statsmodels"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return versions


def fit_report(validated: ValidatedData, fit) -> dict:
    """The ``fit`` report: the contract's keys (``formula, n_observations, n_patients, excluded_rows,
    fixed, variance, loglik_reml, loglik_ml, n_params_ml, aic, bic, r2_marginal, r2_conditional,
    converged, singular, warnings``), every row the model leaves out (the file's and the model's)."""
    out = fit.to_dict()
    out["variance"] = [dict(r) for r in out["variance"]]
    out["excluded_rows"] = excluded_rows(fit.excluded, validated)
    out = {"source": validated.source, "n_rows_read": validated.n_rows_read, **out,
           "notes": list(validated.notes), "definitions": definitions(), "software": software_versions()}
    return clean(out)
