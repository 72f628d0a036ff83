"""The RI-CLPM in words, tables, the path diagram and the HTML report."""
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from core.reporting.figures import riclpm_path_diagram
from core.reporting.riclpm_report import (
    describe_riclpm,
    fit_for_report,
    fit_indices_table,
    lagged_effects_table,
    random_intercepts_table,
)
from core.stats.riclpm import fit_riclpm

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EXPECTED = ROOT / "tests" / "expected" / "riclpm"


@pytest.fixture(scope="module")
def paperlike():
    return fit_riclpm(pd.read_csv(DATA / "paperlike_public.csv", dtype={"patient": str}), 1, 4)


@pytest.fixture(scope="module")
def ipd_free():
    return fit_riclpm(pd.read_csv(DATA / "ipd300.csv", dtype={"patient": str}), 1, 7, free_lags=True)


def _texts(fig):
    return [a.text for a in fig.layout.annotations if a.text]


def test_diagram_labels_every_lag_with_estimate_and_stars(paperlike):
    ref = json.loads((EXPECTED / "paperlike_1-4.json").read_text())["lagged"]
    texts = _texts(riclpm_path_diagram(paperlike))
    # equal lags: each of the 4 effects on each of the 3 session pairs; as −0.20*** (p < .001)
    assert texts.count("−0.20***") == 3 and ref["alliance_to_symptoms"]["p"] < 0.001
    assert texts.count("−0.24") == 3 and ref["symptoms_to_alliance"]["p"] > 0.05  # not significant: no star
    assert texts.count("0.28*") == 3 and texts.count("0.36*") == 3
    assert any("session 1" in t for t in texts)  # 4 sessions: full box labels
    assert any(t.startswith("covariance<br>−0.125***") and "r = −0.46" in t for t in texts)
    assert any("variance 0.325***" in t for t in texts)
    arrows = [a for a in riclpm_path_diagram(paperlike).layout.annotations if a.showarrow]
    grey = [a for a in arrows if a.arrowcolor == "#8a8a8a"]  # 3:1 on white and on the boxes (issue 18)
    assert len(grey) == 3  # the three non-significant symptoms → alliance arrows


def test_diagram_standardized_and_free_lags(paperlike, ipd_free):
    std = paperlike.lagged["alliance_to_symptoms"]["std_all"]
    texts = _texts(riclpm_path_diagram(paperlike, standardized=True))
    for value in std:
        assert f"{value:.2f}".replace("-", "−") + "***" in texts
    fig = riclpm_path_diagram(ipd_free)
    texts = _texts(fig)
    assert "A1" in " ".join(texts) and "S7" in " ".join(texts)  # 7 sessions: compact boxes
    for e in ipd_free.lagged["symptoms_autoregressive"]:
        stars = "***" if e["p"] < .001 else "**" if e["p"] < .01 else "*" if e["p"] < .05 else ""
        assert f"{e['estimate']:.2f}".replace("-", "−") + stars in texts
    assert len(fig.data[0].hovertext) == 4 * 6 + 1  # every lag and the covariance can be hovered


def test_tables_and_sentences(paperlike, ipd_free):
    table = lagged_effects_table(paperlike)
    assert len(table) == 4 and "std.all range" in table.columns
    assert len(lagged_effects_table(ipd_free)) == 24 and "sessions" in lagged_effects_table(ipd_free).columns
    ri = random_intercepts_table(paperlike)
    assert ri.loc[3, "estimate"] == pytest.approx(-0.4629, abs=1e-4)
    fit = fit_indices_table(paperlike).set_index("index")["value"]
    assert fit["df"] == "17" and fit["χ²"] == "24.601"
    sentences = describe_riclpm(paperlike)
    assert sentences[0].startswith("When a patient's alliance in a session is one point above")
    assert "0.199 points below" in sentences[0] and "statistically significant" in sentences[0]
    assert "not statistically significant" in sentences[1]
    assert any(s.startswith("Fit: χ²(17) = 24.60") for s in sentences)
    free = describe_riclpm(ipd_free)
    assert "free per session pair" in free[0]


def test_fit_for_report_explains_refusals():
    data = pd.read_csv(DATA / "paperlike_public.csv", dtype={"patient": str})
    assert "at least 3 sessions" in fit_for_report(data, 1, 2)
    assert "needs both alliance and symptoms" in fit_for_report(data.drop(columns="alliance"))
    assert fit_for_report(data).fit["df"] == 17


def test_html_report_has_the_riclpm_section_and_json(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "report.html"
    flags = ["--patient", "patient", "--session", "session", "--symptoms", "symptoms", "--alliance", "alliance"]
    r = subprocess.run([sys.executable, "-m", "core", "report", str(DATA / "paperlike_public.csv"), *flags,
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "Random-intercept cross-lagged panel model (RI-CLPM)" in text
    assert "within-person carry-over" in text
    import html

    embedded = re.search(r"<script type='application/json' id='analysis-json'>(.*?)</script>", text, re.S).group(1)
    analysis = json.loads(html.unescape(embedded))
    ref = json.loads((EXPECTED / "paperlike_1-4.json").read_text())
    got = analysis["riclpm"]
    assert got["sessions"] == 4 and got["fit"]["df"] == 17
    assert abs(got["fit"]["chisq"] - ref["fit"]["chisq"]) < 0.05
    assert abs(got["lagged"]["alliance_to_symptoms"]["estimate"] - ref["lagged"]["alliance_to_symptoms"]["estimate"]) \
        <= 0.01 * ref["lagged"]["alliance_to_symptoms"]["se"]
    # options and refusals reach the report
    r = subprocess.run([sys.executable, "-m", "core", "report", str(DATA / "paperlike_public.csv"), *flags,
                        "--sessions", "1-2", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Not fitted: The RI-CLPM needs at least 3 sessions" in out.read_text()


def test_report_without_riclpm():
    from core.intake.mapping import ColumnMapping
    from core.intake.reading import read_table
    from core.intake.validation import validate_table
    from core.reporting.html_report import build_html_report
    from core.stats.models import fit_ladder

    v = validate_table(read_table(DATA / "paperlike_public.csv"),
                       ColumnMapping(patient="patient", session="session", symptoms="symptoms"))
    text = build_html_report(v, fit_ladder(v.data))  # no alliance: no section, no key
    assert "RI-CLPM" not in text and '"riclpm"' not in text
