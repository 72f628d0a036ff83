"""Clinic overview (supervisor): key figures, the caseload by the early-warning signal, therapists,
how well the signal has predicted outcomes here, and trajectories. A therapist's start page: *My
caseload*, her own patients, without the clinic's therapist figures."""
import datetime
import json
import math

import streamlit as st

from core.clinical.indices import therapist_icc_sentence, therapist_table, therapist_trajectories
from core.clinical.signal import calibration_sentence, calibration_summary, definition, source_sentence
from core.clinical.signal_norm import norm_document
from core.clinical.signal_validation import rules_table, validation_table
from core.i18n import N_, _, get_language, number
from core.intake.mapping import role_name
from core.reporting.alliance_outcome_report import clinic_sentence
from core.reporting.exports import csv_bytes, excel_bytes
from core.reporting.figures import small_multiples, therapist_trajectory_figure
from core.reporting.formatting import decimals_for
from core.stats.decomposition import dropout
from ui.auth import download, log_caseload_view
from ui.clinic import (
    alliance_scale,
    caseload_reasons,
    caseload_table,
    clinic_signal,
    clinical_settings,
    early_alliance_figures,
    filter_caseload,
    measure_labels,
    measure_range,
    page_of,
    patient_options,
    instrument_title,
    rupture_threshold,
    jt_word,
    signal_key,
    sees_whole_clinic,
    sessions_with_ruptures_so_far,
    signal_checks,
    signal_settings,
    signal_validation,
    therapist_icc,
)
from ui.language import localised
from ui.look import TABLE_AT_800, number_columns, text_width, wrapped_row_height
from ui.state import dataset_picker, dataset_title, demo_badge
from ui.text import md

PANELS_PER_PAGE = 24
#: The caseload's height at most (its rows are as tall as its longest reason needs, ui.look.wrapped_row_height),
#: and the width of the row-selection column Streamlit adds in front.
CASELOAD_HEIGHT = 620
SELECT_COLUMN = 32
#: Caseload rows and therapists per page: the table is filtered and paged on the server, so the
#: browser never receives a clinic's whole caseload (130,000 patients in bench/bench_pages.py).
ROWS_PER_PAGE = 200
THERAPISTS_PER_PAGE = 25
#: Above this many patients the cross-validation (5 refits of every expected course) waits for a click.
VALIDATE_AT_ONCE = 2000
#: The signal in words, with the chart's marker shapes (▲ red, ◆ amber, ● green, ○ grey).
SIGNAL_WORDS = {"not_on_track": N_("▲ not on track"), "at_risk": N_("◆ at risk"), "on_track": N_("● on track"),
                "unknown": N_("○ unknown")}
#: The caseload's columns, the key ones first (who, the signal, why), with their headers on screen
#: and in the Excel file (translated where shown; the CSV keeps these keys as its header).
CASELOAD_COLUMNS = {
    "patient": N_("Patient"), "signal": N_("Signal now"), "attention": N_("Why (reasons)"),
    "therapist": N_("Therapist"), "status": N_("Jacobson–Truax status"), "change": N_("Change (last − first)"),
    "first": N_("First score"), "last": N_("Last score"), "sessions": N_("Sessions"),
    "first_session": N_("First session"), "last_session": N_("Last session"), "ruptures": N_("Ruptures"),
    "unrepaired": N_("Unrepaired ruptures"),
    "no_reliable_improvement": N_("No reliable improvement by session {n}"), "above_cutoff": N_("Above the cut-off"),
}


def signal_word(status) -> str:
    """The signal in words with its marker (``▲ not on track``), in the interface language."""
    return _(SIGNAL_WORDS[status]) if status in SIGNAL_WORDS else status


