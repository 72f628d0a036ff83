"""Every page on a spreadsheet with blank cells (tests/data/paperlike_messy.csv), through AppTest:
no session with a symptom score is lost for a blank alliance cell, dropout counts sessions, the
Model explorer fits any formula and lists the rows each model leaves out."""
import pytest
import streamlit as st
from app_support import ROOT, open_page

from core.intake.dataset import Dataset
from core.intake.mapping import ColumnMapping
from core.intake.reading import read_table
from core.intake.validation import validate_table
from core.stats.decomposition import dropout

TIMEOUT = 180


@pytest.fixture(autouse=True)
def fresh_cache():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def messy() -> Dataset:
    raw = read_table(ROOT / "tests" / "data" / "paperlike_messy.csv")
    mapping = ColumnMapping(patient="patient", therapist="therapist", session="session",
                            alliance="alliance", symptoms="symptoms")
    return Dataset(name="messy", validated=validate_table(raw, mapping))


def test_dropout_counts_sessions_not_complete_rows():
    ds = messy()
    clean = read_table(ROOT / "tests" / "data" / "paperlike_public.csv")
    clean_ds = validate_table(clean, ds.validated.mapping)
    assert len(ds.data) == 328 and ds.validated.excluded.empty  # every session has a usable measure
    assert dropout(ds.data) == dropout(clean_ds.data)  # blank cells are not dropouts


def test_home_page_on_blank_cells():
    at = open_page("home", messy(), timeout=TIMEOUT)
    metrics = {m.label: m.value for m in at.metric}
    clean = validate_table(read_table(ROOT / "tests" / "data" / "paperlike_public.csv"), messy().validated.mapping)
    assert metrics["Sessions"] == "328"
    assert metrics["Dropout before session 4"] == f"{dropout(clean.data)['share']:.1%}"


@pytest.mark.parametrize("page", ["overview", "patient", "dynamics"])
def test_clinician_and_dynamics_pages_run_on_blank_cells(page):
    at = open_page(page, messy(), timeout=TIMEOUT)
    assert not at.exception
    assert not [e for e in at.error]


def test_patient_with_blank_first_symptom_score_gets_a_status():
    ds = messy()
    blank = ds.data.loc[ds.data["symptoms"].isna(), "patient"].iloc[0]
    at = open_page("patient", ds, timeout=TIMEOUT)
    at.selectbox(key="patient_id").set_value(blank).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    change = metrics.get("Symptom change (first → last)")
    assert change is None or "nan" not in change


@pytest.mark.slow
def test_model_explorer_formula_box_on_blank_cells():
    at = open_page("models", messy(), timeout=TIMEOUT)
    assert not at.exception
    # the builder's formula is in the box; the hybrid ladder rung lists the rows without alliance
    assert at.text_input(key="mb_formula").value == "symptoms ~ between + within + (1 | patient)"
    assert any("rows left out of this model" in e.label for e in at.expander)
    # a researcher's own formula with categorical covariates (one with a blank cell), as lme4 fits it
    formula = "symptoms ~ alliance_within + site + group + (1 | patient)"
    at.text_input(key="mb_formula").set_value(formula).run()
    assert not at.exception and not at.error
    assert at.code[0].value == formula
    table = at.dataframe[[i for i, d in enumerate(at.dataframe) if "effect" in d.value.columns][-1]].value
    assert table["effect"].tolist() == ["Intercept", "alliance_within", "sitenorth", "sitesouth", "groupTAU"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Sessions used"] == "301"  # as lme4 (tests/expected/fit/messy_categorical.json)
    assert metrics["Marginal R²"] != "—"
    # a formula that cannot be fitted is one plain sentence
    at.text_input(key="mb_formula").set_value("symptoms ~ agee + (1 | patient)").run()
    assert any("agee" in e.value for e in at.error)


def test_dynamics_page_keeps_going_when_a_study_cannot_be_fitted():
    """A study of 2 patients is fitted (degenerate, said under the stage-1 table); a study of one
    patient is left out with its reason; the others are pooled."""
    import pandas as pd

    d = pd.read_csv(ROOT / "tests" / "data" / "multistudy_public.csv", dtype=str)
    two = d[d["patient"].isin(["S1-P0000", "S1-P0001"])]
    one = d[d["patient"] == "S4-P0000"]
    rest = d[d["study"].isin(["S02", "S03"])]
    data = pd.concat([rest, two, one]).to_csv(index=False).encode()
    at = open_page("dynamics", timeout=TIMEOUT)
    at.radio(key="dyn_source").set_value("Upload studies").run()
    at.file_uploader(key="dyn_files").set_value([("studies.csv", data, "text/csv")]).run()
    assert not at.exception and not at.error
    warnings = " ".join(w.value for w in at.warning)
    assert "Study S04 is left out" in warnings and "too few patients" in warnings
    assert "Study S01" in warnings and "Hessian" in warnings
    assert len(at.get("plotly_chart")) == 2  # both directions pooled over S01, S02, S03
