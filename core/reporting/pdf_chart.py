"""A Plotly figure drawn as vector graphics on a PDF page (fpdf2), without a browser.

The one-page patient summary (:mod:`core.reporting.summary_pdf`) prints the chart the patient
page shows: :func:`core.reporting.figures.patient_chart` builds the figure, and this module draws
*that figure object* — its traces' coordinates, colours, line widths and dashes, marker symbols,
texts, fills, axis titles, panel titles, grid and legend, and the language's decimal mark from
its ``separators`` — so that the palette and every label are the screen's by construction.

What a patient chart uses is drawn: ``scatter`` traces (lines with gaps, ``fill="toself"`` bands,
markers ``circle``, ``circle-open``, ``triangle-up``, ``diamond``, ``x``, text beside markers at
``top left``/``top center``/``middle right``), stacked y axes with domains over a shared x axis,
fixed or automatic ranges, ``dtick``, paper annotations and a horizontal legend below. Anything
else in a figure is ignored. Plotly's own layout engine is not run, so tick positions and the
legend's wrapping are computed here the way Plotly chooses them (ticks at 1, 2 or 5 × 10ⁿ, about
one per 55 px), not measured from a browser.

Sizes: the figure is laid out at :data:`FIGURE_WIDTH_PX` pixels across the given width in mm;
font sizes in px become points with the same scale.
"""
from __future__ import annotations

import html
import math
import re

import numpy as np

from core.reporting import palette as pal

#: The width in px the figure is laid out for (Plotly's default width).
FIGURE_WIDTH_PX = 700
#: About one y tick per this many mm (Plotly: one per 50–60 px on screen).
Y_TICK_MM = 9.0
_TAG = re.compile(r"<[^>]+>")
_MM_PER_PT = 25.4 / 72


def _rgba(colour) -> tuple[tuple[int, int, int], float]:
    r, g, b, a = pal.parse_colour(str(colour))
    return (int(round(r)), int(round(g)), int(round(b))), float(a)


def _plain(text) -> str:
    """Plotly label text → plain text (tags dropped, ``<br>`` a newline, entities decoded)."""
    text = str(text or "").replace("<br>", "\n").replace("<br/>", "\n")
    return html.unescape(_TAG.sub("", text))


def _bold(text) -> bool:
    return "<b>" in str(text or "")


def _nice_step(span: float, n: float) -> float:
    """A tick step of 1, 2 or 5 × 10ⁿ giving about ``n`` ticks over ``span``."""
    if not span > 0 or not n > 0:
        return 1.0
    raw = span / n
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * power >= raw * 0.999:
            return m * power
    return 10 * power


def _ticks(low: float, high: float, step: float) -> list[float]:
    first = math.ceil(low / step - 1e-9) * step
    out, k = [], 0
    while first + k * step <= high + 1e-9 * max(1.0, abs(high)) and k < 200:
        out.append(first + k * step)
        k += 1
    return out


def _decimals(step: float) -> int:
    return max(0, -int(math.floor(math.log10(step) + 1e-9))) if step < 1 else 0


class _Axes:
    """Where one y axis and the shared x axis lie on the page (mm) and their ranges."""

    def __init__(self, x0, x1, y0, y1, xr, yr):
        self.x0, self.x1, self.y0, self.y1, self.xr, self.yr = x0, x1, y0, y1, xr, yr

    def px(self, x):
        return self.x0 + (x - self.xr[0]) / (self.xr[1] - self.xr[0]) * (self.x1 - self.x0)

    def py(self, y):
        return self.y1 - (y - self.yr[0]) / (self.yr[1] - self.yr[0]) * (self.y1 - self.y0)


def _values(seq) -> np.ndarray:
    if seq is None:
        return np.array([], dtype=float)
    return np.array([np.nan if v is None else v for v in seq], dtype=float)


def _auto_range(values: list[np.ndarray], pad_share: float) -> tuple[float, float]:
    both = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if not len(both):
        return 0.0, 1.0
    low, high = float(both.min()), float(both.max())
    if high == low:
        low, high = low - 1, high + 1
    pad = (high - low) * pad_share
    return low - pad, high + pad


