"""Tables in the paper's shape, plain-language sentences, and the self-contained HTML report."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.intake.mapping import ColumnMapping
from core.intake.reading import read_table
from core.intake.validation import validate_table
from core.reporting.tables import (
    describe_effect,
    describe_model,
    fixed_effects_table,
    variance_table,
)
from core.stats.models import BuilderOptions, fit_custom_model, fit_ladder

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "paperlike_public.csv"
FLAGS = ["--patient", "patient", "--session", "session", "--symptoms", "symptoms", "--alliance", "alliance",
         "--therapist", "therapist"]


@pytest.fixture(scope="module")
def fitted():
    v = validate_table(read_table(DATA), ColumnMapping(patient="patient", therapist="therapist",
                                                       session="session", alliance="alliance", symptoms="symptoms"))
    return v, fit_ladder(v.data)


def test_fixed_table_has_paper_columns_and_labels(fitted):
    _, ladder = fitted
    table = fixed_effects_table(ladder.models)
    assert list(table.columns) == ["model", "effect", "term", "estimate", "se", "df", "t", "p", "ci_low", "ci_high"]
    hybrid = table[table["model"] == "hybrid"].set_index("term")
    assert hybrid.loc["between", "effect"].startswith("Between: patient mean alliance")
    assert len(variance_table(ladder.models)) == 2 * 5 + 1 + 4  # 2 per RI model, 3 for 3-level, 4 for slope


def test_sentences_state_direction_and_size(fitted):
    _, ladder = fitted
    hybrid = ladder.models["hybrid"]
    between = hybrid.term("between")
    text = describe_effect("between", between, hybrid)
    assert text.startswith("Patients whose average alliance score was one point higher had symptom scores "
                           "0.36 points lower")
    within = describe_effect("within", hybrid.term("within"), hybrid)
    assert within.startswith("In sessions where the alliance score was one point above the patient's own average, "
                             "the symptom score was 0.01 points lower")
    assert "p = .837" in within
    assert len(describe_model(ladder.models["interaction"])) == 4


def test_reverse_direction_sentence(fitted):
    v, _ = fitted
    m = fit_custom_model(v.data, BuilderOptions(direction="symptoms_to_alliance"))
    sentences = describe_model(m)
    assert sentences[1].startswith("Patients whose average symptom score was one point higher had alliance scores ")
    assert sentences[2].startswith("In sessions where the symptom score was one point above the patient's own "
                                   "average, the alliance score was ")
    assert not any("symptoms was" in s or "0.00 points" in s for s in sentences)


def test_report_numbers_equal_analyze_and_open_offline(tmp_path):
    html_path, json_path = tmp_path / "r.html", tmp_path / "r.json"
    for cmd, out in (("report", html_path), ("analyze", json_path)):
        r = subprocess.run([sys.executable, "-m", "core", cmd, str(DATA), *FLAGS, "--out", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    text = html_path.read_text(encoding="utf-8")
    embedded = re.search(r"<script type='application/json' id='analysis-json'>(.*?)</script>", text, re.S).group(1)
    import html as htmlmod
    from_report = json.loads(htmlmod.unescape(embedded))
    analyze = json.loads(json_path.read_text())
    assert from_report["models"] == analyze["models"]
    assert from_report["comparisons"] == analyze["comparisons"]
    assert from_report["icc"] == analyze["icc"]
    # tables show the same numbers, rounded
    between = analyze["models"]["hybrid"]["fixed"]["between"]
    assert f"{between['estimate']:.4f}" in text and f"{between['df']:.4f}" in text
    # self-contained: plotly is inline, no external script or stylesheet
    assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+href=", text)
    assert text.count('class="plotly-graph-div"') == 5  # 4 ladder figures + the RI-CLPM path diagram
    for heading in ("Rows left out", "Definitions and methods", "Software and seed", "Likelihood-ratio tests"):
        assert heading in text


def test_report_with_builder_model(tmp_path):
    out = tmp_path / "b.html"
    r = subprocess.run([sys.executable, "-m", "core", "report", str(DATA), *FLAGS, "--builder", "--reverse",
                        "--detrend", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    text = out.read_text(encoding="utf-8")
    assert "alliance ~ between + within + time + (1 | patient)" in text
    assert "symptoms → alliance; controlling for time" in text


def test_report_bad_input_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "core", "report", str(DATA), "--patient", "nope", "--session", "session",
                        "--symptoms", "symptoms"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "nope" in r.stderr


@pytest.mark.slow
def test_report_signal_section_equals_the_signal_command(tmp_path):
    html_path, json_path = tmp_path / "s.html", tmp_path / "s.json"
    for cmd, out in (("report", html_path), ("signal", json_path)):
        r = subprocess.run([sys.executable, "-m", "core", cmd, str(DATA), *FLAGS, "--out", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    text = html_path.read_text(encoding="utf-8")
    assert "Early-warning signal" in text and "How well the signal predicted outcomes in this data set" in text
    import html as htmlmod
    embedded = json.loads(htmlmod.unescape(
        re.search(r"<script type='application/json' id='signal-json'>(.*?)</script>", text, re.S).group(1)))
    signal = json.loads(json_path.read_text())
    assert embedded["validation"] == signal["validation"] and embedded["current"] == signal["current"]
    assert embedded["model"] == signal["model"] and "patients" not in embedded  # no per-patient rows
    row = signal["validation"]["outcomes"]["deterioration"]["by_session"][0]
    sens = row["sensitivity"]
    assert f"{sens['n']} of {sens['of']}" in text
    assert signal["calibration"]["sentence"] in text and "The two rules side by side" in text
    r = subprocess.run([sys.executable, "-m", "core", "report", str(DATA), *FLAGS, "--no-signal", "--out",
                        str(tmp_path / "n.html")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "Early-warning signal" not in (tmp_path / "n.html").read_text(encoding="utf-8")
