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
    assert keys == [settings_key(dashboard_settings(frame))]
    assert json.loads(keys[0])["reliable_change"] == 14.0  # OQ-45.2 totals: the published values
