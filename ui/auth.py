"""Who is signed in, the clinic database, and the audit trail of what they look at and export.

Without sign-in the dashboard shows the demo clinic and keeps uploads in this browser session only.
Signed-in users get the clinic's stored data sets, scoped by ``core.store`` to their role:
supervisors everything, therapists their own patients, researchers pseudonymised data.

A sign-in survives a reload and a new tab: it starts a server-side session
(:mod:`core.store.sessions`) whose signed token the browser keeps in an HttpOnly cookie
(:mod:`ui.server`). Every script run re-checks the session against the database
(:func:`restore_session`), so a sign-out in any tab, a deactivation or a new password set by a
supervisor ends it at once.
"""
from __future__ import annotations

import json

import streamlit as st

from core.errors import InputError
from core.i18n import _, in_this_language
from core.store import AccessDenied, ClinicStore, Role, User, dashboard_url
from core.store.users import role_label
from ui.server import COOKIE, SESSION_ROUTE, SIGN_OUT_ROUTE, open_store

USER_KEY = "signed_in_user"
SESSION_KEY = "signed_in_session"
TICKET_KEY = "_session_ticket"
CLEAR_COOKIE_KEY = "_clear_session_cookie"
ENDED_KEY = "_session_ended"
#: Per-session keys kept at sign-out: the interface language (ui.language.KEY; not where it came from,
#: so that the next person's sign-in applies her own stored language).
PREFERENCE_KEYS = ("language",)
#: Per-session keys that belong to what the previous user could see.
DATA_KEYS = ("active_dataset", "dataset_store", "patient_id", "patient_in_url", "dataset_choice",
             "_last_logged_view")


def clinic_store() -> ClinicStore:
    """The clinic database the dashboard uses (:func:`core.store.dashboard_url`): the clinic's
    (``ALLIANCE_DATABASE_URL``, or ``clinic.db`` made by ``python -m core store init``), else the
    demo database with the demo accounts and the demo clinic."""
    return _store(dashboard_url())


@st.cache_resource(show_spinner=False)
def _store(url: str) -> ClinicStore:
    return open_store(url)


def current_user() -> User | None:
    return st.session_state.get(USER_KEY)


def _forget_data() -> None:
    for key in list(st.session_state.keys()):
        if key in DATA_KEYS or str(key).startswith("clinic_dataset_store_"):
            del st.session_state[key]


def _clear_sign_in() -> None:
    for key in (USER_KEY, SESSION_KEY, TICKET_KEY):
        st.session_state.pop(key, None)
    _forget_data()


def restore_session() -> None:
    """Once per script run, before any page: the signed-in user of this browser, from this tab's
    session or the session cookie, checked against the database (ended, expired or deactivated
    sessions sign the tab out, with a note on the sign-in page)."""
    had = current_user()
    user, session_id = None, st.session_state.get(SESSION_KEY)
    token = _cookie()
    if had is None and session_id is None and not token:
        return  # signed out: no database work
    store = clinic_store()
    if session_id is not None:
        user = store.session_user(session_id=session_id)
    if user is None:
        if token:
            user = store.session_user(token=token)
            session_id = store.session_id_of(token) if user is not None else None
    if user is None:
        if had is not None:
            _clear_sign_in()
            st.session_state[ENDED_KEY] = True
        return
    if had is None or had.id != user.id:
        _forget_data()
    st.session_state[USER_KEY] = user
    st.session_state[SESSION_KEY] = session_id


def _cookie() -> str | None:
    try:
        return st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no request context (tests)
        return None


def sign_in(user: User) -> None:
    """Start a session for a user who just proved who they are; the page hands its ticket to the
    browser (:func:`session_cookie_script`) so that the sign-in survives a reload."""
    _forget_data()
    session_id, ticket = clinic_store().start_session(user)
    st.session_state[USER_KEY] = user
    st.session_state[SESSION_KEY] = session_id
    st.session_state[TICKET_KEY] = ticket
    st.session_state.pop(ENDED_KEY, None)
    own = [n for n in clinic_store().dataset_names(user)]
    try:
        mine = next((n for n in own if not clinic_store().dataset_info(user, n).is_demo), None)
    except Exception:  # noqa: BLE001 - a data set removed meanwhile: the picker chooses
        mine = None
    if mine is not None:
        st.session_state["active_dataset"] = mine


