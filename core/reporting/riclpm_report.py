"""The RI-CLPM as people read it: tables, plain sentences and the HTML report's section.

The page (Reciprocal dynamics), the HTML report and ``python -m core riclpm`` show the same
numbers: those of :func:`core.stats.riclpm.fit_riclpm`.
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd

from core.errors import InputError, ModelError
from core.stats.riclpm import LAGS, RiclpmResult, fit_riclpm, suggested_sessions

EFFECT_LABELS = {
    "alliance_to_symptoms": "Alliance → next-session symptoms (cross-lagged)",
    "symptoms_to_alliance": "Symptoms → next-session alliance (cross-lagged)",
    "alliance_autoregressive": "Alliance → next-session alliance (carry-over)",
    "symptoms_autoregressive": "Symptoms → next-session symptoms (carry-over)",
}

#: What a cross-lagged effect means in this model, in words for clinicians and researchers.
CROSS_LAGGED_MEANING = (
    "A cross-lagged effect in the RI-CLPM is a within-person carry-over. Each patient's scores are split "
    "into the patient's own usual level (the random intercept, constant over sessions) and the session's "
    "deviation from what is usual for that patient at that session. The alliance → symptoms effect says how "
    "far a patient's next-session symptoms sit from the patient's own usual level when this session's "
    "alliance was one point above the patient's own usual level, beyond what the symptoms' own carry-over "
    "predicts. Stable differences between patients (a patient who always reports a strong alliance and few "
    "symptoms) are in the random intercepts, not in the lagged effects (Hamaker et al., 2015; Falkenström "
    "et al., 2022).")


def _p(p) -> str:
    if p is None or not np.isfinite(p):
        return "p not available"
    return "p < .001" if p < 0.001 else f"p = {p:.3f}".replace("0.", ".", 1)


def lagged_effects_table(result: RiclpmResult) -> pd.DataFrame:
    """One row per lagged effect (per session pair with free lags): estimate, SE, z, p, 95% CI,
    and std.all (equal lags: the mean over session pairs and its range)."""
    rows = []
    for key in LAGS:
        entry = result.lagged[key]
        items = entry if isinstance(entry, list) else [entry]
        for e in items:
            std = np.atleast_1d(np.asarray(e["std_all"], dtype=float))
            row = {"effect": EFFECT_LABELS[key]}
            if isinstance(entry, list):
                row["sessions"] = f"{e['from_session']} → {e['to_session']}"
            row.update({"estimate": e["estimate"], "se": e["se"], "z": e["z"], "p": e["p"],
                        "ci_low": e["ci_low"], "ci_high": e["ci_high"], "std.all": float(np.nanmean(std))})
            if not isinstance(entry, list):
                row["std.all range"] = f"{np.nanmin(std):.3f} to {np.nanmax(std):.3f}"
            rows.append(row)
    return pd.DataFrame(rows)


def random_intercepts_table(result: RiclpmResult) -> pd.DataFrame:
    ri = result.random_intercepts
    return pd.DataFrame([
        {"component": "Alliance random-intercept variance", "estimate": ri["alliance_variance"],
         "se": ri["alliance_variance_se"], "p": ri["alliance_variance_p"]},
        {"component": "Symptoms random-intercept variance", "estimate": ri["symptoms_variance"],
         "se": ri["symptoms_variance_se"], "p": ri["symptoms_variance_p"]},
        {"component": "Random-intercept covariance", "estimate": ri["covariance"],
         "se": ri["covariance_se"], "p": ri["covariance_p"]},
        {"component": "Random-intercept correlation", "estimate": ri["correlation"], "se": np.nan, "p": np.nan},
    ])


def fit_indices_table(result: RiclpmResult) -> pd.DataFrame:
    """lavaan's ``fitMeasures``: one row per index (values as shown: text)."""
    f = result.fit
    rows = [("Log-likelihood", f["loglik"]), ("Unrestricted log-likelihood (H1)", f["unrestricted_loglik"]),
            ("χ²", f["chisq"]), ("df", f["df"]), ("p (χ² test)", f["pvalue"]), ("CFI", f["cfi"]),
            ("TLI", f["tli"]), ("RMSEA", f["rmsea"]), ("RMSEA 90% CI, lower", f["rmsea_ci_low"]),
            ("RMSEA 90% CI, upper", f["rmsea_ci_high"]), ("AIC", f["aic"]), ("BIC", f["bic"]),
            ("Free parameters", f["npar"]), ("Patients (N)", f["ntotal"])]
    def shown(name, value):
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return "—"
        if name in ("df", "Free parameters", "Patients (N)"):
            return str(int(value))
        return f"{value:.4f}" if name.startswith(("p ", "CFI", "TLI", "RMSEA")) else f"{value:.3f}"

    return pd.DataFrame({"index": [r[0] for r in rows], "value": [shown(*r) for r in rows]})


