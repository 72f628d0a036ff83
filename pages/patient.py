"""Patient page (therapist): what needs attention first, then the course against the expected one."""
import streamlit as st

from core.clinical.indices import flag_ruptures_so_far, jacobson_truax_status
from core.clinical.signal import calibration_sentence, definition, source_sentence, status_label, status_sentence
from core.i18n import _, get_language, model_decimals, number
from core.reporting.exports import csv_bytes
from core.reporting.figures import STATUS_GLYPH, patient_chart
from core.reporting.formatting import decimals_for, format_number, rounded
from core.reporting.patient_text import change_sentence, rupture_sentences
from core.reporting.summary_pdf import PatientSummary
from ui.auth import download, log_patient_view
from ui.clinic import (
    alliance_scale,
    clinic_signal,
    clinical_settings,
    jt_word,
    measure_labels,
    patient_list,
    patient_options,
    patient_signal_rows,
    rupture_threshold,
    sessions_table,
    signal_settings,
)
from ui.look import local_numbers, number_columns
from ui.record import history_on_request
from ui.summary import summary_button
from ui.state import dataset_picker, dataset_title, demo_badge, open_dataset, store
from ui.text import md


ds = dataset_picker()
settings = clinical_settings(ds)
measures = ds.validated.measures
threshold = rupture_threshold(help=_("A session is flagged when alliance lies more than this many of the "
                                     "patient's own SDs below the patient's own mean so far (that session included)."))

st.title(_("Patient"))
demo_badge(ds)
sessions = sessions_table(ds.fingerprint, tuple(measures), ds.data)
patients = patient_list(ds.fingerprint, sessions)

# The clinic overview (or a link) opens a patient through ?patient=ID or session state; a URL
# parameter counts as a request only when it is not the one this page wrote itself.
requested = st.session_state.pop("open_patient", None)
in_url = st.query_params.get("patient")
if requested is None and in_url is not None and in_url != st.session_state.get("patient_in_url"):
    requested = in_url
if requested is not None and requested not in patients:
    # a link (or a stale choice) naming a patient this data set does not show to this user: say so, show
    # nothing else (never another patient), and offer the data sets where the user may see that patient
    st.warning(_("There is no patient “{patient}” among the patients you can see in {dataset}.").format(
        patient=md(requested), dataset=md(dataset_title(ds.name))), icon=":material/person_off:")
    for other in [n for n in store().datasets_with_patient(requested) if n != ds.name]:
        st.button(_("Open {patient} in {dataset}").format(patient=md(requested), dataset=md(dataset_title(other))),
                  key=f"open_in_{other}", type="primary", on_click=open_dataset, args=(other,))
    st.button(_("Choose another patient"), key="patient_not_found_ok",
              on_click=lambda: st.session_state.update(patient_in_url=requested))
    st.stop()
if requested in patients:
    st.session_state["patient_id"] = requested
    st.session_state.pop("patient_search", None)
options = patient_options(patients, st.session_state.get("patient_id"), key="patient_search")
if st.session_state.get("patient_id") not in options:
    st.session_state["patient_id"] = options[0]
pid = st.selectbox(_("Patient ID (type to search)"), options, key="patient_id")
if st.query_params.get("patient") != pid:  # each change of the URL is a step in the browser's history
    st.query_params["patient"] = pid
st.session_state["patient_in_url"] = pid
log_patient_view(ds.name, pid)

mine = sessions[sessions["patient"] == pid].sort_values("session")
if "alliance" in measures:  # against the mean so far: what could be seen on the day
    mine = flag_ruptures_so_far(mine, threshold)
therapist = mine["therapist"].iloc[-1] if "therapist" in mine else None
has_symptoms = "symptoms" in measures

# ---------------------------------------------------------------- what needs attention first
signal = None
model = None
if has_symptoms:
    model, all_signal, _current = clinic_signal(ds, settings)
    signal = patient_signal_rows(ds, settings, model, all_signal, pid)  # with its reasons in words
unrepaired = mine[mine["rupture"].astype(bool) & ~mine["repaired"].fillna(False).astype(bool)] \
    if "rupture" in mine else mine.iloc[:0]
rupture_note = None
if len(unrepaired):
    when = unrepaired["session"].iloc[-1]
    rupture_note = (_("a rupture in session {session:g} (no session since to see it repaired)")
                    if when == mine["session"].iloc[-1]
                    else _("a rupture in session {session:g} not repaired in the next session")).format(session=when)
if signal is not None and len(signal):
    now = signal.iloc[-1]
    line = f"**{status_sentence(now['status'], now['session'], now['reason']).replace(':', '**:', 1)}"
    if rupture_note:
        line = _("{status} Also: {rupture}.").format(status=line, rupture=rupture_note)
    box = {"not_on_track": st.error, "at_risk": st.warning, "on_track": st.success}.get(now["status"], st.info)
    box(line, icon={"not_on_track": ":material/error:", "at_risk": ":material/warning:",
                    "on_track": ":material/check_circle:"}.get(now["status"], ":material/help:"))
elif rupture_note:
    st.warning(_("Needs attention: {rupture}.").format(rupture=rupture_note), icon=":material/warning:")
if model is not None and not model.local:
    st.info(_("**No local expected course**: {reason} The status uses the published reliable-change rule relative "
              "to the first session instead (reliable deterioration: not on track; half of it: at risk).").format(
        reason=model.reason))
elif model is not None:
    st.caption(_("Expected course from {source}. {rates}").format(
        source=md(source_sentence(model)), rates=calibration_sentence(signal_settings(settings))))

facts = st.columns(4)
facts[0].metric(_("Sessions"), len(mine))
if therapist is not None:
    facts[1].metric(_("Therapist"), md(therapist))
