"""Patient mode: the waiting-room tablet shows one patient's questionnaire and nothing else.

The state is held on the server with the sign-in session (:meth:`core.store.ClinicStore.kiosk_of`):
app.py asks :func:`kiosk_state` first on every script run, and while the browser's sign-in session
(this tab's, or the session cookie's in a reload or a new tab) is in patient mode it calls
:func:`run_kiosk` instead of its navigation: no sidebar, no page list, no header menu, and every
address the dashboard knows (``/overview``, ``/patient?patient=…``, ``/record`` …) serves the same
questionnaire, read from the database, never from the URL. The session signs no one in
(:meth:`core.store.sessions.Sessions.session_user` returns no user for it), so nothing in the tab
can act for the staff member who started it. Each answer is kept on the server as it is given (a
reload resumes); *Finish* scores and stores the session; the tablet then thanks the patient and
stays locked until a therapist or supervisor signs in on it (:func:`staff_sign_in`).
"""
from __future__ import annotations

import streamlit as st

from core.i18n import _, number, set_language
from core.store.record import STAFF, KioskState, answers_needed
from ui.text import md

STATE_KEY = "_kiosk_state"
POSITION_KEY = "_kiosk_position"
#: Every address of app.py's pages: each serves the questionnaire in patient mode.
APP_PATHS = ("home", "overview", "patient", "record", "models", "dynamics", "power", "upload", "account", "admin")
CSS = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stSidebarNav"],
[data-testid="stHeader"], [data-testid="stToolbar"], [data-testid="stMainMenu"], [data-testid="stDecoration"],
[data-testid="stSidebarCollapseButton"] { display: none !important; }
.st-key-kiosk_answers button { min-height: 4rem; font-size: 1.3rem; justify-content: flex-start; padding-left: 1.25rem; }
.st-key-kiosk_answers button p { font-size: 1.3rem; }
[class*="st-key-kiosk_nav"] button { min-height: 3.25rem; }
[class*="st-key-kiosk_nav"] button p { font-size: 1.15rem; }
.st-key-kiosk_item h2 { font-size: 1.9rem; line-height: 1.3; }
</style>
"""
#: Streamlit answers an address the dashboard does not know with its own "Page not found" message (in
#: English, about pages and files) over the page; patient mode serves the questionnaire at every
#: address, so the message is closed as soon as it appears (the page itself runs no other dialog).
CLOSE_NOT_FOUND = """
<script>
(function () {
  function close() {
    document.querySelectorAll('section[role="dialog"] button[aria-label="Close"]').forEach(function (b) { b.click(); });
  }
  close();
  if (!window.__allianceKioskObserver) {
    window.__allianceKioskObserver = new MutationObserver(close);
    window.__allianceKioskObserver.observe(document.body, {childList: true, subtree: true});
  }
})();
</script>
"""


def kiosk_state() -> KioskState | None:
    """This browser's sign-in session in patient mode (by this tab's session id, else the session
    cookie), checked against the database; ``None`` when it is not in patient mode."""
    from ui.auth import SESSION_KEY, _cookie_tokens, clinic_store

    session_id, tokens = st.session_state.get(SESSION_KEY), _cookie_tokens()
    if session_id is None and not tokens:
        return None
    store = clinic_store()
    state = store.kiosk_of(session_id=session_id) if session_id is not None else None
    for token in tokens:
        if state is not None:
            break
        state = store.kiosk_of(token=token)
    return state


def _enter(state: KioskState) -> None:
    """This run is patient mode: the patient's language, no staff member in the tab, the stylesheet."""
    from ui.auth import SESSION_KEY, USER_KEY, _forget_data

    set_language(state.language)
    st.html(CSS + CLOSE_NOT_FOUND, unsafe_allow_javascript=True)
    st.session_state.pop(USER_KEY, None)  # this tab holds nothing of the staff member's any more
    _forget_data()
    st.session_state[SESSION_KEY] = state.session_id
    st.session_state[STATE_KEY] = state


def run_kiosk(state: KioskState, icon: str) -> None:
    """Serve only the questionnaire (app.py, instead of its pages) and stop the run."""
    from ui.auth import session_cookie_script

    set_language(state.language)
    st.set_page_config(page_title=_("Questionnaire"), page_icon=icon, layout="centered",
                       initial_sidebar_state="collapsed", menu_items={"Get help": None, "Report a bug": None,
                                                                      "About": None})
    _enter(state)
    session_cookie_script()  # a sign-in's ticket still pending is handed over: a reload stays here
    title = _("Questionnaire")
    pages = [st.Page(questionnaire, title=title, default=True)]
    pages += [st.Page(questionnaire, title=title, url_path=path) for path in APP_PATHS]
    st.navigation(pages, position="hidden").run()
    st.stop()


def kiosk_guard() -> None:
    """Every page calls it (through :func:`ui.state.use_app_navigation`): in patient mode the page
    shows the questionnaire instead and stops. app.py serves patient mode before any page; this
    holds where a page runs without app.py (Streamlit's AppTest after a page switch)."""
    state = kiosk_state()
    if state is None:
        return
    _enter(state)
    questionnaire()
    st.stop()


def _items(state: KioskState) -> list[tuple]:
    return [(m, k) for m in state.measures for k in range(1, m.instrument.n_items + 1)]


def _answer(session_id: int, measure: str, item: int, code: float, following: int) -> None:
    from ui.auth import clinic_store

    clinic_store().kiosk_answer(session_id, measure, item, code)
    st.session_state[POSITION_KEY] = following


