"""Cached computations and clinical settings shared by the patient page and the clinic overview.

Every cached function takes the data set's fingerprint as its key and the data itself as an
unhashed argument (``_data``): Streamlit hashes large DataFrames from a sample, so the
fingerprint (a hash of every value, computed once per data set) is what keys the cache. Moving a
slider never refits a model that was already fitted for this data.

The tables with a row per session (a million rows for a national service) are kept with
``st.cache_resource``: every rerun gets the same object instead of a copy (``st.cache_data``
unpickles a copy on every call, 0.1–0.3 s each for a million rows). Callers treat them as
read-only: they filter and select, they never assign into them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from core.clinical.indices import caseload, find_patients, flag_ruptures, flag_ruptures_so_far, patient_sessions
from core.clinical.signal import (
    SignalModel,
    SignalSettings,
    fit_signal_model,
    patient_signal,
    session_signal,
    validate_signal,
)
from core.errors import ModelError
from core.i18n import N_, _, get_language, number, number_text
from core.intake.dataset import Dataset
from core.store.errors import NoSuchDataset
from core.stats.decomposition import add_model_terms
from core.stats.models import build_model, compute_iccs, fit_model
from ui.language import localised
from ui.look import decimal_input
from ui.text import md


def therapist_icc(fingerprint: str, outcome: str, _data: pd.DataFrame) -> float | None:
    """Therapist share of the outcome variance (REML three-level unconditional model); cached.

    The spinners' texts are translated where they are shown (Streamlit shows a spinner only after
    half a second, so a cached result never flashes one)."""
    with st.spinner(_("Estimating the therapist share …")):
        return _therapist_icc(fingerprint, outcome, _data)


@st.cache_data(show_spinner=False, max_entries=16)
def _therapist_icc(fingerprint: str, outcome: str, _data: pd.DataFrame) -> float | None:
    if "therapist" not in _data.columns:
        return None
    spec = build_model(outcome, None, therapist_level=True, key="unconditional_3level")
    try:
        model = fit_model(add_model_terms(_data), spec, ml=False)
    except ModelError:
        return None
    return compute_iccs({"unconditional_3level": model})["therapist"]


@st.cache_resource(show_spinner=False, max_entries=8)
def sessions_table(fingerprint: str, measures: tuple[str, ...], _data: pd.DataFrame) -> pd.DataFrame:
    """Per session: scores, own means, own SDs and deviations of every patient (shared, read-only)."""
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
    query = st.text_input(_("Find patient by ID"), key=key,
                          placeholder=_("{n:,} patients: type an ID or part of it, then Enter").format(n=len(patients)))
    matches, n = find_patients(patients, query, limit)
    if query.strip() and not matches:
        st.warning(_("No patient ID contains “{query}”.").format(query=md(query.strip())))
    if n > len(matches):
        template = (_("The list shows {shown:,} of {n:,} matching IDs; type more of an ID to narrow it.")
                    if query.strip() else _("The list shows {shown:,} of {n:,} IDs; type more of an ID to narrow it."))
        st.caption(template.format(shown=len(matches), n=n))
    if current in patients and current not in matches and (not query.strip() or not matches):
        matches = [current, *matches]
    return matches or patients[:limit]


def sessions_with_ruptures(ds: Dataset, threshold: float) -> pd.DataFrame:
    """The sessions table with full-course rupture flags at ``threshold`` own SDs (research pages)."""
    measures = tuple(ds.validated.measures)
    table = sessions_table(ds.fingerprint, measures, ds.data)
    if "alliance" in measures:
        return flag_ruptures(table, threshold)
    return table


@st.cache_resource(show_spinner=False, max_entries=8)
def _ruptures_so_far(fingerprint: str, threshold: float, _table: pd.DataFrame) -> pd.DataFrame:
    return flag_ruptures_so_far(_table, threshold)


def sessions_with_ruptures_so_far(ds: Dataset, threshold: float) -> pd.DataFrame:
    """The sessions table with rupture flags against each patient's mean *so far* (clinician pages)."""
    measures = tuple(ds.validated.measures)
    table = sessions_table(ds.fingerprint, measures, ds.data)
    if "alliance" in measures:
        return _ruptures_so_far(ds.fingerprint, threshold, table)
    return table


