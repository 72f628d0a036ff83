"""How the dashboard reads on a tablet and from the keyboard: one stylesheet, the sidebar's page
links, the sidebar folded on narrow screens, and number formats for tables.

Everything here is served by the dashboard itself (no font, script or style from another host).

* Focus: every link, button, tab, expander and form field shows a 3 px dark-blue outline when it
  has the keyboard focus (WCAG 2.4.7 / 2.4.13; #1565c0 is 5.8:1 on white and 5.2:1 on the sidebar).
* Text: the theme draws captions at 60% opacity (2.9:1 on the sidebar, about 3.7:1 on white); they
  and the metric labels are drawn opaque in #4f4f4f (8.2:1 on white). Metric labels and values wrap
  instead of ending in "…". (``tests/test_browser_glance.py`` measures every text on every page.)
* Below 1000 px: rows of metrics wrap two to a row, and the sidebar starts folded (Streamlit folds
  it only at 768 px and below; at 800 px it took 38% of the width); a choice in it folds it again.
* The keyboard (:data:`KEYBOARD_SCRIPT`): a folded sidebar out of the tab order, Enter opens the focused
  caseload row, Streamlit's skip link and file sizes in the interface language.
* Numbers: :func:`number_columns`, :func:`local_numbers` (Spanish tables as text with a decimal comma),
  :func:`decimal_input` (a decimal typed the language's way), :func:`text_width` and
  :func:`wrapped_row_height` (table columns that show their text whole).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.i18n import DECIMAL_COMMA, DEFAULT_LANGUAGE, N_, _, fewest_decimals, get_language, number_text, parse_number
from core.reporting.formatting import decimals_for, shown_decimals

FOCUS = "#1565c0"
MUTED_TEXT = "#4f4f4f"
#: Below this width (CSS pixels) the sidebar starts folded and metrics wrap.
NARROW = 1000

CSS = f"""
<style>
/* keyboard focus: visible on every control (Streamlit's own ring is faint or absent on links) */
a:focus-visible, button:focus-visible, summary:focus-visible, [role="tab"]:focus-visible,
[role="button"]:focus-visible, [role="checkbox"]:focus-visible, [role="radio"]:focus-visible,
[role="slider"]:focus-visible, [data-testid="stSidebarNavLink"]:focus-visible,
[data-testid="stPageLink-NavLink"]:focus-visible {{
  outline: 3px solid {FOCUS} !important; outline-offset: 2px !important; border-radius: 4px;
}}
input:focus-visible, textarea:focus-visible, [data-baseweb="select"] input:focus {{
  outline: 3px solid {FOCUS} !important; outline-offset: 1px !important;
}}
[data-baseweb="select"]:focus-within, [data-baseweb="input"]:focus-within,
[data-testid="stNumberInputContainer"]:focus-within {{
  outline: 3px solid {FOCUS}; outline-offset: 1px; border-radius: 6px;
}}
[data-testid="stDataFrame"]:focus-within {{ outline: 3px solid {FOCUS}; outline-offset: 2px; border-radius: 6px; }}
/* readable grey text */
[data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] p,
[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] p, [data-testid="stTooltipIcon"] {{
  color: {MUTED_TEXT};
}}
[data-testid="stCaptionContainer"] {{ opacity: 1 !important; }}  /* the theme draws captions at 60% opacity */
[data-testid="stMetricLabel"] p {{ color: {MUTED_TEXT} !important; }}
/* metrics: labels and values wrap rather than end in "…" */
[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] * {{
  white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
}}
[data-testid="stMetricValue"], [data-testid="stMetricValue"] * {{
  white-space: normal !important; overflow-wrap: anywhere; text-overflow: clip !important; overflow: visible !important;
}}
@media (max-width: {NARROW - 1}px) {{
  [data-testid="stHorizontalBlock"]:has([data-testid="stMetric"]) {{ flex-wrap: wrap; row-gap: 0.5rem; }}
  [data-testid="stHorizontalBlock"]:has([data-testid="stMetric"]) > [data-testid="stColumn"] {{
    flex: 1 1 calc(50% - 1rem) !important; min-width: calc(50% - 1rem) !important;
  }}
  [data-testid="stMetricValue"] {{ font-size: 1.9rem; }}
}}
</style>
"""

#: Fold the sidebar once per page load on a narrow window (a tablet), and forget that fold, so
#: that the same browser on a wide screen opens with the sidebar unfolded. Runs in the page
#: itself (``st.html``; no request).
FOLD_SCRIPT = f"""
<script>
(function () {{
  if (window.__allianceSidebarFolded || window.innerWidth >= {NARROW}) {{ return; }}
  window.__allianceSidebarFolded = true;
  var kept = Object.keys(window.localStorage).filter(function (k) {{ return k.indexOf("stSidebarCollapsed") === 0; }});
  var tries = 40;
  (function fold() {{
    var bar = document.querySelector('[data-testid="stSidebar"]');
    var button = document.querySelector('[data-testid="stSidebarCollapseButton"] button');
    if (bar && button && bar.getAttribute("data-collapsed") === "false") {{
      button.click();
      window.setTimeout(function () {{
        Object.keys(window.localStorage).forEach(function (k) {{
          if (k.indexOf("stSidebarCollapsed") === 0 && kept.indexOf(k) < 0) {{ window.localStorage.removeItem(k); }}
        }});
      }}, 50);
      return;
    }}
    if (bar && bar.getAttribute("data-collapsed") === "true") {{ return; }}
    if (tries-- > 0) {{ window.setTimeout(fold, 100); }}
  }})();
}})();
</script>
"""


#: The keyboard and a narrow window (issue 24), installed once per page load in the page itself:
#:
#: * a folded sidebar is ``inert``: out of the tab order (its links, menus and sliders kept 12 Tab
#:   presses at x = −292 px, off the screen) and out of the accessibility tree; unfolded, it is back;
#: * below ``NARROW`` px a choice in the sidebar (a page link, an option of one of its menus, by mouse
#:   or Enter) folds it again, so that the page gets its width back (and the focus moves to the page);
#: * Enter or Space on a focused row of the caseload (``st-key-caseload``) opens that patient, as
#:   Shift+Space (Streamlit's row selection) does;
#: * in a language with a decimal comma, the size of an uploaded file ("104.6KB", Streamlit's
#:   English) is written the language's way ("104,6 KB").
#:
#: Streamlit itself provides the skip link ("Skip to main content", the first Tab stop); the script
#: writes it in the interface language (:data:`SKIP_LINK`). ``{decimal}`` is the language's decimal
#: mark, updated on every run.
KEYBOARD_SCRIPT = r"""
<script>
(function () {
  var A = window.__allianceKeys = window.__allianceKeys || {};
  A.decimal = "{decimal}";
  A.skip = {skip};
  var named = function () {
    var link = document.querySelector('[data-testid="stSkipToContent"]');
    if (link && link.textContent !== A.skip) { link.textContent = A.skip; }
  };
  named();
  if (A.installed) { return; }
  A.installed = true;
  var doc = document, NARROW = {narrow};
  var sidebar = function () { return doc.querySelector('[data-testid="stSidebar"]'); };
  var folded = function (bar) { return !!bar && bar.getAttribute("data-collapsed") === "true"; };
  var sync = function () {
    var bar = sidebar();
    if (!bar) { return; }
    if (folded(bar)) { if (!bar.hasAttribute("inert")) { bar.setAttribute("inert", ""); } }
    else if (bar.hasAttribute("inert")) { bar.removeAttribute("inert"); }
  };
  new MutationObserver(sync).observe(doc.body, {subtree: true, attributes: true, attributeFilter: ["data-collapsed"]});
  sync();
  window.setTimeout(sync, 500);
  var fold = function () {
    var bar = sidebar(), button = doc.querySelector('[data-testid="stSidebarCollapseButton"] button');
    if (window.innerWidth >= NARROW || !bar || folded(bar) || !button) { return; }
    var kept = Object.keys(window.localStorage).filter(function (k) { return k.indexOf("stSidebarCollapsed") === 0; });
    button.click();
    window.setTimeout(function () {
      Object.keys(window.localStorage).forEach(function (k) {
        if (k.indexOf("stSidebarCollapsed") === 0 && kept.indexOf(k) < 0) { window.localStorage.removeItem(k); }
      });
      var main = doc.querySelector('[data-testid="stMain"]');
      if (main && (!doc.activeElement || doc.activeElement === doc.body || sidebar().contains(doc.activeElement))) {
        if (!main.hasAttribute("tabindex")) { main.setAttribute("tabindex", "-1"); }
        main.focus({preventScroll: true});
      }
    }, 50);
  };
  var menuInSidebar = false;
  doc.addEventListener("pointerdown", function (e) {
    var t = e.target, bar = sidebar();
    if (!t || !t.closest) { return; }
    if (bar && bar.contains(t)) {
      menuInSidebar = !!t.closest('[data-testid="stSelectbox"], [data-baseweb="select"]');
      if (t.closest('[data-testid="stSidebarNavLink"]')) { window.setTimeout(fold, 150); }
    } else if (t.closest('[role="option"]') && menuInSidebar) {
      menuInSidebar = false;
      window.setTimeout(fold, 300);
    } else {
      menuInSidebar = false;
    }
  }, true);
  doc.addEventListener("keydown", function (e) {
    var t = e.target, bar = sidebar();
    if (!t || !t.closest || e.__alliance) { return; }
    if (e.key === "Enter" && bar && bar.contains(t) && (t.closest('[data-testid="stSidebarNavLink"]') ||
        (t.closest('[data-testid="stSelectbox"], [data-baseweb="select"]') && t.getAttribute("aria-expanded") === "true"))) {
      window.setTimeout(fold, 300);
      return;
    }
    if ((e.key === "Enter" || e.key === " ") && !e.shiftKey && !e.ctrlKey && !e.altKey && !e.metaKey &&
        t.closest('.st-key-caseload [data-testid="stDataFrame"]') && !t.closest("input, textarea")) {
      e.preventDefault();
      e.stopPropagation();
      var open = new KeyboardEvent("keydown", {key: " ", code: "Space", keyCode: 32, which: 32, shiftKey: true,
                                               bubbles: true, cancelable: true});
      open.__alliance = true;
      t.dispatchEvent(open);
    }
  }, true);
  var sizes = function () {
    if (A.decimal === ".") { return; }
    doc.querySelectorAll('[data-testid="stFileChipName"] + div, [data-testid="stFileUploaderFileData"] small')
      .forEach(function (el) {
        var m = /^([0-9]+)[.]([0-9]+)\s*([KMG]?B)$/.exec(el.textContent.trim());
        if (m) { el.textContent = m[1] + A.decimal + m[2] + " " + m[3]; }
      });
  };
  var pending = false;
  new MutationObserver(function () {
    if (pending) { return; }
    pending = true;
    window.requestAnimationFrame(function () { pending = false; sizes(); named(); });
  }).observe(doc.body, {subtree: true, childList: true});
})();
</script>
"""


#: Streamlit's skip link says this in English; the keyboard script writes it in the interface language.
SKIP_LINK = N_("Skip to main content")


def keyboard_script() -> str:
    """:data:`KEYBOARD_SCRIPT` for this run's language."""
    import json

    return (KEYBOARD_SCRIPT.replace("{decimal}", "," if get_language() in DECIMAL_COMMA else ".")
            .replace("{narrow}", str(NARROW)).replace("{skip}", json.dumps(_(SKIP_LINK))))


