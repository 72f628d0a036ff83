"""Clinic data: what the active data set holds, session by session."""
import streamlit as st

from core.reporting.figures import session_means_figure
from core.stats.decomposition import dropout, measure_correlations, session_summary
from ui.clinic import alliance_scale, current_settings, measure_labels
from ui.look import number_columns
from ui.state import dataset_picker, demo_badge
from ui.text import md

ds = dataset_picker()
data = ds.data
validated = ds.validated
measures = validated.measures

st.title("Clinic data")
demo_badge(ds)
st.write(f"**{md(ds.name)}** — source file {md(validated.source)}.")

drop = dropout(data, k=4)
cols = st.columns(5)
cols[0].metric("Patients", f"{data['patient'].nunique():,}")
cols[1].metric("Therapists", f"{data['therapist'].nunique():,}" if validated.has_therapist else "—")
cols[2].metric("Sessions", f"{len(data):,}")
cols[3].metric("Dropout before session 4", f"{drop['share']:.1%}", help="Patients with fewer than 4 sessions in the data.")
cols[4].metric("Rows left out", f"{len(validated.excluded):,}", help="See the Upload page for each row and its reason.")

summary = session_summary(data, measures)
fig = session_means_figure(summary, measures, labels=measure_labels(ds, current_settings(ds)), ranges=alliance_scale(ds))
st.subheader("Mean ± SD by session")
st.plotly_chart(fig, width="stretch")

left, right = st.columns(2)
with left:
    st.subheader("Per session")
    st.dataframe(summary, hide_index=True, width="stretch", column_config=number_columns(summary, default=3))
with right:
    st.subheader("Correlations between measures")
    corr = measure_correlations(data, measures)
    if corr.empty:
        st.write("Only one measure in this data set.")
    else:
        st.dataframe(corr, hide_index=True, width="stretch", column_config=number_columns(corr, default=3))
        st.caption("*observations*: all sessions pooled; *between*: patient means; "
                   "*within*: deviations from each patient's own mean.")

with st.expander("Definitions used by every number"):
    st.markdown(
        "- **time** = session number − the first session number in the data (0 at the first session).\n"
        "- **patient mean** = mean of that patient's scores; **between** = patient mean − mean of the patient means.\n"
        "- **within** = score − that patient's own mean; in own-SD units: divided by the patient's own SD.\n"
        "- **lag** = the same patient's value at the previous session number (a skipped session gives no lag).\n"
        "- **dropout** = patients with fewer than 4 sessions."
    )
