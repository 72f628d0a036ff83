"""The interface language of a browser session: chosen per user, defaulting to the browser's.

Order of precedence, applied at the start of every script run (:func:`apply_language`):

1. ``st.session_state["language"]``: the choice made in the sidebar menu this session;
2. ``?lang=es`` in the URL (a link that opens the dashboard in a language);
3. the signed-in user's stored choice (set when she picks a language; see ``ui.auth``; a new
   sign-in applies it too, unless this session's language was picked in the menu — then that one
   is stored with the account — or asked for by ``?lang=``);
4. the browser's language (``st.context.locale``, e.g. ``es-AR``) when it is one offered;
5. English.

The language lives in :mod:`core.i18n`'s context variable, so that ``core`` code translates with
``_()`` without knowing about Streamlit; cached functions that return text take the language as
an argument, so that a Spanish and an English session never share a cached sentence.
"""
from __future__ import annotations

import streamlit as st

from core.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGE_MENU_LABEL,
    LANGUAGES,
    _,
    in_this_language,
    normalise_language,
    set_language,
)

KEY = "language"  # ui.auth.PREFERENCE_KEYS keeps it (and SOURCE_KEY) at sign-out
#: Where this session's language came from: "menu", "url" (?lang=), "account" (stored), "browser",
#: "default" (ui.auth applies a stored language at sign-in unless it was "menu" or "url").
SOURCE_KEY = "language_source"
MENU_KEY = "language_menu"


def localised(format_func):
    """``format_func`` bound to this run's language: a widget's ``format_func`` that translates
    (e.g. ``dataset_title``) may be called outside the script run (Streamlit's AppTest formats the
    chosen value in the test's thread), where the language would be the default one."""
    return in_this_language(format_func)


def multiselect_placeholder(options) -> str:
    """A multiselect's placeholder in the page's language (Streamlit's own is English)."""
    return _("Choose one or more") if len(options) else _("No options to select")


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
    """The signed-in user's stored choice (ui.auth.stored_language; imported here, at use)."""
    from ui.auth import stored_language

    return stored_language()


def apply_language() -> str:
    """Set this run's interface language (see the module docstring) and return its code."""
    code = st.session_state.get(KEY)
    if code not in LANGUAGES:
        asked = st.query_params.get("lang")
        for source, found in (("url", lambda: normalise_language(asked) if asked else None),
                              ("account", _stored_language), ("browser", _browser_language),
                              ("default", lambda: DEFAULT_LANGUAGE)):
            code = found()
            if code:
                break
        from ui.auth import browser_proof_needed

        if browser_proof_needed():  # a reload's sign-in not yet restored: its stored language counts once it is
            return set_language(code)
        st.session_state[KEY] = code
        st.session_state[SOURCE_KEY] = source
    return set_language(code)


def _picked() -> None:
    """The menu's choice (its on-change callback, before the rerun it causes): this session's
    language from now on, stored with the signed-in user's account."""
    choice = st.session_state.get(MENU_KEY)
    if choice not in LANGUAGES:
        return
    st.session_state[KEY] = choice
    st.session_state[SOURCE_KEY] = "menu"
    set_language(choice)
    from ui.auth import remember_language

    remember_language(choice)


def language_picker() -> str:
    """The sidebar's language menu (each language named in itself); returns the code in use.

    The menu shows the session's language on every run (set before the widget is drawn), so a
    language applied elsewhere (a sign-in's stored choice) never fights the menu's old value."""
    codes = list(LANGUAGES)
    current = apply_language()
    st.session_state[MENU_KEY] = current
    st.sidebar.selectbox(_(LANGUAGE_MENU_LABEL), codes, format_func=LANGUAGES.get, key=MENU_KEY,
                         on_change=_picked)
    return current


def after_sign_in(user) -> None:
    """A new sign-in (call it right after :func:`ui.auth.sign_in`): a language picked in the menu this
    session (before signing in) is kept and stored with the account; a language asked for by the
    link (``?lang=``) is kept for this session; otherwise the account's stored language, if any,
    replaces the browser's."""
    from ui.auth import clinic_store

    source = st.session_state.get(SOURCE_KEY)
    current = st.session_state.get(KEY)
    store = clinic_store()
    if source == "menu" and current in LANGUAGES:
        if store.language_of(user) != current:
            store.set_language(user, current)
        return
    if source == "url":
        return
    stored = store.language_of(user)
    if stored:
        st.session_state[KEY] = stored
        st.session_state[SOURCE_KEY] = "account"
        set_language(stored)
