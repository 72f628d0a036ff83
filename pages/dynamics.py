"""Reciprocal dynamics: lagged within-patient effects and the two-stage IPD meta-analysis."""
import logging
from pathlib import Path

import pandas as pd
import streamlit as st

from core.errors import InputError, ModelError, some_names
from core.intake.dataset import data_fingerprint
from core.intake.mapping import ROLES, ColumnMapping, propose_mapping, propose_study_column
from core.intake.reading import read_table
from core.intake.validation import (
    combine_studies,
    parse_numbers,
    validate_studies,
    validate_table,
)
from core.reporting.exports import csv_bytes
from core.reporting.figures import forest_plot
from core.stats.meta import (
    lagged_within_effects,
    pool_effects,
    pool_stage1,
    sorted_study_labels,
    stage1_table,
)
from ui.auth import download
from ui.state import dataset_picker, demo_badge

DIRECTION_TEXT = {
    "alliance_to_symptoms": "Alliance → next-session symptoms",
    "symptoms_to_alliance": "Symptoms → next-session alliance",
    "alliance_to_symptoms_interaction": "Patient mean alliance × lagged alliance deviation",
    "symptoms_to_alliance_interaction": "Patient mean symptoms × lagged symptom deviation",
}
NONE = "— one study (no study column) —"


@st.cache_data(show_spinner=False, max_entries=512)
def study_effects(fingerprint: str, label: str, interaction: bool, _frame: pd.DataFrame) -> dict:
    """Stage 1 in one study (cached per study, so a progress bar can show each study)."""
    return lagged_within_effects(_frame, interaction=interaction, study_label=label)


@st.cache_data(show_spinner="Reading the files …", max_entries=8)
def read_studies(files: tuple[tuple[str, bytes], ...], study_column: str | None, mapping: ColumnMapping):
    if len(files) == 1:
        raw = read_table(files[0][1], filename=files[0][0])
        return validate_studies(raw, mapping, study_column)
    parts = {Path(name).stem: validate_table(read_table(data, filename=name), mapping) for name, data in files}
    return combine_studies(parts)


def run_stage1(data: pd.DataFrame, fingerprint: str, interaction: bool) -> pd.DataFrame:
    labels = [str(x) for x in sorted_study_labels(data["study"].unique())]
    bar = st.progress(0.0, text="Stage 1 …")
    effects = {}
    for i, label in enumerate(labels):
        bar.progress(i / len(labels), text=f"Stage 1: study {label} ({i + 1} of {len(labels)})")
        effects[label] = study_effects(fingerprint, label, interaction, data[data["study"] == label])
    bar.empty()
    return stage1_table(effects)


def show_pooled(direction: str, result, effect_label: str) -> None:
    st.markdown(f"#### {DIRECTION_TEXT.get(direction, direction)}")
    m = st.columns(5)
    m[0].metric("Pooled estimate", f"{result.estimate:.3f}", help="Random-effects estimate (standardized units).")
    m[1].metric("95% CI", f"{result.ci_low:.3f} to {result.ci_high:.3f}")
    m[2].metric("p", f"{result.p:.3g}")
    m[3].metric("τ² / I²", f"{result.tau2:.4f} / {result.i2:.1f}%")
    m[4].metric("95% prediction interval", f"{result.pi_low:.3f} to {result.pi_high:.3f}")
    st.caption(f"Q = {result.q:.2f} (df = {result.k - 1}, p = {result.q_p:.3g}); k = {result.k} studies.")
    st.plotly_chart(forest_plot(result, effect_label=effect_label), width="stretch", key=f"forest_{direction}")
    table = result.studies.rename(columns={"weight": "weight (%)"})
    download(f"Per-study table (CSV): {DIRECTION_TEXT.get(direction, direction)}", csv_bytes(table),
             file_name=f"studies_{direction}.csv", mime="text/csv", key=f"csv_{direction}")


ds = dataset_picker()
st.title("Reciprocal dynamics")
st.write("Within each patient, does a session with better alliance than usual come before lower symptoms "
         "next session, and do higher symptoms than usual come before lower alliance next session? "
         "Stage 1 fits these lagged within-patient models per study (z-scores, patient means and "
         "deviations, lag only to the session exactly one earlier); stage 2 pools them with a "
         "random-effects meta-analysis (Flückiger et al., 2020).")

source = st.radio("Data", ["Active data set", "Upload studies", "Pool given effects"], horizontal=True,
                  key="dyn_source")
c = st.columns(3)
method = c[0].radio("τ² estimator", ["reml", "dl"], format_func=lambda m: {"reml": "REML", "dl": "DerSimonian–Laird"}[m],
                    horizontal=True, key="dyn_method")
kh = c[1].checkbox("Knapp–Hartung adjustment", key="dyn_kh",
                   help="t distribution with k − 1 df and a rescaled SE (as metafor's test = 'knha').")
