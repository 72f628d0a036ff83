"""Issue 28: the early-warning signal's expected course is fitted once per data set version and settings
and kept in the clinic database (``fitted_models``), on SQLite and on PostgreSQL (``db_url``)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

import core.clinical.signal as signal
from core.clinical.signal import SignalSettings, dashboard_settings
from core.clinical.signal_json import settings_key
from core.demo import demo_clinic
from core.store.schema import fitted_models
from test_storage import validated

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = SignalSettings(reliable_change=14.0, cutoff=63.5)


@pytest.fixture
def stored(store):
    store.seed_demo()
    head = store.authenticate("demo-supervisor", "demo")
    frame = demo_clinic(n_patients=60, seed=5)
    store.apply_upload(head, store.preview_upload(head, "Clinic", validated(frame)))
    return store, head, frame


def _rows(store):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(fitted_models.c.version, fitted_models.c.kind, fitted_models.c.key)).all()


def test_fitted_once_then_read_by_everyone(stored, monkeypatch):
    store, head, frame = stored
    first = store.clinic_signal_model(head, "Clinic", settings=SETTINGS)
    assert [(v, k) for v, k, _ in _rows(store)] == [(1, "signal_model")]

    def refit(*args, **kwargs):
        raise AssertionError("refitted although the model of this version is stored")

    monkeypatch.setattr(signal, "fit_signal_model", refit)
    ana = store.authenticate("demo-therapist-ana", "demo")
    for user in (head, ana):  # a therapist gets the clinic's model, read back, not refitted
        again = store.clinic_signal_model(user, "Clinic", settings=SETTINGS)
        assert again.n_patients == first.n_patients == 60
        for ours, theirs in zip(again.fits, first.fits):
            np.testing.assert_array_equal(ours.fixed, theirs.fixed)
            assert ours.bounds == theirs.bounds
    # other settings are another model
    with pytest.raises(AssertionError, match="refitted"):
        store.clinic_signal_model(head, "Clinic", settings=SignalSettings(reliable_change=10.0, cutoff=63.5))


def test_a_new_version_is_fitted_afresh_and_the_old_one_goes(stored):
    store, head, frame = stored
    before = store.clinic_signal_model(head, "Clinic", settings=SETTINGS)
    more = frame.copy()
    more.loc[more["session"] >= 3, "symptoms"] = np.clip(more.loc[more["session"] >= 3, "symptoms"] + 25, 0, 180)
    store.apply_upload(head, store.preview_upload(head, "Clinic", validated(more)))
    after = store.clinic_signal_model(head, "Clinic", settings=SETTINGS)
    assert not np.allclose(before.fits[-1].fixed, after.fits[-1].fixed)  # fitted on the new scores
    assert [v for v, _, _ in _rows(store)] == [2]  # version 1's model deleted


def test_store_import_fits_the_pages_starting_model(tmp_path, db_url):
    """The command line's import keeps the model the clinician pages start from, so that the first
    caseload after an import reads it."""
    frame = demo_clinic(n_patients=40, seed=9)
    csv = tmp_path / "clinic.csv"
    frame.to_csv(csv, index=False)
    env = {"ALLIANCE_DATABASE_URL": db_url, "ALLIANCE_NEW_PASSWORD": "a long password 28",
           "ALLIANCE_PASSWORD": "a long password 28", "PATH": "/usr/bin:/bin"}

    def run(*args):
        done = subprocess.run([sys.executable, "-m", "core", "store", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("init")
    run("add-user", "head", "--role", "supervisor")
    out = run("import", str(csv), "--dataset", "Clinic", "--user", "head", "--patient", "patient", "--session",
              "session", "--symptoms", "symptoms", "--alliance", "alliance", "--therapist", "therapist")
    assert json.loads(out)["stored"] is True
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        keys = conn.execute(sa.select(fitted_models.c.key)).scalars().all()
    engine.dispose()
    signal_keys = [k for k in keys if k.startswith("{")]
    assert signal_keys == [settings_key(dashboard_settings(frame))]
    assert json.loads(signal_keys[0])["reliable_change"] == 14.0  # OQ-45.2 totals: the published values
    # and the overview's model results and the signal's calibration, for the supervisor who imported
    assert sorted(k for k in keys if not k.startswith("{")) == [
        f"calibration:{signal_keys[0]}|supervisor", "early_alliance:1-4|supervisor",
        "therapist_share:symptoms|supervisor"]


def test_kept_result_computed_once_per_version_and_view(stored):
    """``kept_result``: computed once per data set version and view of the rows (a supervisor's, each
    therapist's), read back after that; a stale version is computed and not kept; a new version
    computes afresh."""
    store, head, frame = stored
    calls = []

    def compute(label):
        def run():
            calls.append(label)
            return json.dumps({"who": label})
        return run

    assert store.kept_result(head, "Clinic", 1, "x", compute("head")) == '{"who": "head"}'
    assert store.kept_result(head, "Clinic", 1, "x", compute("again")) == '{"who": "head"}'  # read back
    ana = store.authenticate("demo-therapist-ana", "demo")
    assert store.kept_result(ana, "Clinic", 1, "x", compute("ana")) == '{"who": "ana"}'  # her own rows
    assert store.kept_result(ana, "Clinic", 1, "x", compute("ana again")) == '{"who": "ana"}'
    assert calls == ["head", "ana"]
    changed = validated(frame.assign(symptoms=frame["symptoms"] + 1))
    store.apply_upload(head, store.preview_upload(head, "Clinic", changed))
    assert store.kept_result(head, "Clinic", 1, "x", compute("stale")) == '{"who": "stale"}'
    assert store.kept_result(head, "Clinic", 1, "x", compute("stale again")) == '{"who": "stale again"}'  # not kept
    assert store.kept_result(head, "Clinic", 2, "x", compute("v2")) == '{"who": "v2"}'
    assert store.kept_result(head, "Clinic", 2, "x", compute("v2 again")) == '{"who": "v2"}'
    assert {v for v, _, _ in _rows(store)} == {2}  # version 1's results deleted


def test_clinic_results_say_what_the_fitted_results_say():
    """The kept numbers give the overview the same sentences as the fitted results."""
    from core.clinical.indices import therapist_share
    from core.reporting.alliance_outcome_report import clinic_sentence, for_clinic
    from core.reporting.clinic_results import (early_alliance_result, read_early_alliance, read_therapist_share,
                                               therapist_share_result)

    frame = demo_clinic(n_patients=80, seed=3)
    assert read_therapist_share(therapist_share_result(frame)) == pytest.approx(therapist_share(frame), rel=1e-12)
    assert 0 <= read_therapist_share(therapist_share_result(frame)) < 1
    result = for_clinic(frame)
    assert not isinstance(result, str)
    assert clinic_sentence(read_early_alliance(early_alliance_result(frame))) == clinic_sentence(result)
    assert read_early_alliance(early_alliance_result(frame.head(12))) is None  # too few patients: nothing said
    assert read_therapist_share(therapist_share_result(frame.drop(columns="therapist"))) is None
    # the calibration kept as JSON reads back as computed, and says the same sentence
    from core.clinical.signal import calibration, calibration_summary, fit_signal_model
    from core.reporting.clinic_results import calibration_result, read_calibration

    model = fit_signal_model(frame, SETTINGS)
    assert model.local
    kept = read_calibration(calibration_result(frame, model, SETTINGS))
    assert kept == calibration(frame, model, SETTINGS)
    assert calibration_summary(kept) == calibration_summary(calibration(frame, model, SETTINGS))