def _go(position: int) -> None:
    st.session_state[POSITION_KEY] = position


def _finish(session_id: int) -> None:
    from ui.auth import clinic_store

    clinic_store().finish_kiosk(session_id)
    st.session_state.pop(POSITION_KEY, None)


def questionnaire() -> None:
    """The only page of patient mode: one question a screen, then a review, then thanks and the lock."""
    state: KioskState = st.session_state[STATE_KEY]
    if state.finished:
        st.title(_("Thank you!"))
        st.markdown("### " + _("Your answers are saved. Please give this device back to the reception or to your "
                               "therapist."))
        staff_sign_in(state)
        return
    items = _items(state)
    position = st.session_state.get(POSITION_KEY)
    if position is None:  # a reload or a new tab: resume at the first question not answered yet
        position = next((i for i, (m, k) in enumerate(items) if state.answers.get(m.name, {}).get(k) is None),
                        len(items))
    position = max(0, min(int(position), len(items)))
    if position < len(items):
        _question(state, items, position)
    else:
        _review(state, items)
    staff_sign_in(state)


def _question(state: KioskState, items: list[tuple], position: int) -> None:
    measure, item = items[position]
    defn = measure.instrument
    st.progress(position / len(items), text=_("Question {n} of {total}").format(n=position + 1, total=len(items)))
    if position == 0 or items[position - 1][0] is not measure:
        st.caption(_("Tap the answer that fits you best. You can go back and change an answer; a question you "
                     "prefer not to answer can be skipped."))
    texts = defn.item_texts.get(state.language)
    with st.container(key="kiosk_item"):
        if texts:
            st.markdown("## " + md(texts[item - 1]))
        else:
            st.markdown("## " + md(_("Question {item} of the {name}").format(item=item, name=defn.name)))
            st.caption(_("The question is on the printed questionnaire, under its number."))
    current = state.answers.get(measure.name, {}).get(item)
    labels = defn.response_labels.get(state.language)
    codes = [defn.item_min + j for j in range(int(defn.item_max - defn.item_min) + 1)]
    with st.container(key="kiosk_answers"):
        for j, code in enumerate(codes):
            label = number(code, "g") + (f" · {labels[j]}" if labels else "")
            st.button(md(label), key=f"kiosk_answer_{j}", width="stretch",
                      type="primary" if current is not None and abs(current - code) < 1e-9 else "secondary",
                      on_click=_answer, args=(state.session_id, measure.name, item, code, position + 1))
    with st.container(key="kiosk_nav", horizontal=True):
        st.button(_("◀ Back"), key="kiosk_nav_back", disabled=position == 0, on_click=_go, args=(position - 1,),
                  width="stretch")
        st.button(_("Skip ▶") if current is None else _("Next ▶"), key="kiosk_nav_next", on_click=_go,
                  args=(position + 1,), width="stretch")


def _review(state: KioskState, items: list[tuple]) -> None:
    st.title(_("Almost done"))
    short = []
    for measure in state.measures:
        given = state.answers.get(measure.name, {})
        answered = sum(given.get(k) is not None for k in range(1, measure.instrument.n_items + 1))
        need = answers_needed(measure)
        st.markdown(_("You answered {n} of {total} questions.").format(n=answered, total=measure.instrument.n_items))
        if answered < need:
            short.append(_("Please answer at least {need} of the {total} questions; {open} are still open.").format(
                need=need, total=measure.instrument.n_items, open=measure.instrument.n_items - answered))
    open_items = [i for i, (m, k) in enumerate(items) if state.answers.get(m.name, {}).get(k) is None]
    for sentence in short:
        st.warning(sentence)
    with st.container(key="kiosk_nav_review", horizontal=True):
        if open_items:
            st.button(_("Go to the first open question"), key="kiosk_nav_open", on_click=_go, args=(open_items[0],),
                      width="stretch")
        st.button(_("◀ Back"), key="kiosk_nav_back", on_click=_go, args=(len(items) - 1,), width="stretch")
    with st.container(key="kiosk_nav_finish"):
        st.button(_("Finish"), key="kiosk_finish", type="primary", width="stretch", disabled=bool(short),
                  on_click=_finish, args=(state.session_id,))


def staff_sign_in(state: KioskState) -> None:
    """At the bottom of every screen: a therapist or supervisor signs in to end patient mode (the
    session and its patient mode end; she is signed in as herself)."""
    from ui.auth import clinic_store, sign_in, sign_in_refusal
    from ui.language import after_sign_in

    st.divider()
    with st.expander(_("Staff: sign in to end patient mode")):
        with st.form("kiosk_staff", clear_on_submit=True):
            username = st.text_input(_("User name"), key="kiosk_staff_username")
            password = st.text_input(_("Password"), type="password", key="kiosk_staff_password")
            submitted = st.form_submit_button(_("Sign in"), type="primary")
    if not submitted:
        return
    store = clinic_store()
    outcome = store.check_sign_in(username.strip(), password, source=st.context.ip_address)
    user = outcome.user
    if sign_in_refusal(outcome):
        st.error(sign_in_refusal(outcome))
        return
    if user.role not in STAFF:
        st.error(_("Only a therapist or a supervisor can end patient mode."))
        return
    store.end_kiosk(user, state.session_id)
    for key in (STATE_KEY, POSITION_KEY):
        st.session_state.pop(key, None)
    sign_in(user)
    after_sign_in(user)
    st.rerun()