def caseload_definitions(ds, settings, model, threshold: float, improvement_by: int, therapists: list,
                         date: str) -> list[tuple[str, str]]:
    """The thresholds and definitions the caseload was computed with (the Excel file's second sheet)."""
    def value(x):  # a number stays a number (the workbook formats it), a missing one is a dash
        return "—" if x is None else float(x)

    return [
        (_("Data set"), dataset_title(ds.name)),
        (_("Exported on"), date),
        (_("Therapists"), ", ".join(map(str, therapists)) if therapists else _("All therapists")),
        (_("Symptom measure"), instrument_title(settings.instrument)),
        (_("Higher scores mean"), _("more symptoms") if settings.higher_is_worse else _("fewer symptoms")),
        (_("Clinical cut-off"), value(settings.cutoff)),
        (_("Reliable change (points)"), value(settings.reliable_change)),
        (_("Rupture threshold (own SDs below own mean so far)"), value(threshold)),
        (_("Expect reliable improvement by session"), int(improvement_by)),
        (_("Signal now"), _("The early-warning signal of the patient's latest session: not on track, at risk or on "
                            "track, judged from the patient's scores so far against the expected course of patients "
                            "who started at the same level. {rates}").format(
            rates=calibration_sentence(signal_settings(settings)))),
        (_("Expected course from"), source_sentence(model)),
        (_("How the signal is computed"), definition(model, signal_settings(settings))),
        (_("Jacobson–Truax status"), _("recovered: reliable improvement from the clinical into the non-clinical "
                                       "range; improved / deteriorated: a change of at least the reliable change; "
                                       "else unchanged (first and last sessions with a symptom score).")),
        (_("Change (last − first)"), _("The last symptom score minus the first.")),
        (_("Unrepaired ruptures"), _("Sessions whose alliance lay more than the rupture threshold below the "
                                     "patient's own mean so far and did not recover in the next session (or have no "
                                     "session since).")),
        (_("No reliable improvement by session {n}").format(n=improvement_by),
         _("The patient has reached that session and has still not improved by the reliable change since the "
           "first.")),
        (_("Order"), _("Not on track, then at risk, then a rupture not repaired, then reliable deterioration, no "
                       "reliable improvement by the session above, last score above the cut-off.")),
    ]

ds = dataset_picker()
settings = clinical_settings(ds)
measures = ds.validated.measures
data = ds.data
threshold = rupture_threshold()
improvement_by = st.sidebar.number_input(_("Expect reliable improvement by session"), min_value=2, value=4,
                                         step=1, key="improvement_by")

mine = not sees_whole_clinic()  # a therapist: her caseload, her patients only
st.title(_("My caseload") if mine else _("Clinic overview"))
demo_badge(ds)
drop = dropout(data, k=4)
k = st.columns(3 if mine else 4)
k[0].metric(_("Patients"), number(data["patient"].nunique(), ","))
if not mine:
    k[1].metric(_("Therapists"), number(data["therapist"].nunique(), ",") if ds.validated.has_therapist else "—")
k[-2].metric(_("Sessions"), number(len(data), ","))
k[-1].metric(_("Dropout before session 4"), number(drop["share"], ".1%"),
            help=_("{n} patients with fewer than 4 sessions.").format(n=int(drop["n_dropout"])))

outcome = "symptoms" if "symptoms" in measures else measures[0]
if ds.validated.has_therapist and not mine:
    st.info(_("**Therapists.** {sentence}").format(
        sentence=therapist_icc_sentence(therapist_icc(ds, outcome), outcome)))
if {"alliance", "symptoms"} <= set(measures) and (early := early_alliance_figures(ds)):
    st.info(_("**Early alliance and outcome.** {sentence}").format(sentence=md(clinic_sentence(early))))

# ---------------------------------------------------------------- caseload
sessions = sessions_with_ruptures_so_far(ds, threshold)
st.subheader(_("Caseload, most in need of attention first"))
if "symptoms" not in measures:
    st.warning(_("The caseload needs a symptom measure; this data set has none."))
    st.stop()
model, _sessions, current = clinic_signal(ds, settings)
# every visible patient, ordered once per setting (cached, read-only); filtered and paged below
everyone = caseload_table(ds.fingerprint, threshold, signal_settings(settings), int(improvement_by),
                          signal_key(model), sessions, current)
log_caseload_view(ds.name, len(everyone))
therapists = sorted(everyone["therapist"].unique()) if ds.validated.has_therapist and not mine else []
f1, f2 = st.columns(2)
chosen = f1.multiselect(_("Therapists"), therapists, key="overview_therapists",
                        placeholder=_("All therapists")) if therapists else []
