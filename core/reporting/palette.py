"""The figures' colours and their contrast against the background (WCAG 2.2).

Every colour a figure draws with is named here, so that one test (``tests/test_palette.py``)
can check them all: text (tick labels, axis titles, annotations, text beside markers) at least
4.5:1 against the background (WCAG 2.2 success criterion 1.4.3, level AA) and graphical marks
(lines, markers, bars, error bars, arrows) at least 3:1 (criterion 1.4.11, non-text contrast).

Contrast ratio (WCAG 2.2, "contrast ratio" and "relative luminance"):
``(L1 + 0.05) / (L2 + 0.05)`` with ``L1`` the lighter and ``L2`` the darker colour's relative
luminance ``L = 0.2126 R + 0.7152 G + 0.0722 B``, where each sRGB channel ``c`` in 0–1 is
linearised as ``c / 12.92`` if ``c <= 0.04045`` else ``((c + 0.055) / 1.055) ** 2.4``.
A colour drawn with opacity ``a`` over a background is first blended: ``a * colour + (1 - a) * background``
per channel.

>>> round(contrast_ratio("#000000", "#ffffff"), 1)
21.0
>>> round(contrast_ratio("#767676", "#ffffff"), 2)
4.54
"""
from __future__ import annotations

import re

#: The plot background (figures set it explicitly, so that no theme can change it).
BACKGROUND = "#ffffff"
#: Main text: titles, axis titles, legend.
TEXT = "#212121"
#: Secondary text: tick labels, notes under a figure.
MUTED_TEXT = "#4f4f4f"
#: Grid lines: decorative (the tick labels carry the values), so they are not held to 3:1.
GRID = "#e3e3e3"
#: Zero lines and reference lines (the null effect in a forest plot, the zero of residuals).
REFERENCE = "#6e6e6e"

#: Symptom scores on the patient chart (a dark neutral: the status markers carry the colour).
SYMPTOMS = "#37474f"
#: Alliance scores.
ALLIANCE = "#5e35b1"
#: The expected course and its band (a reference, not a status).
EXPECTED = "#1565c0"
EXPECTED_BAND = "rgba(21,101,192,0.10)"
#: The clinical cut-off line.
CUTOFF = "#212121"
#: Individual data points where many overlap (scatter plots, spaghetti lines), with their opacity.
POINTS = "#263238"
POINTS_OPACITY = 0.55
#: A fitted line or an estimate drawn over data (least-squares lines, the pooled estimate).
FIT = "#b71c1c"
#: Studies in a forest plot.
STUDY = "#263238"

#: Better / worse. Each colour is paired with a marker shape and words wherever it is drawn, so
#: colour is never the only cue (WCAG 1.4.1): worse = red ▲, a warning = amber ◆, better =
#: green ●, no status = grey ○.
WORSE = "#c62828"
WARNING = "#8d5300"
BETTER = "#2e7031"
NEUTRAL = "#616161"

#: Lines told apart by colour (therapists): each ≥ 3:1 against white, adjacent hues far apart.
CATEGORICAL = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#8d5300", "#00796b",
               "#ad1457", "#455a64", "#4e6a00", "#283593", "#a63d00", "#00838f")

_HEX = re.compile(r"^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_RGB = re.compile(r"^rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*([\d.]+)\s*)?\)$")
_NAMED = {"white": (255, 255, 255, 1.0), "black": (0, 0, 0, 1.0), "grey": (128, 128, 128, 1.0),
          "gray": (128, 128, 128, 1.0), "transparent": (0, 0, 0, 0.0)}


def parse_colour(colour: str) -> tuple[float, float, float, float]:
    """``"#c62828"``, ``"#fff"``, ``"rgb(1,2,3)"``, ``"rgba(1,2,3,0.5)"`` → ``(r, g, b, alpha)``
    with channels 0–255 and alpha 0–1.

    >>> parse_colour("rgba(21,101,192,0.10)")
    (21.0, 101.0, 192.0, 0.1)
    """
    text = str(colour).strip()
    if text.lower() in _NAMED:
        return _NAMED[text.lower()]
    m = _HEX.match(text)
    if m:
        h = m.group(1)
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        return float(int(h[0:2], 16)), float(int(h[2:4], 16)), float(int(h[4:6], 16)), 1.0
    m = _RGB.match(text)
    if m:
        alpha = float(m.group(4)) if m.group(4) is not None else 1.0
        return float(m.group(1)), float(m.group(2)), float(m.group(3)), alpha
    raise ValueError(f"Not a colour this check reads: {colour!r}.")


