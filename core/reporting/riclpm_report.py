"""The RI-CLPM as people read it: tables, plain sentences and the HTML report's section.

The page (Reciprocal dynamics), the HTML report and ``python -m core riclpm`` show the same
numbers: those of :func:`core.stats.riclpm.fit_riclpm`.
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd

from core.errors import InputError, ModelError
from core.i18n import N_, _, number
from core.intake.mapping import role_name
from core.reporting.tables import _p_phrase
from core.stats.riclpm import LAGS, RiclpmResult, fit_riclpm, identification_needs, identified_sessions

#: The lagged effects in words (English; translated where shown: ``_(EFFECT_LABELS[key])``).
EFFECT_LABELS = {
    "alliance_to_symptoms": N_("Alliance → next-session symptoms (cross-lagged)"),
    "symptoms_to_alliance": N_("Symptoms → next-session alliance (cross-lagged)"),
    "alliance_autoregressive": N_("Alliance → next-session alliance (carry-over)"),
    "symptoms_autoregressive": N_("Symptoms → next-session symptoms (carry-over)"),
}

#: What a cross-lagged effect means in this model, in words for clinicians and researchers
#: (English; translated where shown: ``_(CROSS_LAGGED_MEANING)``).
CROSS_LAGGED_MEANING = N_(
    "A cross-lagged effect in the RI-CLPM is a within-person carry-over. Each patient's scores are split "
    "into the patient's own usual level (the random intercept, constant over sessions) and the session's "
    "deviation from what is usual for that patient at that session. The alliance → symptoms effect says how "
    "far a patient's next-session symptoms sit from the patient's own usual level when this session's "
    "alliance was one point above the patient's own usual level, beyond what the symptoms' own carry-over "
    "predicts. Stable differences between patients (a patient who always reports a strong alliance and few "
    "symptoms) are in the random intercepts, not in the lagged effects (Hamaker et al., 2015; Falkenström "
    "et al., 2022).")

#: Column headers of the tables below, for display (the tables keep these English names as keys).
COLUMN_LABELS = {
    "effect": N_("effect"), "sessions": N_("sessions"), "estimate": N_("estimate"), "se": N_("SE"), "z": "z",
    "p": "p", "ci_low": N_("95% CI, lower"), "ci_high": N_("95% CI, upper"), "std.all": "std.all",
    "std.all range": N_("std.all range"), "component": N_("component"), "index": N_("index"), "value": N_("value"),
}


def translated_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its column headers in the current language (for display only)."""
    return frame.rename(columns={c: _(label) for c, label in COLUMN_LABELS.items() if c in frame.columns})


def _p(p) -> str:
    """APA style in the interface language (``p = .445``; Spanish ``p = ,445``), as the ladder's sentences."""
    if p is None or not np.isfinite(p):
        return _("p not available")
    return _p_phrase(p)


def lagged_effects_table(result: RiclpmResult) -> pd.DataFrame:
    """One row per lagged effect (per session pair with free lags): estimate, SE, z, p, 95% CI,
    and std.all (equal lags: the mean over session pairs and its range)."""
    rows = []
    for key in LAGS:
        entry = result.lagged[key]
        items = entry if isinstance(entry, list) else [entry]
        for e in items:
            std = np.atleast_1d(np.asarray(e["std_all"], dtype=float))
            row = {"effect": _(EFFECT_LABELS[key])}
            if isinstance(entry, list):
                row["sessions"] = f"{e['from_session']} → {e['to_session']}"
            row.update({"estimate": e["estimate"], "se": e["se"], "z": e["z"], "p": e["p"],
                        "ci_low": e["ci_low"], "ci_high": e["ci_high"], "std.all": float(np.nanmean(std))})
            if not isinstance(entry, list):
                row["std.all range"] = _("{low:.3f} to {high:.3f}").format(low=np.nanmin(std), high=np.nanmax(std))
            rows.append(row)
    return pd.DataFrame(rows)


def random_intercepts_table(result: RiclpmResult) -> pd.DataFrame:
    ri = result.random_intercepts
    return pd.DataFrame([
        {"component": _("Alliance random-intercept variance"), "estimate": ri["alliance_variance"],
         "se": ri["alliance_variance_se"], "p": ri["alliance_variance_p"]},
        {"component": _("Symptoms random-intercept variance"), "estimate": ri["symptoms_variance"],
         "se": ri["symptoms_variance_se"], "p": ri["symptoms_variance_p"]},
        {"component": _("Random-intercept covariance"), "estimate": ri["covariance"],
         "se": ri["covariance_se"], "p": ri["covariance_p"]},
        {"component": _("Random-intercept correlation"), "estimate": ri["correlation"], "se": np.nan, "p": np.nan},
    ])