wanted = f2.multiselect(_("Signal now"), list(SIGNAL_WORDS), format_func=localised(signal_word), key="overview_statuses",
                        placeholder=_("Every status"))
by_therapist = filter_caseload(everyone, therapists=chosen)
counts = by_therapist["signal"].value_counts()
st.markdown(" · ".join(_("**{n:,}** {signal}").format(n=int(counts.get(s, 0)), signal=md(signal_word(s)))
                       for s in ("not_on_track", "at_risk", "on_track", "unknown")))
st.caption(_("Order: the early-warning signal of each patient's latest session — not on track, then at risk — then "
             "a rupture not repaired, then reliable deterioration, no reliable improvement by the session set in the "
             "sidebar (cleared once the patient improved), last score above the cut-off. Select a row to open that "
             "patient."))
if not model.local:
    st.info(_("**No local expected course**: {reason} The signal uses the published reliable-change rule relative to "
              "the first session instead (reliable deterioration: not on track; half of it: at risk).").format(
        reason=model.reason))
else:
    checks, compared = signal_checks(ds, model, settings, calibrate=sees_whole_clinic())
    st.markdown(_("**The signal:** {rates} Expected course from {source}.").format(
        rates=calibration_sentence(signal_settings(settings)), source=md(source_sentence(model))))
    if checks is not None:  # supervisors: it simulates with every patient's intake and sessions
        st.caption(calibration_summary(checks))
    for warning in (compared or {}).get("warnings", []):
        st.warning(warning, icon=":material/warning:")
# the *Find patient by ID* box below narrows the caseload too (its value from the last rerun)
search = str(st.session_state.get("overview_search", "") or "")
table = filter_caseload(by_therapist, statuses=wanted, query=search)
first_row, _pages = page_of(len(table), ROWS_PER_PAGE, "caseload_page",
                            _("Caseload: page number (1–{pages}, {per} patients each)"))
page_rows = caseload_reasons(ds, model, _sessions, table.iloc[first_row: first_row + ROWS_PER_PAGE],
                             int(improvement_by))  # the reasons of the rows shown, in this language
shown_of = (_("Patients {first:,}–{last:,} of {n:,} (of {total:,} in all).") if len(table) < len(everyone)
            else _("Patients {first:,}–{last:,} of {n:,}."))
st.caption(shown_of.format(first=first_row + 1, last=first_row + len(page_rows), n=len(table), total=len(everyone)))


def for_people(rows):
    """The caseload rows with the key columns first, the signal and the Jacobson–Truax status in words."""
    rows = rows.assign(signal=rows["signal"].map(signal_word))
    if "status" in rows.columns:
        rows = rows.assign(status=rows["status"].map(jt_word))
    return rows[[c for c in CASELOAD_COLUMNS if c in rows.columns]]


shown = for_people(page_rows)
headers = {c: _(label).format(n=int(improvement_by)) for c, label in CASELOAD_COLUMNS.items()}
score_decimals = decimals_for(everyone["last"])
config = number_columns(shown, decimals={"change": score_decimals, "first": score_decimals, "last": score_decimals},
                        labels=headers)
# the key columns sized to their content (full IDs, pseudonyms too; whole signal words and therapist names),
# the reasons in the rest of an 800 px page, wrapped on as many lines as the longest needs: readable
# without widening a column (wider windows give every column more)
widths = {col: text_width(shown[col], headers[col]) for col in ("patient", "signal", "therapist") if col in shown}
why_width = max(280, TABLE_AT_800 - SELECT_COLUMN - sum(widths.values()))
for col, width in widths.items():
    config[col] = st.column_config.TextColumn(headers[col], width=width)
config["attention"] = st.column_config.TextColumn(headers["attention"], width=why_width)
row_height = wrapped_row_height(shown["attention"], why_width)
event = st.dataframe(shown, hide_index=True, width="stretch", row_height=row_height,
                     height=min(CASELOAD_HEIGHT, 38 + row_height * max(len(shown), 1)),
                     key="caseload", on_select="rerun", selection_mode="single-row", column_config=config)
