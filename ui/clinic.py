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
import hashlib
import types
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from core.clinical.indices import caseload, find_patients, flag_ruptures, flag_ruptures_so_far, patient_sessions
from core.clinical.indices import caseload_reasons as core_caseload_reasons
from core.clinical.signal import (
    SCALE_PRESETS,
    SignalModel,
    SignalSettings,
    calibration,
    date_column as dates_in,
    fit_signal_model,
    guess_scale,
    patient_signal,
    session_signal,
    summary_decimals,
)
from core.clinical.signal_norm import as_norm, compare_with_norm, model_from_norm, read_norm
from core.clinical.signal_validation import validate_signal
from core.errors import InputError, ModelError
from core.i18n import N_, _, decimals_for, get_language, number_text
from core.intake.dataset import Dataset
from core.reporting.patient_text import chart_labels, jt_word  # noqa: F401 - jt_word: the pages' import
from core.store.errors import NoSuchDataset
from ui.language import localised
from ui.look import decimal_input
from ui.text import md


#: A table of at most this many rows is "small" (a therapist's caseload: 200 patients × 25 sessions):
#: :func:`sized_cache` keeps many of them. Larger ones (a clinic's, a national file's) are few.
SMALL_ROWS = 5_000
#: How many small and how many large results each :func:`sized_cache` function keeps.
SMALL_ENTRIES, LARGE_ENTRIES = 128, 8


def sized_cache(cache=st.cache_resource, *, large: int = LARGE_ENTRIES, small: int = SMALL_ENTRIES):
    """``cache`` (``st.cache_resource`` or ``st.cache_data``) with room by the data's size: results
    for a table of at most :data:`SMALL_ROWS` rows (the first DataFrame argument) are kept in a
    cache of ``small`` entries, larger ones in a cache of ``large`` entries.

    Each therapist's data set is her own patients, so her tables have a fingerprint of their own.
    With one cache of 8 entries, 17 therapists at once evicted each other's tables on every page
    (bench/bench_load.py: every caseload and patient page refitted them). At most ``small`` ×
    5,000 rows are kept small, as many rows as ``large`` is allowed for one national file.
    """
    def wrap(func):
        big = cache(show_spinner=False, max_entries=large)(func)
        # A copy of the function under another name: Streamlit keys a cache by the function's
        # module, qualified name and source, so the copy gets a cache (and max_entries) of its own.
        twin = types.FunctionType(func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__)
        twin.__kwdefaults__, twin.__module__ = func.__kwdefaults__, func.__module__
        twin.__qualname__ = func.__qualname__ + "[small]"
        little = cache(show_spinner=False, max_entries=small)(twin)

        @functools.wraps(func)
        def cached(*args, **kwargs):
            rows = next((len(a) for a in (*args, *kwargs.values()) if isinstance(a, pd.DataFrame)), SMALL_ROWS + 1)
            return (little if rows <= SMALL_ROWS else big)(*args, **kwargs)

        cached.clear = lambda: (big.clear(), little.clear())
        return cached
    return wrap


def kept_result(ds: Dataset, name: str, compute) -> str:
    """A small result of the data set (``compute(data)``: JSON text, e.g. a model's few numbers):
    signed in, computed once per data set version and view of the rows and kept in the clinic
    database (:meth:`core.store.ClinicStore.kept_result`), so that no replica or restart computes
    it again; else computed here. Cached per data fingerprint and ``name``."""
    from ui.auth import current_user
    from ui.state import store

    version = store().version_of(ds)  # None: signed out, or not from the database
    return _kept_result(ds.fingerprint, name, ds.name, version, current_user(), ds.data, compute)


@sized_cache(st.cache_data, large=16)
def _kept_result(fingerprint: str, name: str, dataset: str, version: int | None, _user, _data: pd.DataFrame,
                 _compute) -> str:
    if version is not None:
        from ui.auth import clinic_store

        try:
            return clinic_store().kept_result(_user, dataset, version, name, lambda: _compute(_data))
        except NoSuchDataset:
            pass
    return _compute(_data)


def therapist_icc(ds: Dataset, outcome: str) -> float | None:
    """Therapist share of the outcome variance (REML three-level unconditional model,
    :func:`core.clinical.indices.therapist_share`), kept per data set version (:func:`kept_result`).

    The spinners' texts are translated where they are shown (Streamlit shows a spinner only after
    half a second, so a kept result never flashes one)."""
    from core.reporting.clinic_results import THERAPIST_SHARE, read_therapist_share, therapist_share_result

    with st.spinner(_("Estimating the therapist share …")):
        return read_therapist_share(kept_result(ds, THERAPIST_SHARE.format(outcome=outcome),
                                                lambda data: therapist_share_result(data, outcome)))