#: Streamlit draws the file uploader's button ("Upload") and its size line ("200MB per file • CSV, …")
#: in English and offers no parameter for them (streamlit/streamlit#13500, open): in another language
#: the stylesheet hides those two texts and writes these in their place.
UPLOAD_BUTTON = N_("Upload")
UPLOAD_LIMIT = N_("Up to {mb} MB per file")
UPLOAD_MB = 200  # .streamlit/config.toml server.maxUploadSize (a supervisor's; ui.budget.file_limit_mb)


def _css_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uploader_css(mb: int = UPLOAD_MB) -> str:
    """The file uploader's own texts in the interface language (empty in English); ``mb``: the largest
    file this session may upload."""
    if get_language() == DEFAULT_LANGUAGE:
        return ""
    button = _css_text(_(UPLOAD_BUTTON))
    limit = _css_text(_(UPLOAD_LIMIT).format(mb=mb))
    return f"""<style>
[data-testid="stFileUploaderDropzone"] button [data-testid="stMarkdownContainer"] p {{ font-size: 0 !important; }}
[data-testid="stFileUploaderDropzone"] button [data-testid="stMarkdownContainer"] p::after {{
  content: {button}; font-size: 0.875rem;
}}
[data-testid="stFileUploaderDropzoneInstructions"] span {{ font-size: 0 !important; }}
[data-testid="stFileUploaderDropzoneInstructions"] span::after {{ content: {limit}; font-size: 0.75rem; }}
</style>"""


