"""Reciprocal dynamics page through AppTest: one file with a study column, several files, pooling."""
import json
from pathlib import Path

import pytest
import streamlit as st
from app_support import open_page

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
REF = json.loads((ROOT / "tests" / "expected" / "multistudy_public_meta.json").read_text())


@pytest.fixture(autouse=True)
def fresh_cache():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def _metric(at, label, n=0):
    """A quantity of the n-th pooled summary table (one quantity per row; a true minus sign)."""
    tables = [d.value for d in at.dataframe if list(d.value.columns) == ["quantity", "value"]]
    value = tables[n].set_index("quantity")["value"]
    names = {"Pooled estimate": "Pooled estimate", "95% CI": "95% confidence interval"}
    return value[names.get(label, label)].replace("\u2212", "-")


def test_demo_is_one_study_with_lagged_effects():
    at = open_page("dynamics")
    assert not at.error
    assert any("One study" in i.value for i in at.info)
    assert len(at.dataframe[0].value) == 1


def test_multistudy_file_matches_reference_and_switches_method_without_refit(monkeypatch):
    at = open_page("dynamics")
    at.radio(key="dyn_source").set_value("Upload studies").run()
    data = (DATA / "multistudy_public.csv").read_bytes()
    at.file_uploader(key="dyn_files").set_value([("multistudy.csv", data, "text/csv")]).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="dyn_map_study").value == "study"
    ref = REF["pooled"]["alliance_to_symptoms"]["reml"]
    assert float(_metric(at, "Pooled estimate")) == pytest.approx(ref["estimate"], abs=5e-4)
    assert len([c for c in at.get("plotly_chart") if c.key.startswith("forest_")]) == 2
    # switching the estimator re-pools without refitting stage 1
    import core.stats.meta as meta
    calls = []
    original = meta.lagged_within_effects
    # the page imports it from core.stats.meta on every run: a refit would call the patched function
    monkeypatch.setattr(meta, "lagged_within_effects", lambda *a, **k: calls.append(1) or original(*a, **k))
    at.radio(key="dyn_method").set_value("dl").run()
    ref_dl = REF["pooled"]["alliance_to_symptoms"]["dl"]
    assert float(_metric(at, "Pooled estimate")) == pytest.approx(ref_dl["estimate"], abs=5e-4)
    assert calls == []


def test_several_files_one_per_study():
    import pandas as pd
    frame = pd.read_csv(DATA / "multistudy_public.csv")
    files = []
    for study, part in list(frame.groupby("study"))[:3]:
        files.append((f"{study}.csv", part.drop(columns="study").to_csv(index=False).encode(), "text/csv"))
    at = open_page("dynamics")
    at.radio(key="dyn_source").set_value("Upload studies").run()
    at.file_uploader(key="dyn_files").set_value(files).run()
    assert not at.exception and not at.error
    stage1 = at.dataframe[0].value
    assert list(stage1["study"]) == ["S01", "S02", "S03"]
    s01 = REF["stage1"]["S01"]["alliance_to_symptoms"]
    assert stage1.loc[0, "estimate alliance_to_symptoms"] == pytest.approx(s01["estimate"], abs=1e-4)


def test_pool_given_effects():
    at = open_page("dynamics")
    at.radio(key="dyn_source").set_value("Pool given effects").run()
    at.file_uploader(key="pool_file").set_value(("bcg.csv", (DATA / "pool_bcg.csv").read_bytes(), "text/csv")).run()
    assert not at.exception
    ref = json.loads((ROOT / "tests" / "expected" / "pool_bcg.json").read_text())["reml"]
    assert float(_metric(at, "Pooled estimate")) == pytest.approx(ref["estimate"], abs=5e-4)
    at.checkbox(key="dyn_kh").check().run()
    kh = json.loads((ROOT / "tests" / "expected" / "pool_bcg.json").read_text())["reml_knapp_hartung"]
    assert _metric(at, "95% CI") == f"{kh['ci_low']:.3f} to {kh['ci_high']:.3f}"
