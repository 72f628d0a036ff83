"""Machine-readable reports (JSON) with the keys fixed by ``docs/cli-and-reports.md``.

Numbers are plain JSON numbers; a value that does not exist (or is not finite) is ``null``.
"""
from __future__ import annotations

import math
import platform

import numpy as np

from core.intake.validation import ValidatedData
from core.stats.models import LadderResult, ModelResult

DEFINITIONS = {
    "time": "session number minus the smallest session number in the data (0 at the first session)",
    "patient_mean": "mean of that patient's alliance scores",
    "between": "patient mean minus the mean of the patient means",
    "within": "alliance score minus that patient's mean",
    "estimation": "fixed effects and variance components from REML fits; likelihood-ratio tests on ML fits",
    "df": "Satterthwaite degrees of freedom (as lmerTest); p-values and 95% CIs from the t distribution with that df",
    "icc": "patient: patient variance / (patient + residual variance), REML unconditional model; "
           "therapist: therapist variance / total variance, REML three-level unconditional model",
    "rows": "a row is used when every chosen column has a valid value; others are listed in excluded_rows "
            "with their spreadsheet row number (header = row 1)",
}


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


def model_to_dict(model: ModelResult) -> dict:
    """One model's report entry: fixed effects by term, variance, likelihoods, diagnostics."""
    fixed = {
        row["term"]: {k: row[k] for k in ("estimate", "se", "df", "t", "p", "ci_low", "ci_high")}
        for row in model.fixed.to_dict("records")
    }
    return {
        "formula": model.formula,
        "fixed": fixed,
        "variance": dict(model.variance),
        "loglik_reml": model.loglik_reml,
        "loglik_ml": model.loglik_ml,
        "n_params_ml": model.n_params_ml,
        "converged": model.converged,
        "singular": model.singular,
        "warnings": list(model.warnings),
        "n_observations": model.n_observations,
        "n_patients": model.n_patients,
    }


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
        "definitions": DEFINITIONS,
        "software": software_versions(),
    }
    if ladder is not None:
        report["icc"] = {"patient": ladder.icc["patient"], "therapist": ladder.icc["therapist"],
                         "patient_3level": ladder.icc["patient_3level"]}
        report["level_advice"] = list(ladder.advice)
        report["models"] = {k: model_to_dict(m) for k, m in ladder.models.items()}
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
