"""Core of the alliance dashboard, by stage of the data flow.

``intake`` (file → validated table) → ``stats`` (decomposition, models, meta-analysis) →
``clinical`` (clinical indices) → ``reporting`` (tables, figures, JSON/HTML reports, exports);
``store`` is the clinic database and ``cli`` the command line. Nothing in ``core`` imports
streamlit; the pages are a thin layer over these functions.
"""
__version__ = "0.1.0"