def apply(upload_mb: int = UPLOAD_MB) -> None:
    """The stylesheet (no space on the page), on narrow windows the sidebar fold, and the keyboard
    script (:data:`KEYBOARD_SCRIPT`); ``upload_mb``: the largest file this session may upload (the
    uploader's size line)."""
    st.html(CSS + uploader_css(upload_mb))
    st.sidebar.html(FOLD_SCRIPT + keyboard_script(), unsafe_allow_javascript=True)


def number_columns(frame: pd.DataFrame, default: int = 2, decimals: dict | None = None,
                   labels: dict | None = None) -> dict:
    """``st.column_config`` for a table's numeric columns: whole-number columns without decimals
    (an OQ-45.2 total of 47, not 47.000), others with ``default`` decimals; ``decimals``: column →
    decimals where a column needs its own; ``labels``: column → header. Booleans and text keep
    Streamlit's display (with the header from ``labels``)."""
    labels = labels or {}
    shown = shown_decimals(frame, default, decimals)  # the same decimals as a download (formatting.rounded)
    config = {}
    for col in frame.columns:
        label = labels.get(col)
        if col not in shown:
            if label is not None:
                config[col] = st.column_config.Column(label)
            continue
        config[col] = st.column_config.NumberColumn(label, format=f"%.{shown[col]}f")
    return config


