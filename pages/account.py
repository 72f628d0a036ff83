"""Sign in / sign out: local accounts (bcrypt) or the clinic's OpenID Connect provider (st.login)."""
import streamlit as st

from core.i18n import LANGUAGES, _, get_language
from core.store import StoreUnwritable
from core.store.users import role_label
from ui.auth import SESSION_KEY, clinic_store, current_user, session_ended_note, sign_in, \
    sign_in_refusal, sign_out, sign_out_everywhere, start_page, stored_language
from ui.language import SOURCE_KEY, after_sign_in
from ui.state import use_app_navigation
from ui.text import md

use_app_navigation()


def oidc_configured() -> bool:
    """True when the clinic configured an OpenID Connect provider in .streamlit/secrets.toml [auth]."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def language_note(signed_in: bool) -> str:
    """Which language the interface speaks and where that choice is kept."""
    name = LANGUAGES[get_language()]
    if not signed_in:
        return _("Interface language: **{language}** (change it under *Language* in the sidebar; it is kept "
                 "for this browser session).").format(language=name)
    stored = stored_language()
    if stored is None:
        source = st.session_state.get(SOURCE_KEY)
        template = (_("Interface language: **{language}**, asked for by the link (choose one under *Language* in "
                      "the sidebar to keep it with your account).") if source == "url" else
                    _("Interface language: **{language}**, from your browser (choose one under *Language* in the "
                      "sidebar to keep it with your account).") if source == "browser" else
                    _("Interface language: **{language}** (choose one under *Language* in the sidebar to keep it "
                      "with your account)."))
        return template.format(language=name)
    return _("Interface language: **{language}** (kept with your account: {stored}; change it under *Language* "
             "in the sidebar).").format(language=name, stored=LANGUAGES[stored])


user = current_user()
store = clinic_store()
st.title(_("Sign in") if user is None else _("Account"))
if session_ended_note():
    st.info(_("You were signed out: you signed out in another tab or everywhere, the session expired, your "
              "password was changed, or a supervisor deactivated the account or set a new password."))

if user is None and oidc_configured() and getattr(st.user, "is_logged_in", False):
    identity = st.user.get("email") or st.user.get("preferred_username")
    known = store.user_for_identity(identity) if identity else None
    if known is None:
        st.error(_("The account {identity} is not registered with this clinic. Ask a supervisor to add it.").format(
            identity=md(identity)))
    else:
        sign_in(known)
        after_sign_in(known)
        st.switch_page(start_page(known))

if user is not None:
    template = (_("Signed in as **{name}** ({username}), role **{role}**. This is a demo account.") if user.is_demo
                else _("Signed in as **{name}** ({username}), role **{role}**."))
    st.success(template.format(name=md(user.display_name), username=md(user.username), role=role_label(user.role)))
    st.write({"supervisor": _("You see the whole clinic, can upload data and manage users."),
              "therapist": _("You see only the patients assigned to you."),
              "researcher": _("You see pseudonymised patient, therapist and study labels, the measures, and only "
                              "the other columns a supervisor marked as shareable; no free text, no row numbers.")}
             [user.role.value])
    st.markdown(language_note(True))
    st.caption(_("The sign-in lasts 12 hours, in every tab of this browser, until you sign out."))
    c = st.columns(2)
    if c[0].button(_("Sign out"), key="sign_out"):
        was_oidc = getattr(st.user, "is_logged_in", False)
        sign_out()
        if was_oidc:
            st.logout()
        st.rerun()
    if c[1].button(_("Sign out everywhere"), key="sign_out_everywhere",
                   help=_("Ends your sign-in in every browser and on every computer, this one included.")):
        was_oidc = getattr(st.user, "is_logged_in", False)
        sign_out_everywhere()
        if was_oidc:
            st.logout()
        st.rerun()
    if not getattr(st.user, "is_logged_in", False):  # a local password (single sign-on users have none here)
        if "password_flash" in st.session_state:
            st.success(st.session_state.pop("password_flash"))
        with st.form("own_password", clear_on_submit=True):
            st.markdown(_("**Change your password**"))
            p = st.columns(2)
            current = p[0].text_input(_("Current password"), type="password", key="own_password_current")
            new = p[1].text_input(_("New password"), type="password", key="own_password_new")
            st.caption(_("At least 8 characters, not one of the most common passwords. Your other sign-ins (other "
                         "browsers, other computers) end; this one stays."))
            if st.form_submit_button(_("Change password")):
                try:
                    changed = store.change_own_password(user, current, new,
                                                        keep_session=st.session_state.get(SESSION_KEY),
                                                        source=st.context.ip_address)
                except ValueError as err:
                    st.error(str(err))
                else:
                    if changed:
                        st.session_state["password_flash"] = _("Your password was changed; your other sign-ins "
                                                               "have ended.")
                        st.rerun()
                    st.error(_("The current password is not right (or, after repeated failures, the check must wait "
                               "a few seconds); your password was not changed."))
    st.stop()

if oidc_configured():
    st.button(_("Sign in with the clinic's account"), key="oidc_login", on_click=st.login, type="primary")
    st.divider()

with st.form("sign_in_form"):
    username = st.text_input(_("User name"), key="sign_in_username")
    password = st.text_input(_("Password"), type="password", key="sign_in_password")
    submitted = st.form_submit_button(_("Sign in"), type="primary")
if submitted:
    try:
        outcome = store.check_sign_in(username.strip(), password, source=st.context.ip_address)
    except StoreUnwritable as err:  # disk full, read-only: one sentence, not Streamlit's error box
        st.error(str(err))
        st.stop()
    found = outcome.user
    refused = sign_in_refusal(outcome)
    if refused:
        st.error(refused)
    else:
        sign_in(found)
        after_sign_in(found)
        st.switch_page(start_page(found))

demo_users = store.demo_users()  # only the demo database has them
if demo_users:
    with st.expander(_("Demo accounts (simulated data, not real patients)"), expanded=True):
        st.write(_("This is the **demo database**. Each demo account's password is **demo**. They see the stored "
                   "*Demo clinic*: the supervisor all of it, each therapist only their own patients, the researcher "
                   "pseudonymised IDs. A clinic's own database, made with `python -m core store init`, has no demo "
                   "accounts."))
        st.table([{_("user name"): u.username, _("role"): role_label(u.role), _("therapist"): u.therapist_code or ""}
                  for u in demo_users])
st.markdown(language_note(False))
st.caption(_("Without signing in, the dashboard shows the built-in demo clinic and keeps uploads only in this "
             "browser session."))
