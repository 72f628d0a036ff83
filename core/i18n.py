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

Numbers in a translated sentence follow the language: a translated template's ``.format()``
writes numeric fields with the language's separators (Spanish: decimal comma, thousands point),
and :func:`number` does the same for a number formatted on its own.

>>> with language("es"):
...     _("{n:,} rows").format(n=1048576), number(0.8, ".2f")
('1.048.576 rows', '0,80')
>>> number(0.8, ".2f")
'0.80'
"""
from __future__ import annotations

import contextlib
import gettext
import io
import numbers
import string
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Iterator

LOCALE_DIR = Path(__file__).resolve().with_name("locale")
DOMAIN = "messages"
#: Interface languages: code → name shown in the language menu (in its own language).
LANGUAGES = {"en": "English", "es": "Español"}
DEFAULT_LANGUAGE = "en"
#: Languages that write 0,5 and 1.000 (decimal comma, thousands point).
DECIMAL_COMMA = frozenset({"es"})
_SWAP_SEPARATORS = str.maketrans(",.", ".,")

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


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def number(value, spec: str = "") -> str:
    """``format(value, spec)`` with the current language's decimal and thousands separators."""
    text = format(value, spec)
    if _is_number(value) and _language.get() in DECIMAL_COMMA:
        return text.translate(_SWAP_SEPARATORS)
    return text


class _NumberFormatter(string.Formatter):
    """``str.format`` that writes numeric fields with decimal comma and thousands point."""

    def format_field(self, value, format_spec):
        text = format(value, format_spec)
        return text.translate(_SWAP_SEPARATORS) if _is_number(value) else text


_FORMATTER = _NumberFormatter()


class LocalText(str):
    """A translated template whose :meth:`format` writes numbers as the language does
    (returned by :func:`_` only in a language with a decimal comma; English is plain ``str``)."""

    __slots__ = ()

    def format(self, *args, **kwargs) -> str:
        if any(_is_number(v) for v in args) or any(_is_number(v) for v in kwargs.values()):
            return _FORMATTER.vformat(str(self), args, kwargs)
        return str.format(self, *args, **kwargs)  # no number to write: the fast built-in


def _local(text: str, code: str) -> str:
    return LocalText(text) if code in DECIMAL_COMMA else text


def _(message: str) -> str:
    """``message`` in the current language (the English source text when untranslated)."""
    code = _language.get()
    if code == DEFAULT_LANGUAGE:
        return message
    return _local(translations(code).gettext(message), code)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n``, in the current language."""
    code = _language.get()
    if code == DEFAULT_LANGUAGE:
        return singular if n == 1 else plural
    return _local(translations(code).ngettext(singular, plural, n), code)


def N_(message: str) -> str:
    """Mark a constant for extraction without translating it now (translate where it is shown)."""
    return message


#: The label of the language menu (in the sidebar).
LANGUAGE_MENU_LABEL = N_("Language")