interaction = c[2].checkbox("Cross-level interaction (patient mean × lagged deviation)", key="dyn_interaction")

try:
    if source == "Pool given effects":
        upload = st.file_uploader("Effects file (one row per study: label, estimate, SE)", type=["csv", "txt", "xlsx"],
                                  key="pool_file")
        if upload is None:
            st.stop()
        raw = read_table(upload.getvalue(), filename=upload.name)
        cols = raw.columns
        p = st.columns(3)
        label = p[0].selectbox("Label column", cols, key="pool_label")
        est = p[1].selectbox("Estimate column", cols, index=min(1, len(cols) - 1), key="pool_estimate")
        se = p[2].selectbox("SE column", cols, index=min(2, len(cols) - 1), key="pool_se")
        e, _, _ = parse_numbers(raw.frame[est], raw.decimal)
        s, _, _ = parse_numbers(raw.frame[se], raw.decimal)
        ok = e.notna() & s.gt(0)
        if (~ok).any():
            st.warning("Rows left out (estimate not a number or SE not positive): " +
                       some_names(raw.frame.loc[~ok, "row"], limit=20))
        result = pool_effects(e[ok].to_numpy(), s[ok].to_numpy(), labels=raw.frame.loc[ok, label].tolist(),
                              method=method, knapp_hartung=kh)
        show_pooled("pooled", result, est)
        st.stop()

    if source == "Upload studies":
        files = st.file_uploader("One file with a study column, or several files (one per study)",
                                 type=["csv", "txt", "xlsx"], accept_multiple_files=True, key="dyn_files")
        if not files:
            st.stop()
        first = read_table(files[0].getvalue(), filename=files[0].name)
        proposed = propose_mapping(first.columns)
        study_col = propose_study_column(first.columns) if len(files) == 1 else None
        m = st.columns(5)
        opts = first.columns
        pick = {}
        for col, role in zip(m, ("patient", "session", "alliance", "symptoms")):
            default = getattr(proposed, role)
            pick[role] = col.selectbox(role.capitalize(), opts, index=opts.index(default) if default in opts else 0,
                                       key=f"dyn_map_{role}")
        if len(files) == 1:
            study_col = m[4].selectbox("Study", opts, index=opts.index(study_col) if study_col in opts else 0,
                                       key="dyn_map_study")
        validated = read_studies(tuple((f.name, f.getvalue()) for f in files), study_col, ColumnMapping(**pick))
        data = validated.data
        if len(validated.excluded):
            with st.expander(f"{len(validated.excluded)} rows left out"):
                st.dataframe(validated.excluded, hide_index=True, width="stretch")
    else:
        demo_badge(ds)
        validated = ds.validated
        extra = [c for c in ds.data.columns if c not in (*ROLES, "row")]
        default = propose_study_column(extra)
        choices = [NONE, *extra]
        study_col = st.selectbox("Study column", choices, index=choices.index(default) if default else 0,
                                 key="dyn_study_column")
        if not {"alliance", "symptoms"} <= set(validated.measures):
            st.warning("The lagged models need both alliance and symptoms.")
            st.stop()
        data = ds.data.copy()
        data["study"] = "this data set" if study_col == NONE else data[study_col].astype(str)

    fingerprint = data_fingerprint(data[["study", "patient", "session", "alliance", "symptoms"]])
    n_studies = data["study"].nunique()
    stage1 = run_stage1(data, fingerprint, interaction)
    st.subheader("Stage 1: per study")
    wide = stage1.pivot_table(index=["study", "n_patients", "n_observations"], columns="direction",
                              values=["estimate", "se"]).reset_index()
    wide.columns = [" ".join(c for c in col if c).strip() for col in wide.columns]
    st.dataframe(wide.round(4), hide_index=True, width="stretch")
    download("Stage 1 table (CSV)", csv_bytes(stage1), file_name="stage1.csv", mime="text/csv", key="stage1_csv")
    if n_studies < 2:
        st.info("One study: these are its lagged within-patient effects (standardized). Add a study column or "
                "upload several studies to pool them.")
        st.stop()
    st.subheader("Stage 2: pooled over studies")
    for direction, result in pool_stage1(stage1, method, kh).items():
        show_pooled(direction, result, "standardized lagged coefficient")
except (InputError, ModelError) as err:
    st.error(str(err))
except MemoryError:
    st.error("The dashboard ran out of memory with these files. Try smaller files (for example one study "
             "at a time).")
except Exception as err:  # a bug: logged for the maintainers, one sentence for the user (no traceback)
    logging.getLogger(__name__).error("Unexpected error on the Reciprocal dynamics page", exc_info=err)
    st.error(f"The files could not be analysed because of an unexpected error in the dashboard "
             f"({type(err).__name__}). This is a bug: please report it on the project's issue tracker, "
             "with the files' layout but not their data.")
