"""Data-derived text shown safely: the one escape helper for everything Streamlit renders as markdown.

Streamlit renders markdown (and, in labels, metrics, captions and alerts, the same subset) in every
text element. A data set, therapist or patient named ``![x](http://host/x.png)`` would make every
viewer's browser fetch that address; ``:red[...]``, ``**...**`` or ``[link](...)`` would change how
the page reads. :func:`md` puts a backslash before every character markdown gives a meaning to, so
the value shows exactly as typed. Use it on every data-derived string (data set names, therapist
names and codes, patient IDs, column names, study labels, file names) inside ``st.markdown``,
``st.caption``, ``st.metric``, ``st.info``/``warning``/``error``/``success``, widget labels and
``st.write`` of text. Text inside Plotly figures goes through :func:`plotly_text` (Plotly reads a
small set of HTML tags in titles, labels and hover text).

Limits: a bare ``http://…`` in a value is still shown as a link (GitHub-flavoured autolinks are found
in the text itself); it is only followed on a click, and nothing is fetched to show it.
"""
from __future__ import annotations

import html
import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=^\"'])")


def md(value) -> str:
    """``value`` as markdown that shows exactly the text, with nothing interpreted.

    >>> md("![x](http://evil.example/a.png)")
    '\\\\!\\\\[x\\\\]\\\\(http\\\\://evil\\\\.example/a\\\\.png\\\\)'
    >>> md("T01 Ana")
    'T01 Ana'
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(value)).replace("\n", " ").replace("\r", " ")


def plotly_text(value) -> str:
    """``value`` for a Plotly title, axis label, legend or hover text: HTML tags shown as text."""
    return html.escape(str(value), quote=False)