def fit_indices_table(result: RiclpmResult) -> pd.DataFrame:
    """lavaan's ``fitMeasures``: one row per index (values as shown: text)."""
    f = result.fit
    rows = [(N_("Log-likelihood"), f["loglik"]), (N_("Unrestricted log-likelihood (H1)"), f["unrestricted_loglik"]),
            ("χ²", f["chisq"]), (N_("df"), f["df"]), (N_("p (χ² test)"), f["pvalue"]), ("CFI", f["cfi"]),
            ("TLI", f["tli"]), ("RMSEA", f["rmsea"]), (N_("RMSEA 90% CI, lower"), f["rmsea_ci_low"]),
            (N_("RMSEA 90% CI, upper"), f["rmsea_ci_high"]), ("AIC", f["aic"]), ("BIC", f["bic"]),
            (N_("Free parameters"), f["npar"]), (N_("Patients (N)"), f["ntotal"])]
    def shown(name, value):
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return "—"
        if name in ("df", "Free parameters", "Patients (N)"):
            return str(int(value))
        return number(value, ".4f" if name.startswith(("p ", "CFI", "TLI", "RMSEA")) else ".3f")

    return pd.DataFrame({"index": [_(r[0]) for r in rows], "value": [shown(*r) for r in rows]})


def describe_riclpm(result: RiclpmResult) -> list[str]:
    """Plain sentences on the lagged effects, the random intercepts and the fit."""
    out = []
    pairs = {"alliance_to_symptoms": ("alliance", "symptoms"), "symptoms_to_alliance": ("symptoms", "alliance")}
    within = {  # (above, significant)
        (True, True): _("When a patient's {cause} in a session is one point above what is usual for that patient, "
                        "the patient's {effect} score at the next session is expected to be {size:.3f} points above "
                        "what is usual for that patient, beyond the carry-over of {effect} itself (estimate "
                        "{estimate:.3f}, SE {se:.3f}, {p}; standardized {std:.2f}). This within-person carry-over is "
                        "statistically significant."),
        (True, False): _("When a patient's {cause} in a session is one point above what is usual for that patient, "
                         "the patient's {effect} score at the next session is expected to be {size:.3f} points above "
                         "what is usual for that patient, beyond the carry-over of {effect} itself (estimate "
                         "{estimate:.3f}, SE {se:.3f}, {p}; standardized {std:.2f}). This within-person carry-over is "
                         "not statistically significant."),
        (False, True): _("When a patient's {cause} in a session is one point above what is usual for that patient, "
                         "the patient's {effect} score at the next session is expected to be {size:.3f} points below "
                         "what is usual for that patient, beyond the carry-over of {effect} itself (estimate "
                         "{estimate:.3f}, SE {se:.3f}, {p}; standardized {std:.2f}). This within-person carry-over is "
                         "statistically significant."),
        (False, False): _("When a patient's {cause} in a session is one point above what is usual for that patient, "
                          "the patient's {effect} score at the next session is expected to be {size:.3f} points below "
                          "what is usual for that patient, beyond the carry-over of {effect} itself (estimate "
                          "{estimate:.3f}, SE {se:.3f}, {p}; standardized {std:.2f}). This within-person carry-over "
                          "is not statistically significant."),
    }
    for key, (cause, effect) in pairs.items():
        entry = result.lagged[key]
        if isinstance(entry, list):
            sig = [f"{e['from_session']}→{e['to_session']} ({number(e['estimate'], '.3f')}, {_p(e['p'])})"
                   for e in entry if e["p"] is not None and e["p"] < 0.05]
            values = [e["estimate"] for e in entry]
            template = (_("{cause} → next-session {effect}, free per session pair: from {low:.3f} to {high:.3f}; "
                          "significant at session pairs {pairs}.") if sig else
                        _("{cause} → next-session {effect}, free per session pair: from {low:.3f} to {high:.3f}; "
                          "no session pair significant at .05."))
            out.append(template.format(cause=role_name(cause).capitalize(), effect=role_name(effect),
                                       low=min(values), high=max(values), pairs="; ".join(sig)))
            continue
        est, p = entry["estimate"], entry["p"]
        std = np.asarray(entry["std_all"], dtype=float)
        out.append(within[(bool(est > 0), p is not None and p < 0.05)].format(
            cause=role_name(cause), effect=role_name(effect), size=abs(est), estimate=est, se=entry["se"],
            p=_p(p), std=np.nanmean(std)))
    for key, measure in (("alliance_autoregressive", "alliance"), ("symptoms_autoregressive", "symptoms")):
        entry = result.lagged[key]
        if not isinstance(entry, list):
            out.append(_("A patient's deviation from the usual {measure} carries over to the next session with a "
                         "coefficient of {estimate:.3f} ({p}).").format(measure=role_name(measure),
                                                                       estimate=entry["estimate"], p=_p(entry["p"])))
    r = result.random_intercepts.get("correlation")
    if r is not None:
        out.append(_("Between patients, the usual levels of alliance and symptoms correlate r = {r:.2f} ({p}): this "
                     "stable difference between patients is kept apart from the lagged effects.").format(
            r=r, p=_p(result.random_intercepts["covariance_p"])))
    f = result.fit
    ci = (_(" (90% CI {low:.3f} to {high:.3f})").format(low=f["rmsea_ci_low"], high=f["rmsea_ci_high"])
          if f.get("rmsea_ci_high") is not None else "")
    out.append(_("Fit: χ²({df}) = {chisq:.2f}{p}; CFI = {cfi:.3f}; RMSEA = {rmsea:.3f}{ci}; log-likelihood "
                 "{loglik:.2f} with {npar} parameters (AIC {aic:.1f}, BIC {bic:.1f}).").format(
        df=f["df"], chisq=f["chisq"], p=f", {_p(f['pvalue'])}" if f["pvalue"] is not None else "", cfi=f["cfi"],
        rmsea=f["rmsea"], ci=ci, loglik=f["loglik"], npar=f["npar"], aic=f["aic"], bic=f["bic"]))
    return out


