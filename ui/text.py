"""Data-derived text shown safely: the one escape helper for everything Streamlit renders as markdown.

Streamlit renders markdown (and, in labels, metrics, captions and alerts, the same subset) in every
text element. A data set, therapist or patient named ``![x](http://host/x.png)`` would make every
viewer's browser fetch that address; ``:red[...]``, ``**...**`` or ``[link](...)`` would change how
the page reads. :func:`md` puts a backslash before every character markdown gives a meaning to, so
the value shows exactly as typed. Use it on every data-derived string (data set names, therapist
names and codes, patient IDs, column names, study labels, file names) inside ``st.markdown``,
``st.caption``, ``st.metric``, ``st.info``/``warning``/``error``/``success``, widget labels and
``st.write`` of text. Labels inside Plotly figures are escaped where the figures are built
(:func:`core.reporting.figures._text`: Plotly reads a few HTML tags in labels and hover text).

Limits: a bare ``http://…`` in a value is still shown as a link (GitHub-flavoured autolinks are found
in the text itself); it is only followed on a click, and nothing is fetched to show it.
"""
from __future__ import annotations

import re

#: Characters that start markdown anywhere in a line: escapes, code, emphasis, links and images
#: (``[`` also disarms ``![..](..)`` and Streamlit's ``:color[..]``), math, strikethrough, autolinks.
_INLINE = re.compile(r"([\\`*_\[\]$~<>])")
#: At the start of a line, these make a heading, list or quote.
_LEADING = re.compile(r"^(\s*)([#+\-]|\d+(?=[.)]))")


def md(value) -> str:
    r"""``value`` as markdown that shows exactly the text, with nothing interpreted (one line).

    Only the characters markdown (and Streamlit's extensions) would act on are escaped, so plain
    text such as ``T01 Ana`` or ``0.36 points (95% CI -0.5 to -0.2)`` is left as it is.

    >>> print(md("![x](http://evil.example/a.png)"))
    !\[x\](http://evil.example/a.png)
    >>> print(md("T01 Ana"), "|", md("**bold** :red[x] $y$"))
    T01 Ana | \*\*bold\*\* :red\[x\] \$y\$
    >>> print(md("# 1. not a heading"), "|", md("1. not a list"))
    \# 1. not a heading | 1\. not a list
    """
    text = _INLINE.sub(r"\\\1", str(value)).replace("\r", " ").replace("\n", " ")
    match = _LEADING.match(text)
    if match:
        lead, mark = match.group(1), match.group(2)
        text = (lead + "\\" + text[len(lead):]) if not mark[0].isdigit() else \
            (lead + mark + "\\" + text[len(lead) + len(mark):])
    return text


def code(value) -> str:
    r"""``value`` as an inline code span that no backtick inside it can end early (CommonMark:
    the fence is one backtick longer than the longest run of backticks in the value).

    >>> print(code("symptoms ~ age"), "|", code("a `b` c"))
    `symptoms ~ age` | `` a `b` c ``
    """
    text = str(value).replace("\r", " ").replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"
