"""One self-contained HTML report for a supplement: tables, figures, data summary, excluded rows,
definitions, software versions and seed. Plotly's JavaScript is embedded once, so the file opens
in a browser with no network.

The numbers are those of ``python -m core analyze`` for the same data (the same functions compute
them); the full analysis report (JSON) is embedded in the file as ``<script id="analysis-json">``.
"""
from __future__ import annotations

import datetime as _dt
import html
import json

import pandas as pd
import plotly.io as pio

from core.clinical.signal import STATUSES, SignalSettings, published_settings, status_label
from core.clinical.signal_report import signal_report
from core.clinical.signal_validation import rules_table, validation_table
from core.i18n import N_, _, get_language, ngettext, number
from core.intake.mapping import role_name
from core.intake.validation import ValidatedData
from core.reporting.figures import (
    between_within_scatter,
    caterpillar,
    residual_diagnostics,
    spaghetti,
)
from core.reporting.json_report import (
    analysis_report,
    clean,
    definitions,
    model_to_dict,
    software_versions,
)
from core.reporting.tables import (
    comparison_table,
    describe_model,
    fit_table,
    fixed_effects_table,
    model_name,
    table_headers,
    variance_table,
    with_model_names,
)
from core.stats.decomposition import dropout, measure_correlations, session_summary
from core.stats.models import LadderResult, ModelResult

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.7em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.wide{overflow-x:auto}table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,td:nth-child(2){text-align:left}.note{color:#555;font-size:.9em}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.4em .8em}ul.sentences li{margin:.3em 0}
"""


#: Headers of the tables this module builds (and of the data tables it shows), for display.
HEADERS = {
    "session": N_("session"), "measure": N_("measure"), "mean": N_("mean"), "sd": N_("SD"), "level": N_("level"),
    "measure_1": N_("measure 1"), "measure_2": N_("measure 2"), "row": N_("row"), "reason": N_("reason"),
    "model": N_("model"), "value": N_("value"), "version": N_("version"), "status": N_("status"),
    "patients": N_("patients"), "share": N_("share"), "up to session": N_("up to session"), "fit": N_("fit"),
    "sessions": N_("sessions"), "residual": N_("residual"), "software": N_("software"),
    "left out": N_("left out"), "bound (not on track)": N_("bound (not on track)"),
    "bound (at risk)": N_("bound (at risk)"),
}
_LEVELS = {"observations": N_("observations"), "between": N_("between patients"), "within": N_("within patients")}


def _headers(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its headers (and role names in a ``measure`` column) in the current language."""
    out = frame.copy()
    for col in ("measure", "measure_1", "measure_2"):
        if col in out.columns:
            out[col] = out[col].map(lambda m: role_name(str(m)))
    if "level" in out.columns:
        out["level"] = out["level"].map(lambda v: _(_LEVELS[v]) if v in _LEVELS else v)
    return out.rename(columns={c: _(label) for c, label in HEADERS.items() if c in out.columns})


def _h(text: str) -> str:
    """Text for an HTML element (quotes kept as they are)."""
    return html.escape(text, quote=False)


def _tag(tag: str, text: str) -> str:
    """``<tag>text</tag>`` with the text escaped."""
    return f"<{tag}>{_h(text)}</{tag}>"


def _table(frame: pd.DataFrame, digits: int = 4) -> str:
    shown = frame.copy()
    for col in shown.columns:
        if pd.api.types.is_bool_dtype(shown[col]):  # converged, singular: words, not Python's True/False
            shown[col] = shown[col].map(lambda v: _("yes") if v else _("no"))
        elif pd.api.types.is_float_dtype(shown[col]):
            is_p = col == "p"
            shown[col] = shown[col].map(lambda v, is_p=is_p: "" if pd.isna(v) else
                                        (number(v, ".3g") if is_p and abs(v) < 1e-3 else number(v, f".{digits}f")))
    # a wide table (the fit table has 14 columns) scrolls sideways on a narrow screen instead of being cut off
    return "<div class='wide'>" + shown.to_html(index=False, escape=True, border=0) + "</div>"


def _figure(fig, first: bool) -> str:
    return pio.to_html(fig, full_html=False, include_plotlyjs=True if first else False,
                       config={"displaylogo": False})


def _model_section(model: ModelResult, title: str) -> str:
    parts = [f"<h3>{html.escape(title)}</h3>", f"<p><code>{html.escape(model.formula)}</code></p>"]
    fixed = fixed_effects_table({model.key: model}).drop(columns=["model", "term"])
    parts.append(_table(table_headers(fixed)))
    parts.append("<ul class='sentences'>" + "".join(f"<li>{html.escape(s)}</li>" for s in describe_model(model))
                 + "</ul>")
    parts.append(_table(table_headers(variance_table({model.key: model}).drop(columns=["model", "key"]))))
    parts.append(_table(table_headers(fit_table({model.key: model}).drop(columns=["model", "formula", "warnings"])), 3))
    for w in model.warnings:
        parts.append(f"<p class='warn'>{html.escape(w)}</p>")
    if len(model.excluded):
        parts.append("<p>" + _h(ngettext("This model leaves out {n} more row (a variable it needs is missing):",
                                         "This model leaves out {n} more rows (a variable it needs is missing):",
                                         len(model.excluded)).format(n=len(model.excluded)))
                     + "</p>" + _table(_headers(model.excluded)))
    return "\n".join(parts)


def signal_section(data: pd.DataFrame, settings: SignalSettings | None = None) -> tuple[str, dict]:
    """The early-warning signal for the report: its definition, the current statuses, the expected
    course's fits and the validation on this data set (cross-validated), as HTML; and the signal
    report without per-patient rows (for the embedded JSON)."""
    note = None
    if settings is None:
        settings, note = published_settings(data["symptoms"])
    report = signal_report(data, settings)
    report.pop("patients")
    out = [_tag("h2", _("Early-warning signal: expected course and who is not on track")),
           f"<p>{html.escape(report['definition'] + (' ' + note if note else ''))}</p>",
           f"<p class='note'>{html.escape(report['calibration'].get('sentence', ''))}</p>"]
    out += [f"<p class='warn'>{html.escape(w)}</p>" for w in report["norm"].get("warnings", [])]
    n = max(report["n_patients"], 1)
    share = _("{percent:.1f}%")
    latest = _("Each patient's latest session")
    out.append(f"<h3>{_h(latest)}</h3>" + _table(_headers(pd.DataFrame([
        {"status": status_label(s), "patients": report["current"][s],
         "share": share.format(percent=100 * report["current"][s] / n)} for s in STATUSES]))))
    fits = report["model"].get("fits") or []
    if fits:
        rule = report["rule"]
        out.append(_tag("h3", _("The expected course, refitted on the sessions up to each session of the course")))
        out.append(_table(_headers(pd.DataFrame([{
            "up to session": f"{f['up_to_session']:g}", "fit": f["kind"], "patients": f["n_patients"],
            "left out": f["n_left_out"], "sessions": f["n_observations"],
            **{f"b {k}": v for k, v in f["fixed"].items()},
            "var(intercept)": f["variance"]["patient_intercept"], "var(slope)": f["variance"]["patient_slope"],
            "cov": f["variance"]["patient_intercept_slope_cov"], "residual": f["variance"]["residual"],
            "bound (not on track)": (f["bounds"].get(rule) or {}).get("not_on_track"),
            "bound (at risk)": (f["bounds"].get(rule) or {}).get("at_risk"),
        } for f in fits])), 4))
    validation = report["validation"]
    out.append(_tag("h3", _("How well the signal predicted outcomes in this data set")))
    out.append(f"<p class='note'>{html.escape(' '.join(validation[k] for k in ('method', 'outcome', 'flag')))}</p>")
    vt = validation_table(validation)
    out.append(_table(vt) if len(vt) else
               _tag("p", _("Too few patients followed beyond session 4 to check the signal.")))
    ct = rules_table(validation)
    if len(ct):
        out.append(_tag("h3", _("The two rules side by side")) + _table(ct))
    out.append("<ul class='sentences'>" + "".join(f"<li>{html.escape(x)}</li>" for x in validation["sentences"])
               + "</ul>")
    return "\n".join(out), report


def build_html_report(validated: ValidatedData, ladder: LadderResult, custom: list[ModelResult] = (),
                      title: str | None = None,
                      seed: int | None = None, dataset_name: str | None = None, riclpm="auto",
                      signal: SignalSettings | bool | None = None, alliance_outcome="auto") -> str:
    """The report as an HTML string (see module docstring).

    ``riclpm``: a fitted :class:`core.stats.riclpm.RiclpmResult`, a sentence saying why it could
    not be fitted, ``None`` (no RI-CLPM section) or ``"auto"`` (fitted here over the suggested
    sessions when the data have both measures). ``signal``: the early-warning signal's settings
    (default: higher is worse, the published OQ-45.2 values), or False to leave it out.
    ``alliance_outcome``: a :class:`core.stats.alliance_outcome.AllianceOutcomeResult`, a sentence saying
    why there is none, ``None`` (no section) or ``"auto"`` (sessions 1–4; the post-treatment score when
    the data have one, else the last symptom score after session 4).
    """
    data = validated.data
    measures = validated.measures
    title = _("Alliance and symptom change: multilevel analysis") if title is None else title
    analysis = analysis_report(validated, ladder)
    # RI-CLPM (issue 17): fitted or explained; its JSON goes into the embedded analysis
    if isinstance(riclpm, str) and riclpm == "auto":
        from core.reporting.riclpm_report import fit_for_report

        riclpm = fit_for_report(data) if {"alliance", "symptoms"} <= set(measures) else None
    if riclpm is not None:
        analysis["riclpm"] = clean(riclpm.to_dict() if not isinstance(riclpm, str) else {"error": riclpm})
    if isinstance(alliance_outcome, str) and alliance_outcome == "auto":  # early alliance → outcome (issue 30)
        from core.reporting.alliance_outcome_report import for_clinic

        alliance_outcome = for_clinic(data) if {"alliance", "symptoms"} <= set(measures) else None
    if alliance_outcome is not None:
        analysis["alliance_outcome"] = clean(alliance_outcome.to_dict() if not isinstance(alliance_outcome, str)
                                             else {"error": alliance_outcome})
    if custom:
        analysis["custom_models"] = clean({m.key: {**model_to_dict(m), "title": m.spec.title} for m in custom})
    out = [f"<!DOCTYPE html><html lang='{get_language()}'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>",
           "<p class='note'>" + html.escape(_("Data: {name} · generated {when} by the alliance dashboard.").format(
               name=dataset_name or validated.source, when=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"))) + "</p>"]

    # data summary
    drop = dropout(data, k=4)
    out.append(_tag("h2", _("Data")))
    out.append(_table(_headers(pd.DataFrame([
        {"": _("Rows read"), "value": validated.n_rows_read},
        {"": _("Rows used (patient-sessions)"), "value": len(data)},
        {"": _("Rows left out"), "value": len(validated.excluded)},
        {"": _("Patients"), "value": data["patient"].nunique()},
        {"": _("Therapists"), "value": data["therapist"].nunique() if validated.has_therapist else "—"},
        {"": _("Patients with fewer than 4 sessions"),
         "value": _("{n} ({share:.1%})").format(n=drop["n_dropout"], share=drop["share"])},
    ]))))
    out.append(_tag("h3", _("By session")) + _table(_headers(session_summary(data, measures)), 3))
    corr = measure_correlations(data, measures)
    if len(corr):
        out.append(_tag("h3", _("Correlations")) + _table(_headers(corr), 3))
    for note in validated.notes:
        out.append(f"<p class='note'>{html.escape(note)}</p>")

    # level decision and ladder
    out.append(_tag("h2", _("Levels: intraclass correlations")))
    icc = ladder.icc
    out.append(_table(_headers(pd.DataFrame([
        {"level": _("Patient (two-level model)"), "ICC": icc["patient"]},
        {"level": _("Therapist (three-level model)"), "ICC": icc["therapist"]},
    ])), 4))
    for a in ladder.advice:
        out.append(f"<p>{html.escape(a)}</p>")
    out.append(_tag("h2", _("Model ladder (fixed effects, REML; Satterthwaite df)")))
    out.append(_table(table_headers(with_model_names(fixed_effects_table(ladder.models).drop(columns=["term"])))))
    out.append(_tag("h3", _("In words")))
    for key in ("time", "hybrid", "hybrid_detrended", "interaction"):
        if key in ladder.models:
            sentences = describe_model(ladder.models[key])[1:]
            out.append(f"<p><b>{_h(model_name(key))}</b></p><ul class='sentences'>" +
                       "".join(f"<li>{html.escape(s)}</li>" for s in sentences) + "</ul>")
    out.append(_tag("h3", _("Variance components"))
               + _table(table_headers(with_model_names(variance_table(ladder.models).drop(columns=["key"]))), 5))
    out.append(_tag("h3", _("Fit")) + _table(table_headers(with_model_names(fit_table(ladder.models))), 3))
    out.append(_tag("h3", _("Likelihood-ratio tests (ML fits)"))
               + _table(table_headers(with_model_names(comparison_table(ladder).drop(columns=["comparison"]))), 3))
    for key, reason in ladder.errors.items():
        out.append(f"<p class='warn'>{html.escape(model_name(key))}: {html.escape(reason)}</p>")

    for model in custom:
        out.append(_tag("h2", _("Model builder")) + _model_section(model, model.spec.title or model.key))

    signal_json = None
    if signal is not False and "symptoms" in measures:
        section, signal_json = signal_section(data, signal if isinstance(signal, SignalSettings) else None)
        out.append(section)

    # figures
    out.append(_tag("h2", _("Figures")))
    figures = []
    if "alliance" in measures and "symptoms" in measures:
        figures.append(between_within_scatter(data, "alliance", "symptoms"))
    time_model = ladder.models.get("time")
    mean_line = None
    if time_model is not None:
        sessions = sorted(data["session"].unique())
        est = time_model.fixed.set_index("term")["estimate"]
        t0 = data["session"].min()
        mean_line = pd.DataFrame({"session": sessions,
                                  "expected": [est["intercept"] + est["time"] * (s - t0) for s in sessions]})
    figures.append(spaghetti(data, ladder.outcome, mean_line))
    diag_model = custom[0] if custom else ladder.models.get("hybrid") or ladder.models.get("unconditional")
    if diag_model is not None:
        figures.append(residual_diagnostics(diag_model))
        figures.append(caterpillar(diag_model))
        out.append("<p class='note'>" + _h(_("Diagnostics and random effects: model {formula}.")).format(
            formula=f"<code>{html.escape(diag_model.formula)}</code>") + "</p>")
    for i, fig in enumerate(figures):
        out.append(_figure(fig, first=i == 0))

    if riclpm is not None:  # RI-CLPM section (issue 17)
        from core.reporting.riclpm_report import riclpm_section_html

        out.append(riclpm_section_html(riclpm, lambda fig: _figure(fig, first=not figures)))
    if alliance_outcome is not None:
        from core.reporting.alliance_outcome_report import alliance_outcome_section_html

        out.append(alliance_outcome_section_html(alliance_outcome, lambda frame: _table(frame, 3),
                                                 lambda fig: _figure(fig, first=not figures)))

    # excluded rows, definitions, software
    out.append(_tag("h2", _("Rows left out")))
    out.append(_table(_headers(validated.excluded)) if len(validated.excluded) else
               _tag("p", _("None: every row was used.")))
    per_model = {k: m for k, m in ladder.models.items() if len(m.excluded)}
    if per_model:
        out.append("<p>" + _h(_("Rows kept for the data but left out of a model that needs a missing score "
                                "(each model uses the sessions with every variable it names):")) + "</p>")
        out.append(_table(_headers(pd.concat([m.excluded.assign(model=model_name(k)) for k, m in per_model.items()],
                                             ignore_index=True)[["model", "row", "reason"]])))
    out.append(_tag("h2", _("Definitions and methods")) + "<ul>" +
               "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in definitions().items()) +
               "<li><b>engine</b>: " + _h(_("lme4's profiled (RE)ML as computed by the mixedlm package; "
                                           "checked against lme4 1.1-31 and lmerTest 3.1-3")) + "</li></ul>")
    versions = software_versions()
    out.append(_tag("h2", _("Software and seed")) + _table(_headers(pd.DataFrame(
        [{"": k, "version": v} for k, v in versions.items()]))))
    out.append("<p>" + _h((_("Seed: {seed} (the estimates use no random numbers; a seed applies only to simulated "
                             "data).") if seed is not None else
                           _("Seed: none (the estimates use no random numbers; a seed applies only to simulated "
                             "data).")).format(seed=seed)) + "</p>")
    out.append("<script type='application/json' id='analysis-json'>" +
               html.escape(json.dumps(analysis, allow_nan=False), quote=False) + "</script>")
    if signal_json is not None:
        out.append("<script type='application/json' id='signal-json'>" +
                   html.escape(json.dumps(signal_json, allow_nan=False), quote=False) + "</script>")
    out.append("</body></html>")
    return "\n".join(out)
