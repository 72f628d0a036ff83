"""Numbers as people read them: whole scores without decimals, a true minus sign.

A measure whose values are all whole numbers (an OQ-45.2 total, a session number, a count) is
shown without decimals everywhere: in tables, hover labels and sentences ("−36", not "−36.00");
other values keep ``default`` decimals. Negative numbers take the minus sign U+2212, as Plotly
writes its tick labels; the decimal separator is the current language's (Spanish: a comma).

>>> decimals_for([47, 61, 76.0])
0
>>> decimals_for([4.25, 5.0])
2
>>> format_number(-36.0, 0), format_number(14.6, 1, signed=True), format_number(float("nan"))
('−36', '+14.6', '—')
>>> from core.i18n import language
>>> with language("es"):
...     format_number(-0.235, 2)
'−0,23'
"""
from __future__ import annotations

from core.i18n import MINUS, decimals_for, is_whole, number_text  # noqa: F401 - one home: core.i18n


def format_number(x, decimals: int = 2, signed: bool = False) -> str:
    """``x`` with ``decimals`` decimals, U+2212 for minus, ``+`` in front when ``signed``; "—" when missing.
    A value that rounds to zero is written without a sign ("0", "0.00"). Decimal separator: the
    current language's. The interface's one formatter, :func:`core.i18n.number_text`."""
    return number_text(x, decimals, signed=signed)


def shown_decimals(frame, default: int = 2, decimals: dict | None = None) -> dict:
    """Per numeric column of ``frame`` the decimals it is shown (and downloaded) with: ``decimals``
    where given, else 0 for whole numbers and ``default`` otherwise (booleans and text: none)."""
    import pandas as pd

    decimals = decimals or {}
    return {c: decimals.get(c, decimals_for(frame[c], default)) for c in frame.columns
            if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])}


def rounded(frame, default: int = 2, decimals: dict | None = None):
    """``frame`` with its numeric columns rounded as they are shown (:func:`shown_decimals`): a
    download holds ``89.6``, not ``89.60212929246751``. Whole-number columns become integers."""
    out = frame.copy()
    for col, d in shown_decimals(frame, default, decimals).items():
        out[col] = out[col].round(d)
        if d == 0 and out[col].notna().all():
            out[col] = out[col].astype("int64")
    return out


def plotly_format(decimals: int) -> str:
    """The d3 format Plotly's hover templates take for ``decimals`` decimals, e.g. ``":.0f"``."""
    return f":.{decimals}f"
