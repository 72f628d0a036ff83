"""Who is signed in, the clinic database, and the audit trail of what they look at and export.

Without sign-in the dashboard shows the demo clinic and keeps uploads in this browser session only.
Signed-in users get the clinic's stored data sets, scoped by ``core.store`` to their role:
supervisors everything, therapists their own patients, researchers pseudonymised data.

A sign-in survives a reload and a new tab: it starts a server-side session
(:mod:`core.store.sessions`) whose signed token the browser keeps in an HttpOnly cookie
(:mod:`ui.server`), bound to a random *browser key* that the dashboard's own page keeps in its
origin's storage (``localStorage``, which no other port or site can read or write). A tab without a
sign-in of its own honours the cookie only after the page has shown that key
(:func:`ask_browser_proof`): cookies are not isolated by port, so a page on another port of the same
host can plant one, but it cannot plant the key. Every script run re-checks the session against the
database (:func:`restore_session`), so a sign-out in any tab, sign-out everywhere, a deactivation or a
new password ends it at once.
"""
from __future__ import annotations


import streamlit as st

from core.errors import InputError
from core.i18n import _, in_this_language
from core.store import AccessDenied, ClinicStore, Role, User, dashboard_url
from core.store.users import role_label
from ui import budget
from ui.server import COOKIE, SECURE_COOKIE, SESSION_ROUTE, SIGN_OUT_ROUTE, configured_origin, normalise_origin, \
    open_store

USER_KEY = "signed_in_user"
SESSION_KEY = "signed_in_session"
TICKET_KEY = "_session_ticket"
CLEAR_COOKIE_KEY = "_clear_session_cookie"
ENDED_KEY = "_session_ended"
#: The browser-key component's state (its ``proof`` value), the key once shown, cookies refused.
PROOF_WIDGET_KEY = "_alliance_browser_proof"
PROVEN_KEY = "_alliance_browser_key"
NEED_PROOF_KEY = "_alliance_need_proof"
PENDING_ROLE_KEY = "_alliance_pending_role"  # the role of a cookie's session while the browser key is awaited
REFUSED_TOKENS_KEY = "_alliance_refused_cookies"
REFUSED_NOTE_KEY = "_alliance_cookie_refused"
#: Per-session keys kept at sign-out: the interface language (ui.language.KEY; not where it came from,
#: so that the next person's sign-in applies her own stored language).
PREFERENCE_KEYS = ("language",)
#: Per-session keys that belong to what the previous user could see.
DATA_KEYS = ("active_dataset", "dataset_store", "patient_id", "patient_in_url", "dataset_choice",
             "_last_logged_view", "_last_logged_caseload")


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
    sessions sign the tab out, with a note on the sign-in page). A cookie counts only with the
    browser key it was issued with: until the page has shown the key (:func:`ask_browser_proof`)
    the tab is not signed in; a cookie that does not match it is refused and deleted."""
    try:
        _restore()
    finally:
        _mark_upload_privilege()


def _restore() -> None:
    had = current_user()
    user, session_id = None, st.session_state.get(SESSION_KEY)
    refused = st.session_state.get(REFUSED_TOKENS_KEY, set())
    tokens = [t for t in _cookie_tokens() if t not in refused]
    if had is None and session_id is None and not tokens:
        st.session_state.pop(NEED_PROOF_KEY, None)
        return  # signed out: no database work
    store = clinic_store()
    if session_id is not None:
        user = store.session_user(session_id=session_id)
    if user is None and tokens:
        key = _browser_key()
        if key is None:
            st.session_state[NEED_PROOF_KEY] = True  # app.py asks the page for it and waits
            # which pages exist for that session (not a sign-in): a reload of /record or of a therapist's
            # start page must open that page once the key has been shown, not the signed-out default
            st.session_state[PENDING_ROLE_KEY] = next((r for r in map(store.token_role, tokens) if r), None)
        else:
            st.session_state.pop(NEED_PROOF_KEY, None)
            for token in tokens:
                found = store.session_user(token=token, browser_key=key)
                if found is not None:
                    user, session_id = found, store.session_id_of(token)
                    break
            else:  # ended, or planted from another port or site, or this browser's key was cleared
                st.session_state[REFUSED_TOKENS_KEY] = refused | set(tokens)
                st.session_state[CLEAR_COOKIE_KEY] = True
                if any(store.token_live(t) for t in tokens):
                    st.session_state[REFUSED_NOTE_KEY] = True
    if user is None:
        if had is not None:
            _clear_sign_in()
            st.session_state[ENDED_KEY] = True
        return
    if had is None or had.id != user.id:
        _forget_data()
    st.session_state[USER_KEY] = user
    st.session_state[SESSION_KEY] = session_id


def _mark_upload_privilege() -> None:
    """Tell the upload endpoint's guard whether this session may upload large files (ui.budget)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None:
        budget.mark_session(ctx.session_id, is_supervisor(current_user()), st.session_state)


