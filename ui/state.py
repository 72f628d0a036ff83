"""Which data set a browser session works on, kept in ``st.session_state``.

Pages call :func:`active_dataset` and never touch the store directly, so that a persistent store
can replace the in-memory one without changing the pages.
"""
from __future__ import annotations

import streamlit as st

from core.demo import DEMO_LABEL
from core.i18n import _
from core.intake.dataset import Dataset
from core.store.datasets import ClinicDatasetStore, DatasetStore, MemoryStore


def store() -> DatasetStore:
    """The data sets of this browser session: the clinic database's (scoped to the signed-in
    user's role) or, without sign-in, the demo clinic and this session's uploads."""
    from ui.auth import clinic_store, current_user

    user = current_user()
    if user is None:
        if "dataset_store" not in st.session_state:
            st.session_state["dataset_store"] = MemoryStore()
        return st.session_state["dataset_store"]
    key = f"clinic_dataset_store_{user.id}"
    if key not in st.session_state:
        st.session_state[key] = ClinicDatasetStore(clinic_store(), user)
    return st.session_state[key]


def dataset_title(name: str) -> str:
    """A data set's name as shown: the demo data sets' names in the interface language (their
    stored names, the keys, stay English); any other name exactly as the user gave it."""
    from core.store.demo_accounts import DEMO_DATASET

    return _(name) if name in (DEMO_LABEL, DEMO_DATASET) else name


def active_dataset(names: list[str] | None = None) -> Dataset:
    """The session's active data set (else the first it may see, else the demo); ``names``: the
    store's names when the caller already has them."""
    names = store().names() if names is None else names
    name = st.session_state.get("active_dataset") or (names[0] if names else DEMO_LABEL)
    try:
        return store().get(name)
    except KeyError:
        return store().get(names[0]) if names else MemoryStore().get(DEMO_LABEL)


def set_active(dataset: Dataset) -> None:
    store().put(dataset)
    st.session_state["active_dataset"] = dataset.name


APP_MARKER = "app_navigation"


def use_app_navigation() -> None:
    """Make sure the page runs under app.py's navigation.

    Streamlit starts in its legacy multipage mode when a ``pages/`` folder exists and the first
    visitor opens a page's URL directly: the page then runs without app.py (no page titles, no
    layout, no ``st.navigation``). app.py marks every run it starts; a page run without that mark
    leaves the legacy mode and reruns, so the same URL is served through app.py. Then the sign-in
    is checked against the database (:func:`ui.auth.restore_session`; one small query).
    """
    if APP_MARKER not in st.session_state:
        from streamlit.runtime.pages_manager import PagesManager

        PagesManager.uses_pages_directory = False
        st.rerun()
    from ui.auth import restore_session
    from ui.kiosk import kiosk_guard
    from ui.language import apply_language

    kiosk_guard()  # patient mode (the waiting-room tablet): only its questionnaire, whatever the page
    restore_session()  # also here: Streamlit's AppTest runs a page without app.py after a switch_page
    apply_language()  # AppTest runs a page without app.py after a switch_page


def dataset_picker() -> Dataset:
    """Sidebar choice of the data set; returns the active one and labels demo data."""
    use_app_navigation()
    from ui.auth import user_badge
    from ui.language import localised

    user_badge()
    names = store().names()
    ds = active_dataset(names)
    options = names if ds.name in names else [ds.name, *names]
    choice = st.sidebar.selectbox(_("Data set"), options, index=options.index(ds.name), key="dataset_choice",
                                  format_func=localised(dataset_title))
    if choice != ds.name:
        st.session_state["active_dataset"] = choice
        ds = active_dataset(names)
    if ds.is_demo:
        st.sidebar.info(_("**Demo data.** Simulated patients, not real people. Upload your clinic's "
                          "spreadsheet on the *Upload data* page."))
    return ds


def demo_badge(ds: Dataset) -> None:
    """A visible label on every page that shows demo data."""
    if ds.is_demo:
        st.caption(_(":orange-badge[DEMO DATA] Simulated clinic, not real patients."))