# ---------------------------------------------------------------- early-warning signal

# Every cached result that holds text (reasons, notes, sentences) takes the interface language in its
# key (``language``), so that a Spanish and an English session never share a cached sentence.

@st.cache_data(show_spinner=False, max_entries=16)
def _signal_model(fingerprint: str, intake: str | None, language: str, _data: pd.DataFrame) -> SignalModel:
    return fit_signal_model(_data, SignalSettings(intake=intake))


@st.cache_data(show_spinner=False, max_entries=16)
def _clinic_signal_model(database: str, dataset: str, version: int, intake: str | None, language: str,
                         _user) -> SignalModel:
    from ui.auth import clinic_store

    return clinic_store().clinic_signal_model(_user, dataset, intake)


def _scoped_user():
    """The signed-in therapist, whose data set holds only her own patients (else None)."""
    from core.store.users import Role
    from ui.auth import current_user

    user = current_user()
    return user if user is not None and user.role is Role.THERAPIST else None


def sees_whole_clinic() -> bool:
    """False for a therapist: her data set is her own patients, the clinic's figures are not hers to see."""
    return _scoped_user() is None


def signal_model(ds: Dataset, intake: str | None = None) -> SignalModel:
    """The clinic's expected courses, always fitted on the *whole* clinic's data set: for a
    therapist (who sees only her patients) the clinic database fits it on every patient and returns
    only the model; otherwise it is fitted here on the data set. Cached by data fingerprint (or data
    set version), so a slider or a patient switch never refits it."""
    user = _scoped_user()
    language = get_language()
    with st.spinner(_("Fitting the clinic's expected courses …")):
        if user is not None:
            from ui.auth import clinic_store

            store = clinic_store()
            try:
                version = store.dataset_version(user, ds.name)
                return _clinic_signal_model(str(store.engine.url), ds.name, version, intake, language, user)
            except NoSuchDataset:  # a data set not in the database (e.g. an upload kept in the session)
                pass
        return _signal_model(ds.fingerprint, intake, language, ds.data)


@st.cache_resource(show_spinner=False, max_entries=8)
def _session_signal(fingerprint: str, model_key: tuple, settings: SignalSettings, language: str,
                    _data: pd.DataFrame, _model: SignalModel) -> pd.DataFrame:
    return session_signal(_data, _model, settings)


def signal_settings(settings: "ClinicalSettings") -> SignalSettings:
    return SignalSettings(higher_is_worse=settings.higher_is_worse, reliable_change=settings.reliable_change,
                          cutoff=settings.cutoff, intake=settings.intake)


def clinic_signal(ds: Dataset, settings: "ClinicalSettings") -> tuple[SignalModel, pd.DataFrame, pd.DataFrame]:
    """The model, every visible session's signal and every visible patient's current status."""
    sig = signal_settings(settings)
    model = signal_model(ds, sig.intake)
    key = signal_key(model)
    language = get_language()
    sessions = _session_signal(ds.fingerprint, key, sig, language, ds.data, model)
    return model, sessions, _patient_signal(ds.fingerprint, key, sig, language, sessions)


@st.cache_resource(show_spinner=False, max_entries=8)
def _patient_signal(fingerprint: str, model_key: tuple, settings: SignalSettings, language: str,
                    _sessions: pd.DataFrame) -> pd.DataFrame:
    return patient_signal(_sessions)


def signal_key(model: SignalModel) -> tuple:
    """What identifies a fitted signal model in the caches (its kind, counts and fits)."""
    return (model.method, model.n_patients, model.n_observations, model.intake_mean,
            tuple(f.up_to for f in model.fits), tuple(float(f.residual) for f in model.fits))