def early_alliance_figures(ds: Dataset) -> dict | None:
    """The early alliance → outcome result's numbers (issue 30; None when it cannot be computed),
    kept per data set version (:func:`kept_result`); ``clinic_sentence`` writes them in words."""
    from core.reporting.clinic_results import EARLY_ALLIANCE, early_alliance_result, read_early_alliance

    return read_early_alliance(kept_result(ds, EARLY_ALLIANCE, early_alliance_result))


@sized_cache()
def sessions_table(fingerprint: str, measures: tuple[str, ...], _data: pd.DataFrame) -> pd.DataFrame:
    """Per session: scores, own means, own SDs and deviations of every patient (shared, read-only)."""
    return patient_sessions(_data, list(measures))


@sized_cache(st.cache_data, large=16)
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


@sized_cache()
def _ruptures_so_far(fingerprint: str, threshold: float, _table: pd.DataFrame) -> pd.DataFrame:
    return flag_ruptures_so_far(_table, threshold)


def sessions_with_ruptures_so_far(ds: Dataset, threshold: float) -> pd.DataFrame:
    """The data set's rows in patient and session order with rupture flags against each patient's
    mean *so far* (the clinic overview: its caseload, panels and trajectories; without the own means
    and deviations of :func:`sessions_table`, which the overview does not show: 0.2 s less on its
    first render of a million rows)."""
    measures = tuple(ds.validated.measures)
    if "alliance" in measures:
        return _ruptures_so_far(ds.fingerprint, threshold, ds.data)
    return sessions_table(ds.fingerprint, measures, ds.data)


# ---------------------------------------------------------------- early-warning signal

# The expected course (a model: numbers and untranslated messages only) is cached per data set and
# settings, never per language: fitted once, read in every language. Cached results that hold text
# (reasons, notes, sentences) take the interface language in their key (``language``), so that a
# Spanish and an English session never share a cached sentence.

@st.cache_data(show_spinner=False, max_entries=16)
def _signal_model(fingerprint: str, settings: SignalSettings, _data: pd.DataFrame) -> SignalModel:
    return fit_signal_model(_data, settings)


@st.cache_data(show_spinner=False, max_entries=16)
def _clinic_signal_model(database: str, dataset: str, version: int, settings: SignalSettings, _user) -> SignalModel:
    from ui.auth import clinic_store

    return clinic_store().clinic_signal_model(_user, dataset, settings.intake, settings=settings)


@st.cache_data(show_spinner=False, max_entries=8)
def _norm_model(digest: str, name: str, settings: SignalSettings, _text: bytes) -> SignalModel:
    return model_from_norm(read_norm(_text), settings, name=name)


def _scoped_user():
    """The signed-in therapist, whose data set holds only her own patients (else None)."""
    from core.store.users import Role
    from ui.auth import current_user

    user = current_user()
    return user if user is not None and user.role is Role.THERAPIST else None


def sees_whole_clinic() -> bool:
    """False for a therapist: her data set is her own patients, the clinic's figures are not hers to see."""
    return _scoped_user() is None


def _own_model(ds: Dataset, sig: SignalSettings) -> SignalModel:
    """The data set's own expected course: signed in, the clinic database's (fitted on every patient of
    the data set once per version and settings, and kept there: :meth:`ClinicStore.clinic_signal_model`);
    signed out, fitted on this session's data."""
    from ui.auth import clinic_store, current_user
    from ui.state import store as datasets

    version = datasets().version_of(ds)  # the version this session read (None: signed out, or not stored)
    if version is not None:
        try:
            return _clinic_signal_model(str(clinic_store().engine.url), ds.name, version, sig, current_user())
        except NoSuchDataset:
            pass
    return _signal_model(ds.fingerprint, sig, ds.data)


@st.cache_data(show_spinner=False, max_entries=8)
def _dataset_norm(fingerprint: str, name: str, model_key: tuple, settings: SignalSettings, _data: pd.DataFrame,
                  _model: SignalModel) -> SignalModel:
    return as_norm(_model, name, _data, settings)


#: Session-state keys of an uploaded norm file ({"name", "digest", "text"}) and of the choice, kept across pages.
NORM_FILE = "signal_norm_file"
NORM_CHOICE = "signal_norm_choice"


