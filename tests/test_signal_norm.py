"""Outside norms for the early-warning signal (core/clinical/signal_norm.py): written and read back
unchanged, refused in one plain sentence when unusable, and the warning when a clinic's courses
differ markedly from the norm — the poor clinic that looks on track against itself."""
import json

import numpy as np
import pytest
from signal_simulator import flag_rates, simulate_clinic

from core.clinical import signal as S
from core.clinical.signal_norm import compare_with_norm, model_from_norm, norm_document, read_norm
from core.errors import InputError

SETTINGS = S.SignalSettings(reliable_change=14)


@pytest.fixture(scope="module")
def typical_norm():
    data = simulate_clinic(n_patients=600, seed=301, share_nonresponding=0.1)
    return json.loads(json.dumps(norm_document(data, SETTINGS, name="network.json", created="2026-12-01")))


def test_a_norm_read_back_flags_exactly_as_the_model_it_came_from(typical_norm):
    data = simulate_clinic(n_patients=600, seed=301, share_nonresponding=0.1)
    own = S.compute_signal(data, SETTINGS)
    model = model_from_norm(read_norm(json.dumps(typical_norm)), SETTINGS)
    assert model.outside and model.source["name"] == "network.json" and model.source["created"] == "2026-12-01"
    for a, b in zip(own.model.fits, model.fits):
        np.testing.assert_allclose(a.fixed, b.fixed, rtol=1e-12)
        assert a.bound("trend") == pytest.approx(b.bound("trend"), rel=1e-12)
    again = S.compute_signal(data, SETTINGS, model=model)
    assert (again.sessions["status"] == own.sessions["status"]).all()
    assert "an outside norm: the norm file “network.json” (600 patients) made on 2026-12-01" in again.definition
    # the document holds numbers, not patients
    text = json.dumps(typical_norm)
    assert "P0001" not in text and typical_norm["n_patients"] == 600


def test_unusable_norms_are_refused_in_one_sentence(typical_norm):
    with pytest.raises(InputError, match="not JSON"):
        read_norm(b"\x00\x01 not json")
    with pytest.raises(InputError, match="not a signal norm"):
        read_norm(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match="version 9"):
        read_norm(json.dumps({**typical_norm, "version": 9}))
    with pytest.raises(InputError, match="higher scores are worse, but here lower scores are worse"):
        model_from_norm(typical_norm, S.SignalSettings(higher_is_worse=False))
    with pytest.raises(InputError, match="first score"):
        model_from_norm(typical_norm, S.SignalSettings(intake="intake"))
    broken = json.loads(json.dumps(typical_norm))
    broken["model"]["fits"][2]["patient_cov"] = [[1, 2, 3]]
    with pytest.raises(InputError, match="damaged"):
        model_from_norm(broken, SETTINGS)
    broken["model"]["fits"][2]["patient_cov"] = [[1, 0], [0, float("nan")]]
    with pytest.raises(InputError, match="damaged"):
        model_from_norm(json.loads(json.dumps(broken)), SETTINGS)


def test_a_poor_clinic_judged_against_an_outside_norm(typical_norm):
    norm = model_from_norm(typical_norm, SETTINGS)
    poor = simulate_clinic(n_patients=600, seed=302, share_nonresponding=0.6)
    typical = simulate_clinic(n_patients=600, seed=303, share_nonresponding=0.1)
    against_itself = flag_rates(poor, S.compute_signal(poor, SETTINGS).sessions)
    against_norm = flag_rates(poor, S.compute_signal(poor, SETTINGS, model=norm).sessions)
    in_typical = flag_rates(typical, S.compute_signal(typical, SETTINGS).sessions)
    # against itself non-responders look on track; against the norm they are flagged as in a typical clinic
    assert against_itself["nonresponding"] < 0.6 * in_typical["nonresponding"]
    assert against_norm["nonresponding"] >= in_typical["nonresponding"]
    assert against_norm["det"] >= in_typical["det"] - 0.05
    compared = compare_with_norm(poor, norm, SETTINGS)
    assert compared["session"] == 8 and compared["worse"] and compared["standardised"] > 0.5
    assert "markedly worse than the norm expects" in compared["warnings"][0]
    alike = compare_with_norm(typical, norm, SETTINGS)
    assert not alike["worse"] and abs(alike["standardised"]) < 0.25 and alike["warnings"] == []


def test_a_norm_on_another_scale_is_flagged():
    norm = model_from_norm(norm_document(simulate_clinic(n_patients=300, seed=304), SETTINGS), SETTINGS)
    items = simulate_clinic(n_patients=300, seed=305, scale="oq_item")
    warnings = compare_with_norm(items, norm, SETTINGS)["warnings"]
    assert any("same measure and scale" in w for w in warnings)


def test_no_norm_without_a_local_model():
    small = simulate_clinic(n_patients=12, seed=306)
    from core.errors import ModelError

    with pytest.raises(ModelError, match="no"):
        norm_document(small, SETTINGS)