status = None
scores = mine["symptoms"].dropna() if has_symptoms else mine.iloc[:0]
# whole-number scores (an OQ-45.2 total) are written without decimals: "−29", not "−29.00"; what the model
# computes (expected, bound) with one more (111.5), as the signal's reasons write them (core.i18n.model_decimals)
score_decimals = decimals_for(ds.data["symptoms"]) if has_symptoms else 2
expected_decimals = model_decimals(ds.data["symptoms"]) if has_symptoms else 2
if has_symptoms and settings.reliable_change and len(scores):
    first, last = scores.iloc[0], scores.iloc[-1]
    status = jacobson_truax_status(first, last, settings.reliable_change, settings.cutoff,
                                   settings.higher_is_worse) if len(scores) > 1 else "unknown"
    facts[2].metric(_("Symptom change (first → last)"), format_number(last - first, score_decimals, signed=True),
                    help=_("Last minus first symptom score; reliable change: {rc:.3g} points.").format(
                        rc=settings.reliable_change))
    facts[3].metric(_("Jacobson–Truax status"), jt_word(status),
                    help=_("recovered: reliable improvement and from the clinical into the non-clinical range; "
                           "improved / deteriorated: change at least the reliable change; else unchanged."))

# ---------------------------------------------------------------- chart
band = (_("not on track beyond this line (given the earlier scores)") if model is None or model.local
        else _("not on track beyond this line: a reliable deterioration from the first session"))
scale = alliance_scale(ds)
options = st.columns(2)
zoom = options[0].toggle(_("Zoom the alliance axis to this patient's scores"), key="patient_zoom_alliance",
                         disabled=not scale or "alliance" not in measures,
                         help=_("By default the alliance axis shows the scale's full range ({range}), so that a "
                                "small dip does not look like a fall.").format(
                                  range="–".join(number(v, "g") for v in scale["alliance"]) if scale else "—"))
details = options[1].toggle(_("Show details"), key="patient_details",
                            help=_("Adds the at-risk bound, the alliance mean so far, the rupture limit so far and "
                                   "each session's deviation from the mean so far."))
fig = patient_chart(mine, measures, signal=signal, cutoff=settings.cutoff, labels=measure_labels(ds, settings),
                    band_label=band, ranges={} if zoom else scale, details=details)
st.plotly_chart(fig, width="stretch", key="patient_chart")
with st.expander(_("How the expected course and the status are computed")):
    st.write(definition(model, signal_settings(settings)) if model is not None else
             _("The early-warning signal needs a symptom measure."))
# ---------------------------------------------------------------- one-page summary (issue 29)
summary_button(PatientSummary(dataset=ds.name, patient=pid, sessions=mine, measures=list(measures),
                              settings=signal_settings(settings), signal=signal, model=model,
                              labels=measure_labels(ds, settings), ranges={} if zoom else scale,
                              threshold=threshold, demo=ds.is_demo), dataset=ds.name, instruments=ds.instruments)

# ---------------------------------------------------------------- sentences
sentences = rupture_sentences(mine)  # shared with the one-page summary (core/reporting/patient_text.py)
if status and status != "unknown":
    sentences.append(change_sentence(scores.iloc[0], scores.iloc[-1], status, settings.reliable_change,
                                     score_decimals))
for s in sentences:
    if s:
        st.markdown(f"- {md(s)}")

# ---------------------------------------------------------------- table
st.subheader(_("Sessions"))
# the key columns first: session, score, status and why; then alliance and the details
table = mine[["session"]].copy()
if has_symptoms:
    table["symptoms"] = mine["symptoms"].to_numpy()
if signal is not None and len(signal):
    sig = signal.set_index("session").reindex(table["session"])
    table["status"] = sig["status"].map(lambda s: f"{STATUS_GLYPH.get(s, '')} {status_label(s)}".strip()
                                        if isinstance(s, str) else s).to_numpy()
    table["why"] = sig["reason"].to_numpy()
    table["expected"] = sig["expected"].to_numpy()
    table["bound (not on track)"] = sig["flag_bound"].to_numpy()
for m in measures:
    if m not in table:
        table[m] = mine[m].to_numpy()
if "rupture" in mine:
    table["alliance mean so far"] = mine["alliance_mean_so_far"].to_numpy()
    table["alliance deviation (SDs so far)"] = mine["alliance_within_so_far_sd"].to_numpy()
    table["rupture"] = mine["rupture"].to_numpy()
    table["repaired"] = mine["repaired"].to_numpy()
headers = {"session": _("session"), "symptoms": _("symptoms"), "alliance": _("alliance"), "status": _("status"),
           "expected": _("expected"), "bound (not on track)": _("bound (not on track)"),
           "alliance mean so far": _("alliance mean so far"),
           "alliance deviation (SDs so far)": _("alliance deviation (SDs so far)"), "rupture": _("rupture"),
           "repaired": _("repaired")}
shown_as = {"expected": expected_decimals, "bound (not on track)": expected_decimals}
config = number_columns(table, decimals=shown_as, labels=headers)
config["why"] = st.column_config.TextColumn(_("why"), width="large")
written, config = local_numbers(table, config)  # Spanish: 5,47
st.dataframe(written, hide_index=True, width="stretch", column_config=config)
download(_("Download this patient's sessions (CSV)"), csv_bytes(rounded(table, decimals=shown_as), get_language()), file_name=f"patient_{pid}.csv",
         mime="text/csv", key="patient_csv", what=f"{ds.name}: patient {pid} sessions (CSV)")

# ---------------------------------------------------------------- recorded values and corrections, on request
history_on_request(ds.name, pid)
