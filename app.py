"""Alliance dashboard: entry point (``streamlit run app.py``). Defines the pages and navigation."""
import streamlit as st

from ui.state import APP_MARKER
from ui.warmup import start_warm_up

st.set_page_config(page_title="Alliance dashboard", page_icon=":material/handshake:", layout="wide")
st.session_state[APP_MARKER] = True  # pages check it: see ui.state.use_app_navigation
start_warm_up()

pages = [
    st.Page("pages/home.py", title="Clinic data", icon=":material/home:", default=True),
    st.Page("pages/overview.py", title="Clinic overview", icon=":material/groups:"),
    st.Page("pages/patient.py", title="Patient", icon=":material/person:"),
    st.Page("pages/models.py", title="Model explorer", icon=":material/query_stats:"),
    st.Page("pages/dynamics.py", title="Reciprocal dynamics", icon=":material/sync_alt:"),
    st.Page("pages/power.py", title="Plan a study (power)", icon=":material/science:"),
    st.Page("pages/upload.py", title="Upload data", icon=":material/upload_file:"),
    st.Page("pages/account.py", title="Sign in", icon=":material/login:"),
    st.Page("pages/admin.py", title="Users and audit log", icon=":material/admin_panel_settings:"),
]
st.navigation(pages).run()