def decimal_input(label: str, value: float | None, *, key: str, where=None, min_value: float | None = None,
                  help: str | None = None, placeholder: str | None = None) -> float | None:
    """A decimal number the user types (a cut-off, a range, an effect), shown the language's way.

    Streamlit's number input writes its value with a decimal point in every language (its ``format``
    is sprintf's, with no locale). So in a language with a decimal comma (Spanish) the field is a
    text field that shows ``63,5`` and ``−0,05`` and reads either mark (:func:`core.i18n.parse_number`;
    something else gets one sentence and the last good value); in English it is a number input
    whose ``format="%g"`` shows ``14`` and ``63.5`` rather than ``14.00`` and ``-2.0000``. ``where``:
    the column or container (default: the page)."""
    where = st if where is None else where
    if get_language() not in DECIMAL_COMMA:
        return where.number_input(label, value=value, min_value=min_value, format="%g", key=key, help=help,
                                  placeholder=placeholder)
    text_key, good_key = f"{key}__text", f"{key}__good"
    shown = "" if value is None else number_text(value, fewest_decimals(value))
    typed = where.text_input(label, value=shown, key=text_key, help=help, placeholder=placeholder)
    if not str(typed).strip():  # emptied: an optional field has no value, another keeps its own (as Streamlit's)
        return None if value is None else st.session_state.get(good_key, value)
    if value is not None and typed == shown:  # the default as shown (14/45 shown 0,3111): the value itself,
        st.session_state.pop(good_key, None)  # as in English, so both languages fit the same model
        return value
    parsed = parse_number(typed)
    if parsed is None or (min_value is not None and parsed < min_value):
        where.warning(_("“{text}” is not a number this field takes; write it like {example}. The last good value "
                        "is used.").format(text=typed, example=number_text(1.5, 1)))
        return st.session_state.get(good_key, value)
    st.session_state[good_key] = parsed
    return parsed


