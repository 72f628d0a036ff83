"""Alliance dashboard: entry point (``streamlit run app.py``). Defines the pages and navigation."""
import streamlit as st

st.set_page_config(page_title="Alliance dashboard", page_icon=":material/handshake:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Clinic data", icon=":material/home:", default=True),
    st.Page("pages/upload.py", title="Upload data", icon=":material/upload_file:"),
]
st.navigation(pages).run()
