"""The interface language of a browser session: chosen per user, defaulting to the browser's.

Order of precedence, applied at the start of every script run (:func:`apply_language`):

1. ``st.session_state["language"]``: the choice made in the sidebar menu this session;
2. ``?lang=es`` in the URL (a link that opens the dashboard in a language);
3. the signed-in user's stored choice (set when she picks a language; see ``ui.auth``);
4. the browser's language (``st.context.locale``, e.g. ``es-AR``) when it is one offered;
5. English.

The language lives in :mod:`core.i18n`'s context variable, so that ``core`` code translates with
``_()`` without knowing about Streamlit; cached functions that return text take the language as
an argument, so that a Spanish and an English session never share a cached sentence.
"""
from __future__ import annotations

import streamlit as st

from core.i18n import DEFAULT_LANGUAGE, LANGUAGE_MENU_LABEL, LANGUAGES, _, normalise_language, set_language

KEY = "language"


def _browser_language() -> str | None:
    try:
        locale = st.context.locale
    except Exception:  # no browser (AppTest, bare mode)
        return None
    if not locale:
        return None
    code = normalise_language(locale)
    return code if str(locale).lower().startswith(code) else None


def _stored_language() -> str | None:
    """The signed-in user's stored choice, if the store keeps one (ui.auth.stored_language)."""
    try:
        from ui.auth import stored_language
    except ImportError:
        return None
    return stored_language()


def apply_language() -> str:
    """Set this run's interface language (see the module docstring) and return its code."""
    code = st.session_state.get(KEY)
    if code not in LANGUAGES:
        asked = st.query_params.get("lang")
        code = (normalise_language(asked) if asked else None) or _stored_language() or _browser_language() \
            or DEFAULT_LANGUAGE
        st.session_state[KEY] = code
    return set_language(code)


def language_picker() -> str:
    """The sidebar's language menu (each language named in itself); returns the code chosen."""
    codes = list(LANGUAGES)
    current = apply_language()
    choice = st.sidebar.selectbox(_(LANGUAGE_MENU_LABEL), codes, index=codes.index(current),
                                  format_func=LANGUAGES.get, key="language_menu")
    if choice != current:
        st.session_state[KEY] = choice
        set_language(choice)
        try:
            from ui.auth import remember_language
        except ImportError:
            pass
        else:
            remember_language(choice)
        st.rerun()
    return choice
