"""Clinic overview (supervisor): key figures, caseload by need for attention, trajectories."""
import math

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core.clinical import caseload, therapist_icc_sentence, therapist_trajectories
from core.decomposition import dropout
from core.exports import csv_bytes, excel_bytes
from ui.auth import download
from ui.clinic import clinical_settings, sessions_with_ruptures, therapist_icc
from ui.state import dataset_picker, demo_badge

PANELS_PER_PAGE = 24

ds = dataset_picker()
settings = clinical_settings(ds)
measures = ds.validated.measures
data = ds.data
threshold = st.sidebar.slider("Rupture threshold (own SDs below own mean)", 0.25, 3.0, 1.0, 0.25,
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
sessions = sessions_with_ruptures(ds, threshold)
st.subheader("Caseload, most in need of attention first")
if "symptoms" not in measures:
    st.warning("The caseload needs a symptom measure; this data set has none.")
    st.stop()
table = caseload(sessions, reliable_change=settings.reliable_change, cutoff=settings.cutoff,
                 higher_is_worse=settings.higher_is_worse, improvement_by=int(improvement_by))
therapists = sorted(data["therapist"].unique()) if ds.validated.has_therapist else []
chosen = st.multiselect("Therapists", therapists, key="overview_therapists",
                        placeholder="All therapists") if therapists else []
if chosen:
    table = table[table["therapist"].isin(chosen)]
st.caption("Order: reliable deterioration, no reliable improvement by the session set in the sidebar, "
           "a rupture not repaired, last score above the cut-off. Select a row to open that patient.")
shown = table.drop(columns=["priority"])
event = st.dataframe(shown.round(2), hide_index=True, width="stretch", height=360, key="caseload",
                     on_select="rerun", selection_mode="single-row")
rows = event.selection.rows if event is not None and hasattr(event, "selection") else []
c1, c2, c3 = st.columns([2, 1, 1])
pick = c1.selectbox("Open patient", shown["patient"].tolist(), key="overview_open", index=None,
                    placeholder="Choose a patient …")
if rows:
    pick = shown["patient"].iloc[rows[0]]
clicked = c1.button("Open patient page", key="open_patient_button", disabled=not pick)
if pick and (rows or clicked):
    st.session_state["open_patient"] = pick
    st.query_params["patient"] = pick
    st.switch_page("pages/patient.py")
with c2:
    download("Caseload (CSV)", csv_bytes(shown), file_name="caseload.csv", mime="text/csv", key="caseload_csv",
             what=f"{ds.name}: caseload (CSV)")
with c3:
    download("Caseload (Excel)", excel_bytes(shown, "caseload"), file_name="caseload.xlsx", key="caseload_xlsx",
             mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", what=f"{ds.name}: caseload (Excel)")

# ---------------------------------------------------------------- trajectories
st.subheader("Patient trajectories")
measure = st.radio("Measure", measures, horizontal=True, key="overview_measure")
subset = sessions if not chosen else sessions[sessions["therapist"].isin(chosen)]
order = [p for p in table["patient"] if p in set(subset["patient"])]
n_pages = max(1, math.ceil(len(order) / PANELS_PER_PAGE))
page = st.number_input(f"Page (of {n_pages}, {PANELS_PER_PAGE} patients each, in caseload order)",
                       min_value=1, max_value=n_pages, value=1, key="overview_page")
these = order[(page - 1) * PANELS_PER_PAGE: page * PANELS_PER_PAGE]
small = subset[subset["patient"].isin(these)]
fig = px.line(small, x="session", y=measure, facet_col="patient", facet_col_wrap=6, markers=True,
              category_orders={"patient": these}, height=140 * math.ceil(len(these) / 6) + 60,
              facet_row_spacing=0.04, facet_col_spacing=0.02)
fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
if measure == "symptoms" and settings.cutoff is not None:
    fig.add_hline(y=settings.cutoff, line=dict(color="grey", width=1, dash="dot"))
fig.update_layout(margin=dict(t=30, b=10), showlegend=False)
st.plotly_chart(fig, width="stretch")

if ds.validated.has_therapist:
    st.subheader("Mean trajectory per therapist (95% CI)")
    traj = therapist_trajectories(subset, measure)
    fig2 = go.Figure()
    palette = px.colors.qualitative.Plotly
    for i, (t, g) in enumerate(traj.groupby("therapist")):
        color = palette[i % len(palette)]
        ok = g.dropna(subset=["low", "high"])
        fig2.add_trace(go.Scatter(x=list(ok["session"]) + list(ok["session"])[::-1],
                                  y=list(ok["high"]) + list(ok["low"])[::-1], fill="toself",
                                  fillcolor=color, opacity=0.12, line=dict(width=0), hoverinfo="skip", mode="lines",
                                  showlegend=False, legendgroup=t))
        fig2.add_trace(go.Scatter(x=g["session"], y=g["mean"], mode="lines+markers", name=t, legendgroup=t,
                                  line=dict(color=color), customdata=np.column_stack([g["n"], g["low"], g["high"]]),
                                  hovertemplate=f"{t}<br>session %{{x}}: mean %{{y:.2f}}<br>"
                                                "95% CI %{customdata[1]:.2f} to %{customdata[2]:.2f}<br>"
                                                "N %{customdata[0]}<extra></extra>"))
    fig2.update_layout(height=420, xaxis_title="Session", yaxis_title=measure, hovermode="closest")
    st.plotly_chart(fig2, width="stretch")