st.caption(_("Keyboard: Tab into the table, move to a patient with the arrow keys and press Enter to open them, "
             "or choose the patient under Open patient."))
rows = event.selection.rows if event is not None and hasattr(event, "selection") else []
c1, c2, c3 = st.columns([2, 1, 1])
with c1:
    openable = patient_options(table["patient"].tolist(), st.session_state.get("overview_open"), key="overview_search")
pick = c1.selectbox(_("Open patient"), openable, key="overview_open", index=None,
                    placeholder=_("Choose a patient …"))
if rows:
    pick = shown["patient"].iloc[rows[0]]
clicked = c1.button(_("Open patient page"), key="open_patient_button", disabled=not pick)
if pick and (rows or clicked):
    st.session_state["open_patient"] = pick
    # one history entry (/patient?patient=ID), so that the browser's Back returns to the caseload: setting
    # st.query_params first added /overview?patient=ID, and Back then took two or three presses
    st.switch_page("pages/patient.py", query_params={"patient": pick})
today = datetime.date.today().isoformat()
language = get_language()


def with_reasons(rows):
    """Every exported row's reasons in words (written when an export button is clicked)."""
    return caseload_reasons(ds, model, _sessions, rows, int(improvement_by))


# every page of the filtered caseload, built when clicked (writing 130,000 rows on every rerun costs seconds)
with c2:
    download(_("Caseload (CSV)"), lambda: csv_bytes(for_people(with_reasons(table)), language),
             file_name="caseload.csv", mime="text/csv", key="caseload_csv", what=f"{ds.name}: caseload (CSV)")
