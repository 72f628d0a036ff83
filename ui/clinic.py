"""Cached computations and clinical settings shared by the patient page and the clinic overview.

Every cached function takes the data set's fingerprint as its key and the data itself as an
unhashed argument (``_data``): Streamlit hashes large DataFrames from a sample, so the
fingerprint (a hash of every value, computed once per data set) is what keys the cache. Moving a
slider never refits a model that was already fitted for this data.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from core.clinical.indices import find_patients, flag_ruptures, patient_sessions
from core.errors import ModelError
from core.intake.dataset import Dataset
from core.stats.decomposition import add_model_terms
from core.stats.models import ModelResult, build_model, compute_iccs, fit_model
from ui.text import md


@st.cache_data(show_spinner="Fitting the clinic's expected trajectory …", max_entries=16)
def time_model(fingerprint: str, outcome: str, _data: pd.DataFrame) -> ModelResult | str:
    """``outcome ~ time + (time | patient)`` (REML); a plain reason string if it cannot be fitted."""
    spec = build_model(outcome, None, time_only=True, random_slope="time", key=f"time_{outcome}")
    try:
        return fit_model(add_model_terms(_data), spec, ml=False)
    except ModelError as err:
        return str(err)


@st.cache_data(show_spinner="Estimating the therapist share …", max_entries=16)
def therapist_icc(fingerprint: str, outcome: str, _data: pd.DataFrame) -> float | None:
    """Therapist share of the outcome variance (REML three-level unconditional model)."""
    if "therapist" not in _data.columns:
        return None
    spec = build_model(outcome, None, therapist_level=True, key="unconditional_3level")
    try:
        model = fit_model(add_model_terms(_data), spec, ml=False)
    except ModelError:
        return None
    return compute_iccs({"unconditional_3level": model})["therapist"]


@st.cache_data(show_spinner=False, max_entries=16)
def sessions_table(fingerprint: str, measures: tuple[str, ...], _data: pd.DataFrame) -> pd.DataFrame:
    """Per session: scores, own means, own SDs and deviations of every patient."""
    return patient_sessions(_data, list(measures))


@st.cache_data(show_spinner=False, max_entries=16)
def patient_list(fingerprint: str, _sessions: pd.DataFrame) -> list[str]:
    """The data set's patient IDs, sorted."""
    return sorted(_sessions["patient"].unique())


PATIENT_LIST_LIMIT = 500


def patient_options(patients: list[str], current: str | None, key: str,
                    limit: int = PATIENT_LIST_LIMIT) -> list[str]:
    """The IDs a patient dropdown offers. Up to ``limit`` patients: all of them. More (IPD-sized
    files): a *Find patient by ID* box narrows the list to matching IDs (exact match first), so the
    browser never handles a dropdown of thousands; the ``current`` patient stays selectable while
    the box is empty."""
    if len(patients) <= limit:
        return patients
    query = st.text_input("Find patient by ID", key=key,
                          placeholder=f"{len(patients):,} patients: type an ID or part of it, then Enter")
    matches, n = find_patients(patients, query, limit)
    if query.strip() and not matches:
        st.warning(f"No patient ID contains “{md(query.strip())}”.")
    if n > len(matches):
        st.caption(f"The list shows {len(matches):,} of {n:,} {'matching ' if query.strip() else ''}IDs; "
                   "type more of an ID to narrow it.")
    if current in patients and current not in matches and (not query.strip() or not matches):
        matches = [current, *matches]
    return matches or patients[:limit]


def sessions_with_ruptures(ds: Dataset, threshold: float) -> pd.DataFrame:
    """The sessions table with rupture flags at ``threshold`` own SDs (cheap; not cached)."""
    measures = tuple(ds.validated.measures)
    table = sessions_table(ds.fingerprint, measures, ds.data)
    if "alliance" in measures:
        return flag_ruptures(table, threshold)
    return table


@dataclass(frozen=True)
class ClinicalSettings:
    """Where the symptom measure's clinical range starts and how much change is reliable."""

    instrument: str
    cutoff: float | None
    reliable_change: float | None
    higher_is_worse: bool = True


_PRESETS = {
    "OQ-45.2 total (0–180)": (63.5, 14.0),
    "OQ-45.2 mean item score (0–4)": (63.5 / 45, 14.0 / 45),
    "Other measure (enter values)": (None, None),
}


def clinical_settings(ds: Dataset) -> ClinicalSettings:
    """Sidebar inputs for the cut-off and reliable change, prefilled from the data set's instrument."""
    if "symptoms" not in ds.validated.measures:
        return ClinicalSettings("none", None, None)
    names = list(_PRESETS)
    if ds.instrument_for("symptoms") == "oq45":
        guess = names[0]
    else:
        top = ds.data["symptoms"].max()
        guess = names[1] if top <= 4 else names[0] if top <= 180 and top > 10 else names[2]
    with st.sidebar.expander("Clinical thresholds", expanded=False):
        choice = st.selectbox("Symptom measure", names, index=names.index(guess),
                              key=f"clin_instrument_{ds.fingerprint[:8]}")
        cutoff0, rc0 = _PRESETS[choice]
        if choice != names[2]:
            st.caption("OQ-45.2: clinical cut-off 63/64 and reliable change 14 points on the total "
                       "(Lambert et al., 2004; Lambert, Hansen & Finch, 2001); divided by 45 for mean item scores.")
        cutoff = st.number_input("Clinical cut-off (scores above are in the clinical range)",
                                 value=cutoff0, key=f"clin_cutoff_{choice}")
        rc = st.number_input("Reliable change (points)", value=rc0, min_value=0.0,
                             key=f"clin_rc_{choice}")
        worse = st.checkbox("Higher scores mean more symptoms", value=True, key="clin_higher_worse")
    return ClinicalSettings(choice, cutoff, rc if rc else None, worse)
