"""Start the dashboard: ``streamlit run serve.py`` (scripts/start.sh does it).

The pages are app.py's; this launcher adds the dashboard's own HTTP layer (ui/server.py) to
Streamlit's server: the Host allow-list for every request and the sign-in session cookie routes.
"""
import streamlit as st

from ui.server import middleware, routes

app = st.App("app.py", routes=routes(), middleware=middleware())