def signal_model(ds: Dataset, sig: SignalSettings, norm: str = "own") -> SignalModel:
    """The expected course the signal judges by: the clinic's own, always fitted on the *whole*
    clinic's data set (for a therapist, who sees only her patients, the clinic database fits it on
    every patient and returns only the model), or an outside norm (``norm``: ``dataset:<name>``,
    another data set's courses; ``file:<digest>``, an uploaded norm file). Cached by data
    fingerprint (or data set version) and settings, so a slider or a patient switch never refits
    it. A norm that cannot be used says why (``st.error``) and the clinic's own course is used."""
    with st.spinner(_("Fitting the clinic's expected courses …")):
        if norm.startswith("dataset:"):
            from ui.state import store

            name = norm.split(":", 1)[1]
            try:
                other = store().get(name)
                own = _own_model(other, sig)
                return _dataset_norm(other.fingerprint, name, signal_key(own), sig, other.data, own)
            except (KeyError, NoSuchDataset, ModelError):
                st.error(_("The data set “{name}” cannot be used as the norm; this data set's own courses are used.")
                         .format(name=name))
        elif norm.startswith("file:"):
            upload = st.session_state.get(NORM_FILE)
            if upload is not None and norm == f"file:{upload['digest']}":
                try:
                    return _norm_model(upload["digest"], upload["name"], sig, upload["text"])
                except InputError as err:
                    st.error(_("The norm file cannot be used: {reason} This data set's own courses are used.")
                             .format(reason=err))
        return _own_model(ds, sig)


@sized_cache()
def _session_signal(fingerprint: str, model_key: tuple, settings: SignalSettings, _data: pd.DataFrame,
                    _model: SignalModel) -> pd.DataFrame:
    # no reasons in words, so one table for every language: a page writes the sentences of the patient it
    # shows (patient_signal_rows); a national data set's million sentences took 2.6 s of its first caseload
    return session_signal(_data, _model, settings, reasons=False)


def patient_signal_rows(ds: Dataset, settings: "ClinicalSettings", model: SignalModel, sessions: pd.DataFrame,
                        patient: str) -> pd.DataFrame:
    """One patient's rows of the signal with the reasons in words (``sessions``: the clinic-wide table
    of :func:`clinic_signal`, which holds none), written as the whole table would write them (its
    scores' decimals)."""
    rows = ds.data[ds.data["patient"] == patient]
    if rows.empty:
        return sessions.iloc[:0]
    return session_signal(rows, model, signal_settings(settings), decimals=decimals_for(sessions["observed"]))


def signal_settings(settings: "ClinicalSettings") -> SignalSettings:
    return SignalSettings(higher_is_worse=settings.higher_is_worse, reliable_change=settings.reliable_change,
                          cutoff=settings.cutoff, intake=settings.intake, date=settings.date)


def clinic_signal(ds: Dataset, settings: "ClinicalSettings") -> tuple[SignalModel, pd.DataFrame, pd.DataFrame]:
    """The model, every visible session's signal and every visible patient's current status, in no
    language (the ``reason`` and ``summary`` columns are empty: :func:`patient_signal_rows` writes a
    patient's reasons, :func:`caseload_reasons` those of the caseload rows shown)."""
    sig = signal_settings(settings)
    model = signal_model(ds, sig, settings.norm)
    key = signal_key(model)
    sessions = _session_signal(ds.fingerprint, key, sig, ds.data, model)
    return model, sessions, _patient_signal(ds.fingerprint, key, sig, sessions)


@sized_cache()
def _patient_signal(fingerprint: str, model_key: tuple, settings: SignalSettings,
                    _sessions: pd.DataFrame) -> pd.DataFrame:
    return patient_signal(_sessions, summaries=False)


def caseload_reasons(ds: Dataset, model: SignalModel, sessions: pd.DataFrame, rows: pd.DataFrame,
                     improvement_by: int) -> pd.DataFrame:
    """Caseload rows (of :func:`caseload_table`, which writes none) with their reasons in words, in
    the interface language: those a page shows, or every row of an export (``sessions``: the
    signal of every session, :func:`clinic_signal`; its scores' decimals cached)."""
    decimals = _summary_decimals(ds.fingerprint, signal_key(model), sessions)
    return core_caseload_reasons(rows, sessions, improvement_by, decimals)


@sized_cache(st.cache_data, large=16)
def _summary_decimals(fingerprint: str, model_key: tuple, _sessions: pd.DataFrame) -> tuple[int, int]:
    return summary_decimals(_sessions["observed"])


