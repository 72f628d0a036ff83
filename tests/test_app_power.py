"""The *Plan a study (power)* page in Streamlit's AppTest: it asks for the smallest effect of
interest, computes the curve with the core's numbers, gives the methods sentence, warns about
observed power, and does not recompute what it has (cached on the data and the options)."""
from app_support import open_page, paperlike_dataset

import core.stats.power as power_module
from core.stats.power_run import LocalRunner
from tests.power_cases import HYBRID


def compute(at, effect=None, sizes="48, 96", nsim=20):
    if effect is not None:
        at.number_input(key="pw_effect").set_value(effect)
    at.text_input(key="pw_sizes").set_value(sizes)
    at.number_input(key="pw_nsim").set_value(nsim)
    at.button(key="pw_compute").click()
    at.run(timeout=300)
    assert not at.exception, at.exception
    return at


def test_power_page_curve_sentence_and_cache(monkeypatch):
    calls = []
    real = power_module.power_analysis
    monkeypatch.setattr(power_module, "power_analysis", lambda *a, **k: calls.append(1) or real(*a, **k))
    dataset = paperlike_dataset()
    at = open_page("power", dataset)
    assert at.selectbox(key="pw_model").value.startswith("Alliance → symptoms")
    assert at.selectbox(key="pw_term").value == "alliance_within"
    assert at.radio(key="pw_mode").value.startswith("the smallest effect of interest")
    assert [i.value for i in at.info] == ["Choose the effect and the numbers of patients, then *Compute power*."]
    # the effect is asked for, not defaulted to the estimate
    at.button(key="pw_compute").click()
    at.run()
    assert any("Enter the smallest effect of interest" in e.value for e in at.error)

    compute(at, effect=-0.05)
    assert len(calls) == 1
    expected = real(dataset.data, HYBRID, "alliance_within", effect=-0.05, patients=[48, 96], nsim=20, seed=1,
                    runner=LocalRunner(1))
    sentence = at.code[-1].value
    assert sentence == expected.report()["methods_sentence"]
    table = at.dataframe[0].value
    assert table["patients"].tolist() == [48, 96]
    assert table["power"].tolist() == [f"{p.power:.1%}" for p in expected.points]
    assert not any("Hoenig" in w.value for w in at.warning)
    assert [m.value for m in at.metric][0] == "−0.05"  # one minus sign (issue 24)

    at.run()  # a rerun (e.g. a widget elsewhere) does not simulate again
    assert len(calls) == 1 and at.code[-1].value == sentence


def test_observed_power_is_labelled(monkeypatch):
    at = open_page("power", paperlike_dataset())
    at.radio(key="pw_mode").set_value("the estimate in this data (observed power)").run()
    assert any("Hoenig & Heisey, 2001" in w.value for w in at.warning)
    compute(at, sizes="60", nsim=10)
    assert any("Hoenig & Heisey, 2001" in w.value for w in at.warning)
    assert "its estimate in the data" in at.code[-1].value


def test_bad_sizes_and_formula_are_refused_in_a_sentence():
    at = open_page("power", paperlike_dataset())
    compute(at, effect=-0.05, sizes="48, lots")
    assert any("whole numbers separated by commas" in e.value for e in at.error)
    at.selectbox(key="pw_model").set_value("Your own formula (lme4 notation)").run()
    at.text_input(key="pw_formula").set_value("symptoms ~ nothing + (1 | patient)").run()
    assert any("'nothing'" in e.value for e in at.error)
