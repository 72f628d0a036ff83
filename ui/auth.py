"""Who is signed in, the clinic database, and the audit trail of what they look at and export.

Without sign-in the dashboard shows the demo clinic and keeps uploads in this browser session only.
Signed-in users get the clinic's stored data sets, scoped by ``core.store`` to their role:
supervisors everything, therapists their own patients, researchers pseudonymised data.
"""
from __future__ import annotations

import streamlit as st

from core.store import ClinicStore, User

USER_KEY = "signed_in_user"


@st.cache_resource(show_spinner=False)
def clinic_store() -> ClinicStore:
    """The clinic database (``ALLIANCE_DATABASE_URL`` or SQLite in ``ALLIANCE_DATA_DIR``), with the
    demo users and the demo clinic seeded on first start."""
    store = ClinicStore.from_env()
    store.seed_demo()
    return store


def current_user() -> User | None:
    return st.session_state.get(USER_KEY)


def sign_in(user: User) -> None:
    st.session_state[USER_KEY] = user
    for key in ("active_dataset", "dataset_store", "patient_id", "patient_in_url"):
        st.session_state.pop(key, None)


def sign_out() -> None:
    user = current_user()
    if user is not None:
        clinic_store().log(user, "sign-out")
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def log(action: str, detail: str = "") -> None:
    """Record an action of the signed-in user (patient views, exports) in the audit log."""
    user = current_user()
    if user is not None:
        clinic_store().log(user, action, detail)


def user_badge() -> None:
    """Who is signed in, in the sidebar."""
    user = current_user()
    if user is None:
        st.sidebar.caption("Not signed in: demo clinic and this session's uploads only.")
        return
    demo = " (demo account)" if user.is_demo else ""
    st.sidebar.caption(f"Signed in as **{user.display_name}**{demo} · {user.role.value}")


def download(label: str, data, file_name: str, mime: str, key: str, what: str | None = None, **kwargs) -> None:
    """A download button whose click is recorded in the audit log as an export."""
    st.download_button(label, data, file_name=file_name, mime=mime, key=key, on_click=log,
                       args=("export", what or file_name), **kwargs)


def log_patient_view(dataset: str, patient: str) -> None:
    """Record a patient-page view once per patient shown (not on every rerun)."""
    marker = (dataset, patient)
    if st.session_state.get("_last_logged_view") != marker:
        st.session_state["_last_logged_view"] = marker
        log("patient view", f"{dataset}: {patient}")