def signal_key(model: SignalModel) -> tuple:
    """What identifies a fitted signal model in the caches (its source, kind, counts, fits and bounds)."""
    return (model.method, model.source.get("kind"), model.source.get("name"), model.n_patients,
            model.n_observations, model.intake_mean, tuple(f.up_to for f in model.fits),
            tuple(float(f.residual) for f in model.fits), tuple(f.bounds for f in model.fits))


def signal_checks(ds: Dataset, model: SignalModel, settings: "ClinicalSettings",
                  calibrate: bool = True) -> tuple[dict | None, dict | None]:
    """The calibration by simulation (:func:`core.clinical.signal.calibration`; when ``calibrate``)
    and, for an outside norm, how this data set's courses compare with it. The calibration of the
    data set's own course is numbers only, kept per data set version (:func:`kept_result`); the rest
    is cached per language (a note, the warnings: sentences)."""
    sig = signal_settings(settings)
    cal = None
    if calibrate and model.local and not model.outside:  # the data set's own course: kept per version
        from core.reporting.clinic_results import calibration_name, calibration_result, read_calibration

        cal = read_calibration(kept_result(ds, calibration_name(sig), lambda data: calibration_result(data, model, sig)))
    elif calibrate:
        cal = _calibration(ds.fingerprint, signal_key(model), sig, get_language(), ds.data, model)
    compared = _compared_with_norm(ds.fingerprint, signal_key(model), sig, get_language(), ds.data, model) \
        if model.outside else None
    return cal, compared


@sized_cache(st.cache_data, large=16)
def _calibration(fingerprint: str, model_key: tuple, settings: SignalSettings, language: str, _data: pd.DataFrame,
                 _model: SignalModel) -> dict:
    return calibration(_data, _model, settings)


@sized_cache(st.cache_data, large=16)
def _compared_with_norm(fingerprint: str, model_key: tuple, settings: SignalSettings, language: str,
                        _data: pd.DataFrame, _model: SignalModel) -> dict:
    return compare_with_norm(_data, _model, settings)


def caseload_table(fingerprint: str, threshold: float, settings: SignalSettings, improvement_by: int,
                   model_key: tuple, _sessions: pd.DataFrame, _current: pd.DataFrame) -> pd.DataFrame:
    """:func:`core.clinical.indices.caseload` of every visible patient, without its reasons in words
    (:func:`caseload_reasons` writes those shown), so one table for every language (shared,
    read-only: the overview filters and pages it; paid once per setting)."""
    with st.spinner(_("Ordering the caseload …")):
        return _caseload_table(fingerprint, threshold, settings, improvement_by, model_key, _sessions, _current)


@sized_cache(large=16)
def _caseload_table(fingerprint: str, threshold: float, settings: SignalSettings, improvement_by: int,
                    model_key: tuple, _sessions: pd.DataFrame, _current: pd.DataFrame) -> pd.DataFrame:
    return caseload(_sessions, reliable_change=settings.reliable_change, cutoff=settings.cutoff,
                    higher_is_worse=settings.higher_is_worse, improvement_by=improvement_by, signal=_current,
                    reasons=False)


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


def signal_validation(fingerprint: str, settings: SignalSettings, _data: pd.DataFrame,
                      _model: SignalModel | None = None) -> dict:
    """How well the signal predicted outcomes in this data set (cross-validated, or against the
    outside norm ``_model``; expensive; cached per language: its method, outcome and sentences are
    text)."""
    outside = _model if _model is not None and _model.outside else None
    with st.spinner(_("Checking the signal against this clinic's outcomes (5-fold cross-validation) …")):
        return _signal_validation(fingerprint, settings, get_language(), signal_key(outside) if outside else None,
                                  _data, outside)


@st.cache_data(show_spinner=False, max_entries=8)
def _signal_validation(fingerprint: str, settings: SignalSettings, language: str, norm_key, _data: pd.DataFrame,
                       _model: SignalModel | None) -> dict:
    return validate_signal(_data, settings, model=_model)


#: The rupture threshold's choices (own SDs), in steps of 0.25.
RUPTURE_THRESHOLDS = tuple(round(0.25 * k, 2) for k in range(1, 13))


def rupture_threshold(help: str | None = None) -> float:
    """The sidebar's rupture threshold (own SDs below own mean so far; 0.25–3, default 1), shared by
    the clinician pages (one key). A select slider, so that it writes its value the language's way
    (Spanish ``1,25``): Streamlit's number slider writes a decimal point in every language."""
    return float(st.sidebar.select_slider(_("Rupture threshold (own SDs below own mean so far)"),
                                          options=RUPTURE_THRESHOLDS, value=1.0, key="rupture_threshold",
                                          format_func=lambda v: number_text(v, 2), help=help))