with c3:
    sheet, title = _("Caseload"), _("Caseload of {dataset}, {date}").format(dataset=dataset_title(ds.name), date=today)
    download(_("Caseload (Excel)"),
             lambda: excel_bytes(for_people(with_reasons(table)), sheet, labels=headers, title=title,
                                 definitions=caseload_definitions(ds, settings, model, threshold, int(improvement_by),
                                                                  chosen, today)),
             file_name="caseload.xlsx", key="caseload_xlsx",
             mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", what=f"{ds.name}: caseload (Excel)")

# ---------------------------------------------------------------- per therapist
if ds.validated.has_therapist and not mine:
    st.subheader(_("Therapists: not on track now, deteriorated, unrepaired ruptures"))
    per = therapist_table(by_therapist)
    first_therapist, _pages = page_of(len(per), THERAPISTS_PER_PAGE, "therapist_page",
                                      _("Therapists: page number (1–{pages}, {per} each)"))
    per = per.iloc[first_therapist: first_therapist + THERAPISTS_PER_PAGE]
    display = per[["therapist", "patients"]].copy()
    share = _("{n} of {total} ({percent:.0f}%)")
    for name in ("not on track now", "deteriorated", "unrepaired rupture"):
        display[name] = [share.format(n=int(n), total=int(p), percent=pct)
                         for n, p, pct in zip(per[name], per["patients"], per[f"{name} (%)"])]
    st.dataframe(display, hide_index=True, width="stretch", height=min(36 * (len(display) + 1) + 4, 360),
                 column_config={"therapist": _("therapist"), "patients": _("patients"),
                                "not on track now": _("not on track now"), "deteriorated": _("deteriorated"),
                                "unrepaired rupture": _("unrepaired rupture")})
    st.caption(_("Case mix differs between therapists: how ill their patients were at intake, how long they have "
                 "been seen, how many patients they have. Small counts swing percentages; compare with care — this "
                 "is not a ranking of therapists."))
    if model.local:
        st.caption(_("Not on track now: the latest session's signal. {rates}").format(
            rates=calibration_sentence(signal_settings(settings))))

# ---------------------------------------------------------------- how good is the alarm here
st.subheader(_("How well has the signal predicted outcomes in this clinic?"))
if not sees_whole_clinic():
    st.caption(_("The check against the clinic's outcomes uses every patient of the clinic; supervisors see it."))
elif not settings.reliable_change:
    st.caption(_("Set a reliable-change value under *Clinical thresholds* to tell good from poor outcomes."))
else:
    sig = signal_settings(settings)
    n_patients = data["patient"].nunique()
    go = n_patients <= VALIDATE_AT_ONCE or st.session_state.get("signal_validated_for") == ds.fingerprint
    if not go and st.button(_("Check it on all {n:,} patients (refits every expected course 5 times)").format(
            n=n_patients), key="validate_signal"):
        st.session_state["signal_validated_for"] = ds.fingerprint
        go = True
    if go:
        validation = signal_validation(ds.fingerprint, sig, data, model)
        st.caption(" ".join((validation["method"], validation["outcome"], validation["flag"])))
        vt = validation_table(validation)
        if vt.empty:
            st.caption(_("Too few patients followed beyond session 4 to check the signal."))
        else:
            st.dataframe(vt, hide_index=True, width="stretch")
            st.markdown(_("**The two rules side by side** (✓ the one in use; on simulated clinics the personalised "
                          "rule caught slightly more deteriorating patients by sessions 4 and 6 at the same rate of "
                          "false alarms, hence the default):"))
            st.dataframe(rules_table(validation), hide_index=True, width="stretch")
            for sentence in validation["sentences"]:
                st.markdown(f"- {md(sentence)}")
            calendar = validation.get("calendar") or {}
            if calendar.get("method"):
                st.caption(calendar["method"])
                st.dataframe(rules_table(calendar), hide_index=True, width="stretch")
    if model.local and not model.outside:
        download(_("Save this expected course as a norm (JSON)"),
                 lambda: json.dumps(norm_document(data, sig, name=dataset_title(ds.name), model=model,
                                                  created=datetime.date.today().isoformat()),
                                    indent=1, allow_nan=False).encode("utf-8"),
                 file_name="signal-norm.json", mime="application/json", key="signal_norm_json",
                 what=f"{ds.name}: signal norm (JSON)",
                 help=_("The expected course's numbers (no patient's rows), for other clinics to judge against "
                        "(Expected course from → A norm file, or `python -m core signal --norm`)."))

# ---------------------------------------------------------------- trajectories
st.subheader(_("Patient trajectories"))
measure = st.radio(_("Measure"), sorted(measures, key=lambda m: m != "symptoms"), horizontal=True,
                   key="overview_measure", format_func=localised(role_name))
subset = sessions if not chosen else sessions[sessions["therapist"].isin(chosen)]
order = table["patient"].tolist()  # the filtered caseload's order
n_pages = max(1, math.ceil(len(order) / PANELS_PER_PAGE))
if st.session_state.get("overview_page", 1) > n_pages:  # a filter above left fewer pages
    del st.session_state["overview_page"]
page = st.number_input(_("Page (of {pages}, {per} patients each, in caseload order)").format(
    pages=n_pages, per=PANELS_PER_PAGE), min_value=1, max_value=n_pages, value=1, key="overview_page")
these = order[(page - 1) * PANELS_PER_PAGE: page * PANELS_PER_PAGE]
axis_titles = {m: axis for m, (_title, axis) in measure_labels(ds, settings).items()}
scale = alliance_scale(ds).get(measure)
on_page = table[table["patient"].isin(these)]
now = dict(zip(on_page["patient"], on_page["signal"]))
fig = small_multiples(subset, these, measure, cutoff=settings.cutoff if measure == "symptoms" else None,
                      status=now, y_title=axis_titles.get(measure, measure),
                      y_range=scale)
st.plotly_chart(fig, width="stretch")
st.caption(_("Each panel's colour and symbol give the early-warning signal of the patient's latest session (in "
             "words when you point at the line): ▲ not on track (red), ◆ at risk (amber), ● on track (green), "
             "○ unknown (grey)."))

if ds.validated.has_therapist and not mine:
    st.subheader(_("Mean trajectory per therapist (95% CI)"))
    fig2 = therapist_trajectory_figure(therapist_trajectories(subset, measure),
                                       measure, max_therapists=max(12, len(chosen)),
                                       y_title=axis_titles.get(measure), y_range=scale,
                                       clip_range=measure_range(ds, measure))  # bands within the scale
    st.plotly_chart(fig2, width="stretch")
