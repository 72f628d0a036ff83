"""The RI-CLPM section of the Reciprocal dynamics page through AppTest (lavaan's numbers on screen)."""
import json
from pathlib import Path

import pytest
import streamlit as st
from app_support import open_page, paperlike_dataset

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ROOT / "tests" / "expected" / "riclpm"


@pytest.fixture(autouse=True)
def fresh_cache():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def _metric(at, label):
    return [m.value for m in at.metric if m.label == label][0]


def _num(cell) -> float:
    """A table cell as a number: a numeric cell, or one written as text with the minus sign U+2212."""
    return float(str(cell).replace("\u2212", "-"))


def _lagged_table(at):
    return next(d.value for d in at.dataframe if "effect" in d.value.columns and "std.all" in d.value.columns)


def test_paperlike_riclpm_matches_lavaan_and_caches():
    ref = json.loads((EXPECTED / "paperlike_1-4.json").read_text())
    at = open_page("dynamics", dataset=paperlike_dataset())
    assert not at.exception and not at.error
    assert at.select_slider(key="ri_sessions").value == (1, 4)
    assert _metric(at, "Patients") == "96" and _metric(at, "Sessions") == "1–4"
    assert _metric(at, f"χ² (df = {ref['fit']['df']})") == f"{ref['fit']['chisq']:.2f}"
    assert _metric(at, "CFI") == f"{ref['fit']['cfi']:.3f}"
    table = _lagged_table(at)
    row = table[table["effect"].str.startswith("Alliance → next-session symptoms")].iloc[0]
    want = ref["lagged"]["alliance_to_symptoms"]
    assert abs(_num(row["estimate"]) - want["estimate"]) <= 0.01 * want["se"] + 5e-5
    assert _num(row["se"]) == pytest.approx(want["se"], rel=0.02)
    assert _num(row["p"]) == pytest.approx(want["p"], rel=0.01)
    assert any(c.key == "ri_diagram_fig" for c in at.get("plotly_chart"))
    assert any("within-person carry-over" in m.value for m in at.markdown)
    # a display option does not refit
    import core.stats.riclpm as riclpm
    calls = []
    original = riclpm.fit_riclpm
    riclpm.fit_riclpm = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        at.radio(key="ri_diagram").set_value("standardized").run()
    finally:
        riclpm.fit_riclpm = original
    assert not at.exception and calls == []


def test_free_lags_and_a_range_too_short():
    at = open_page("dynamics", dataset=paperlike_dataset())
    at.checkbox(key="ri_free").check().run()
    assert not at.exception and not at.error
    table = _lagged_table(at)
    assert "sessions" in table.columns and len(table) == 12  # 4 effects x 3 session pairs
    at.select_slider(key="ri_sessions").set_value((1, 2)).run()
    assert any("at least 3 sessions" in e.value for e in at.warning)


def test_demo_clinic_fits():
    at = open_page("dynamics")
    assert not at.exception and not at.error
    assert _metric(at, "Patients") == "120"
    assert at.select_slider(key="ri_sessions").value == (1, 8)


def test_one_study_at_a_time_from_a_multistudy_upload():
    import pandas as pd

    from core.stats.riclpm import fit_riclpm, identified_sessions

    frame = pd.read_csv(ROOT / "tests" / "data" / "multistudy_public.csv", dtype={"patient": str})
    two = frame[frame["study"].isin(["S01", "S02"])]
    at = open_page("dynamics")
    at.radio(key="dyn_source").set_value("Upload studies").run()
    at.file_uploader(key="dyn_files").set_value([("two.csv", two.to_csv(index=False).encode(), "text/csv")]).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="ri_study").options == ["S01", "S02"]
    at.selectbox(key="ri_study").set_value("S02").run()
    s02 = two[two["study"] == "S02"]
    want = fit_riclpm(s02, *identified_sessions(s02))  # the default: the widest identified range
    assert _metric(at, "Patients") == str(want.n_patients)
    assert _metric(at, f"χ² (df = {want.fit['df']})") == f"{want.fit['chisq']:.2f}"
