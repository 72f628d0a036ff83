"""Patient page (therapist): each session relative to this patient's own usual level."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.clinical import describe_session, expected_line, jacobson_truax_status
from core.exports import csv_bytes
from ui.auth import download, log_patient_view
from ui.clinic import clinical_settings, sessions_with_ruptures, time_model
from ui.state import dataset_picker, demo_badge

ds = dataset_picker()
settings = clinical_settings(ds)
measures = ds.validated.measures
threshold = st.sidebar.slider("Rupture threshold (own SDs below own mean)", 0.25, 3.0, 1.0, 0.25,
                              key="rupture_threshold",
                              help="A session is flagged when alliance lies more than this many of the "
                                   "patient's own SDs below the patient's own mean.")

st.title("Patient")
demo_badge(ds)
sessions = sessions_with_ruptures(ds, threshold)
patients = sorted(sessions["patient"].unique())

# The clinic overview (or a link) opens a patient through ?patient=ID or session state; a URL
# parameter counts as a request only when it is not the one this page wrote itself.
requested = st.session_state.pop("open_patient", None)
in_url = st.query_params.get("patient")
if requested is None and in_url is not None and in_url != st.session_state.get("patient_in_url"):
    requested = in_url
if requested in patients:
    st.session_state["patient_id"] = requested
if st.session_state.get("patient_id") not in patients:
    st.session_state["patient_id"] = patients[0]
pid = st.selectbox("Patient ID (type to search)", patients, key="patient_id")
st.query_params["patient"] = pid
st.session_state["patient_in_url"] = pid
log_patient_view(ds.name, pid)

mine = sessions[sessions["patient"] == pid].sort_values("session")
therapist = mine["therapist"].iloc[-1] if "therapist" in mine else None
units = st.radio("Show deviations in", ["points", "own SD units"], horizontal=True, key="deviation_units")

# ---------------------------------------------------------------- key facts
facts = st.columns(4)
facts[0].metric("Sessions", len(mine))
if therapist is not None:
    facts[1].metric("Therapist", therapist)
status = None
if "symptoms" in measures and settings.reliable_change:
    first, last = mine["symptoms"].iloc[0], mine["symptoms"].iloc[-1]
    status = jacobson_truax_status(first, last, settings.reliable_change, settings.cutoff,
                                   settings.higher_is_worse) if len(mine) > 1 else "unknown"
    facts[2].metric("Symptom change (first → last)", f"{last - first:+.2f}",
                    help=f"Reliable change: {settings.reliable_change:g} points.")
    facts[3].metric("Jacobson–Truax status", status,
                    help="recovered: reliable improvement and from the clinical into the non-clinical range; "
                         "improved / deteriorated: change at least the reliable change; else unchanged.")

# ---------------------------------------------------------------- charts
colors = {"alliance": "#1f77b4", "symptoms": "#d62728"}
fig = make_subplots(rows=len(measures), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                    subplot_titles=[f"{m.capitalize()}" for m in measures])
x = mine["session"]
t0 = ds.data["session"].min()
for i, m in enumerate(measures, start=1):
    mean, sd = mine[f"{m}_mean"].iloc[0], mine[f"{m}_sd"].iloc[0]
    dev_pts, dev_sd = mine[f"{m}_within"], mine[f"{m}_within_sd"]
    custom = np.column_stack([dev_pts, dev_sd, mine[m]])
    hover = (f"Session %{{x}}<br>{m}: %{{customdata[2]:.2f}}<br>"
             "from own mean: %{customdata[0]:+.2f} points (%{customdata[1]:+.2f} own SD)<extra></extra>")
    if units == "points":
        if np.isfinite(sd):
            fig.add_trace(go.Scatter(x=list(x) + list(x)[::-1], y=[mean + sd] * len(x) + [mean - sd] * len(x),
                                     fill="toself", fillcolor="rgba(120,120,120,0.15)", line=dict(width=0), mode="lines",
                                     name="own mean ± 1 own SD", hoverinfo="skip", showlegend=i == 1),
                          row=i, col=1)
        fig.add_trace(go.Bar(x=x, y=dev_pts, base=mean, name="deviation from own mean",
                             marker_color=colors[m], opacity=0.35, customdata=custom, hovertemplate=hover,
                             showlegend=i == 1), row=i, col=1)
        fig.add_trace(go.Scatter(x=x, y=[mean] * len(x), mode="lines", line=dict(color="grey", dash="dash"),
                                 name="own mean", hoverinfo="skip", showlegend=i == 1), row=i, col=1)
        fig.add_trace(go.Scatter(x=x, y=mine[m], mode="lines+markers", line=dict(color=colors[m]),
                                 name=m, customdata=custom, hovertemplate=hover), row=i, col=1)
        model = time_model(ds.fingerprint, m, ds.data)
        if not isinstance(model, str):
            line = expected_line(model.fixed, model.fixed_cov, np.asarray(x) - t0)
            fig.add_trace(go.Scatter(x=list(x) + list(x)[::-1], y=list(line["high"]) + list(line["low"])[::-1],
                                     fill="toself", fillcolor="rgba(44,160,44,0.12)", line=dict(width=0), mode="lines",
                                     hoverinfo="skip", name="clinic expected (95% CI)", showlegend=i == 1),
                          row=i, col=1)
            fig.add_trace(go.Scatter(x=x, y=line["expected"], mode="lines", line=dict(color="#2ca02c", dash="dot"),
                                     name="clinic expected", hovertemplate="clinic expected %{y:.2f}<extra></extra>",
                                     showlegend=i == 1), row=i, col=1)
        if m == "symptoms" and settings.cutoff is not None:
            fig.add_hline(y=settings.cutoff, line=dict(color="black", width=1), row=i, col=1,
                          annotation_text="clinical cut-off", annotation_position="top left")
        if m == "symptoms" and settings.reliable_change:
            base = mine["symptoms"].iloc[0]
            fig.add_hrect(y0=base - settings.reliable_change, y1=base + settings.reliable_change,
                          fillcolor="orange", opacity=0.08, line_width=0, row=i, col=1,
                          annotation_text="no reliable change from session 1", annotation_position="bottom left")
    else:
        fig.add_trace(go.Bar(x=x, y=dev_sd, marker_color=colors[m], name=f"{m} deviation (own SD)",
                             customdata=custom, hovertemplate=hover), row=i, col=1)
        for y in (-1, 1):
            fig.add_hline(y=y, line=dict(color="grey", dash="dot", width=1), row=i, col=1)
    if m == "alliance" and "rupture" in mine:
        r = mine[mine["rupture"]]
        if len(r):
            label = r["repaired"].map({True: "repaired next session", False: "not repaired next session"}).fillna("no next session yet")
            yv = r[m] if units == "points" else r[f"{m}_within_sd"]
            fig.add_trace(go.Scatter(x=r["session"], y=yv, mode="markers", name="rupture",
                                     marker=dict(symbol="x", size=14, color="black"), text=label,
                                     hovertemplate="Rupture in session %{x}: %{text}<extra></extra>"), row=i, col=1)
fig.update_layout(height=330 * len(measures), hovermode="x unified", barmode="overlay",
                  legend=dict(orientation="h", y=-0.08), margin=dict(t=40, b=40))
fig.update_xaxes(title_text="Session", dtick=1, row=len(measures), col=1)
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
                     f"{last_row['symptoms'] - mine['symptoms'].iloc[0]:+.2f} points: {status} "
                     f"(reliable change {settings.reliable_change:g} points).")
for s in sentences:
    if s:
        st.markdown(f"- {s}")

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
