"""The Reciprocal dynamics page's meta-analysis diagnostics (issue 27) and early alliance → outcome section
(issue 30), the overview's sentence and the upload's post-treatment role, through AppTest, against the R
references (tests/expected/meta_metafor.json, tests/expected/alliance_outcome.json)."""
import json
from pathlib import Path

import pytest
import streamlit as st
from app_support import open_page

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
META = json.loads((ROOT / "tests" / "expected" / "meta_metafor.json").read_text())
AO = json.loads((ROOT / "tests" / "expected" / "alliance_outcome.json").read_text())


@pytest.fixture(autouse=True)
def fresh_cache():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def table(at, first_column, n=0):
    """The n-th table whose first column is ``first_column``."""
    found = [d.value for d in at.dataframe if list(d.value.columns)[:1] == [first_column]]
    return found[n]


def studies_uploaded(payload: bytes | None = None, language: str | None = None):
    """The dynamics page with the six simulated studies (tests/data/alliance_outcome_multistudy.csv) uploaded."""
    at = open_page("dynamics", language=language)
    at.radio(key="dyn_source").set_value("Upload studies").run()
    data = payload if payload is not None else (DATA / "alliance_outcome_multistudy.csv").read_bytes()
    at.file_uploader(key="dyn_files").set_value([("ao.csv", data, "text/csv")]).run()
    assert not at.exception and not at.error
    return at


def outcome_box(at):
    return next(b for b in at.selectbox if b.key and b.key.startswith("ao_outcome"))


def chart_keys(at):
    return {c.key for c in at.get("plotly_chart")}


def texts(at):
    return " ".join(str(e.value) for kind in ("markdown", "info", "warning", "error", "caption")
                    for e in getattr(at, kind))


def test_pool_given_effects_meta_regression_sensitivity_match_metafor():
    at = open_page("dynamics")
    at.radio(key="dyn_source").set_value("Pool given effects").run()
    at.file_uploader(key="pool_file").set_value(("bcg.csv", (DATA / "meta_bcg.csv").read_bytes(), "text/csv")).run()
    at.checkbox(key="dyn_kh").check().run()
    at.multiselect(key="pool_mods").set_value(["ablat", "alloc"]).run()
    assert not at.exception and not at.error
    want = META["mods"]["ablat_alloc_reml_knha"]
    mods = table(at, "term").set_index("term")
    assert list(mods.index) == ["Intercept", "ablat", "allocrandom", "allocsystematic"]
    for term, exp in want["coefficients"].items():
        row = mods.loc["Intercept" if term == "intercept" else term]
        assert row["estimate"] == pytest.approx(exp["estimate"], abs=1e-6)
        assert row["t"] == pytest.approx(exp["stat"], abs=1e-6)
    assert "F(3, 9)" in texts(at)
    plain = META["plain"]["reml_knha"]
    loo = table(at, "left_out")
    assert loo["estimate"].tolist() == pytest.approx([r["estimate"] for r in plain["leave_one_out"]], abs=1e-6)
    infl = table(at, "study")
    assert infl["cook_d"].tolist() == pytest.approx([r["cook_d"] for r in plain["influence"]], abs=1e-6)
    assert "funnel_pooled" in chart_keys(at)
    assert "Egger's regression test" in texts(at) and "Leaving out one study at a time" in texts(at)


def test_pool_given_effects_with_se_zero_warns_and_dl_refuses():
    lines = (DATA / "meta_bcg.csv").read_text().splitlines()
    cells = lines[3].split(",")
    cells[2] = "0"
    lines[3] = ",".join(cells)
    payload = ("se0.csv", ("\n".join(lines) + "\n").encode(), "text/csv")
    at = open_page("dynamics")
    at.radio(key="dyn_source").set_value("Pool given effects").run()
    at.file_uploader(key="pool_file").set_value(payload).run()
    assert not at.exception and not at.error
    assert any("Rosenthal et al 1960" in w.value and "is 0" in w.value for w in at.warning)
    assert "Rows left out" not in texts(at)  # kept, not dropped (issue 27)
    at.radio(key="dyn_method").set_value("dl").run()
    assert any("DerSimonian" in e.value and "Rosenthal et al 1960" in e.value for e in at.error)


