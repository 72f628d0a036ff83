"""Clinic overview (supervisor): key figures, the caseload by the early-warning signal, therapists,
how well the signal has predicted outcomes here, and trajectories."""
import math

import streamlit as st

from core.clinical.indices import therapist_icc_sentence, therapist_table, therapist_trajectories
from core.clinical.signal import LEVEL_AT_RISK, LEVEL_NOT_ON_TRACK, validation_table
from core.reporting.exports import csv_bytes, excel_bytes
from core.reporting.figures import small_multiples, therapist_trajectory_figure
from core.stats.decomposition import dropout
from ui.auth import download
from ui.clinic import (
    caseload_table,
    clinic_signal,
    clinical_settings,
    filter_caseload,
    page_of,
    patient_options,
    signal_key,
    sees_whole_clinic,
    sessions_with_ruptures_so_far,
    signal_settings,
    signal_validation,
    therapist_icc,
)
from ui.state import dataset_picker, demo_badge
from ui.text import md

PANELS_PER_PAGE = 24
#: Caseload rows and therapists per page: the table is filtered and paged on the server, so the
#: browser never receives a clinic's whole caseload (130,000 patients in bench/bench_pages.py).
ROWS_PER_PAGE = 200
THERAPISTS_PER_PAGE = 25
#: Above this many patients the cross-validation (5 refits of every expected course) waits for a click.
VALIDATE_AT_ONCE = 2000
#: The signal in words, with the chart's marker shapes (▲ red, ◆ amber, ● green, ○ grey).
SIGNAL_WORDS = {"not_on_track": "▲ not on track", "at_risk": "◆ at risk", "on_track": "● on track",
                "unknown": "○ unknown"}

ds = dataset_picker()
settings = clinical_settings(ds)
measures = ds.validated.measures
data = ds.data
threshold = st.sidebar.slider("Rupture threshold (own SDs below own mean so far)", 0.25, 3.0, 1.0, 0.25,
                              key="rupture_threshold")
improvement_by = st.sidebar.number_input("Expect reliable improvement by session", min_value=2, value=4,
                                         step=1, key="improvement_by")

st.title("Clinic overview")
demo_badge(ds)
drop = dropout(data, k=4)
k = st.columns(4)
k[0].metric("Patients", f"{data['patient'].nunique():,}")
k[1].metric("Therapists", f"{data['therapist'].nunique():,}" if ds.validated.has_therapist else "—")
k[2].metric("Sessions", f"{len(data):,}")
k[3].metric("Dropout before session 4", f"{drop['share']:.1%}", help=f"{drop['n_dropout']} patients with fewer than 4 sessions.")

outcome = "symptoms" if "symptoms" in measures else measures[0]
if ds.validated.has_therapist:
    st.info("**Therapists.** " + therapist_icc_sentence(therapist_icc(ds.fingerprint, outcome, data), outcome))

# ---------------------------------------------------------------- caseload
sessions = sessions_with_ruptures_so_far(ds, threshold)
st.subheader("Caseload, most in need of attention first")
if "symptoms" not in measures:
    st.warning("The caseload needs a symptom measure; this data set has none.")
    st.stop()
model, _, current = clinic_signal(ds, settings)
# every visible patient, ordered once per setting (cached, read-only); filtered and paged below
everyone = caseload_table(ds.fingerprint, threshold, signal_settings(settings), int(improvement_by),
                          signal_key(model), sessions, current)
therapists = sorted(everyone["therapist"].unique()) if ds.validated.has_therapist else []
f1, f2 = st.columns(2)
chosen = f1.multiselect("Therapists", therapists, key="overview_therapists",
                        placeholder="All therapists") if therapists else []
wanted = f2.multiselect("Signal now", list(SIGNAL_WORDS), format_func=SIGNAL_WORDS.get, key="overview_statuses",
                        placeholder="Every status")
by_therapist = filter_caseload(everyone, therapists=chosen)
counts = by_therapist["signal"].value_counts()
st.markdown(" · ".join(f"**{counts.get(s, 0):,}** {md(SIGNAL_WORDS[s])}"
                       for s in ("not_on_track", "at_risk", "on_track", "unknown")))
st.caption(f"Order: the early-warning signal of each patient's latest session — not on track (worse than "
           f"{LEVEL_NOT_ON_TRACK:.0%} of patients who started at the same level), then at risk (worse than "
           f"{LEVEL_AT_RISK:.0%}) — then a rupture not repaired, then reliable deterioration, no reliable improvement by "
           "the session set in the sidebar (cleared once the patient improved), last score above the cut-off. "
           "Select a row to open that patient.")
if not model.local:
    st.info("**No local expected course**: " + model.reason + " The signal uses the published reliable-change rule "
            "relative to the first session instead (reliable deterioration: not on track; half of it: at risk).")
# the *Find patient by ID* box below narrows the caseload too (its value from the last rerun)
search = str(st.session_state.get("overview_search", "") or "")
table = filter_caseload(by_therapist, statuses=wanted, query=search)
first_row, _ = page_of(len(table), ROWS_PER_PAGE, "caseload_page",
                       "Caseload: page number (1–{pages}, " + f"{ROWS_PER_PAGE} patients each)")
page_rows = table.iloc[first_row: first_row + ROWS_PER_PAGE]
st.caption(f"Patients {first_row + 1:,}–{first_row + len(page_rows):,} of {len(table):,}"
           + (f" (of {len(everyone):,} in all)" if len(table) < len(everyone) else "") + ".")