def stored_language() -> str | None:
    """The signed-in user's stored interface language (``"es"``, ``"en"``), else ``None`` (signed
    out, never chosen, or the database cannot say)."""
    user = current_user()
    if user is None:
        return None
    try:
        return clinic_store().language_of(user)
    except Exception:  # noqa: BLE001 - the language is a preference: never stop a page for it
        return None


def remember_language(code: str) -> None:
    """Store the language the signed-in user picked with her account (nothing when signed out)."""
    user = current_user()
    if user is None:
        return
    try:
        clinic_store().set_language(user, code)
    except (AccessDenied, InputError):  # deactivated meanwhile (the next run signs her out), or no such code
        pass


def sign_out() -> None:
    """End the session on the server (every tab, every reload) and forget it in this tab."""
    store = clinic_store()
    session_id = st.session_state.get(SESSION_KEY)
    if session_id is not None:
        store.end_session(session_id)
    else:
        user = current_user()
        if user is not None:
            store.log(user, "sign-out")
    kept = {k: st.session_state[k] for k in PREFERENCE_KEYS if k in st.session_state}
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state[CLEAR_COOKIE_KEY] = True
    st.session_state.update(kept)  # the page stays in the language it was in


def session_cookie_script() -> None:
    """Hand a pending sign-in ticket to the server (which sets the HttpOnly cookie), or ask the
    server to delete the cookie after a sign-out: a zero-height same-origin script (Streamlit's
    component iframe), rendered on every run until the server has traded the ticket (or it expired)."""
    ticket = st.session_state.get(TICKET_KEY)
    if ticket is not None:
        session_id = st.session_state.get(SESSION_KEY)
        if session_id is None or not clinic_store().ticket_pending(session_id):
            st.session_state.pop(TICKET_KEY, None)
            ticket = None
    clear = st.session_state.pop(CLEAR_COOKIE_KEY, None)
    if ticket is None and not clear:
        return
    import streamlit.components.v1 as components

    if ticket is not None:
        call = (f"fetch({json.dumps(SESSION_ROUTE)}, {{method: 'POST', credentials: 'same-origin', "
                f"headers: {{'Content-Type': 'application/json'}}, body: {json.dumps(json.dumps({'ticket': ticket}))}}})")
    else:
        call = f"fetch({json.dumps(SIGN_OUT_ROUTE)}, {{method: 'POST', credentials: 'same-origin'}})"
    components.html(f"<script>{call}.catch(function () {{}});</script>", height=0)


def session_ended_note() -> bool:
    """True (once) when this tab's sign-in ended elsewhere: sign-out, deactivation, expiry."""
    return bool(st.session_state.pop(ENDED_KEY, False))


def log(action: str, detail: str = "") -> None:
    """Record an action of the signed-in user (patient views, exports) in the audit log."""
    user = current_user()
    if user is not None:
        clinic_store().log(user, action, detail)


def user_badge() -> None:
    """Who is signed in, in the sidebar."""
    from ui.text import md

    user = current_user()
    if user is None:
        st.sidebar.caption(_("Not signed in: demo clinic and this session's uploads only."))
        return
    template = _("Signed in as **{name}** (demo account) · {role}") if user.is_demo else \
        _("Signed in as **{name}** · {role}")
    st.sidebar.caption(template.format(name=md(user.display_name), role=role_label(user.role)))


def download(label: str, data, file_name: str, mime: str, key: str, what: str | None = None, **kwargs) -> None:
    """A download button whose click is recorded in the audit log as an export. A file built on the
    click (``data`` a callable) is built in this run's interface language: Streamlit calls it
    outside the script run, where the language would be the default one."""
    if callable(data):
        data = in_this_language(data)
    st.download_button(label, data, file_name=file_name, mime=mime, key=key, on_click=log,
                       args=("export", what or file_name), **kwargs)


def log_patient_view(dataset: str, patient: str) -> None:
    """Record a patient-page view once per patient shown (not on every rerun)."""
    marker = (dataset, patient)
    if st.session_state.get("_last_logged_view") != marker:
        st.session_state["_last_logged_view"] = marker
        log("patient view", f"{dataset}: {patient}")


def is_supervisor(user: User | None) -> bool:
    return user is not None and user.role is Role.SUPERVISOR
