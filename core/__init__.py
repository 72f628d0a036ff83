"""Core of the alliance dashboard: reading, validation, decomposition, models, meta-analysis.

Nothing in ``core`` imports streamlit; the pages are a thin layer over these functions.
"""
__version__ = "0.1.0"