def draw_figure(pdf, fig, x: float, y: float, width: float, height: float, font: str = "DejaVu") -> None:
    """Draw ``fig`` (a Plotly figure of :func:`core.reporting.figures.patient_chart`'s kind) in the
    box ``x, y, width, height`` (mm) of the current page of ``pdf`` (an ``fpdf.FPDF`` with the
    ``font`` family, regular and bold, added)."""
    layout = fig.layout
    scale = width / FIGURE_WIDTH_PX  # mm per px
    pt = scale / _MM_PER_PT          # points per px
    comma = (layout.separators or ".,")[0] == ","
    margin = layout.margin
    base_size = (layout.font.size or 13) if layout.font else 13
    left, right = x + (margin.l or 70) * scale, x + width - (margin.r or 20) * scale
    # below the plot: tick labels, the axis title and the legend (as many lines as it needs here,
    # rather than the screen's fixed margin)
    tick_size = base_size * 0.95 * pt
    legend_h = _legend(pdf, fig, list(fig.data), left, right, 0, scale, pt, font, base_size, None)
    below = tick_size * _MM_PER_PT + 2.2 + base_size * pt * _MM_PER_PT + 3.5 + legend_h
    top, bottom = y + (margin.t or 30) * scale, y + height - below

    def fmt(v: float, decimals: int) -> str:
        text = f"{v:,.{decimals}f}".replace("-", "\u2212")
        return text.translate(str.maketrans(",.", ".,")) if comma else text

    def set_colour(kind: str, colour) -> float:
        rgb, alpha = _rgba(colour)
        {"draw": pdf.set_draw_color, "fill": pdf.set_fill_color, "text": pdf.set_text_color}[kind](*rgb)
        return alpha

    # axes: which y axes exist, their domains (paper, 0 at the bottom) and ranges
    traces = list(fig.data)
    y_names = sorted({t.yaxis or "y" for t in traces}, key=lambda n: int(n[1:] or 1))
    x_values = [_values(t.x) for t in traces]
    x_range = _auto_range(x_values, 0.0)
    span = x_range[1] - x_range[0]
    x_range = (x_range[0] - max(0.06 * span, 0.25), x_range[1] + max(0.06 * span, 0.25))
    axes: dict[str, _Axes] = {}
    for name in y_names:
        key = "yaxis" + name[1:]
        spec = layout[key]
        d0, d1 = spec.domain or (0, 1)
        y0, y1 = bottom - d1 * (bottom - top), bottom - d0 * (bottom - top)
        if spec.range is not None:
            yr = tuple(float(v) for v in spec.range)
        else:
            mine = [_values(t.y) for t in traces if (t.yaxis or "y") == name]
            yr = _auto_range(mine, 0.06)
            labelled = any((t.yaxis or "y") == name and "text" in (t.mode or "") and t.text is not None
                           and "top" in str(t.textposition) for t in traces)
            if labelled:  # room for a label over the highest marker (Plotly leaves it to overlap the title)
                room = (base_size * pt * _MM_PER_PT + 8 * scale) / max(y1 - y0, 1e-6)
                yr = (yr[0], yr[1] + room * (yr[1] - yr[0]) / max(1 - room, 0.5))
        axes[name] = _Axes(left, right, y0, y1, x_range, yr)

    pdf.set_line_width(0.2)
    x_spec = layout.xaxis
    x_step = float(x_spec.dtick) if x_spec.dtick else _nice_step(x_range[1] - x_range[0], (right - left) / (80 * scale))
    x_ticks = [v for v in _ticks(x_range[0], x_range[1], x_step)]
    for name, ax in axes.items():
        spec = layout["yaxis" + name[1:]]
        step = float(spec.dtick) if spec.dtick else _nice_step(ax.yr[1] - ax.yr[0], (ax.y1 - ax.y0) / Y_TICK_MM)
        y_ticks = _ticks(ax.yr[0], ax.yr[1], step)
        set_colour("draw", spec.gridcolor or pal.GRID)
        pdf.set_line_width(0.15)
        for v in y_ticks:
            pdf.line(ax.x0, ax.py(v), ax.x1, ax.py(v))
        for v in x_ticks:
            pdf.line(ax.px(v), ax.y0, ax.px(v), ax.y1)
        set_colour("draw", spec.linecolor or pal.REFERENCE)
        pdf.set_line_width(0.25)
        pdf.line(ax.x0, ax.y0, ax.x0, ax.y1)
        pdf.line(ax.x0, ax.y1, ax.x1, ax.y1)
        pdf.set_font(font, "", tick_size)
        set_colour("text", (spec.tickfont.color if spec.tickfont else None) or pal.MUTED_TEXT)
        decimals = _decimals(step)
        for v in y_ticks:
            label = fmt(v, decimals)
            pdf.text(ax.x0 - 1.2 - pdf.get_string_width(label), ax.py(v) + tick_size * _MM_PER_PT * 0.35, label)
        x_decimals = _decimals(x_step)
        for v in x_ticks:
            label = fmt(v, x_decimals)
            pdf.text(ax.px(v) - pdf.get_string_width(label) / 2, ax.y1 + tick_size * _MM_PER_PT + 1.0, label)
        title = _plain(spec.title.text if spec.title else "")
        if title:
            size = base_size * pt
            pdf.set_font(font, "", size)
            set_colour("text", (spec.title.font.color if spec.title and spec.title.font else None) or pal.TEXT)
            lines = title.split("\n")
            widest = max(pdf.get_string_width(t) for t in lines)
            room = (ax.y1 - ax.y0) + 8 * scale  # a panel lower than the screen's: the title shrinks to fit it
            if widest > room:
                size = max(size * 0.6, size * room / widest)
                pdf.set_font(font, "", size)
                widest = max(pdf.get_string_width(t) for t in lines)
            line_h = size * _MM_PER_PT * 1.15
            ticks_w = max((pdf.get_string_width(fmt(v, decimals)) for v in y_ticks), default=0) * tick_size / size
            cx = ax.x0 - 2.5 - ticks_w - line_h * len(lines)
            cy = (ax.y0 + ax.y1) / 2
            with pdf.rotation(90, cx, cy):
                for k, t in enumerate(lines):
                    pdf.text(cx - pdf.get_string_width(t) / 2, cy + line_h * (k + 0.8), t)
    # the x axis title under the lowest panel
    lowest = max(axes.values(), key=lambda a: a.y1)
    x_title = ""
    for key in ("xaxis", *[f"xaxis{k}" for k in range(2, len(y_names) + 1)]):
        spec = layout[key] if key in layout else None
        if spec is not None and spec.title and spec.title.text:
            x_title = _plain(spec.title.text)
    if x_title:
        pdf.set_font(font, "", base_size * pt)
        set_colour("text", pal.TEXT)
        pdf.text((left + right) / 2 - pdf.get_string_width(x_title) / 2,
                 lowest.y1 + tick_size * _MM_PER_PT + 2.2 + base_size * pt * _MM_PER_PT, x_title)

    # traces, clipped to their panel
    for t in traces:
        ax = axes[t.yaxis or "y"]
        xs, ys = _values(t.x), _values(t.y)
        mode = t.mode or "lines+markers"
        with pdf.rect_clip(ax.x0, ax.y0 - 6 * scale, ax.x1 - ax.x0 + 4 * scale, ax.y1 - ax.y0 + 6 * scale):
            if t.fill == "toself":
                pts = [(ax.px(a), ax.py(b)) for a, b in zip(xs, ys) if np.isfinite(a) and np.isfinite(b)]
                if len(pts) >= 3:
                    alpha = set_colour("fill", t.fillcolor or pal.EXPECTED_BAND)
                    with pdf.local_context(fill_opacity=alpha):
                        pdf.polygon(pts, style="F")
            line = t.line
            if "lines" in mode and line is not None and (line.width is None or line.width > 0) and t.fill != "toself":
                alpha = set_colour("draw", line.color or pal.SYMPTOMS)
                pdf.set_line_width(max(0.1, (line.width or 2) * scale))
                dash = line.dash
                if dash == "dash":
                    pdf.set_dash_pattern(dash=9 * scale * (line.width or 2) / 2, gap=5 * scale * (line.width or 2) / 2)
                elif dash == "dot":
                    pdf.set_dash_pattern(dash=2.5 * scale, gap=3 * scale)
                pieces, current = [], []
                for a, b in zip(xs, ys):
                    if np.isfinite(a) and np.isfinite(b):
                        current.append((ax.px(a), ax.py(b)))
                    elif not t.connectgaps:
                        if len(current) > 1:
                            pieces.append(current)
                        current = []
                if len(current) > 1:
                    pieces.append(current)
                for piece in pieces:
                    pdf.polyline(piece)
                pdf.set_dash_pattern()
            if "markers" in mode and t.marker is not None:
                _markers(pdf, t, ax, xs, ys, scale, set_colour)
            if "text" in mode and t.text is not None:
                size = ((t.textfont.size if t.textfont else None) or base_size) * pt
                pdf.set_font(font, "", size)
                set_colour("text", (t.textfont.color if t.textfont else None) or pal.TEXT)
                texts = [t.text] * len(xs) if isinstance(t.text, str) else list(t.text)
                positions = t.textposition
                positions = [positions] * len(xs) if isinstance(positions, str) or positions is None else list(positions)
                radius = ((t.marker.size if t.marker and t.marker.size else 8) / 2) * scale
                for a, b, label, where in zip(xs, ys, texts, positions):
                    label = _plain(label)
                    if not label or not (np.isfinite(a) and np.isfinite(b)):
                        continue
                    w = pdf.get_string_width(label)
                    cx, cy = ax.px(a), ax.py(b)
                    where = where or "top center"
                    if where.startswith("top"):
                        ty = cy - radius - 1.0
                    elif where.startswith("bottom"):
                        ty = cy + radius + size * _MM_PER_PT
                    else:
                        ty = cy + size * _MM_PER_PT * 0.35
                    if where.endswith("left"):
                        tx = cx - w - (radius if not where.startswith("middle") else radius + 1)
                        tx = cx - w if where.startswith("top") else tx
                    elif where.endswith("right"):
                        tx = cx + radius + 1.0
                    else:
                        tx = cx - w / 2
                    pdf.text(tx, ty, label)
    # panel titles (paper annotations)
    for note in layout.annotations or ():
        if note.xref != "paper" or note.yref != "paper" or not note.text:
            continue
        size = ((note.font.size if note.font else None) or base_size) * pt
        pdf.set_font(font, "B" if _bold(note.text) else "", size)
        set_colour("text", (note.font.color if note.font else None) or pal.TEXT)
        px = left + float(note.x or 0) * (right - left)
        py = bottom - float(note.y or 0) * (bottom - top)
        text = _plain(note.text)
        if note.xanchor == "center":
            px -= pdf.get_string_width(text) / 2
        py = py - 1.5 if note.yanchor == "bottom" else py + size * _MM_PER_PT
        pdf.text(px, py, text)
    _legend(pdf, fig, traces, left, right, lowest.y1 + tick_size * _MM_PER_PT + 4.5 + 2 * base_size * pt * _MM_PER_PT,
            scale, pt, font, base_size, set_colour)


