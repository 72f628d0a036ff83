"""How the dashboard reads on a tablet and from the keyboard: one stylesheet, the sidebar's page
links, the sidebar folded on narrow screens, and number formats for tables.

Everything here is served by the dashboard itself (no font, script or style from another host).

* Focus: every link, button, tab, expander and form field shows a 3 px dark-blue outline when it
  has the keyboard focus (WCAG 2.4.7 / 2.4.13; #1565c0 is 5.8:1 on white and 5.2:1 on the sidebar).
* Text: the theme draws captions at 60% opacity (2.9:1 on the sidebar, about 3.7:1 on white); they
  and the metric labels are drawn opaque in #4f4f4f (8.2:1 on white). Metric labels and values wrap
  instead of ending in "…". (``tests/test_browser_glance.py`` measures every text on every page.)
* Below 1000 px: rows of metrics wrap two to a row, and the sidebar starts folded (Streamlit folds
  it only at 768 px and below; at 800 px it took 38% of the width). Unfolding it stays unfolded
  while the tab is open.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.i18n import DECIMAL_COMMA, DEFAULT_LANGUAGE, N_, _, get_language, number
from core.reporting.formatting import decimals_for

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
    """The stylesheet (no space on the page) and, on narrow windows, the sidebar fold; ``upload_mb``:
    the largest file this session may upload (the uploader's size line)."""
    st.html(CSS + uploader_css(upload_mb))
    st.sidebar.html(FOLD_SCRIPT, unsafe_allow_javascript=True)


def number_columns(frame: pd.DataFrame, default: int = 2, decimals: dict | None = None,
                   labels: dict | None = None) -> dict:
    """``st.column_config`` for a table's numeric columns: whole-number columns without decimals
    (an OQ-45.2 total of 47, not 47.000), others with ``default`` decimals; ``decimals``: column →
    decimals where a column needs its own; ``labels``: column → header. Booleans and text keep
    Streamlit's display (with the header from ``labels``)."""
    decimals, labels = decimals or {}, labels or {}
    config = {}
    for col in frame.columns:
        values = frame[col]
        label = labels.get(col)
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            if label is not None:
                config[col] = st.column_config.Column(label)
            continue
        d = decimals.get(col, decimals_for(values, default))
        config[col] = st.column_config.NumberColumn(label, format=f"%.{d}f")
    return config


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
        frame[col] = [number(float(v), f",.{d}f") if pd.notna(v) else "—" for v in values]
        config[col] = st.column_config.TextColumn(label, alignment="right")
    return frame, config
