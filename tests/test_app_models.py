"""Model explorer through AppTest: levels, ladder, builder options, messages, report button."""
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.datasets import Dataset, MemoryStore
from core.mapping import ColumnMapping
from core.reading import read_table
from core.validation import validate_table

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")


@pytest.fixture(autouse=True)
def fresh_cache():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def _page(dataset=None):
    at = AppTest.from_file(APP, default_timeout=120)
    if dataset is not None:
        store = MemoryStore()
        store.put(dataset)
        at.session_state["dataset_store"] = store
        at.session_state["active_dataset"] = dataset.name
    at.run()
    at.switch_page(str(ROOT / "pages" / "models.py"))
    at.run()
    assert not at.exception, at.exception
    return at


def _paperlike():
    raw = read_table(ROOT / "tests" / "data" / "paperlike_public.csv")
    v = validate_table(raw, ColumnMapping(patient="patient", therapist="therapist", session="session",
                                          alliance="alliance", symptoms="symptoms"))
    return Dataset(name="paperlike", validated=v)


def test_levels_and_ladder_on_uploaded_data():
    at = _page(_paperlike())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Patient ICC"] == "0.868" and metrics["Therapist share"] == "0.000"
    assert any("two-level model" in i.value for i in at.info)
    ladder = at.dataframe[0].value  # the ladder is the page's first table
    between = ladder[(ladder["model"] == "hybrid") & ladder["effect"].str.startswith("Between")].iloc[0]
    assert between["estimate"] == pytest.approx(-0.3629, abs=1e-4)
    text = " ".join(m.value for m in at.markdown)
    assert "Patients whose average alliance was one point higher had 0.36 points lower symptoms" in text
    # the singular three-level fit is reported in words
    assert any("Singular fit" in w.value for w in at.warning)


def test_builder_options_change_the_model():
    at = _page(_paperlike())
    assert at.code[0].value == "symptoms ~ between + within + (1 | patient)"
    at.checkbox(key="mb_detrend").check().run()
    at.checkbox(key="mb_interaction").check().run()
    assert at.code[0].value == "symptoms ~ between + within + between:within + time + (1 | patient)"
    at.radio(key="mb_direction").set_value("symptoms_to_alliance").run()
    assert at.code[0].value.startswith("alliance ~ between + within")
    at.checkbox(key="mb_therapist").check().run()
    at.checkbox(key="mb_slope").check().run()
    assert "(1 | therapist) + (within | patient)" in at.code[0].value
    assert not at.exception


def test_covariate_is_dummy_coded():
    ds = _paperlike()
    data = ds.validated.data.copy()
    data["group"] = ["a" if int(p[-1]) % 2 else "b" for p in data["patient"]]
    from dataclasses import replace
    ds2 = Dataset(name="with group", validated=replace(ds.validated, data=data))
    at = _page(ds2)
    at.multiselect(key="mb_covariates").set_value(["group"]).run()
    effects = [e for df in at.dataframe if "effect" in df.value.columns for e in df.value["effect"]]
    assert "group = b (vs a)" in effects
    assert at.code[0].value == "symptoms ~ between + within + cov_group_b + (1 | patient)"


def test_report_button_present_on_demo():
    at = _page()
    labels = [b.label for b in at.get("download_button")]
    assert "Download the report (HTML)" in labels
    assert "Fixed effects (CSV)" in labels
