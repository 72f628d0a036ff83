"""Sign in / sign out: local accounts (bcrypt) or the clinic's OpenID Connect provider (st.login)."""
import streamlit as st

from ui.auth import clinic_store, current_user, session_ended_note, sign_in, sign_out
from ui.state import use_app_navigation
from ui.text import md

use_app_navigation()


def oidc_configured() -> bool:
    """True when the clinic configured an OpenID Connect provider in .streamlit/secrets.toml [auth]."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


user = current_user()
store = clinic_store()
st.title("Sign in" if user is None else "Account")
if session_ended_note():
    st.info("You were signed out: you signed out in another tab, the session expired, or a supervisor "
            "deactivated the account or set a new password.")

if user is None and oidc_configured() and getattr(st.user, "is_logged_in", False):
    identity = st.user.get("email") or st.user.get("preferred_username")
    known = store.user_for_identity(identity) if identity else None
    if known is None:
        st.error(f"The account {md(identity)} is not registered with this clinic. Ask a supervisor to add it.")
    else:
        sign_in(known)
        st.switch_page("pages/home.py")

if user is not None:
    demo = " This is a demo account." if user.is_demo else ""
    st.success(f"Signed in as **{md(user.display_name)}** ({md(user.username)}), role **{user.role.value}**.{demo}")
    st.write({"supervisor": "You see the whole clinic, can upload data and manage users.",
              "therapist": "You see only the patients assigned to you.",
              "researcher": "You see pseudonymised patient, therapist and study labels, the measures, and only "
                            "the other columns a supervisor marked as shareable; no free text, no row numbers."}
             [user.role.value])
    st.caption("The sign-in lasts 12 hours, in every tab of this browser, until you sign out.")
    if st.button("Sign out", key="sign_out"):
        was_oidc = getattr(st.user, "is_logged_in", False)
        sign_out()
        if was_oidc:
            st.logout()
        st.rerun()
    st.stop()

if oidc_configured():
    st.button("Sign in with the clinic's account", key="oidc_login", on_click=st.login, type="primary")
    st.divider()

with st.form("sign_in_form"):
    username = st.text_input("User name", key="sign_in_username")
    password = st.text_input("Password", type="password", key="sign_in_password")
    submitted = st.form_submit_button("Sign in", type="primary")
if submitted:
    found = store.authenticate(username.strip(), password)
    if found is None:
        st.error("User name or password is not right, the account is deactivated, or it is locked for "
                 "15 minutes after 10 failed attempts.")
    else:
        sign_in(found)
        st.switch_page("pages/home.py")

demo_users = store.demo_users()  # only the demo database has them
if demo_users:
    with st.expander("Demo accounts (simulated data, not real patients)", expanded=True):
        st.write("This is the **demo database**. Each demo account's password is **demo**. They see the stored "
                 "*Demo clinic*: the supervisor all of it, each therapist only their own patients, the researcher "
                 "pseudonymised IDs. A clinic's own database, made with `python -m core store init`, has no demo "
                 "accounts.")
        st.table([{"user name": u.username, "role": u.role.value, "therapist": u.therapist_code or ""}
                  for u in demo_users])
st.caption("Without signing in, the dashboard shows the built-in demo clinic and keeps uploads only in this "
           "browser session.")