def _secure() -> bool:
    """Whether the dashboard is served over HTTPS (the public origin's scheme, else the page's)."""
    try:
        origin = configured_origin() or normalise_origin(st.context.headers.get("Origin"))
    except Exception:  # noqa: BLE001 - no request context (tests)
        return False
    return bool(origin and origin.startswith("https://"))


def cookie_name() -> str:
    return SECURE_COOKIE if _secure() else COOKIE


def _cookie_tokens() -> list[str]:
    """Every value the browser sent for the session cookie (several when one was planted beside
    the dashboard's own, e.g. for a longer path), in the order sent."""
    try:
        raw = st.context.headers.get_all("Cookie")
    except Exception:  # noqa: BLE001 - no request context (tests)
        return []
    name, found = cookie_name(), []
    for header in raw:
        for part in header.split(";"):
            k, sep, v = part.strip().partition("=")
            if sep and k == name and v and v not in found:
                found.append(v.strip('"'))
    return found[:4]


def _browser_key() -> str | None:
    """The browser key the page showed (kept for the tab), or ``None`` before it has."""
    kept = st.session_state.get(PROVEN_KEY)
    if kept is not None:
        return kept
    state = st.session_state.get(PROOF_WIDGET_KEY)
    shown = state.get("proof") if hasattr(state, "get") else None
    if shown is None:
        return None
    st.session_state[PROVEN_KEY] = str(shown)
    return str(shown)


def browser_proof_needed() -> bool:
    return bool(st.session_state.get(NEED_PROOF_KEY))


def pending_role():
    """While :func:`browser_proof_needed`: the role of the session the cookie names (``None`` if it
    names no live one). For the navigation only, so that the page asked for is the one opened; it
    grants nothing."""
    return st.session_state.get(PENDING_ROLE_KEY) if browser_proof_needed() else None


def ask_browser_proof() -> None:
    """Ask the page for its browser key (the answer reruns the script) and stop this run."""
    st.caption(_("Checking your sign-in …"))
    _browser_component()(key=PROOF_WIDGET_KEY, data={"action": "prove"}, on_proof_change=_ignore, height=0)
    st.stop()


def _ignore() -> None:
    pass


#: The page's side of the browser key: kept in the dashboard origin's localStorage (made once, 32
#: random bytes); shown to the server to prove a cookie, or sent with a sign-in's ticket.
BROWSER_JS = """
export default function (component) {
  const { data, setTriggerValue } = component;
  const NAME = "alliance.browser";
  let key = "";
  try {
    key = window.localStorage.getItem(NAME) || "";
    if (!/^[A-Za-z0-9_-]{16,100}$/.test(key)) {
      const bytes = new Uint8Array(32);
      window.crypto.getRandomValues(bytes);
      key = btoa(String.fromCharCode.apply(null, bytes)).replace(/[+]/g, "-").replace(/[/]/g, "_").replace(/=+$/, "");
      window.localStorage.setItem(NAME, key);
    }
  } catch (e) {
    key = "";
  }
  if (data.action === "prove") {
    setTriggerValue("proof", key || "none");
    return;
  }
  const options = { method: "POST", credentials: "same-origin" };
  if (data.action === "ticket") {
    options.headers = { "Content-Type": "application/json" };
    options.body = JSON.stringify({ ticket: data.ticket, browser: key });
  }
  fetch(data.route, options).catch(function () {});
}
"""


