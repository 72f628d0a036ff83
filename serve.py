"""Start the dashboard: ``streamlit run serve.py`` (scripts/start.sh does it).

The pages are app.py's; this launcher adds the dashboard's own HTTP layer (ui/server.py) to
Streamlit's server: the Host allow-list for every request and the sign-in session cookie routes.
"""
import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from ui.server import middleware, routes

# The pages are app.py's st.navigation, never Streamlit's legacy pages/ folder mode: without this,
# the first browser session after a start lists the folder's file names (app, account, admin …) in
# the sidebar for about a second, until app.py's st.navigation replaces them with the page titles.
PagesManager.uses_pages_directory = False

app = st.App("app.py", routes=routes(), middleware=middleware())
