"""Model explorer through AppTest: levels, ladder, builder options, messages, report button."""

import pytest
import streamlit as st
from app_support import open_page, paperlike_dataset

from core.intake.dataset import Dataset


@pytest.fixture(autouse=True)
def fresh_cache():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def test_levels_and_ladder_on_uploaded_data():
    at = open_page("models", paperlike_dataset())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Patient ICC"] == "0.868" and metrics["Therapist share"] == "0.000"
    assert any("two-level model" in i.value for i in at.info)
    ladder = at.dataframe[0].value  # the ladder is the page's first table
    between = ladder[(ladder["model"] == "hybrid") & ladder["effect"].str.startswith("Between")].iloc[0]
    assert between["estimate"] == pytest.approx(-0.3629, abs=1e-4)
    text = " ".join(m.value for m in at.markdown)
    assert "Patients whose average alliance score was one point higher had symptom scores 0.36 points lower" in text
    # the singular three-level fit is reported in words
    assert any("Singular fit" in w.value for w in at.warning)


def test_builder_options_change_the_model():
    at = open_page("models", paperlike_dataset())
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
    ds = paperlike_dataset()
    data = ds.validated.data.copy()
    data["group"] = ["a" if int(p[-1]) % 2 else "b" for p in data["patient"]]
    from dataclasses import replace
    ds2 = Dataset(name="with group", validated=replace(ds.validated, data=data))
    at = open_page("models", ds2)
    at.multiselect(key="mb_covariates").set_value(["group"]).run()
    effects = [e for df in at.dataframe if "effect" in df.value.columns for e in df.value["effect"]]
    assert "group = b (vs a)" in effects
    assert at.code[0].value == "symptoms ~ between + within + group + (1 | patient)"
    assert at.text_input(key="mb_formula").value == at.code[0].value  # the builder writes the formula


def test_report_button_present_on_demo():
    at = open_page("models")
    labels = [b.label for b in at.get("download_button")]
    assert "Download the report (HTML)" in labels
    assert "Fixed effects (CSV)" in labels