def blend(colour: str, background: str = BACKGROUND, opacity: float = 1.0) -> str:
    """The opaque colour seen when ``colour`` (with its own alpha, times ``opacity``) is drawn
    over ``background``, as ``#rrggbb``.

    >>> blend("rgba(0,0,0,0.5)")
    '#808080'
    """
    r, g, b, a = parse_colour(colour)
    br, bg, bb, _ = parse_colour(blend(background) if parse_colour(background)[3] < 1 else background)
    a = a * opacity
    mix = [round(a * c + (1 - a) * d) for c, d in ((r, br), (g, bg), (b, bb))]
    return "#" + "".join(f"{int(v):02x}" for v in mix)


def relative_luminance(colour: str) -> float:
    """WCAG relative luminance of an opaque colour (0 for black, 1 for white)."""
    r, g, b, _ = parse_colour(colour)

    def linear(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def contrast_ratio(foreground: str, background: str = BACKGROUND, opacity: float = 1.0) -> float:
    """WCAG contrast ratio (1 to 21) of ``foreground`` drawn with ``opacity`` over ``background``."""
    back = blend(background) if parse_colour(background)[3] < 1 else background
    front = blend(foreground, back, opacity)
    lighter, darker = sorted((relative_luminance(front), relative_luminance(back)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


#: WCAG 2.2 AA minimums.
TEXT_MINIMUM = 4.5
GRAPHIC_MINIMUM = 3.0


def _colours(value) -> list[str]:
    """The colour strings in a Plotly colour property (one colour or a list; numbers are a colour scale)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, str)]
    return []


def figure_contrast_problems(fig) -> list[str]:
    """Every text and mark of a Plotly figure whose contrast is below WCAG AA, as sentences.

    Text: the layout font, axis titles and tick labels, legend, annotations and trace text
    (``textfont``) need 4.5:1; marks: trace lines, markers, error bars, shape outlines and
    annotation arrows need 3:1, each against the plot background and against every filled area
    (bands, boxes) blended onto it. A colour left unset is a problem too: a theme (Streamlit's or
    Plotly's) would choose it. Grid lines, hover labels and fills themselves are not checked.
    """
    spec = fig.to_plotly_json() if hasattr(fig, "to_plotly_json") else fig
    layout = spec.get("layout", {})
    background = layout.get("plot_bgcolor")
    problems: list[str] = []
    if background is None:
        problems.append("the plot background is not set")
        background = BACKGROUND
    surfaces = {background: "the plot background"}
    for trace in spec.get("data", []):
        # a see-through fill (a band) is a surface other marks and text lie on; a solid one (the
        # pooled diamond) is a mark itself
        if trace.get("fill") and trace.get("fillcolor"):
            opacity = float(trace.get("opacity", 1.0))
            if parse_colour(trace["fillcolor"])[3] * opacity < 1:
                surfaces[blend(trace["fillcolor"], background, opacity)] = f"the band {trace.get('name')!r}"
    for shape in layout.get("shapes", []):
        if shape.get("fillcolor"):
            surfaces[blend(shape["fillcolor"], background)] = "a filled shape"
    for ann in layout.get("annotations", []):
        if ann.get("bgcolor") and ann.get("text"):
            surfaces[blend(ann["bgcolor"], background)] = "a label background"
    layout_font = (layout.get("font") or {}).get("color")

    def check(colour, what: str, minimum: float, opacity: float = 1.0) -> None:
        if colour is None:
            problems.append(f"{what}: colour not set")
            return
        for c in _colours(colour):
            if parse_colour(c)[3] * opacity == 0:
                continue
            for surface, name in surfaces.items():
                ratio = contrast_ratio(c, surface, opacity)
                if ratio < minimum - 1e-9:
                    problems.append(f"{what}: {c} on {name} is {ratio:.2f}:1 (needs {minimum:g}:1)")

    def text(font: dict | None, what: str, inherits: bool = False) -> None:
        """Titles, tick labels, legends and annotations need their own colour: Streamlit's chart
        theme sets those (in a 3.7:1 grey) over the layout font; trace text inherits the layout's."""
        check((font or {}).get("color") or (layout_font if inherits else None), what, TEXT_MINIMUM)

    if layout_font is None:
        problems.append("the layout font colour is not set")
    title = layout.get("title") or {}
    if title.get("text"):
        text(title.get("font"), "figure title")
    in_legend = [t for t in spec.get("data", []) if t.get("showlegend") is not False]
    if layout.get("showlegend") is True or (layout.get("showlegend") is None and len(in_legend) > 1):
        text((layout.get("legend") or {}).get("font"), "legend")
    for key, axis in layout.items():
        if not (key.startswith("xaxis") or key.startswith("yaxis")) or not isinstance(axis, dict):
            continue
        if axis.get("visible") is False:
            continue
        if axis.get("showticklabels", True):
            text(axis.get("tickfont"), f"{key} tick labels")
        if (axis.get("title") or {}).get("text"):
            text((axis.get("title") or {}).get("font"), f"{key} title")
    for i, ann in enumerate(layout.get("annotations", [])):
        if ann.get("text"):
            text(ann.get("font"), f"annotation {i + 1} ({str(ann.get('text'))[:30]!r})")
        if ann.get("showarrow"):
            check(ann.get("arrowcolor"), f"annotation {i + 1} arrow", GRAPHIC_MINIMUM)
    for i, shape in enumerate(layout.get("shapes", [])):
        line = shape.get("line") or {}
        if line.get("width", 1) and not shape.get("fillcolor"):
            check(line.get("color"), f"shape {i + 1}", GRAPHIC_MINIMUM)
    for trace in spec.get("data", []):
        name = f"trace {trace.get('name')!r}"
        opacity = float(trace.get("opacity", 1.0))
        mode = trace.get("mode", "lines+markers" if trace.get("type") == "scatter" else "")
        kind = trace.get("type", "scatter")
        if trace.get("visible") is False or trace.get("hoverinfo") == "skip" and trace.get("fill"):
            continue
        if trace.get("fill") and trace.get("fillcolor") and parse_colour(trace["fillcolor"])[3] * opacity >= 1:
            check(trace["fillcolor"], f"{name} fill", GRAPHIC_MINIMUM)
        line = trace.get("line") or {}
        if kind in ("scatter", "scattergl") and "lines" in mode and line.get("width", 2) > 0 \
                and not (trace.get("fill") and line.get("width", 2) == 0):
            check(line.get("color"), f"{name} line", GRAPHIC_MINIMUM, opacity)
        marker = trace.get("marker") or {}
        # Plotly draws markers sized by an array (a bubble chart) at 70% opacity unless told otherwise
        # (Plotly 7 writes a NumPy array as {"dtype": …, "bdata": …})
        sized_by_array = isinstance(marker.get("size"), (list, tuple)) or (
            isinstance(marker.get("size"), dict) and "bdata" in marker["size"])
        marker_opacity = marker.get("opacity", 0.7 if sized_by_array else 1.0)
        if ("markers" in mode or kind == "bar") and not (isinstance(marker_opacity, (int, float)) and marker_opacity == 0):
            check(marker.get("color"), f"{name} markers", GRAPHIC_MINIMUM,
                  opacity * float(marker_opacity) if not isinstance(marker_opacity, list) else opacity)
        if "text" in mode and trace.get("text") is not None:
            text(trace.get("textfont"), f"{name} text", inherits=True)
        for err in ("error_x", "error_y"):
            e = trace.get(err) or {}
            if e.get("visible", True) and (e.get("array") is not None):
                check(e.get("color"), f"{name} {err}", GRAPHIC_MINIMUM, opacity)
    return problems