def _legend_entries(traces):
    seen = set()
    for t in traces:
        if t.showlegend is False or not t.name or t.name in seen:
            continue
        seen.add(t.name)
        yield t


def _marker_shape(pdf, symbol: str, cx: float, cy: float, r: float, filled: bool) -> None:
    style = "DF" if filled else "D"
    if symbol in ("triangle-up",):
        pdf.polygon([(cx, cy - r * 1.15), (cx + r, cy + r * 0.7), (cx - r, cy + r * 0.7)], style=style)
    elif symbol == "diamond":
        pdf.polygon([(cx, cy - r * 1.1), (cx + r * 1.1, cy), (cx, cy + r * 1.1), (cx - r * 1.1, cy)], style=style)
    elif symbol == "x":
        pdf.line(cx - r, cy - r, cx + r, cy + r)
        pdf.line(cx - r, cy + r, cx + r, cy - r)
    elif symbol == "square":
        pdf.rect(cx - r, cy - r, 2 * r, 2 * r, style=style)
    else:
        pdf.ellipse(cx - r, cy - r, 2 * r, 2 * r, style=style)


def _markers(pdf, t, ax, xs, ys, scale, set_colour) -> None:
    marker = t.marker
    symbol = str(marker.symbol or "circle")
    r = ((marker.size or 6) / 2) * scale
    colour = marker.color or (t.line.color if t.line else None) or pal.SYMPTOMS
    edge = (marker.line.color if marker.line and marker.line.color else None) or colour
    set_colour("fill", colour)
    set_colour("draw", edge)
    width = (marker.line.width if marker.line and marker.line.width else 1) * scale
    pdf.set_line_width(max(0.15, width if symbol != "x" else max(width, 2.5 * scale)))
    filled = not symbol.endswith("-open") and symbol != "x"
    for a, b in zip(xs, ys):
        if np.isfinite(a) and np.isfinite(b):
            _marker_shape(pdf, symbol.replace("-open", ""), ax.px(a), ax.py(b), r, filled)


