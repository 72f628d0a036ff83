"""Users and audit log (supervisors only)."""
import streamlit as st

from core.i18n import _, get_language
from core.reporting.exports import csv_bytes
from core.store import AccessDenied, Role
from core.store.users import role_label
from ui.auth import SESSION_KEY, clinic_store, current_user, download
from ui.language import localised
from ui.state import use_app_navigation
from ui.text import md

#: Where a submitted password waits for this run (never in a field the page shows again).
TYPED = "_typed_password"


def take_password(key: str) -> None:
    """A password form's submit callback (before the run): the typed password moves out of its field,
    which the page then shows empty, whether the account was changed or refused (issue 24: the *Add
    user* form kept the password typed for the previous user)."""
    st.session_state[TYPED] = st.session_state.get(key, "")
    st.session_state[key] = ""


use_app_navigation()
st.title(_("Users and audit log"))
user = current_user()
if user is None or user.role != Role.SUPERVISOR:
    st.warning(_("Only a signed-in supervisor can manage users and read the audit log."))
    st.stop()
store = clinic_store()

try:
    if "admin_flash" in st.session_state:  # the outcome of the last change, shown after its rerun
        st.success(st.session_state.pop("admin_flash"))
    st.subheader(_("Users"))
    users = store.users(user)
    st.dataframe([{"user name": u.username, "name": u.display_name, "role": role_label(u.role),
                   "therapist code": u.therapist_code or "", "active": u.is_active, "demo": u.is_demo}
                  for u in users],
                 hide_index=True, width="stretch",
                 column_config={"user name": _("user name"), "name": _("name"), "role": _("role"),
                                "therapist code": _("therapist code"), "active": _("active"), "demo": _("demo")})
    with st.form("new_user"):
        st.markdown(_("**Add a user**"))
        c = st.columns(4)
        username = c[0].text_input(_("User name (or e-mail for single sign-on)"), key="new_username")
        name = c[1].text_input(_("Display name"), key="new_display_name")
        roles = [r.value for r in Role]
        role = c[2].selectbox(_("Role"), roles, index=roles.index(Role.THERAPIST.value), key="new_role",
                              format_func=localised(role_label))
        code = c[3].text_input(_("Therapist code (as in the data's therapist column)"), key="new_therapist_code")
        st.text_input(_("Initial password"), type="password", key="new_password")
        if st.form_submit_button(_("Add user"), on_click=take_password, args=("new_password",)):
            password = st.session_state.pop(TYPED, "")
            try:
                created = store.create_user(user, username.strip(), password, Role(role),
                                            display_name=name.strip() or None,
                                            therapist_code=code.strip() or None)
            except ValueError as err:
                st.error(str(err))
            else:
                st.session_state["admin_flash"] = _("Added {username} ({role}).").format(
                    username=md(created.username), role=role_label(created.role))
                st.rerun()
    active = [u.username for u in users if u.username != user.username and u.is_active]
    inactive = [u.username for u in users if not u.is_active]
    c = st.columns([3, 1])
    if active:
        who = c[0].selectbox(_("Deactivate a user"), active, key="deactivate_who")
        if c[1].button(_("Deactivate"), key="deactivate_button"):
            try:
                store.deactivate(user, who)
            except ValueError as err:
                st.error(str(err))
            else:
                st.session_state["admin_flash"] = _("{username} can no longer sign in; their open sessions have "
                                                    "ended.").format(username=md(who))
                st.rerun()
    if inactive:
        who = c[0].selectbox(_("Reactivate a user"), inactive, key="reactivate_who")
        if c[1].button(_("Reactivate"), key="reactivate_button"):
            store.reactivate(user, who)
            st.session_state["admin_flash"] = _("{username} can sign in again.").format(username=md(who))
            st.rerun()
    with st.form("set_password"):
        st.markdown(_("**Set a new password**"))
        c = st.columns(2)
        who = c[0].selectbox(_("User"), [u.username for u in users], key="password_who")
        c[1].text_input(_("New password"), type="password", key="password_new")
        if st.form_submit_button(_("Set password"), on_click=take_password, args=("password_new",)):
            new_password = st.session_state.pop(TYPED, "")
            try:
                store.set_password(user, who, new_password, keep_session=st.session_state.get(SESSION_KEY))
            except ValueError as err:
                st.error(str(err))
            else:
                done = _("New password set for {username}; your other sign-ins have ended.") \
                    if who == user.username else _("New password set for {username}; their open sessions have ended.")
                st.success(done.format(username=md(who)))

    slowed = store.slowed_names(user)
    st.markdown(_("**Sign-in slowed down**"))
    if not slowed:
        st.caption(_("No user name has repeated failed sign-ins now. After 5 failures, each further try with a user "
                     "name waits a little longer (1, 2, 4 … at most 60 seconds), from every computer; a computer "
                     "with 20 failures is refused for 15 minutes."))
    else:
        st.caption(_("These user names had repeated failed sign-ins (see the audit log for where they came from): each "
                     "further try waits a little longer, at most 60 seconds. Unlocking ends the wait at once."))
        st.dataframe([{"user name": name, "failed": failed, "wait": round(wait)} for name, failed, wait in slowed],
                     hide_index=True, width="stretch",
                     column_config={"user name": _("user name"), "failed": _("failed attempts"),
                                    "wait": _("next try in (seconds)")})
        c = st.columns([3, 1])
        who = c[0].selectbox(_("Unlock a user name"), [name for name, _f, _w in slowed], key="unlock_who")
        if c[1].button(_("Unlock"), key="unlock_button"):
            store.unlock(user, who)
            st.session_state["admin_flash"] = _("{username} can sign in again without waiting.").format(
                username=md(who))
            st.rerun()

    st.subheader(_("Audit log"))
    st.caption(_("Sign-ins, uploads, patient-page views and exports, newest first. The entries are kept as "
                 "recorded (in English), so that the log reads the same for everyone."))
    audit = store.audit_log(user)
    st.dataframe(audit, hide_index=True, width="stretch", height=360,
                 column_config={"at": _("at (UTC)"), "username": _("user name"),
                                "role": _("role"), "action": _("action"), "detail": _("detail")})
    download(_("Audit log (CSV)"), csv_bytes(audit, get_language()), file_name="audit_log.csv", mime="text/csv",
             key="audit_csv", what="audit log (CSV)")
except AccessDenied as err:
    st.error(str(err))