@dataclass(frozen=True)
class ClinicalSettings:
    """Where the symptom measure's clinical range starts and how much change is reliable."""

    instrument: str
    cutoff: float | None
    reliable_change: float | None
    higher_is_worse: bool = True
    intake: str | None = None
    norm: str = "own"
    date: str | None = None


#: The symptom measure's presets (the names are session-state values and keys: translated where shown).
_PRESETS = {
    N_("OQ-45.2 total (0–180)"): SCALE_PRESETS["total"],
    N_("OQ-45.2 mean item score (0–4)"): SCALE_PRESETS["mean_item"],
    N_("Other measure (enter values)"): SCALE_PRESETS["other"],
}
_PRESET_OF_SCALE = dict(zip(SCALE_PRESETS, _PRESETS))
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
        norm = norm_choice(ds)
    return ClinicalSettings(choice, cutoff, rc if rc else None, worse, intake, norm, date_column(ds))


def date_column(ds: Dataset) -> str | None:
    """The data set's column with each session's date, if it has one by a usual name."""
    return dates_in(ds.data.columns)


#: The largest norm file read (a norm holds a few dozen numbers per refit: a few kilobytes).
NORM_FILE_LIMIT = 2_000_000


def _keep_norm_choice() -> None:
    st.session_state[NORM_CHOICE] = st.session_state.get("signal_norm")


def norm_choice(ds: Dataset) -> str:
    """Sidebar: where the early-warning signal's expected course comes from — this data set's own
    courses, another data set's (a network of clinics, a published sample imported as a data set),
    or a norm file written by ``python -m core signal --save-norm`` or the overview. Returns the
    choice as :func:`signal_model` takes it; the uploaded file is kept for the other pages."""
    from ui.state import dataset_title, store

    others = [n for n in store().names() if n != ds.name]
    options = ["own", *(f"dataset:{n}" for n in others), "file"]

    def label(option: str) -> str:
        if option == "own":
            return _("This data set's own courses")
        if option == "file":
            return _("A norm file (JSON)")
        return _("Data set: {name}").format(name=dataset_title(option.split(":", 1)[1]))

    # the choice outlives the page (a widget's state does not): kept under a key of its own, which
    # the widget's change writes before the rerun and every page sets the widget from
    kept = st.session_state.get(NORM_CHOICE)
    st.session_state["signal_norm"] = kept if kept in options else "own"
    pick = st.selectbox(_("Expected course from"), options, key="signal_norm", format_func=localised(label),
                        on_change=_keep_norm_choice,
                        help=_("Judge the patients against this clinic's own courses, or against an outside norm: "
                               "a clinic where many patients do badly otherwise looks on track."))
    if pick != "file":
        return pick
    file = st.file_uploader(_("Norm file (JSON)"), type=["json"], key="signal_norm_upload")
    if file is not None:
        text = file.getvalue()
        if len(text) > NORM_FILE_LIMIT:
            st.error(_("The norm file is larger than {mb} MB; a norm file is a few kilobytes.").format(
                mb=NORM_FILE_LIMIT // 1_000_000))
        else:
            st.session_state[NORM_FILE] = {"name": file.name, "digest": hashlib.sha256(text).hexdigest()[:16],
                                           "text": text}
    upload = st.session_state.get(NORM_FILE)
    if upload is None:
        st.caption(_("Choose a norm file; until then this data set's own courses are used."))
        return "own"
    st.caption(_("Norm file in use: {name}").format(name=md(upload["name"])))
    return f"file:{upload['digest']}"


def _guess_instrument(ds: Dataset) -> str:
    """The symptom measure's preset: from the instrument that scored it, else from its largest value."""
    return _PRESET_OF_SCALE[guess_scale(ds.data["symptoms"], ds.instrument_for("symptoms"))]


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
    and what a higher score means (:func:`core.reporting.patient_text.chart_labels`, shared with
    the one-page summary PDF)."""
    scale = {"OQ-45.2 total (0–180)": "total", "OQ-45.2 mean item score (0–4)": "mean_item"}.get(settings.instrument)
    return chart_labels(ds.validated.measures, symptom_scale=scale, higher_is_worse=settings.higher_is_worse,
                        alliance_range=measure_range(ds, "alliance") if "alliance" in ds.validated.measures else None,
                        alliance_is_ans=ds.instrument_for("alliance") == "ans")


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
