"""Alliance dashboard: the pages and their navigation, by role. Start it with ``streamlit run serve.py``
(serve.py adds the Host allow-list and the sign-in cookie routes to Streamlit's server)."""
from pathlib import Path

import streamlit as st

from core.i18n import _
from core.store import AccessDenied, Role
from ui import look, server
from ui.auth import ask_browser_proof, browser_proof_needed, cookie_refused_note, current_user, is_supervisor, \
    pending_role, restore_session, session_cookie_script, sign_out
from ui.budget import file_limit_mb
from ui.kiosk import kiosk_state, run_kiosk
from ui.language import apply_language, language_picker
from ui.state import APP_MARKER
from ui.warmup import start_warm_up

ICON = str(Path(__file__).resolve().parent / "ui" / "icon.png")  # bundled: no request to a font CDN

kiosk = kiosk_state()  # first: a sign-in session in patient mode (the waiting-room tablet) serves only
if kiosk is not None:  # its questionnaire, whatever the address, until a staff member signs in again
    run_kiosk(kiosk, ICON)  # stops the run
restore_session()  # then: a reload's sign-in (its stored language counts when the session has none yet)
apply_language()  # before any text: the choice made, the URL's ?lang=, the user's stored one, the browser's
st.set_page_config(page_title=_("Alliance dashboard"), page_icon=ICON, layout="wide")
look.apply(file_limit_mb(is_supervisor(current_user())))  # focus outlines, grey text, metrics that wrap, sidebar fold
st.session_state[APP_MARKER] = True  # pages check it: see ui.state.use_app_navigation
start_warm_up()
session_cookie_script()
if cookie_refused_note():
    st.warning(_("A sign-in this browser did not receive from the dashboard was refused (another web page on this "
                 "computer may have placed it). Sign in with your own account."))
if not server.installed and st.context.headers.get("Host"):
    st.warning(_("Started without serve.py: there is no Host check for every request and a sign-in does "
                 "not survive a reload. Start the dashboard with `streamlit run serve.py` (scripts/start.sh)."))

user = current_user()
language_picker()
# while the page has not shown its browser key yet, the pages of the role the cookie's session names (for the
# navigation only: nothing runs before the key is shown), so that a reload or a link opens the page it names
role = user.role if user is not None else pending_role()
therapist = role is Role.THERAPIST  # her start page is her caseload
if therapist and user is None and server.requested_path(st.context.url) == "overview":
    # the browser key is awaited and the address names the caseload: as its own page in this run (a default page
    # is served at "/", and Streamlit would show "Page not found" for "/overview"); the next run opens it as usual
    therapist_start = False
else:
    therapist_start = therapist
pages = [
    st.Page("pages/home.py", title=_("Clinic data"), icon=":material/home:", default=not therapist_start),
    st.Page("pages/overview.py", title=_("My caseload") if therapist else _("Clinic overview"), icon=":material/groups:",
            default=therapist_start),
    st.Page("pages/patient.py", title=_("Patient"), icon=":material/person:"),
]
if role in (Role.THERAPIST, Role.SUPERVISOR):
    pages.append(st.Page("pages/record.py", title=_("Record a session"), icon=":material/edit_note:", url_path="record"))
pages += [
    st.Page("pages/models.py", title=_("Model explorer"), icon=":material/query_stats:"),
    st.Page("pages/dynamics.py", title=_("Reciprocal dynamics"), icon=":material/sync_alt:"),
    st.Page("pages/power.py", title=_("Plan a study (power)"), icon=":material/science:"),
]
if role is None or role is Role.SUPERVISOR:  # signed out: this session's uploads; supervisors: the store
    pages.append(st.Page("pages/upload.py", title=_("Upload data"), icon=":material/upload_file:"))
pages.append(st.Page("pages/account.py", title=_("Sign in") if user is None else _("Account"),
                     icon=":material/login:" if user is None else ":material/account_circle:"))
if role is Role.SUPERVISOR or browser_proof_needed():
    pages.append(st.Page("pages/admin.py", title=_("Users and audit log"), icon=":material/admin_panel_settings:"))
if browser_proof_needed():  # a session cookie, and this tab has not shown the browser key it was issued with yet:
    st.navigation(pages, position="hidden")  # every page's URL known, so the answer's rerun opens the page asked for
    ask_browser_proof()  # stops this run

try:
    st.navigation(pages).run()
except AccessDenied:  # the account was deactivated (or its role changed) while this page ran
    sign_out()
    st.warning(_("Your account is no longer active, or its session ended; sign in again."))
