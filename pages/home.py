"""Clinic data: what the active data set holds, session by session."""
import streamlit as st

from core.i18n import _, number
from core.intake.mapping import role_name
from core.reporting.figures import session_means_figure
from core.stats.decomposition import dropout, measure_correlations, session_summary
from ui.clinic import alliance_scale, current_settings, measure_labels
from ui.look import local_numbers, number_columns
from ui.state import dataset_picker, dataset_title, demo_badge
from ui.text import md

ds = dataset_picker()
data = ds.data
validated = ds.validated
measures = validated.measures

st.title(_("Clinic data"))
demo_badge(ds)
st.write(_("**{name}** — source file {source}.").format(name=md(dataset_title(ds.name)), source=md(validated.source)))

drop = dropout(data, k=4)
cols = st.columns(5)
cols[0].metric(_("Patients"), number(data["patient"].nunique(), ","))
cols[1].metric(_("Therapists"), number(data["therapist"].nunique(), ",") if validated.has_therapist else "—")
cols[2].metric(_("Sessions"), number(len(data), ","))
cols[3].metric(_("Dropout before session 4"), number(drop["share"], ".1%"),
               help=_("Patients with fewer than 4 sessions in the data."))
cols[4].metric(_("Rows left out"), number(len(validated.excluded), ","),
               help=_("See the Upload page for each row and its reason."))

summary = session_summary(data, measures)
fig = session_means_figure(summary, measures, labels=measure_labels(ds, current_settings(ds)), ranges=alliance_scale(ds))
st.subheader(_("Mean ± SD by session"))
st.plotly_chart(fig, width="stretch")

#: What the correlations' ``level`` column says, in words.
LEVELS = {"observations": _("observations"), "between": _("between"), "within": _("within")}
left, right = st.columns(2)
with left:
    st.subheader(_("Per session"))
    shown = summary.assign(measure=summary["measure"].map(role_name))
    config = number_columns(shown, default=3, labels={
        "session": _("session"), "measure": _("measure"), "n": "n", "mean": _("mean"), "sd": _("SD")})
    written, config = local_numbers(shown, config)  # Spanish: 5,47
    st.dataframe(written, hide_index=True, width="stretch", column_config=config)
with right:
    st.subheader(_("Correlations between measures"))
    corr = measure_correlations(data, measures)
    if corr.empty:
        st.write(_("Only one measure in this data set."))
    else:
        shown = corr.assign(level=corr["level"].map(lambda v: LEVELS.get(v, v)),
                            measure_1=corr["measure_1"].map(role_name), measure_2=corr["measure_2"].map(role_name))
        config = number_columns(shown, default=3, labels={
            "level": _("level"), "measure_1": _("measure 1"), "measure_2": _("measure 2"), "r": "r", "n": "n"})
        written, config = local_numbers(shown, config)  # Spanish: 5,47
        st.dataframe(written, hide_index=True, width="stretch", column_config=config)
        st.caption(_("*observations*: all sessions pooled; *between*: patient means; "
                     "*within*: deviations from each patient's own mean."))

with st.expander(_("Definitions used by every number")):
    st.markdown(_(
        "- **time** = session number − the first session number in the data (0 at the first session).\n"
        "- **patient mean** = mean of that patient's scores; **between** = patient mean − mean of the patient means.\n"
        "- **within** = score − that patient's own mean; in own-SD units: divided by the patient's own SD.\n"
        "- **lag** = the same patient's value at the previous session number (a skipped session gives no lag).\n"
        "- **dropout** = patients with fewer than 4 sessions."
    ))