shown = page_rows.drop(columns=["priority"]).assign(signal=page_rows["signal"].map(SIGNAL_WORDS))
event = st.dataframe(shown.round(2), hide_index=True, width="stretch", height=360, key="caseload",
                     on_select="rerun", selection_mode="single-row",
                     column_config={"attention": st.column_config.TextColumn("why (reasons)", width="large"),
                                    "signal": st.column_config.TextColumn("signal now", width="medium")})
rows = event.selection.rows if event is not None and hasattr(event, "selection") else []
c1, c2, c3 = st.columns([2, 1, 1])
with c1:
    openable = patient_options(table["patient"].tolist(), st.session_state.get("overview_open"), key="overview_search")
pick = c1.selectbox("Open patient", openable, key="overview_open", index=None, placeholder="Choose a patient …")
if rows:
    pick = shown["patient"].iloc[rows[0]]
clicked = c1.button("Open patient page", key="open_patient_button", disabled=not pick)
if pick and (rows or clicked):
    st.session_state["open_patient"] = pick
    st.query_params["patient"] = pick
    st.switch_page("pages/patient.py")
# every page of the filtered caseload, built when clicked (writing 130,000 rows on every rerun costs seconds)
export = table.drop(columns=["priority"]).assign(signal=table["signal"].map(SIGNAL_WORDS))
with c2:
    download("Caseload (CSV)", lambda: csv_bytes(export), file_name="caseload.csv", mime="text/csv", key="caseload_csv",
             what=f"{ds.name}: caseload (CSV)")
with c3:
    download("Caseload (Excel)", lambda: excel_bytes(export, "caseload"), file_name="caseload.xlsx", key="caseload_xlsx",
             mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", what=f"{ds.name}: caseload (Excel)")

# ---------------------------------------------------------------- per therapist
if ds.validated.has_therapist:
    st.subheader("Therapists: not on track now, deteriorated, unrepaired ruptures")
    per = therapist_table(by_therapist)
    first_therapist, _ = page_of(len(per), THERAPISTS_PER_PAGE, "therapist_page",
                                 "Therapists: page number (1–{pages}, " + f"{THERAPISTS_PER_PAGE} each)")
    per = per.iloc[first_therapist: first_therapist + THERAPISTS_PER_PAGE]
    display = per[["therapist", "patients"]].copy()
    for name in ("not on track now", "deteriorated", "unrepaired rupture"):
        display[name] = [f"{n} of {p} ({pct:.0f}%)" for n, p, pct in zip(per[name], per["patients"], per[f"{name} (%)"])]
    st.dataframe(display, hide_index=True, width="stretch", height=min(36 * (len(display) + 1) + 4, 360))
    st.caption("Case mix differs between therapists: how ill their patients were at intake, how long they have been "
               "seen, how many patients they have. Small counts swing percentages; compare with care — this is not "
               "a ranking of therapists.")

# ---------------------------------------------------------------- how good is the alarm here
st.subheader("How well has the signal predicted outcomes in this clinic?")
if not sees_whole_clinic():
    st.caption("The check against the clinic's outcomes uses every patient of the clinic; supervisors see it.")
elif not settings.reliable_change:
    st.caption("Set a reliable-change value under *Clinical thresholds* to tell good from poor outcomes.")
else:
    sig = signal_settings(settings)
    n_patients = data["patient"].nunique()
    go = n_patients <= VALIDATE_AT_ONCE or st.session_state.get("signal_validated_for") == ds.fingerprint
    if not go and st.button(f"Check it on all {n_patients:,} patients (refits every expected course 5 times)",
                            key="validate_signal"):
        st.session_state["signal_validated_for"] = ds.fingerprint
        go = True
    if go:
        validation = signal_validation(ds.fingerprint, sig, data)
        st.caption(validation["method"] + " " + validation["outcome"] + " " + validation["flag"])
        vt = validation_table(validation)
        if vt.empty:
            st.caption("Too few patients with sessions beyond session 3 to check the signal.")
        else:
            st.dataframe(vt, hide_index=True, width="stretch")
            for sentence in validation["sentences"]:
                st.markdown(f"- {md(sentence)}")

# ---------------------------------------------------------------- trajectories
st.subheader("Patient trajectories")
measure = st.radio("Measure", measures, horizontal=True, key="overview_measure")
subset = sessions if not chosen else sessions[sessions["therapist"].isin(chosen)]
order = table["patient"].tolist()  # the filtered caseload's order
n_pages = max(1, math.ceil(len(order) / PANELS_PER_PAGE))
if st.session_state.get("overview_page", 1) > n_pages:  # a filter above left fewer pages
    del st.session_state["overview_page"]
page = st.number_input(f"Page (of {n_pages}, {PANELS_PER_PAGE} patients each, in caseload order)",
                       min_value=1, max_value=n_pages, value=1, key="overview_page")
these = order[(page - 1) * PANELS_PER_PAGE: page * PANELS_PER_PAGE]
fig = small_multiples(subset, these, measure, cutoff=settings.cutoff if measure == "symptoms" else None)
st.plotly_chart(fig, width="stretch")

if ds.validated.has_therapist:
    st.subheader("Mean trajectory per therapist (95% CI)")
    fig2 = therapist_trajectory_figure(therapist_trajectories(subset, measure),
                                       measure, max_therapists=max(12, len(chosen)))
    st.plotly_chart(fig2, width="stretch")
