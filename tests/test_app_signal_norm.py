"""The early-warning signal against an outside norm on the pages: the sidebar's *Expected course
from* (another data set, a norm file), the norm named on the overview and the patient page, the
warning when the clinic's courses are markedly worse than the norm's, and the same in Spanish."""
import json

import pytest
from signal_simulator import simulate_clinic

from core.clinical.signal import SignalSettings
from core.clinical.signal_norm import norm_document
from core.intake.dataset import Dataset
from core.intake.mapping import ColumnMapping
from core.intake.reading import read_table
from core.intake.validation import validate_table
from core.store.datasets import MemoryStore
from tests.app_support import go, open_page
from ui.clinic import NORM_FILE

TIMEOUT = 300


def _dataset(tmp_path, name, **kwargs) -> Dataset:
    path = tmp_path / f"{name}.csv"
    simulate_clinic(n_patients=300, **kwargs).drop(columns=["kind", "intake_true"]).to_csv(path, index=False)
    mapping = ColumnMapping(patient="patient", therapist="therapist", session="session", symptoms="symptoms")
    return Dataset(name=name, validated=validate_table(read_table(path), mapping))


@pytest.fixture(scope="module")
def clinics(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("norm")
    poor = _dataset(tmp, "poor clinic", seed=401, share_nonresponding=0.6)
    typical = _dataset(tmp, "network", seed=402, share_nonresponding=0.1)
    return poor, typical


def _caseload_reds(at) -> int:
    return int((at.dataframe[0].value["signal"] == "▲ not on track").sum())


@pytest.mark.slow
def test_a_norm_file_judges_the_poor_clinic_and_warns(clinics):
    poor, typical = clinics
    doc = norm_document(typical.data, SignalSettings(reliable_change=14, cutoff=63.5), name="network.csv",
                        created="2026-12-01")
    text = json.dumps(doc).encode("utf-8")
    at = open_page("overview", poor, timeout=TIMEOUT)
    own_reds = _caseload_reds(at)
    assert any("own courses (300 patients)" in md.value for md in at.markdown) and not at.warning
    at.session_state[NORM_FILE] = {"name": "network.json", "digest": "abc123", "text": text}
    at.selectbox(key="signal_norm").set_value("file").run()
    assert not at.exception, at.exception
    assert any("an outside norm: the norm file “network.json” (300 patients) made on 2026-12-01" in md.value
               for md in at.markdown)
    assert any("markedly worse than the norm expects" in w.value for w in at.warning)
    assert _caseload_reds(at) > 1.5 * own_reds  # against itself the poor clinic looked on track
    assert any("judged by the outside norm" in c.value for c in at.caption)  # the validation says so
    # the patient page names the norm too (the choice is the session's, not the page's)
    go(at, "patient")
    assert any("norm file “network.json”" in c.value for c in at.caption)


@pytest.mark.slow
def test_another_data_set_as_the_norm_in_spanish(clinics):
    poor, typical = clinics
    store = MemoryStore()
    store.put(typical)
    store.put(poor)
    from streamlit.testing.v1 import AppTest

    from tests.app_support import APP, ROOT

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["language"] = "es"
    at.session_state["dataset_store"] = store
    at.session_state["active_dataset"] = "poor clinic"
    at.run()
    at.switch_page(str(ROOT / "pages" / "overview.py"))
    at.run()
    assert "dataset:network" in at.selectbox(key="signal_norm").options or \
        any("network" in o for o in at.selectbox(key="signal_norm").options)
    at.selectbox(key="signal_norm").set_value("dataset:network").run()
    assert not at.exception, at.exception
    text = " ".join(md.value for md in at.markdown)
    assert "1 de cada 10 pacientes que evolucionan como se espera quedará marcado fuera de curso" in text
    assert "una norma externa: los tratamientos del conjunto de datos “network” (300 pacientes)" in text
    assert any("claramente peor de lo que espera la norma" in w.value for w in at.warning)
