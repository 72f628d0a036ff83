"""Translations: every user-facing string goes through :func:`_` (GNU gettext catalogues).

The catalogues are standard gettext ``.po`` files, ``core/locale/<lang>/LC_MESSAGES/messages.po``,
extracted from the source with Babel (``babel.cfg``; see README, "Translations") and compiled in
memory on first use, so only the text catalogues are kept in the repository.

The language is per browser session (or per command), held in a :class:`contextvars.ContextVar`:
the dashboard sets it at the start of every script run (:func:`set_language`), the command line
from ``--lang``. Code in ``core`` calls ``_("…")`` where it builds a sentence, a label or a
message; constants defined at import time are marked with :func:`N_` and translated where used.

>>> with language("es"):
...     _(LANGUAGE_MENU_LABEL)
'Idioma'
>>> _(LANGUAGE_MENU_LABEL)
'Language'
"""
from __future__ import annotations

import contextlib
import gettext
import io
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Iterator

LOCALE_DIR = Path(__file__).resolve().with_name("locale")
DOMAIN = "messages"
#: Interface languages: code → name shown in the language menu (in its own language).
LANGUAGES = {"en": "English", "es": "Español"}
DEFAULT_LANGUAGE = "en"

_language: ContextVar[str] = ContextVar("language", default=DEFAULT_LANGUAGE)


@lru_cache(maxsize=None)
def translations(code: str) -> gettext.NullTranslations:
    """The compiled catalogue of a language (``NullTranslations`` for English, the source language)."""
    path = LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"
    if code == DEFAULT_LANGUAGE or not path.exists():
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with path.open("rb") as handle:
        catalog = read_po(handle, locale=code)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def normalise_language(code: str | None) -> str:
    """``"es-AR"``, ``"es_ES.UTF-8"``, ``"ES"`` → ``"es"``; anything not offered → English."""
    base = str(code or "").replace("_", "-").split("-")[0].split(".")[0].strip().lower()
    return base if base in LANGUAGES else DEFAULT_LANGUAGE


def set_language(code: str | None) -> str:
    """Make ``code`` the language of this context (browser session run or command); returns it."""
    code = normalise_language(code)
    _language.set(code)
    return code


def get_language() -> str:
    return _language.get()


@contextlib.contextmanager
def language(code: str | None) -> Iterator[str]:
    """``with language("es"): …`` — translate in Spanish inside the block only."""
    token = _language.set(normalise_language(code))
    try:
        yield _language.get()
    finally:
        _language.reset(token)


def _(message: str) -> str:
    """``message`` in the current language (the English source text when untranslated)."""
    return translations(_language.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n``, in the current language."""
    return translations(_language.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark a constant for extraction without translating it now (translate where it is shown)."""
    return message


#: The label of the language menu (in the sidebar).
LANGUAGE_MENU_LABEL = N_("Language")
