"""Which data set a browser session works on.

Pages call :func:`active_dataset` and never touch the store directly, so that a persistent store
can replace the in-memory one without changing the pages.

Signed in, the choice is part of the sign-in session on the server (``sessions.dataset``, migration
0007; :meth:`core.store.ClinicStore.set_session_dataset`), like the sign-in itself: a reload, a new
tab and a ``?patient=`` link of that sign-in open on the data set chosen last, never on the demo by
surprise. Within a tab, ``st.session_state`` holds it. With nothing chosen yet, a session opens on
the first data set that is not demo data (the clinic's own), else the first.
"""
from __future__ import annotations

import streamlit as st

from core.demo import DEMO_LABEL
from core.i18n import _
from core.intake.dataset import Dataset
from core.store.datasets import ClinicDatasetStore, DatasetStore, MemoryStore, first_own

KEY = "active_dataset"
#: ``(sign-in session id, data set name)`` last written to the database (one write per change).
_SAVED = "_active_dataset_saved"


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


def _sign_in_session() -> int | None:
    """The signed-in browser's server-side session id (None when signed out)."""
    from ui.auth import SESSION_KEY, current_user

    return st.session_state.get(SESSION_KEY) if current_user() is not None else None


def _remembered(session_id: int | None) -> str | None:
    """The data set recorded with the sign-in session, if any."""
    if session_id is None:
        return None
    from ui.auth import clinic_store

    name = clinic_store().session_dataset(session_id)
    if name is not None:
        st.session_state[_SAVED] = (session_id, name)
    return name


def _remember(name: str) -> None:
    """Record ``name`` with the sign-in session (once per change; nothing when signed out)."""
    session_id = _sign_in_session()
    if session_id is None or st.session_state.get(_SAVED) == (session_id, name):
        return
    from ui.auth import clinic_store

    clinic_store().set_session_dataset(session_id, name)
    st.session_state[_SAVED] = (session_id, name)


def active_name(names: list[str] | None = None) -> str:
    """The name of the session's active data set: this tab's choice, else the one recorded with the
    sign-in session (a reload, a new tab, a link), else the first data set that is not demo data;
    a name the user may no longer see falls back the same way. Recorded with the sign-in."""
    names = store().names() if names is None else names
    name = st.session_state.get(KEY)
    if name is None:
        name = _remembered(_sign_in_session())
    if name not in names:
        name = first_own(store(), names) or DEMO_LABEL
    st.session_state[KEY] = name
    _remember(name)
    return name


def active_dataset(names: list[str] | None = None) -> Dataset:
    """The session's active data set (:func:`active_name`); ``names``: the store's names when the
    caller already has them."""
    names = store().names() if names is None else names
    name = active_name(names)
    try:
        return store().get(name)
    except KeyError:  # removed meanwhile
        st.session_state.pop(KEY, None)
        return store().get(names[0]) if names else MemoryStore().get(DEMO_LABEL)


def open_dataset(name: str) -> None:
    """Make the data set ``name`` (one the store lists) the active one, here and in the sign-in session
    (the sidebar's menu shows it from the next run on)."""
    st.session_state[KEY] = name
    _remember(name)


def set_active(dataset: Dataset) -> None:
    store().put(dataset)
    open_dataset(dataset.name)


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


PICKER_KEY = "dataset_choice"


def _picked() -> None:
    """The sidebar menu's choice (its on-change callback, before the rerun it causes)."""
    choice = st.session_state.get(PICKER_KEY)
    if choice is not None:
        open_dataset(choice)


def dataset_picker() -> Dataset:
    """Sidebar choice of the data set; returns the active one and labels demo data."""
    use_app_navigation()
    from ui.auth import user_badge
    from ui.language import localised

    user_badge()
    names = store().names()
    ds = active_dataset(names)
    options = names if ds.name in names else [ds.name, *names]
    st.session_state[PICKER_KEY] = ds.name  # the menu always shows the active data set; a choice: _picked
    st.sidebar.selectbox(_("Data set"), options, key=PICKER_KEY, format_func=localised(dataset_title),
                         on_change=_picked)
    if ds.is_demo:
        st.sidebar.info(_("**Demo data.** Simulated patients, not real people. Upload your clinic's "
                          "spreadsheet on the *Upload data* page."))
    return ds


def demo_badge(ds: Dataset) -> None:
    """A visible label on every page that shows demo data."""
    if ds.is_demo:
        st.caption(_(":orange-badge[DEMO DATA] Simulated clinic, not real patients."))
