"""The early-warning signal when a therapist is signed in: the expected course is the whole
clinic's (it does not change with who is looking), computed by the clinic database without handing
her any other patient's row; the validation is for supervisors."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.clinical.signal import SignalSettings, compute_signal
from core.demo import demo_clinic
from core.store import ClinicStore
from core.store.demo_accounts import DEMO_DATASET
from core.store.errors import NoSuchDataset
from tests.app_support import signed_in

pytestmark = pytest.mark.usefixtures("fresh_clinic")

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
DEMO = demo_clinic()
ANA = sorted(set(DEMO.loc[DEMO["therapist"] == "T01 Ana", "patient"]))
LONG = [p for p in ANA if (DEMO["patient"] == p).sum() == 8]


def test_a_therapist_sees_the_clinics_expected_course_for_her_patients():
    whole = compute_signal(DEMO, SignalSettings(reliable_change=14, cutoff=63.5)).sessions
    ana_only = compute_signal(DEMO[DEMO["patient"].isin(ANA)], SignalSettings(reliable_change=14)).sessions
    at = signed_in("demo-therapist-ana")
    pid = LONG[0]
    at.query_params["patient"] = pid
    at.switch_page(str(ROOT / "pages" / "patient.py"))
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="patient_id").value == pid
    shown = at.dataframe[0].value
    clinic = whole[whole["patient"] == pid]
    # the column has an empty first session, written "—" (ui.look.local_numbers)
    expected = pd.to_numeric(shown["expected"].replace("—", np.nan).astype(str).str.replace(",", ""))
    decimals = max(len(str(v).split(".")[1]) if "." in str(v) else 0 for v in shown["expected"])
    np.testing.assert_allclose(expected.to_numpy(float), clinic["expected"].to_numpy(float),
                               atol=0.5 * 10 ** -decimals + 1e-9, equal_nan=True)
    # on her 20 patients alone there would be no local model (fewer than 30 completed courses) and
    # the expected course would differ: the test can tell the two apart
    own = ana_only[ana_only["patient"] == pid]["expected"].to_numpy(float)
    assert np.nanmax(np.abs(own - clinic["expected"].to_numpy(float))) > 0.01
    assert any("own courses (120 patients)" in md.value for md in at.markdown)
    at.switch_page(str(ROOT / "pages" / "overview.py"))
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert set(table["patient"]) == set(ANA)  # still only her patients
    assert any("supervisors see it" in c.value for c in at.caption)
    assert len(at.dataframe) == 1  # her caseload only: no per-therapist table (issue 26), no validation table


def test_clinic_signal_model_is_the_whole_clinics_and_holds_no_rows():
    store = ClinicStore.from_env()
    store.seed_demo()
    ana = store.authenticate("demo-therapist-ana", "demo")
    model = store.clinic_signal_model(ana, DEMO_DATASET)
    assert model.local and model.n_patients == 120
    reference = compute_signal(DEMO, SignalSettings()).model
    for ours, theirs in zip(model.fits, reference.fits):
        np.testing.assert_allclose(ours.fixed, theirs.fixed, rtol=1e-8)
    assert not any(hasattr(model, name) for name in ("data", "frame", "rows"))
    with pytest.raises(NoSuchDataset):
        store.clinic_signal_model(ana, "no such data set")