def _legend(pdf, fig, traces, left, right, y, scale, pt, font, base_size, set_colour) -> float:
    """Plotly's horizontal legend below the plot: a sample and the name of each trace shown in it,
    wrapped to the width; returns its height (mm). ``set_colour`` None: measure only, draw nothing."""
    legend = fig.layout.legend
    size = ((legend.font.size if legend and legend.font else None) or base_size) * pt
    pdf.set_font(font, "", size)
    line_h = size * _MM_PER_PT * 1.6
    sample = 30 * scale
    cx, cy = left, y
    for t in _legend_entries(traces):
        name = _plain(t.name)
        w = sample + 1.5 + pdf.get_string_width(name) + 4
        if cx + w > right and cx > left:
            cx, cy = left, cy + line_h
        if set_colour is None:
            cx += w
            continue
        mid = cy - size * _MM_PER_PT * 0.35
        mode = t.mode or "lines"
        if t.fill == "toself":
            alpha = set_colour("fill", t.fillcolor or pal.EXPECTED_BAND)
            with pdf.local_context(fill_opacity=max(alpha, 0.25)):
                pdf.rect(cx, mid - 2 * scale * 3, sample, 12 * scale, style="F")
        elif "lines" in mode and t.line is not None and t.line.color:
            set_colour("draw", t.line.color)
            pdf.set_line_width(max(0.1, (t.line.width or 2) * scale))
            if t.line.dash == "dash":
                pdf.set_dash_pattern(dash=6 * scale, gap=3 * scale)
            elif t.line.dash == "dot":
                pdf.set_dash_pattern(dash=2.5 * scale, gap=3 * scale)
            pdf.line(cx, mid, cx + sample, mid)
            pdf.set_dash_pattern()
        if "markers" in mode and t.marker is not None:
            symbol = str(t.marker.symbol or "circle")
            colour = t.marker.color or (t.line.color if t.line else None) or pal.SYMPTOMS
            set_colour("fill", colour)
            set_colour("draw", (t.marker.line.color if t.marker.line and t.marker.line.color else None) or colour)
            pdf.set_line_width(max(0.15, 2.5 * scale if symbol == "x" else scale))
            _marker_shape(pdf, symbol.replace("-open", ""), cx + sample / 2, mid, min(6, (t.marker.size or 8) / 2) * scale,
                          not symbol.endswith("-open") and symbol != "x")
        set_colour("text", (legend.font.color if legend and legend.font else None) or pal.TEXT)
        pdf.text(cx + sample + 1.5, cy, name)
        cx += w
    return cy - y + line_h
