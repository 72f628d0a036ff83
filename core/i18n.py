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
import math
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


def in_this_language(work):
    """``work`` bound to the current language: called later, in another thread or context (a
    download's file that Streamlit builds on the click, outside the script run), it still speaks
    the language it was made in.

    >>> with language("es"):
    ...     later = in_this_language(lambda: _(LANGUAGE_MENU_LABEL))
    >>> later()
    'Idioma'
    """
    code = get_language()

    def bound(*args, **kwargs):
        with language(code):
            return work(*args, **kwargs)

    return bound


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def number(value, spec: str = "") -> str:
    """``format(value, spec)`` with the current language's decimal and thousands separators and the
    minus sign U+2212 (one minus sign in the whole interface, as Plotly's ticks and
    :func:`number_text` write it)."""
    text = format(value, spec)
    if not _is_number(value):
        return text
    if _language.get() in DECIMAL_COMMA:
        text = text.translate(_SWAP_SEPARATORS)
    return text.replace("-", "\u2212")


MINUS = "\u2212"


def is_whole(values) -> bool:
    """True when every finite value is a whole number (and there is at least one)."""
    import numpy as np

    arr = np.asarray(values, dtype=float).ravel()
    arr = arr[np.isfinite(arr)]
    return bool(len(arr)) and bool(np.all(np.abs(arr - np.round(arr)) < 1e-9))


def decimals_for(values, default: int = 2) -> int:
    """0 when every finite value is a whole number (an OQ-45.2 total, a count), else ``default``."""
    try:
        return 0 if is_whole(values) else default
    except (TypeError, ValueError):
        return default


def model_decimals(values) -> int:
    """Decimals for what a model computes from scores (an expected course, its bounds, a gap): one
    more than whole-number scores have (``111.5`` beside OQ-45.2 totals), else the scores' own two.
    Sentences, tables and hover texts all use it, so that they round alike."""
    return max(decimals_for(values), 1)


def number_text(value, decimals: int = 2, *, signed: bool = False, grouped: bool = False) -> str:
    """THE number formatter of the interface: ``value`` with ``decimals`` decimals, the language's
    decimal mark (and thousands mark when ``grouped``), the minus sign U+2212 (as Plotly writes its
    ticks), ``+`` in front when ``signed``; a value that rounds to zero has no sign; ``—`` when
    missing. Sentences, tables and downloads' on-screen twins use it, so that a number is rounded
    and written the same way everywhere (``core.reporting.formatting.format_number`` is this).

    >>> number_text(-36.0, 0), number_text(14.6, 1, signed=True), number_text(None), number_text(-0.001)
    ('−36', '+14.6', '—', '0.00')
    >>> with language("es"):
    ...     number_text(-1234.5, 1, grouped=True), number_text(0.445, 3)
    ('−1.234,5', '0,445')
    """
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(x):
        return "—"
    spec = f"{',' if grouped else ''}.{max(0, int(decimals))}f"
    if float(f"{x:.{max(0, int(decimals))}f}") == 0:
        x = 0.0
    text = number(x, spec)
    if signed and x > 0:
        text = "+" + text
    return text.replace("-", MINUS)


def number_texts(values, decimals: int = 2) -> list[str]:
    """:func:`number_text` of every value (no sign, no grouping), for a million values at once: the
    same strings, written in one pass instead of a call per value (the early-warning signal's
    sentences of a national data set: 2.7 million numbers, 14 s one by one).

    >>> number_texts([-36.0, 0.004, float("nan"), 1234.5], 1)
    ['−36.0', '0.0', '—', '1234.5']
    >>> with language("es"):
    ...     number_texts([-0.25, 2.5], 2)
    ['−0,25', '2,50']
    """
    import numpy as np

    d = max(0, int(decimals))
    zero = format(0.0, f".{d}f")
    arr = np.asarray(values, dtype=float).ravel()
    spec = f"%.{d}f"
    out = [spec % x for x in arr.tolist()]  # "%.1f" % x is format(x, ".1f"), at twice the speed
    bad = ~np.isfinite(arr)
    for i in np.flatnonzero(bad).tolist():
        out[i] = "—"
    for i in np.flatnonzero(np.signbit(arr) & ~bad).tolist():  # negative, −0.0 among them
        text = out[i]
        out[i] = zero if float(text) == 0 else MINUS + text[1:]
    if _language.get() in DECIMAL_COMMA:
        out = [text.replace(".", ",") for text in out]
    return out


