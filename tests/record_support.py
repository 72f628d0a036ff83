"""A clinic database for the *Record a session* tests: made as a clinic's IT makes one (``store init``,
a supervisor, a therapist), holding the demo clinic's sessions as the data set ``Clinic`` (scored with
the ANS and the OQ-45.2), with some of Ana's patients seen four times so far (their next session is 5)."""
from __future__ import annotations

from pathlib import Path

from core.demo import DEMO_RANGES, demo_clinic
from core.intake.mapping import ColumnMapping
from core.intake.reading import read_csv_bytes
from core.intake.validation import validate_table

HEAD, HEAD_PASSWORD = "head", "a long supervisor password"
ANA, ANA_PASSWORD = "ana", "a long password for ana"
RITA, RITA_PASSWORD = "rita", "a long researcher password"
DATASET = "Clinic"
#: Ana's patients whose sessions after the fourth are not in the data yet (sorted).
FOUR_SESSIONS = 8


def clinic_frame():
    """The demo clinic with FOUR_SESSIONS of Ana's eight-session patients cut after session 4."""
    data = demo_clinic()
    full = data.groupby("patient")["session"].max()
    ana = sorted(p for p in data.loc[data["therapist"] == "T01 Ana", "patient"].unique() if full[p] == 8)
    cut = ana[:FOUR_SESSIONS]
    return data[~(data["patient"].isin(cut) & (data["session"] > 4))].reset_index(drop=True), cut


def make_clinic(data_dir: Path, url: str | None = None) -> dict:
    """The clinic database in ``data_dir`` (``clinic.db``; or at ``url``): returns the store's URL,
    the patients cut after session 4, and the store (closed by the caller)."""
    from core.store import ClinicStore

    data_dir.mkdir(parents=True, exist_ok=True)
    store = ClinicStore(url or f"sqlite:///{data_dir / 'clinic.db'}", bcrypt_rounds=4)
    store.init_clinic()
    head = store.create_user(None, HEAD, HEAD_PASSWORD, "supervisor")
    store.create_user(head, ANA, ANA_PASSWORD, "therapist", display_name="Ana", therapist_code="T01 Ana")
    store.create_user(head, RITA, RITA_PASSWORD, "researcher")
    frame, cut = clinic_frame()
    raw = read_csv_bytes(frame.to_csv(index=False).encode("utf-8"), source="clinic.csv")
    mapping = ColumnMapping(patient="patient", therapist="therapist", session="session", alliance="alliance",
                            symptoms="symptoms")
    validated = validate_table(raw, mapping, ranges=DEMO_RANGES)
    store.apply_upload(head, store.preview_upload(head, DATASET, validated,
                                                  instruments=(("alliance", "ans"), ("symptoms", "oq45"))))
    return {"url": store.url, "four_sessions": cut, "store": store}