def fit_for_report(data: pd.DataFrame, first: int | None = None, last: int | None = None,
                   free_lags: bool = False) -> RiclpmResult | str:
    """The RI-CLPM for a report: over ``first..last`` (default: the widest range of sessions on which
    the model is identified, :func:`core.stats.riclpm.identified_sessions`), or the plain sentence
    saying why it cannot be fitted."""
    if not {"alliance", "symptoms"} <= set(data.columns):
        return _("The RI-CLPM needs both alliance and symptoms.")
    try:
        if first is None or last is None:
            window = identified_sessions(data, free_lags)
            if window is None:
                return identification_needs(data, free_lags)
            first, last = window
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
                                    (number(v, ".3g") if is_p else number(v, f".{digits}f")))
    return out


def _table_html(frame: pd.DataFrame, digits: int = 4) -> str:
    shown = frame.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v, c=col: "" if pd.isna(v) else
                                        (number(v, ".3g") if c.startswith("p") and abs(v) < 1e-3 else number(v, f".{digits}f")))
    return shown.to_html(index=False, escape=True, border=0)


def riclpm_section_html(result: RiclpmResult | str, figure_html) -> str:
    """The HTML report's RI-CLPM section; ``figure_html(fig)`` embeds a Plotly figure."""
    from core.reporting.figures import riclpm_path_diagram

    heading = _("Random-intercept cross-lagged panel model (RI-CLPM)")
    parts = [f"<h2 id='riclpm'>{html.escape(heading, quote=False)}</h2>"]
    if isinstance(result, str):
        text = _("Not fitted: {reason}").format(reason=result)
        parts.append(f"<p class='warn'>{html.escape(text)}</p>")
        return "\n".join(parts)
    text = (_("Sessions {first}–{last} as waves; {patients} patients, {observations} patient-sessions; lagged "
              "effects free per session pair; full-information maximum likelihood (lavaan {missing}), standard "
              "errors from the observed information. Only sessions with both measures are in the dashboard's data "
              "set; {command} also uses sessions with one of the two.") if result.free_lags else
            _("Sessions {first}–{last} as waves; {patients} patients, {observations} patient-sessions; lagged "
              "effects equal over sessions; full-information maximum likelihood (lavaan {missing}), standard "
              "errors from the observed information. Only sessions with both measures are in the dashboard's data "
              "set; {command} also uses sessions with one of the two."))
    parts.append("<p>" + html.escape(text, quote=False).format(
        first=result.first, last=result.last, patients=result.n_patients, observations=result.n_observations,
        missing='<code>missing = "ml"</code>', command="<code>python -m core riclpm</code>") + "</p>")
    parts.append(f"<p>{html.escape(_(CROSS_LAGGED_MEANING))}</p>")
    lagged = _("Lagged effects")
    parts.append(f"<h3>{html.escape(lagged, quote=False)}</h3>"
                 + _table_html(translated_columns(lagged_effects_table(result))))
    parts.append("<ul class='sentences'>" + "".join(f"<li>{html.escape(s)}</li>" for s in describe_riclpm(result))
                 + "</ul>")
    intercepts = _("Random intercepts")
    parts.append(f"<h3>{html.escape(intercepts, quote=False)}</h3>"
                 + _table_html(translated_columns(random_intercepts_table(result))))
    fit_heading = _("Fit (as lavaan's fitMeasures)")
    parts.append(f"<h3>{html.escape(fit_heading, quote=False)}</h3>"
                 + _table_html(translated_columns(fit_indices_table(result)), 3))
    for w in result.warnings:
        parts.append(f"<p class='warn'>{html.escape(w)}</p>")
    parts.append(figure_html(riclpm_path_diagram(result)))
    return "\n".join(parts)
