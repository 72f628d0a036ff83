"""Find English left on a page rendered in Spanish (the check behind "no page shows an
untranslated string", issue 18).

:func:`visible_texts` collects every text an AppTest run puts on the screen: titles, markdown,
captions, alerts, widget labels, help texts, placeholders and options, metric labels and values,
tab and expander labels, table headers, and in Plotly figures the titles, axis titles, legend
names, annotations, marker texts and hover templates. :func:`english_in` returns those that hold
words only English has (a stop list: "the", "and", "patients", …), outside code: text in backticks,
``st.code`` blocks and snake_case or formula identifiers (``alliance_within``, ``(1 | patient)``)
are the names of variables and stay as they are.

    at = open_page("overview", language="es")
    assert english_in(visible_texts(at)) == []
"""
from __future__ import annotations

import json
import re

from google.protobuf.json_format import MessageToDict

#: Words that occur in English interface text and are not Spanish words.
ENGLISH_ONLY = frozenset("""
the and of with for from this that these those is are was were not by to into than then when which what how
your you their there here has have had been being will would should could can't doesn't isn't don't
patient patients session sessions therapist therapists score scores change changes data file files model
models show shows open download choose select upload sign users page pages each every
above below between within after before about other only more less most least same
effect effects estimate estimates study studies outcome outcomes measure measures expected course
reliable improvement deterioration rupture ruptures repaired track risk signal caseload
table tables figure report power sample size simulations patients' mean range value values none yes
""".split())

#: Proto fields that hold no text for people (identifiers, formats, colours, raw data).
_SKIP_KEYS = {"id", "formId", "key", "type", "format", "icon", "color", "data", "arrowData", "styler",
              "width", "height", "useContainerWidth", "default", "disabled", "labelVisibility", "spec",
              "theme", "args", "scriptHash", "pageScriptHash", "url", "elementType", "selectionMode",
              "columns", "columnOrder", "editingMode", "language", "showLineNumbers", "codeText",
              "direction"}  # direction: a metric delta's arrow (an enum, "NONE")
_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_CODE = re.compile(r"`[^`]*`|\b\w*_\w*\b|\([^()|]*\|[^()]*\)|%\{[^}]*\}|<[^>]+>|https?://\S+")


def _strings(value, key: str = "") -> list[str]:
    if key in _SKIP_KEYS:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, k)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v, key)]
    return []


def _figure_texts(spec: str) -> list[str]:
    """Titles, axis titles, legend names, annotations, marker texts and hover templates of a
    Plotly figure's JSON."""
    fig = json.loads(spec)
    out: list[str] = []
    layout = fig.get("layout", {})

    def title(node):
        t = node.get("title") if isinstance(node, dict) else None
        if isinstance(t, dict):
            t = t.get("text")
        return [t] if isinstance(t, str) else []

    out += title(layout)
    for name, axis in layout.items():
        if name.startswith(("xaxis", "yaxis", "legend", "coloraxis")) and isinstance(axis, dict):
            out += title(axis)
            out += [str(t) for t in axis.get("ticktext", []) or []]
    out += [a.get("text", "") for a in layout.get("annotations", []) or [] if isinstance(a, dict)]
    for trace in fig.get("data", []):
        for field in ("name", "hovertemplate", "legendgrouptitle"):
            v = trace.get(field)
            if isinstance(v, dict):
                v = v.get("text")
            if isinstance(v, str):
                out.append(v)
        for field in ("text", "customdata"):
            v = trace.get(field)
            if isinstance(v, str):
                out.append(v)
            elif isinstance(v, list):
                out += [x for x in v if isinstance(x, str)]
    return out


def _walk(node):
    children = getattr(node, "children", None)
    if children:
        for child in children.values():
            yield from _walk(child)
    else:
        yield node


def visible_texts(at) -> list[str]:
    """Every text of the rendered page (main area and sidebar), one string per field."""
    texts: list[str] = []
    for root in (at.main, at.sidebar):
        for el in _walk(root):
            proto = getattr(el, "proto", None)
            if proto is None:
                continue
            kind = type(el).__name__
            if kind == "Code":  # code blocks: formulas and commands, names of variables
                continue
            texts += _strings(MessageToDict(proto))
            spec = getattr(proto, "spec", None)
            if isinstance(spec, str) and spec.startswith("{"):
                texts += _figure_texts(spec)
            if kind == "Dataframe":
                # a column's header is its st.column_config label when it has one, else its name
                columns = getattr(proto, "columns", "")
                config = json.loads(columns) if isinstance(columns, str) and columns.startswith("{") else {}
                labelled = {name for name, c in config.items() if isinstance(c, dict) and c.get("label")}
                try:
                    texts += [str(c) for c in el.value.columns if str(c) not in labelled]
                except Exception:
                    pass
                texts += [c.get("label", "") for c in config.values() if isinstance(c, dict)]
    return [t for t in texts if t and t.strip()]


def english_words(text: str) -> list[str]:
    """The English-only words of ``text`` outside code and identifiers."""
    return [w for w in _WORD.findall(_CODE.sub(" ", text)) if w.lower() in ENGLISH_ONLY]


def english_in(texts, allow=()) -> list[str]:
    """The texts that still hold English-only words, except those matching a regex in ``allow``."""
    patterns = [re.compile(a) for a in allow]
    return sorted({t for t in texts if english_words(t) and not any(p.search(t) for p in patterns)})
