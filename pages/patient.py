"""Patient page (therapist): each session relative to this patient's own usual level."""
import pandas as pd
import streamlit as st

from core.clinical.indices import (
    describe_session,
    expected_line,
    flag_ruptures,
    jacobson_truax_status,
)
from core.reporting.exports import csv_bytes
from core.reporting.figures import patient_chart
from ui.auth import download, log_patient_view
from ui.clinic import (
    clinical_settings,
    patient_list,
    patient_options,
    sessions_table,
    time_model,
)
from ui.state import dataset_picker, demo_badge
from ui.text import md

ds = dataset_picker()
settings = clinical_settings(ds)
measures = ds.validated.measures
threshold = st.sidebar.slider("Rupture threshold (own SDs below own mean)", 0.25, 3.0, 1.0, 0.25,
                              key="rupture_threshold",
                              help="A session is flagged when alliance lies more than this many of the "
                                   "patient's own SDs below the patient's own mean.")

st.title("Patient")
demo_badge(ds)
sessions = sessions_table(ds.fingerprint, tuple(measures), ds.data)
patients = patient_list(ds.fingerprint, sessions)

# The clinic overview (or a link) opens a patient through ?patient=ID or session state; a URL
# parameter counts as a request only when it is not the one this page wrote itself.
requested = st.session_state.pop("open_patient", None)
in_url = st.query_params.get("patient")
if requested is None and in_url is not None and in_url != st.session_state.get("patient_in_url"):
    requested = in_url
if requested in patients:
    st.session_state["patient_id"] = requested
    st.session_state.pop("patient_search", None)
options = patient_options(patients, st.session_state.get("patient_id"), key="patient_search")
if st.session_state.get("patient_id") not in options:
    st.session_state["patient_id"] = options[0]
pid = st.selectbox("Patient ID (type to search)", options, key="patient_id")
st.query_params["patient"] = pid
st.session_state["patient_in_url"] = pid
log_patient_view(ds.name, pid)

mine = sessions[sessions["patient"] == pid].sort_values("session")
if "alliance" in measures:  # own mean and SD are this patient's: flagging only their rows is the same
    mine = flag_ruptures(mine, threshold)
therapist = mine["therapist"].iloc[-1] if "therapist" in mine else None
units = st.radio("Show deviations in", ["points", "own SD units"], horizontal=True, key="deviation_units")

# ---------------------------------------------------------------- key facts
facts = st.columns(4)
facts[0].metric("Sessions", len(mine))
if therapist is not None:
    facts[1].metric("Therapist", md(therapist))
status = None
if "symptoms" in measures and settings.reliable_change:
    scores = mine["symptoms"].dropna()  # first and last session with a symptom score
    first, last = (scores.iloc[0], scores.iloc[-1]) if len(scores) else (float("nan"), float("nan"))
    status = jacobson_truax_status(first, last, settings.reliable_change, settings.cutoff,
                                   settings.higher_is_worse) if len(scores) > 1 else "unknown"
    facts[2].metric("Symptom change (first → last)", f"{last - first:+.2f}",
                    help=f"Reliable change: {settings.reliable_change:.3g} points.")
    facts[3].metric("Jacobson–Truax status", status,
                    help="recovered: reliable improvement and from the clinical into the non-clinical range; "
                         "improved / deteriorated: change at least the reliable change; else unchanged.")

# ---------------------------------------------------------------- charts
t0 = ds.data["session"].min()
expected = {}
for m in measures if units == "points" else []:
    model = time_model(ds.fingerprint, m, ds.data)
    if not isinstance(model, str):
        expected[m] = expected_line(model.fixed, model.fixed_cov, mine["session"].to_numpy() - t0)
fig = patient_chart(mine, measures, units=units, expected=expected, cutoff=settings.cutoff,
                    reliable_change=settings.reliable_change)
st.plotly_chart(fig, width="stretch")

# ---------------------------------------------------------------- sentences
sentences = []
last_row = mine.iloc[-1]
sentences.append(describe_session(last_row, measures))
if "rupture" in mine:
    for _, r in mine[mine["rupture"]].iterrows():
        how = {True: "alliance recovered in the next session", False: "alliance stayed low in the next session"}
        after = how.get(r["repaired"], "there is no next session yet") if not pd.isna(r["repaired"]) else "there is no next session yet"
        sentences.append(f"Possible rupture in session {r['session']:g}: alliance was "
                         f"{abs(r['alliance_within']):.2f} points below this patient's usual level; {after}.")
if status and status != "unknown":
    sentences.append(f"From the first to the last session symptoms changed by "
                     f"{last - first:+.2f} points: {status} "
                     f"(reliable change {settings.reliable_change:.3g} points).")
for s in sentences:
    if s:
        st.markdown(f"- {md(s)}")

# ---------------------------------------------------------------- table
st.subheader("Sessions")
cols = ["session", *[c for m in measures for c in (m, f"{m}_mean", f"{m}_within", f"{m}_within_sd")]]
if "rupture" in mine:
    cols += ["rupture", "repaired"]
table = mine[cols].rename(columns=lambda c: c.replace("_within_sd", " deviation (own SD)")
                          .replace("_within", " deviation").replace("_mean", " own mean"))
st.dataframe(table.round(3), hide_index=True, width="stretch")
download("Download this patient's sessions (CSV)", csv_bytes(table), file_name=f"patient_{pid}.csv",
         mime="text/csv", key="patient_csv", what=f"{ds.name}: patient {pid} sessions (CSV)")
