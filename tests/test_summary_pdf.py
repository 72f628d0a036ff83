"""The one-page patient summary (core/reporting/summary_pdf.py, core/reporting/pdf_chart.py): one A4
page in English and Spanish, its text extractable, the chart drawn with the screen's palette and labels,
the fonts bundled and embedded, nothing that points outside the file."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from core.clinical.signal import fit_signal_model, published_settings
from core.i18n import language
from core.reporting import palette as pal
from core.reporting.patient_text import chart_labels
from core.reporting.summary_pdf import summarise_patient, summary_pdf


@pytest.fixture(scope="module")
def clinic():
    from core.demo import demo_dataset

    ds = demo_dataset()
    settings, _note = published_settings(ds.data["symptoms"])
    return ds, settings, fit_signal_model(ds.data, settings)


def _summary(clinic, patient="D003", data=None):
    ds, settings, model = clinic
    labels = chart_labels(["symptoms", "alliance"], symptom_scale="total", alliance_range=(1, 7), alliance_is_ans=True)
    return summarise_patient(ds.data if data is None else data, patient, dataset=ds.name, settings=settings,
                             model=model, labels=labels, ranges={"alliance": (1, 7)}, produced_by="Dr. Test",
                             demo=True)


def _pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", pdf))


def _text(pdf: bytes, tmp_path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    path = tmp_path / "s.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("lang, words", [
    ("en", ["Patient summary: D003", "Not on track (session 8)", "100", "T03 Carla", "OQ-45.2 total",
            "Alliance, ANS mean", "Possible rupture in session 3", "Reliable change (Jacobson & Truax, 1991)",
            "Produced on", "Dr. Test", "demo data", "unchanged"]),
    ("es", ["Resumen del paciente: D003", "Fuera de curso (sesión 8)", "100", "T03 Carla", "OQ-45.2",
            "Posible ruptura en la sesión 3", "Cambio confiable (Jacobson y Truax, 1991)", "Generado el",
            "Dr. Test", "datos de demostración", "sin cambio", "4,28"]),
])
def test_one_page_in_both_languages_with_extractable_text(clinic, tmp_path, lang, words):
    with language(lang):
        pdf = summary_pdf(_summary(clinic))
    assert pdf.startswith(b"%PDF") and _pages(pdf) == 1
    text = " ".join(_text(pdf, tmp_path).split())
    for w in words:
        assert w in text, (w, text[:400])


def test_fonts_are_the_bundled_ones_and_nothing_points_outside(clinic):
    pdf = summary_pdf(_summary(clinic))
    names = set(re.findall(rb"/FontName\s*/[A-Z]{6}\+(\S+)", pdf))
    assert names == {b"DejaVuSansBook", b"DejaVuSansBold"}, names
    assert b"/FontFile2" in pdf  # embedded (subset), not a font the reader must have
    assert b"/URI" not in pdf and b"http" not in pdf.replace(b"http://ns.adobe.com", b"")


def test_chart_is_vector_and_uses_the_screens_palette(clinic):
    from fpdf import FPDF

    from core.reporting.figures import patient_chart
    from core.reporting.pdf_chart import draw_figure
    from core.reporting.summary_pdf import FONT, FONTS

    s = _summary(clinic)
    fig = patient_chart(s.sessions, s.measures, signal=s.signal, cutoff=s.settings.cutoff, labels=s.labels,
                        ranges=s.ranges)
    pdf = FPDF(unit="mm", format="A4")
    pdf.set_compression(False)
    pdf.add_font(FONT, "", FONTS / "DejaVuSans.ttf")
    pdf.add_font(FONT, "B", FONTS / "DejaVuSans-Bold.ttf")
    pdf.add_page()
    draw_figure(pdf, fig, 14, 20, 182, 120, font=FONT)
    page = bytes(pdf.output()).decode("latin-1")
    assert "/Subtype /Image" not in page  # drawn, not a picture
    colours = {t.line.color for t in fig.data if t.line is not None and t.line.color} | \
        {t.marker.color for t in fig.data if t.marker is not None and isinstance(t.marker.color, str)}
    assert {pal.WORSE, pal.WARNING, pal.BETTER, pal.ALLIANCE, pal.EXPECTED, pal.CUTOFF} <= colours
    drawn = [tuple(float(v) for v in m) for m in re.findall(r"(\d[\d.]*) (\d[\d.]*) (\d[\d.]*) (?:RG|rg)", page)]
    for colour in colours:  # fpdf2 writes each channel / 255 with 4 decimals
        r, g, b, _a = pal.parse_colour(colour)
        assert any(max(abs(x - y) for x, y in zip(d, (r / 255, g / 255, b / 255))) < 1e-3 for d in drawn), colour


def test_a_long_course_with_many_ruptures_stays_on_one_page(clinic):
    rng = np.random.default_rng(3)
    n = 40
    data = pd.DataFrame({"patient": "LONG", "therapist": "T9", "session": np.arange(1, n + 1),
                         "alliance": np.where(np.arange(n) % 3 == 2, 2.0, 6.0) + rng.normal(0, 0.1, n),
                         "symptoms": np.linspace(120, 60, n).round()})
    ds, _settings, _model = clinic
    both = pd.concat([ds.data, data], ignore_index=True)
    s = _summary(clinic, "LONG", both)
    pdf = summary_pdf(s)
    assert _pages(pdf) == 1
    assert len(s.sessions) == n and s.sessions["rupture"].sum() > 5