#: The data grid's text: 14 px Source Sans, about 7 px a character on average (a little more than
#: measured, so that an estimate errs on the roomy side), 8 px padding each side, lines of 1.4 × 14 px.
#: Streamlit wraps a cell's text only in rows taller than 64 px.
GRID_CHAR_PX, GRID_PAD_PX, GRID_LINE_PX, GRID_WRAP_ROW = 7.0, 16, 19.6, 65
#: The width of a table that fills the page at 800 px with the sidebar folded.
TABLE_AT_800 = 760


def text_width(values, header: str = "", *, most: int = 320) -> int:
    """A table column's width in pixels that shows its longest text (or header) whole: 7.2 px a
    character (measured in Chromium: 6.2–7.1 for IDs, pseudonyms, signal words and names), plus the
    cell's padding and a little room; at most ``most``."""
    longest = max([len(str(header))] + [len(str(v)) for v in pd.Series(values).dropna().head(2000)])
    return int(min(most, 7.2 * longest + GRID_PAD_PX + 8))


def wrapped_row_height(values, width: int, most_lines: int = 6) -> int:
    """A row height (px) for a data grid whose column ``width`` px wide shows the longest of ``values``
    wrapped whole, on at most ``most_lines`` lines: one line's 35 px when it fits on one, else tall
    enough for Streamlit to wrap (over 64 px)."""
    usable = max(1.0, width - GRID_PAD_PX)
    chars = max([0] + [len(str(v)) for v in pd.Series(values).dropna().head(2000)])
    lines = min(most_lines, max(1, int(-(-chars * GRID_CHAR_PX // usable))))
    return 35 if lines == 1 else max(GRID_WRAP_ROW, int(lines * GRID_LINE_PX + 12))


def local_numbers(frame: pd.DataFrame, config: dict) -> tuple[pd.DataFrame, dict]:
    """For a language that writes a decimal comma (Spanish), the numeric columns of a small table as
    right-aligned text written the language's way (``5,47``, missing: ``—``): Streamlit writes a
    NumberColumn's ``%.2f`` with a decimal point, and an empty cell as "None". Other languages get
    ``frame`` and ``config`` unchanged. Text columns do not sort by value: use it for short tables
    (a patient's sessions, the session means), not for the caseload. In English too when a numeric
    column has a missing value (that column only), so that the cell reads "—" rather than "None"."""
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c])]
    if get_language() not in DECIMAL_COMMA:  # English: only the columns with a missing value
        numeric = [c for c in numeric if frame[c].isna().any()]
    if not numeric:
        return frame, config
    frame, config = frame.copy(), dict(config)
    for col in numeric:
        values = frame[col]
        entry = config.get(col)
        spec = (entry or {}).get("type_config", {}).get("format") if isinstance(entry, dict) else None
        d = int(spec[2:-1]) if isinstance(spec, str) and spec.startswith("%.") and spec.endswith("f") \
            else decimals_for(values, 2)
        label = entry.get("label") if isinstance(entry, dict) else None
        frame[col] = [number_text(v, d, grouped=True) for v in values]  # "—" when missing
        config[col] = st.column_config.TextColumn(label, alignment="right")
    return frame, config