def caseload_table(fingerprint: str, threshold: float, settings: SignalSettings, improvement_by: int,
                   model_key: tuple, _sessions: pd.DataFrame, _current: pd.DataFrame) -> pd.DataFrame:
    """:func:`core.clinical.indices.caseload` of every visible patient (shared, read-only: the
    overview filters and pages it, 0.4 s for 130,000 patients is paid once per setting and language:
    its reasons are sentences)."""
    with st.spinner(_("Ordering the caseload …")):
        return _caseload_table(fingerprint, threshold, settings, improvement_by, model_key, get_language(),
                               _sessions, _current)


@st.cache_resource(show_spinner=False, max_entries=16)
def _caseload_table(fingerprint: str, threshold: float, settings: SignalSettings, improvement_by: int,
                    model_key: tuple, language: str, _sessions: pd.DataFrame, _current: pd.DataFrame) -> pd.DataFrame:
    return caseload(_sessions, reliable_change=settings.reliable_change, cutoff=settings.cutoff,
                    higher_is_worse=settings.higher_is_worse, improvement_by=improvement_by, signal=_current)


def filter_caseload(table: pd.DataFrame, *, therapists=(), statuses=(), query: str = "") -> pd.DataFrame:
    """The caseload rows of the chosen ``therapists`` and signal ``statuses`` whose patient ID holds
    ``query`` (case-insensitive), in caseload order: filtered on the server, so that the page sends
    only the page of rows it shows (:func:`page_of`)."""
    keep = np.ones(len(table), dtype=bool)
    if therapists and "therapist" in table.columns:
        keep &= table["therapist"].isin(list(therapists)).to_numpy()
    if statuses:
        keep &= table["signal"].isin(list(statuses)).to_numpy()
    if query.strip():
        keep &= table["patient"].astype(str).str.contains(query.strip(), case=False, regex=False).to_numpy(
            dtype=bool, na_value=False)
    return table if keep.all() else table[keep]