def test_ipd_stage2_meta_regression_on_a_study_level_column():
    at = studies_uploaded()
    assert at.multiselect(key="dyn_mods").options == ["setting", "year"]
    at.multiselect(key="dyn_mods").set_value(["setting"]).run()
    assert not at.exception and not at.error
    assert len([d for d in at.dataframe if list(d.value.columns)[:1] == ["term"]]) == 2  # one per direction


def test_alliance_outcome_section_matches_lm_and_metafor():
    at = studies_uploaded()
    assert at.selectbox(key="dyn_map_post").value == "post"
    assert outcome_box(at).value == "post"

    def check(want):
        got = next(d.value for d in at.dataframe if list(d.value.columns) == [
            "study", "n_patients", "estimate", "se", "t", "df", "p", "ci_low", "ci_high", "r"]).set_index("study")
        for study, exp in want["stage1"].items():
            assert got.loc[study, "estimate"] == pytest.approx(exp["estimate"], abs=1e-6)
            assert got.loc[study, "r"] == pytest.approx(exp["r"], abs=1e-6)

    check(AO["multistudy_post"])
    assert "ao_forest" in chart_keys(at)
    pooled = AO["multistudy_post"]["pool"]["reml"]["pooled"]
    assert "pooled standardized β = −0.10" in texts(at) and f"{pooled['estimate']:.2f}".replace("-", "−") in texts(at)
    outcome_box(at).set_value("__last_after_window__").run()
    check(AO["multistudy_last"])
    outcome_box(at).set_value("post").run()
    at.select_slider(key="ao_window").set_value((2, 5)).run()
    check(AO["multistudy_post_2_5"])


def test_alliance_outcome_for_one_clinic_has_the_scatter_and_the_sentence():
    at = open_page("dynamics")
    assert not at.exception and not at.error
    assert "ao_scatter" in chart_keys(at)
    assert any("In this clinic, patients whose alliance in sessions 1–4 was one SD higher" in i.value for i in at.info)


def test_overview_says_early_alliance_and_outcome_in_one_sentence():
    at = open_page("overview")
    assert not at.exception
    sentence = [i.value for i in at.info if "Early alliance and outcome" in i.value]
    assert sentence and "one SD higher ended with symptoms" in sentence[0] and "95% CI" in sentence[0]
    es = open_page("overview", language="es")
    assert any("Alianza temprana y resultado" in i.value and "una DE más alta" in i.value for i in es.info)


def test_upload_offers_the_post_treatment_role_and_names_who_lacks_it():
    at = open_page("upload")
    csv = b"paciente,sesion,ans,oq,oq_post\nP1,1,5,80,60\nP1,2,5.5,75,60\nP2,1,4,90,\nP2,2,4.2,88,\n"
    at.file_uploader(key="upload_file").set_value(("long.csv", csv, "text/csv")).run()
    assert not at.exception
    assert at.selectbox(key="map_post").value == "oq_post"
    assert any("1 patient has no usable post-treatment score (P2)" in i.value for i in at.info)


def test_new_sections_in_spanish_leave_no_english():
    """The meta-regression, sensitivity and early alliance → outcome sections in Spanish (issue 18's rule)."""
    from language_support import english_in, visible_texts
    from test_app_language_research import ALLOW

    import pandas as pd

    frame = pd.read_csv(DATA / "alliance_outcome_multistudy.csv").rename(columns={
        "study": "estudio", "patient": "paciente", "session": "sesion", "alliance": "alianza", "symptoms": "oq",
        "post": "oq_post", "setting": "ambito", "year": "anio"}).replace({"outpatient": "ambulatorio",
                                                                         "inpatient": "internacion"})
    at = studies_uploaded(frame.to_csv(index=False).encode(), language="es")
    assert at.selectbox(key="dyn_map_post").value == "oq_post"
    at.multiselect(key="dyn_mods").set_value(["ambito"]).run()
    assert not at.exception and not at.error
    assert any("Alianza temprana y resultado postratamiento" == s.value for s in at.subheader)
    assert any("Metarregresión sobre ambito" in m.value for m in at.markdown)
    assert english_in(visible_texts(at), allow=ALLOW) == []