def describe_riclpm(result: RiclpmResult) -> list[str]:
    """Plain sentences on the lagged effects, the random intercepts and the fit."""
    out = []
    pairs = {"alliance_to_symptoms": ("alliance", "symptoms"), "symptoms_to_alliance": ("symptoms", "alliance")}
    for key, (cause, effect) in pairs.items():
        entry = result.lagged[key]
        if isinstance(entry, list):
            sig = [f"{e['from_session']}→{e['to_session']} ({e['estimate']:.3f}, {_p(e['p'])})"
                   for e in entry if e["p"] is not None and e["p"] < 0.05]
            values = [e["estimate"] for e in entry]
            out.append(f"{cause.capitalize()} → next-session {effect}, free per session pair: from {min(values):.3f} "
                       f"to {max(values):.3f}; " + (f"significant at session pairs {', '.join(sig)}." if sig
                                                    else "no session pair significant at .05."))
            continue
        est, p = entry["estimate"], entry["p"]
        direction = "above" if est > 0 else "below"
        std = np.asarray(entry["std_all"], dtype=float)
        out.append(
            f"When a patient's {cause} in a session is one point above what is usual for that patient, "
            f"the patient's {effect} score at the next session is expected to be {abs(est):.3f} points {direction} "
            f"what is usual for that patient, beyond the carry-over of {effect} itself (estimate {est:.3f}, "
            f"SE {entry['se']:.3f}, {_p(p)}; standardized {np.nanmean(std):.2f}). This within-person carry-over is "
            + ("statistically significant." if p is not None and p < 0.05 else "not statistically significant."))
    for key, measure in (("alliance_autoregressive", "alliance"), ("symptoms_autoregressive", "symptoms")):
        entry = result.lagged[key]
        if not isinstance(entry, list):
            out.append(f"A patient's deviation from the usual {measure} carries over to the next session with a "
                       f"coefficient of {entry['estimate']:.3f} ({_p(entry['p'])}).")
    r = result.random_intercepts.get("correlation")
    if r is not None:
        out.append(f"Between patients, the usual levels of alliance and symptoms correlate r = {r:.2f} "
                   f"({_p(result.random_intercepts['covariance_p'])}): this stable difference between patients is "
                   "kept apart from the lagged effects.")
    f = result.fit
    ci = (f" (90% CI {f['rmsea_ci_low']:.3f} to {f['rmsea_ci_high']:.3f})"
          if f.get("rmsea_ci_high") is not None else "")
    out.append(f"Fit: χ²({f['df']}) = {f['chisq']:.2f}" + (f", {_p(f['pvalue'])}" if f["pvalue"] is not None else "")
               + f"; CFI = {f['cfi']:.3f}; RMSEA = {f['rmsea']:.3f}{ci}; log-likelihood {f['loglik']:.2f} "
               f"with {f['npar']} parameters (AIC {f['aic']:.1f}, BIC {f['bic']:.1f}).")
    return out


def fit_for_report(data: pd.DataFrame, first: int | None = None, last: int | None = None,
                   free_lags: bool = False) -> RiclpmResult | str:
    """The RI-CLPM for a report: over ``first..last`` (default: :func:`suggested_sessions`), or the
    plain sentence saying why it cannot be fitted."""
    if not {"alliance", "symptoms"} <= set(data.columns):
        return "The RI-CLPM needs both alliance and symptoms."
    try:
        if first is None or last is None:
            first, last = suggested_sessions(data)
        return fit_riclpm(data, first, last, free_lags=free_lags)
    except (InputError, ModelError) as err:
        return str(err)


def shown(frame: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """A table for the screen: numbers as text (p with 3 significant digits, ``< .001`` style
    below 0.001 as ``1.2e-05``), ``—`` where a number does not exist."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_numeric_dtype(out[col]):
            is_p = col == "p" or col.startswith("p ")
            out[col] = out[col].map(lambda v, is_p=is_p: "—" if pd.isna(v) else
                                    (f"{v:.3g}" if is_p else f"{v:.{digits}f}"))
    return out


def _table_html(frame: pd.DataFrame, digits: int = 4) -> str:
    shown = frame.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v, c=col: "" if pd.isna(v) else
                                        (f"{v:.3g}" if c.startswith("p") and abs(v) < 1e-3 else f"{v:.{digits}f}"))
    return shown.to_html(index=False, escape=True, border=0)


def riclpm_section_html(result: RiclpmResult | str, figure_html) -> str:
    """The HTML report's RI-CLPM section; ``figure_html(fig)`` embeds a Plotly figure."""
    from core.reporting.figures import riclpm_path_diagram

    parts = ["<h2 id='riclpm'>Random-intercept cross-lagged panel model (RI-CLPM)</h2>"]
    if isinstance(result, str):
        parts.append(f"<p class='warn'>Not fitted: {html.escape(result)}</p>")
        return "\n".join(parts)
    lags = "free per session pair" if result.free_lags else "equal over sessions"
    parts.append(f"<p>Sessions {result.first}–{result.last} as waves; {result.n_patients} patients, "
                 f"{result.n_observations} patient-sessions; lagged effects {lags}; full-information maximum "
                 "likelihood (lavaan <code>missing = \"ml\"</code>), standard errors from the observed information. "
                 "Only sessions with both measures are in the dashboard's data set; "
                 "<code>python -m core riclpm</code> also uses sessions with one of the two.</p>")
    parts.append(f"<p>{html.escape(CROSS_LAGGED_MEANING)}</p>")
    parts.append("<h3>Lagged effects</h3>" + _table_html(lagged_effects_table(result)))
    parts.append("<ul class='sentences'>" + "".join(f"<li>{html.escape(s)}</li>" for s in describe_riclpm(result))
                 + "</ul>")
    parts.append("<h3>Random intercepts</h3>" + _table_html(random_intercepts_table(result)))
    parts.append("<h3>Fit (as lavaan's fitMeasures)</h3>" + _table_html(fit_indices_table(result), 3))
    for w in result.warnings:
        parts.append(f"<p class='warn'>{html.escape(w)}</p>")
    parts.append(figure_html(riclpm_path_diagram(result)))
    return "\n".join(parts)