def page_of(n_rows: int, per_page: int, key: str, label: str) -> tuple[int, int]:
    """A page-number input for ``n_rows`` rows (``key`` in session state, kept within the pages when
    a filter shrinks them); ``label`` is a translated template with ``{pages}`` (the number of pages)
    and ``{per}`` (``per_page``); returns ``(first row, number of pages)``."""
    n_pages = max(1, -(-n_rows // per_page))
    if st.session_state.get(key, 1) > n_pages:
        st.session_state[key] = n_pages
    page = st.number_input(label.format(pages=n_pages, per=per_page), min_value=1, max_value=n_pages, key=key) \
        if n_pages > 1 else 1
    return (int(page) - 1) * per_page, n_pages


def signal_validation(fingerprint: str, settings: SignalSettings, _data: pd.DataFrame) -> dict:
    """How well the signal predicted outcomes in this data set (cross-validated; expensive; cached
    per language: its method, outcome and sentences are text)."""
    with st.spinner(_("Checking the signal against this clinic's outcomes (5-fold cross-validation) …")):
        return _signal_validation(fingerprint, settings, get_language(), _data)


@st.cache_data(show_spinner=False, max_entries=8)
def _signal_validation(fingerprint: str, settings: SignalSettings, language: str, _data: pd.DataFrame) -> dict:
    return validate_signal(_data, settings)


#: The rupture threshold's choices (own SDs), in steps of 0.25.
RUPTURE_THRESHOLDS = tuple(round(0.25 * k, 2) for k in range(1, 13))


def rupture_threshold(help: str | None = None) -> float:
    """The sidebar's rupture threshold (own SDs below own mean so far; 0.25–3, default 1), shared by
    the clinician pages (one key). A select slider, so that it writes its value the language's way
    (Spanish ``1,25``): Streamlit's number slider writes a decimal point in every language."""
    return float(st.sidebar.select_slider(_("Rupture threshold (own SDs below own mean so far)"),
                                          options=RUPTURE_THRESHOLDS, value=1.0, key="rupture_threshold",
                                          format_func=lambda v: number_text(v, 2), help=help))


#: Jacobson–Truax statuses (``core.clinical.indices.jacobson_truax_status``) in words.
JT_WORDS = {"recovered": N_("recovered"), "improved": N_("improved"), "unchanged": N_("unchanged"),
            "deteriorated": N_("deteriorated"), "unknown": N_("unknown")}


def jt_word(status) -> str:
    """A Jacobson–Truax status in the interface language (anything else as it is)."""
    return _(JT_WORDS[status]) if isinstance(status, str) and status in JT_WORDS else status


@dataclass(frozen=True)
class ClinicalSettings:
    """Where the symptom measure's clinical range starts and how much change is reliable."""

    instrument: str
    cutoff: float | None
    reliable_change: float | None
    higher_is_worse: bool = True
    intake: str | None = None


#: The symptom measure's presets (the names are session-state values and keys: translated where shown).
_PRESETS = {
    N_("OQ-45.2 total (0–180)"): (63.5, 14.0),
    N_("OQ-45.2 mean item score (0–4)"): (63.5 / 45, 14.0 / 45),
    N_("Other measure (enter values)"): (None, None),
}
#: The intake menu's first option: no intake column, the score at the first session.
_FIRST_SCORE = "\0first session"


def instrument_title(name: str) -> str:
    """A symptom-measure preset's name in the interface language (``"none"`` when there is none)."""
    return _(name) if name in _PRESETS else (_("none") if name == "none" else name)


def clinical_settings(ds: Dataset) -> ClinicalSettings:
    """Sidebar inputs for the cut-off and reliable change, prefilled from the data set's instrument."""
    if "symptoms" not in ds.validated.measures:
        return ClinicalSettings("none", None, None)
    names = list(_PRESETS)
    guess = _guess_instrument(ds)
    with st.sidebar.expander(_("Clinical thresholds"), expanded=False):
        choice = st.selectbox(_("Symptom measure"), names, index=names.index(guess),
                              key=f"clin_instrument_{ds.fingerprint[:8]}", format_func=localised(instrument_title))
        cutoff0, rc0 = _PRESETS[choice]
        if choice != names[2]:
            st.caption(_("OQ-45.2: clinical cut-off 63/64 and reliable change 14 points on the total "
                         "(Lambert et al., 2004; Lambert, Hansen & Finch, 2001); divided by 45 for mean item scores."))
        cutoff = decimal_input(_("Clinical cut-off (scores above are in the clinical range)"),
                               value=cutoff0, key=f"clin_cutoff_{choice}")
        rc = decimal_input(_("Reliable change (points)"), value=rc0, min_value=0.0, key=f"clin_rc_{choice}")
        worse = st.checkbox(_("Higher scores mean more symptoms"), value=True, key="clin_higher_worse",
                            help=_("Untick for a measure where a higher score is better (e.g. well-being): the "
                                   "early-warning signal then counts lower scores as worse."))
        candidates = intake_columns(ds)
        intake = None
        if candidates:
            pick = st.selectbox(_("Intake score (starting point of the expected course)"), [_FIRST_SCORE, *candidates],
                                key=f"clin_intake_{ds.fingerprint[:8]}",
                                format_func=localised(lambda c: _("Score at the first session") if c == _FIRST_SCORE else c))
            intake = None if pick == _FIRST_SCORE else pick
    return ClinicalSettings(choice, cutoff, rc if rc else None, worse, intake)


def _guess_instrument(ds: Dataset) -> str:
    """The symptom measure's preset: from the instrument that scored it, else from its largest value."""
    names = list(_PRESETS)
    if ds.instrument_for("symptoms") == "oq45":
        return names[0]
    top = ds.data["symptoms"].max()
    return names[1] if top <= 4 else names[0] if top <= 180 and top > 10 else names[2]


def current_settings(ds: Dataset) -> ClinicalSettings:
    """The clinical settings without drawing the sidebar inputs (pages that only label axes): the
    choices made on the clinician pages in this session, else the guess from the data."""
    if "symptoms" not in ds.validated.measures:
        return ClinicalSettings("none", None, None)
    choice = st.session_state.get(f"clin_instrument_{ds.fingerprint[:8]}", _guess_instrument(ds))
    cutoff, rc = _PRESETS.get(choice, (None, None))
    return ClinicalSettings(choice, cutoff, rc, bool(st.session_state.get("clin_higher_worse", True)))


def intake_columns(ds: Dataset) -> list[str]:
    """Extra columns that could hold an intake score: numbers (or missing) in every row."""
    return _intake_columns(ds.fingerprint, ds.data)


@st.cache_data(show_spinner=False, max_entries=16)
def _intake_columns(fingerprint: str, _data: pd.DataFrame) -> list[str]:
    from core.intake.validation import parse_numbers

    skip = {"patient", "therapist", "session", "alliance", "symptoms", "row", "study"}
    out = []
    for col in _data.columns:
        if col in skip:
            continue
        values, missing, non_numeric = parse_numbers(_data[col].astype(str))
        if not non_numeric.any() and not missing.all():
            out.append(col)
    return out


def measure_labels(ds: Dataset, settings: ClinicalSettings) -> dict[str, tuple[str, str]]:
    """Per measure a panel title with the direction and the axis title with the scale, its range
    and what a higher score means, e.g. ``("Symptoms (lower is better)", "OQ-45.2 total (0–180,
    higher = more symptoms)")`` and ``("Alliance (higher is better)", "Alliance, ANS mean item
    score (1–7)")``."""
    labels = {}
    if "symptoms" in ds.validated.measures:
        scales = {"OQ-45.2 total (0–180)": _("OQ-45.2 total (0–180, {meaning})"),
                  "OQ-45.2 mean item score (0–4)": _("OQ-45.2 mean item score (0–4, {meaning})")}
        meaning = _("higher = more symptoms") if settings.higher_is_worse else _("higher = fewer symptoms")
        axis = scales.get(settings.instrument, _("Symptom score ({meaning})")).format(meaning=meaning)
        title = _("Symptoms (lower is better)") if settings.higher_is_worse else _("Symptoms (higher is better)")
        labels["symptoms"] = (title, axis)
    if "alliance" in ds.validated.measures:
        scale = measure_range(ds, "alliance")
        if ds.instrument_for("alliance") == "ans" and scale is not None:
            axis = _("Alliance, ANS mean item score ({low}–{high})").format(low=number(scale[0], "g"),
                                                                            high=number(scale[1], "g"))
        elif scale is not None:
            axis = _("Alliance score ({low}–{high})").format(low=number(scale[0], "g"), high=number(scale[1], "g"))
        else:
            axis = _("Alliance score")
        labels["alliance"] = (_("Alliance (higher is better)"), axis)
    return labels


def measure_range(ds: Dataset, measure: str) -> tuple[float, float] | None:
    """The full range of the scale that scores ``measure`` (the ANS: 1–7): from the instrument that
    scored it, else the valid range given on the Upload page; None when neither is known."""
    instrument = ds.instrument_for(measure)
    scale = _score_range(instrument) if instrument else None
    declared = (getattr(ds.validated, "ranges", None) or {}).get(measure)
    if scale is None and declared is not None:
        scale = (float(declared[0]), float(declared[1]))
    return scale


@functools.lru_cache(maxsize=32)
def _score_range(instrument: str) -> tuple[float, float] | None:
    from core.errors import InputError
    from core.intake.instruments import load_instrument

    try:
        low, high = load_instrument(instrument).score_range
    except (InputError, ValueError, OSError):  # a definition that cannot be read: fit the axis to the data
        return None
    return float(low), float(high)


def alliance_scale(ds: Dataset) -> dict[str, tuple[float, float]]:
    """``{"alliance": (low, high)}`` when the alliance scale's full range is known (the charts' default
    range: a dip of 0.4 points on a 1–7 scale looks like one), else ``{}``."""
    scale = measure_range(ds, "alliance") if "alliance" in ds.validated.measures else None
    return {"alliance": scale} if scale is not None else {}