@st.cache_resource(show_spinner=False)
def _browser_component():
    return st.components.v2.component("alliance_browser_key", js=BROWSER_JS)


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
    kept = {k: st.session_state[k] for k in (*PREFERENCE_KEYS, PROVEN_KEY) if k in st.session_state}
    kept[REFUSED_TOKENS_KEY] = st.session_state.get(REFUSED_TOKENS_KEY, set()) | set(_cookie_tokens())  # ended
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state[CLEAR_COOKIE_KEY] = True
    st.session_state.update(kept)  # the page stays in the language it was in


def session_cookie_script() -> None:
    """Hand a pending sign-in ticket and the browser key to the server (which sets the HttpOnly
    cookie), or ask the server to delete the cookie after a sign-out: a zero-height script of the
    dashboard's own page (an ``st.components.v2`` component), rendered on every run until the
    server has traded the ticket (or it expired)."""
    ticket = st.session_state.get(TICKET_KEY)
    if ticket is not None:
        session_id = st.session_state.get(SESSION_KEY)
        if session_id is None or not clinic_store().ticket_pending(session_id):
            st.session_state.pop(TICKET_KEY, None)
            ticket = None
    clear = st.session_state.pop(CLEAR_COOKIE_KEY, None)
    if ticket is not None:
        data = {"action": "ticket", "route": SESSION_ROUTE, "ticket": ticket}
    elif clear:
        data = {"action": "clear", "route": SIGN_OUT_ROUTE}
    else:
        return
    _browser_component()(key="_alliance_cookie_js", data=data, height=0)


def sign_out_everywhere() -> None:
    """End every session of the signed-in user (other browsers and this one), then sign this tab out."""
    user = current_user()
    if user is not None:
        clinic_store().end_sessions(user)
    sign_out()


def cookie_refused_note() -> bool:
    """True (once) when a session cookie this browser was not given by the dashboard was refused."""
    return bool(st.session_state.pop(REFUSED_NOTE_KEY, False))


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


def log_caseload_view(dataset: str, n_patients: int) -> None:
    """Record that the caseload (every visible patient's signal and trajectory) was shown, once per
    data set and session: the clinic overview reads patients as much as a patient page does."""
    if st.session_state.get("_last_logged_caseload") != dataset:
        st.session_state["_last_logged_caseload"] = dataset
        log("caseload view", f"{dataset}: {n_patients} patients")


def is_supervisor(user: User | None) -> bool:
    return user is not None and user.role is Role.SUPERVISOR


def start_page(user: User | None) -> str:
    """The page a sign-in opens: a therapist's caseload, everyone else's *Clinic data*."""
    return "pages/overview.py" if user is not None and user.role is Role.THERAPIST else "pages/home.py"


def sign_in_refusal(outcome) -> str | None:
    """The sentence for a refused sign-in (:meth:`core.store.ClinicStore.check_sign_in`'s outcome), or
    ``None`` when it went through: the sign-in page and patient mode's staff sign-in say the same."""
    if outcome.source_refused:
        return _("Too many failed sign-ins from this computer: sign-in from here is refused for 15 minutes.")
    if outcome.wait_seconds > 0:
        return _("After repeated failed sign-ins with this user name, each try must wait a little: try again in "
                 "{seconds} seconds.").format(seconds=max(1, round(outcome.wait_seconds)))
    if outcome.user is None:
        return _("User name or password is not right, or the account is deactivated.")
    return None
