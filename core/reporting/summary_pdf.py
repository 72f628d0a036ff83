"""A one-page patient summary (PDF, A4) for the clinical record, in the current language.

What the page holds, top to bottom: the title with the patient code; the data set and, for demo
data, a label saying so; the key figures (therapist, sessions, latest symptom score, change from
the first to the last score and its Jacobson–Truax status); the current early-warning status and
why, in words, in the status's colour and symbol; the symptom and alliance chart of the patient
page (:func:`core.reporting.figures.patient_chart`, drawn as vector graphics by
:mod:`core.reporting.pdf_chart`: same palette, labels and symbols); the reliable change and the
possible ruptures in sentences (:mod:`core.reporting.patient_text`, as on the patient page); the
definitions in a footnote; and the date and who produced it.

Route (measured in ``bench/bench_summary_pdf.py``, figures in ``bench/README.md``): fpdf2 draws the
page and the chart itself from the Plotly figure object; the fonts are DejaVu Sans, bundled in
``core/reporting/fonts/`` and embedded (subset) in every PDF, so nothing is fetched, no browser is
started, and the text can be extracted (``pdftotext``). Nothing here imports streamlit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core.clinical.indices import flag_ruptures_so_far, jacobson_truax_status
from core.clinical.signal import SignalModel, SignalSettings, definition, status_sentence
from core.i18n import _, get_language, number
from core.reporting import palette as pal
from core.reporting.figures import STATUS_GLYPH, STATUS_STYLE, patient_chart
from core.reporting.formatting import decimals_for, format_number
from core.reporting.patient_text import change_sentence, chart_labels, jt_word, rupture_sentences

FONTS = Path(__file__).resolve().parent / "fonts"
FONT = "DejaVu"
PAGE_W, PAGE_H, MARGIN = 210.0, 297.0, 14.0
#: The most rupture sentences written; more are counted in one line.
MAX_RUPTURE_SENTENCES = 5


@dataclass
class PatientSummary:
    """Everything the page says about one patient (built by :func:`summarise_patient`)."""

    dataset: str
    patient: str
    sessions: pd.DataFrame                 # the patient's rows, ruptures so far flagged, by session
    measures: list[str]
    settings: SignalSettings
    signal: pd.DataFrame | None = None     # that patient's rows of session_signal
    model: SignalModel | None = None
    labels: dict = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)
    threshold: float = 1.0
    produced_by: str = ""
    demo: bool = False
    when: datetime | None = None
    notes: tuple[str, ...] = ()            # e.g. the published values assumed for the cut-off


def summarise_patient(data: pd.DataFrame, patient: str, *, dataset: str, settings: SignalSettings,
                      model: SignalModel | None = None, threshold: float = 1.0, labels: dict | None = None,
                      ranges: dict | None = None, produced_by: str = "", demo: bool = False,
                      notes: tuple[str, ...] = ()) -> PatientSummary:
    """The summary of ``patient`` in ``data`` (``patient, session``, the measures, ``therapist``):
    ruptures against the mean so far, the early-warning signal with ``model`` (the clinic's, fitted
    on every patient; fitted on ``data`` when not given), chart labels as the patient page writes
    them when not given."""
    from core.clinical.signal import fit_signal_model, session_signal

    measures = [m for m in ("symptoms", "alliance") if m in data.columns and data[m].notna().any()]
    mine = data[data["patient"].astype(str) == str(patient)].sort_values("session", kind="stable")
    if "alliance" in measures:
        mine = flag_ruptures_so_far(mine, threshold)
    signal = None
    if "symptoms" in measures:
        model = model if model is not None else fit_signal_model(data, settings)
        signal = session_signal(mine, model, settings)
    if labels is None:
        top = float(np.nanmax(data["symptoms"])) if "symptoms" in measures else 0.0
        scale = "mean_item" if top <= 4 else "total" if top <= 180 else None
        labels = chart_labels(measures, symptom_scale=scale, higher_is_worse=settings.higher_is_worse,
                              alliance_range=(ranges or {}).get("alliance"))
    return PatientSummary(dataset=dataset, patient=str(patient), sessions=mine, measures=measures, settings=settings,
                          signal=signal, model=model, labels=labels, ranges=dict(ranges or {}), threshold=threshold,
                          produced_by=produced_by, demo=demo, notes=tuple(notes))


def _rgb(colour) -> tuple[int, int, int]:
    r, g, b, _a = pal.parse_colour(colour)
    return int(r), int(g), int(b)


_FONT_FILES = (("", "DejaVuSans.ttf"), ("B", "DejaVuSans-Bold.ttf"))
_FONT_CACHE: dict = {}
_FONT_LOCK = __import__("threading").Lock()


def _add_fonts(pdf) -> None:
    """The bundled fonts added to ``pdf``. fpdf2 measures every glyph of a font when it is added
    (a third of a page's time); the measured font is kept and copied into each new document, with
    the font file itself opened anew (fpdf2 subsets it in place when the PDF is written)."""
    import copy

    from fontTools import ttLib

    with _FONT_LOCK:
        if not _FONT_CACHE:
            from fpdf import FPDF

            template = FPDF()
            for style, name in _FONT_FILES:
                template.add_font(FONT, style, FONTS / name)
            _FONT_CACHE.update(template.fonts)
        for key, font in _FONT_CACHE.items():
            mine = copy.deepcopy(font)
            mine.ttfont = ttLib.TTFont(font.ttffile, recalcTimestamp=False, lazy=True)
            pdf.fonts[key] = mine


class _Page:
    """An A4 page with the bundled fonts and a cursor."""

    def __init__(self, title: str, author: str, when: datetime) -> None:
        from fpdf import FPDF

        pdf = FPDF(orientation="P", unit="mm", format="A4")
        pdf.set_auto_page_break(False)
        pdf.set_margins(MARGIN, MARGIN, MARGIN)
        _add_fonts(pdf)
        pdf.set_title(title)
        pdf.set_author(author)
        pdf.set_creator("alliance dashboard")
        pdf.set_producer("alliance dashboard (fpdf2)")
        pdf.set_creation_date(when)
        pdf.set_lang(get_language())
        pdf.add_page()
        self.pdf = pdf
        self.width = PAGE_W - 2 * MARGIN

    def text(self, text: str, size: float = 9.5, bold: bool = False, colour=pal.TEXT, gap: float = 1.2,
             height: float | None = None) -> None:
        pdf = self.pdf
        pdf.set_font(FONT, "B" if bold else "", size)
        pdf.set_text_color(*_rgb(colour))
        pdf.set_x(MARGIN)
        pdf.multi_cell(self.width, height or size * 0.47, text, align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.set_y(pdf.get_y() + gap)


#: The chart's height (mm): first tried, at most (when the text leaves room), at least.
CHART_HEIGHT, CHART_MAX, CHART_MIN = 112.0, 135.0, 70.0


def summary_pdf(summary: PatientSummary) -> bytes:
    """The one-page PDF of ``summary`` (bytes). The chart takes the room the text leaves (from
    :data:`CHART_MIN` to :data:`CHART_MAX` mm): drawn once at :data:`CHART_HEIGHT`, and once more at
    the height that fills the page when that differs by more than a few mm; the page never runs
    onto a second one (long text is cut at the page's end, the definitions last)."""
    pdf = _draw(summary, CHART_HEIGHT)
    room = PAGE_H - MARGIN - pdf.get_y()
    better = min(CHART_MAX, max(CHART_MIN, CHART_HEIGHT + room))
    if abs(better - CHART_HEIGHT) > 4:
        pdf = _draw(summary, better)
    return bytes(pdf.output())


def _facts(s: PatientSummary) -> list[tuple[str, str]]:
    mine = s.sessions
    facts = []
    if "therapist" in mine and mine["therapist"].notna().any():
        facts.append((_("Therapist"), str(mine["therapist"].dropna().iloc[-1])))
    first, last = mine["session"].min(), mine["session"].max()
    facts.append((_("Sessions"), _("{n} ({first:g}–{last:g})").format(n=len(mine), first=first, last=last)))
    if "symptoms" in s.measures:
        scores = mine.dropna(subset=["symptoms"])
        if len(scores):
            d = decimals_for(scores["symptoms"])
            facts.append((_("Latest symptom score"), _("{score} (s. {session:g})").format(
                score=format_number(scores["symptoms"].iloc[-1], d), session=scores["session"].iloc[-1])))
            if len(scores) > 1:
                facts.append((_("Symptom change (first → last)"),
                              format_number(scores["symptoms"].iloc[-1] - scores["symptoms"].iloc[0], d, signed=True)))
    if "alliance" in s.measures:
        allied = mine.dropna(subset=["alliance"])
        if len(allied):
            facts.append((_("Latest alliance score"), _("{score} (s. {session:g})").format(
                score=format_number(allied["alliance"].iloc[-1], decimals_for(allied["alliance"])),
                session=allied["session"].iloc[-1])))
    return facts


def _change(s: PatientSummary) -> tuple[str | None, str | None]:
    """The Jacobson–Truax status and its sentence (None without two symptom scores or a reliable change)."""
    if "symptoms" not in s.measures or not s.settings.reliable_change:
        return None, None
    scores = s.sessions["symptoms"].dropna()
    if len(scores) < 2:
        return None, None
    status = jacobson_truax_status(scores.iloc[0], scores.iloc[-1], s.settings.reliable_change, s.settings.cutoff,
                                   s.settings.higher_is_worse)
    return status, change_sentence(scores.iloc[0], scores.iloc[-1], status, s.settings.reliable_change,
                                   decimals_for(scores))


def _definitions(s: PatientSummary) -> list[str]:
    out = []
    if s.model is not None:
        out.append(_("Early-warning signal. {definition}").format(definition=definition(s.model, s.settings)))
    if s.settings.reliable_change:
        cut = (_(" Clinical cut-off: {cutoff}; a score above it is in the clinical range.").format(
            cutoff=number(s.settings.cutoff, ".3g")) if s.settings.cutoff is not None else "")
        out.append(_("Reliable change (Jacobson & Truax, 1991): a change from the first to the last symptom score of at "
                     "least {rc} points. Recovered: a reliable improvement from the clinical into the non-clinical "
                     "range; improved or deteriorated: a reliable change; otherwise unchanged.").format(
            rc=number(s.settings.reliable_change, ".3g")) + cut)
    if "alliance" in s.measures:
        out.append(_("Possible rupture: alliance more than {threshold} of the patient's own SDs below the patient's "
                     "own mean so far (the sessions up to and including that one); repaired when the next session is "
                     "back at or above that limit.").format(threshold=number(s.threshold, "g")))
    out.extend(s.notes)
    return out


def _draw(s: PatientSummary, chart_height: float):
    when = s.when or datetime.now().astimezone()
    page = _Page(_("Patient summary: {patient}").format(patient=s.patient), s.produced_by or "", when)
    pdf = page.pdf
    pdf.set_y(MARGIN)
    page.text(_("Patient summary: {patient}").format(patient=s.patient), size=16, bold=True, gap=0.5, height=7.5)
    from core.demo import DEMO_LABEL

    dataset = _(DEMO_LABEL) if s.dataset == DEMO_LABEL else s.dataset
    line = _("Data set: {dataset}").format(dataset=dataset)
    if s.demo:
        line += " · " + _("demo data")
    page.text(line, size=9, colour=pal.MUTED_TEXT, gap=2.5)

    # key figures in one band of columns
    facts = _facts(s)
    status, sentence = _change(s)
    if status is not None:
        facts.append((_("Jacobson–Truax status"), jt_word(status)))
    col_w = page.width / max(1, len(facts))
    top = pdf.get_y()
    pdf.set_draw_color(*_rgb(pal.GRID))
    pdf.set_line_width(0.3)
    pdf.line(MARGIN, top, PAGE_W - MARGIN, top)
    bottom = top
    for k, (label, value) in enumerate(facts):
        pdf.set_xy(MARGIN + k * col_w, top + 1.5)
        pdf.set_font(FONT, "", 7.5)
        pdf.set_text_color(*_rgb(pal.MUTED_TEXT))
        pdf.multi_cell(col_w - 2, 3.4, label, align="L", new_x="LEFT", new_y="NEXT")
        pdf.set_font(FONT, "B", 10.5)
        pdf.set_text_color(*_rgb(pal.TEXT))
        pdf.multi_cell(col_w - 2, 4.8, value, align="L", new_x="LEFT", new_y="NEXT")
        bottom = max(bottom, pdf.get_y())
    pdf.line(MARGIN, bottom + 1.5, PAGE_W - MARGIN, bottom + 1.5)
    pdf.set_y(bottom + 4)

    # the current status and why
    now = s.signal.iloc[-1] if s.signal is not None and len(s.signal) else None
    if now is not None:
        word, colour, _symbol = STATUS_STYLE.get(now["status"], STATUS_STYLE["unknown"])
        text = f"{STATUS_GLYPH.get(now['status'], '')} " + status_sentence(now["status"], now["session"], now["reason"])
        page.text(_("Early-warning status now"), size=8, colour=pal.MUTED_TEXT, gap=0.3)
        page.text(text, size=10.5, bold=True, colour=colour, gap=1.0, height=5)
    unrepaired = s.sessions[s.sessions["rupture"].astype(bool) & ~s.sessions["repaired"].fillna(False).astype(bool)] \
        if "rupture" in s.sessions else s.sessions.iloc[:0]
    if len(unrepaired):
        when_r = unrepaired["session"].iloc[-1]
        note = (_("a rupture in session {session:g} (no session since to see it repaired)")
                if when_r == s.sessions["session"].iloc[-1]
                else _("a rupture in session {session:g} not repaired in the next session")).format(session=when_r)
        page.text(_("Needs attention: {rupture}.").format(rupture=note), size=9.5, bold=True, colour=pal.WORSE, gap=1.0)
    pdf.set_y(pdf.get_y() + 1)

    # the chart, as on the patient page
    fig = patient_chart(s.sessions, s.measures, signal=s.signal, cutoff=s.settings.cutoff, labels=s.labels,
                        ranges=s.ranges)
    from core.reporting.pdf_chart import draw_figure

    y = pdf.get_y()
    draw_figure(pdf, fig, MARGIN, y, page.width, chart_height, font=FONT)
    pdf.set_y(y + chart_height + 2)

    # sentences: reliable change, ruptures
    sentences = []
    if sentence:
        sentences.append(sentence)
    ruptures = rupture_sentences(s.sessions)
    sentences.extend(ruptures[:MAX_RUPTURE_SENTENCES])
    if len(ruptures) > MAX_RUPTURE_SENTENCES:
        sentences.append(_("{n} more possible ruptures: see the patient page.").format(
            n=len(ruptures) - MAX_RUPTURE_SENTENCES))
    if "alliance" in s.measures and not ruptures:
        sentences.append(_("No possible rupture: alliance never fell more than {threshold} of the patient's own SDs "
                           "below the mean so far.").format(threshold=number(s.threshold, "g")))
    for text in sentences:
        page.text("• " + text, size=9, gap=0.6, height=4.2)

    # footnote: definitions, then who and when
    pdf.set_y(pdf.get_y() + 2)
    pdf.set_draw_color(*_rgb(pal.GRID))
    pdf.line(MARGIN, pdf.get_y(), MARGIN + 60, pdf.get_y())
    pdf.set_y(pdf.get_y() + 1.5)
    page.text(_("Definitions"), size=7.5, bold=True, colour=pal.MUTED_TEXT, gap=0.3, height=3.3)
    for text in _definitions(s):
        page.text(text, size=6.6, colour=pal.MUTED_TEXT, gap=0.8, height=2.9)
    stamp = when.strftime("%Y-%m-%d %H:%M")
    who = s.produced_by or _("someone not signed in")
    page.text(_("Produced on {date} by {user} with the alliance dashboard, from the data set '{dataset}'. "
                "Page 1 of 1.").format(date=stamp, user=who, dataset=dataset), size=6.6, colour=pal.MUTED_TEXT,
              gap=0, height=2.9)
    return pdf
