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

import math

import numpy as np

from core.i18n import number

MINUS = "\u2212"


def is_whole(values) -> bool:
    """True when every finite value is a whole number (and there is at least one)."""
    arr = np.asarray(values, dtype=float).ravel()
    arr = arr[np.isfinite(arr)]
    return bool(len(arr)) and bool(np.all(np.abs(arr - np.round(arr)) < 1e-9))


def decimals_for(values, default: int = 2) -> int:
    """0 when every finite value is a whole number, else ``default``."""
    try:
        return 0 if is_whole(values) else default
    except (TypeError, ValueError):
        return default


def format_number(x, decimals: int = 2, signed: bool = False) -> str:
    """``x`` with ``decimals`` decimals, U+2212 for minus, ``+`` in front when ``signed``; "—" when missing.
    A value that rounds to zero is written without a sign ("0", "0.00"). Decimal separator: the
    current language's (:func:`core.i18n.number`)."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(value):
        return "—"
    text = f"{value:.{decimals}f}"
    if float(text) == 0:
        return number(0.0, f".{decimals}f")
    text = number(value, f".{decimals}f")
    if signed and value > 0:
        text = "+" + text
    return text.replace("-", MINUS)


def plotly_format(decimals: int) -> str:
    """The d3 format Plotly's hover templates take for ``decimals`` decimals, e.g. ``":.0f"``."""
    return f":.{decimals}f"