def fill_template(template: str, columns: dict[str, list[str]], n: int):
    """``template.format(**row)`` for each of ``n`` rows, the fields' texts given per row in
    ``columns`` (numbers already written: :func:`number_texts`), as a pandas text array: joined
    column by column (130,000 summaries in 0.02 s instead of 0.2 s one by one); one by one where a
    field has a format spec or pyarrow is missing.

    >>> texts = {"observed": ["1", "2"], "expected": ["3", "4"]}
    >>> list(fill_template("score {observed}, expected {expected}", texts, 2))
    ['score 1, expected 3', 'score 2, expected 4']
    """
    import pandas as pd

    parsed = list(string.Formatter().parse(str(template)))
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        pa = None
    if pa is None or any(spec or conv for _literal, field, spec, conv in parsed if field is not None):
        rows = [str(template).format(**{k: v[i] for k, v in columns.items()}) for i in range(n)]
        return pd.array(rows, dtype="str")
    text = pa.large_string()
    arrays = {k: pa.array(v, type=text) for k, v in columns.items()}
    parts = []
    for literal, field, _spec, _conv in parsed:
        if literal:
            parts.append(pa.scalar(literal, type=text))
        if field is not None:
            parts.append(arrays[field])
    if not any(isinstance(p, pa.Array) for p in parts):  # no field: the same text n times
        parts.append(pa.array([""] * n, type=text))
    return pd.array(pc.binary_join_element_wise(*parts, pa.scalar("", type=text)), dtype="str")


def fewest_decimals(value, most: int = 4) -> int:
    """The fewest decimals (up to ``most``) that write ``value`` without losing a digit: ``63.5`` → 1,
    ``14.0`` → 0, ``63.5 / 45`` → 4."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return 0
    if not math.isfinite(x):
        return 0
    for d in range(most + 1):
        if abs(round(x, d) - x) < 1e-9 * max(1.0, abs(x)):
            return d
    return most


def parse_number(text) -> float | None:
    """A number as a person types it, in either convention: ``63,5`` or ``63.5``, ``−2`` (U+2212) or
    ``-2``, ``1.234,5`` or ``1,234.5`` (the last mark is the decimal one when both appear); ``None``
    when it is not a number (or empty).

    >>> parse_number("63,5"), parse_number("−0,05"), parse_number("1.234,5"), parse_number("1,234.5")
    (63.5, -0.05, 1234.5, 1234.5)
    >>> parse_number("abc"), parse_number(" ")
    (None, None)
    """
    t = str(text if text is not None else "").strip().replace(MINUS, "-").replace(" ", "").replace("\u00a0", "")
    if not t:
        return None
    if "," in t and "." in t:
        decimal = "," if t.rfind(",") > t.rfind(".") else "."
        t = t.replace("." if decimal == "," else ",", "").replace(",", ".")
    else:
        t = t.replace(",", ".")
    try:
        x = float(t)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


class _NumberFormatter(string.Formatter):
    """``str.format`` that writes numeric fields as :func:`number` does: the language's separators
    (Spanish: decimal comma and thousands point) and the minus sign U+2212."""

    def format_field(self, value, format_spec):
        return number(value, format_spec) if _is_number(value) else format(value, format_spec)


_FORMATTER = _NumberFormatter()


class LocalText(str):
    """A translated template whose :meth:`format` writes numbers as the language does (its
    separators, the minus sign U+2212; returned by :func:`_` and :func:`ngettext` in every language)."""

    __slots__ = ()

    def format(self, *args, **kwargs) -> str:
        if any(_is_number(v) for v in args) or any(_is_number(v) for v in kwargs.values()):
            return _FORMATTER.vformat(str(self), args, kwargs)
        return str.format(self, *args, **kwargs)  # no number to write: the fast built-in


def _(message: str) -> str:
    """``message`` in the current language (the English source text when untranslated), as a
    :class:`LocalText` whose ``format`` writes numbers the language's way."""
    code = _language.get()
    if code == DEFAULT_LANGUAGE:
        return LocalText(message)
    return LocalText(translations(code).gettext(message))


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n``, in the current language."""
    code = _language.get()
    if code == DEFAULT_LANGUAGE:
        return LocalText(singular if n == 1 else plural)
    return LocalText(translations(code).ngettext(singular, plural, n))


def N_(message: str) -> str:
    """Mark a constant for extraction without translating it now (translate where it is shown)."""
    return message


#: The label of the language menu (in the sidebar).
LANGUAGE_MENU_LABEL = N_("Language")
