"""A clinic's own data set beside the demo clinic, for the tests of issue 24 (never the demo by surprise).

:func:`seed_clinic` makes the demo database of a data folder (the demo accounts and the demo clinic)
and stores a second data set in it, *Clínica Norte*: 40 simulated patients ``CL-001`` … ``CL-040``
of the demo's therapists (so that the demo therapists Ana and Bruno see some of them), up to 8
sessions, ANS and OQ-45.2. It is stored like a supervisor's upload, so it is the clinic's data.
"""
from __future__ import annotations

from pathlib import Path

CLINIC = "Clínica Norte"
N_PATIENTS = 40


def clinic_frame(n_patients: int = N_PATIENTS, seed: int = 7):
    """The clinic's long table: the demo's simulation with ``CL-`` IDs (no demo ID in it)."""
    from core.demo import demo_clinic

    frame = demo_clinic(n_patients=n_patients, seed=seed)
    frame["patient"] = frame["patient"].str.replace("D", "CL-", regex=False)
    return frame


def seed_clinic(data_dir: Path, name: str = CLINIC, n_patients: int = N_PATIENTS):
    """The demo database in ``data_dir`` with the clinic's data set stored beside the demo clinic;
    returns the clinic's table."""
    from core.demo import DEMO_RANGES
    from core.intake.mapping import ColumnMapping
    from core.intake.reading import read_csv_bytes
    from core.intake.validation import validate_table
    from core.store import ClinicStore

    frame = clinic_frame(n_patients)
    # the dashboard's demo database for ALLIANCE_DATA_DIR=data_dir (core.store.demo_url)
    store = ClinicStore(f"sqlite:///{Path(data_dir).resolve() / 'demo.db'}", bcrypt_rounds=4)
    try:
        store.seed_demo()
        head = store.authenticate("demo-supervisor", "demo")
        raw = read_csv_bytes(frame.to_csv(index=False).encode("utf-8"), source="norte.csv")
        mapping = ColumnMapping(patient="patient", therapist="therapist", session="session",
                                alliance="alliance", symptoms="symptoms")
        validated = validate_table(raw, mapping, ranges=DEMO_RANGES)
        preview = store.preview_upload(head, name, validated, instruments=(("alliance", "ans"), ("symptoms", "oq45")))
        store.apply_upload(head, preview)
    finally:
        store.close()
    return frame
