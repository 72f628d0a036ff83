"""FHIR R4 out: a data set (or one patient's course) as a Bundle of ``Observation`` resources.

One Observation per score (patient, session, measure), for the clinic's records system:

- ``status`` ``final``, ``category`` ``survey``;
- ``code``: this dashboard's measure code (``urn:alliance-dashboard:measure|alliance`` or
  ``|symptoms``) and, when known, the instrument that scored it (``urn:alliance-dashboard:instrument|oq45``);
- ``subject``: ``Patient/ID`` when the ID is a valid FHIR id (letters, digits, ``-`` and ``.``, at most
  64), else a logical reference ``{"identifier": {"system": "urn:alliance-dashboard:patient", "value": ID}}``;
  ``performer``: the therapist in the same way (``Practitioner/ID`` or ``urn:alliance-dashboard:therapist``);
- ``valueQuantity``: the score (``{score}``, UCUM's annotation for a unitless score);
- ``effectiveDateTime``: the session's date when the data set has a ``date`` column;
- ``extension`` ``urn:alliance-dashboard:session-number``: the session number, so that the bundle
  reads back (:mod:`core.intake.fhir`) with the same sessions;
- symptom scores with a signal status: ``interpretation`` coded ``urn:alliance-dashboard:signal-status``
  (``not_on_track``, ``at_risk``, ``on_track``, ``unknown``) with the reason in words as its text.

The resources' ``id`` are UUIDs derived from the data set, patient, session and measure (the same
score always gets the same id); the bundle is ``type: collection``. Nothing here imports streamlit.
"""
from __future__ import annotations

import json
import math
import re
import uuid
from datetime import datetime, timezone

import pandas as pd

from core.intake.fhir import (
    INSTRUMENT_SYSTEM,
    MEASURE_SYSTEM,
    PATIENT_SYSTEM,
    SESSION_EXTENSION,
    SIGNAL_SYSTEM,
    THERAPIST_SYSTEM,
)
from core.intake.mapping import MEASURES

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ISO_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_NAMESPACE = uuid.UUID("8a7f0b55-3c2e-4b0f-9a51-6f1d2c9e7a10")
#: The measures' displays in the code (English: a code's display is the code system's, not the reader's).
MEASURE_DISPLAY = {"alliance": "Alliance score", "symptoms": "Symptom score"}
INSTRUMENT_DISPLAY = {"oq45": "OQ-45.2 total", "ans": "Alliance Negotiation Scale (ANS), mean item score"}
STATUS_DISPLAY = {"not_on_track": "Not on track", "at_risk": "At risk", "on_track": "On track", "unknown": "No status"}
SURVEY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey",
                      "display": "Survey"}]}


def reference(value: str, kind: str) -> dict:
    """A Reference to a patient or therapist: ``Patient/ID`` (a valid FHIR id), else by identifier."""
    value = str(value)
    if _FHIR_ID.match(value):
        return {"reference": f"{kind}/{value}"}
    system = PATIENT_SYSTEM if kind == "Patient" else THERAPIST_SYSTEM
    return {"type": kind, "identifier": {"system": system, "value": value}}


def _number(x: float):
    x = float(x)
    return int(x) if x.is_integer() and abs(x) < 2 ** 53 else x


def _uid(*parts) -> str:
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(str(p) for p in parts)))


def fhir_bundle(data: pd.DataFrame, *, dataset: str, signal: pd.DataFrame | None = None,
                instruments: tuple[tuple[str, str], ...] = (), patient: str | None = None,
                timestamp: datetime | None = None) -> dict:
    """The Bundle (a JSON-ready dict) of every score in ``data`` (``patient, session``, the measures,
    optional ``therapist`` and ``date``), or only ``patient``'s. ``signal``: rows of
    :func:`core.clinical.signal.session_signal` (``patient, session, status, reason``) whose status
    becomes the symptom Observation's ``interpretation``."""
    if patient is not None:
        data = data[data["patient"].astype(str) == str(patient)]
    measures = [m for m in MEASURES if m in data.columns]
    instrument = dict(instruments)
    status = {}
    if signal is not None and len(signal):
        for p, s, st, why in zip(signal["patient"].astype(str), signal["session"], signal["status"], signal["reason"]):
            status[(p, float(s))] = (st, why)
    entries = []
    has_date = "date" in data.columns
    columns = ["patient", "session", *measures] + (["therapist"] if "therapist" in data.columns else []) + \
        (["date"] if has_date else [])
    for row in data[columns].itertuples(index=False):
        rec = row._asdict()
        pid, session = str(rec["patient"]), float(rec["session"])
        for m in measures:
            value = rec[m]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            coding = [{"system": MEASURE_SYSTEM, "code": m, "display": MEASURE_DISPLAY[m]}]
            if instrument.get(m):
                coding.append({"system": INSTRUMENT_SYSTEM, "code": instrument[m],
                               "display": INSTRUMENT_DISPLAY.get(instrument[m], instrument[m])})
            rid = _uid(dataset, pid, session, m)
            obs = {"resourceType": "Observation", "id": rid,
                   "extension": [{"url": SESSION_EXTENSION, "valueDecimal": _number(session)}],
                   "status": "final", "category": [SURVEY], "code": {"coding": coding, "text": MEASURE_DISPLAY[m]},
                   "subject": reference(pid, "Patient")}
            date = str(rec.get("date") or "").strip() if has_date else ""
            if _ISO_DATE.match(date):
                obs["effectiveDateTime"] = date
            therapist = rec.get("therapist")
            if therapist is not None and str(therapist).strip() and str(therapist) != "nan":
                obs["performer"] = [reference(str(therapist), "Practitioner")]
            obs["valueQuantity"] = {"value": _number(value), "unit": "score", "system": "http://unitsofmeasure.org",
                                    "code": "{score}"}
            if m == "symptoms" and (pid, session) in status:
                st, why = status[(pid, session)]
                concept = {"coding": [{"system": SIGNAL_SYSTEM, "code": st, "display": STATUS_DISPLAY.get(st, st)}]}
                if isinstance(why, str) and why:
                    concept["text"] = why
                obs["interpretation"] = [concept]
            entries.append({"fullUrl": f"urn:uuid:{rid}", "resource": obs})
    stamp = (timestamp or datetime.now(timezone.utc)).replace(microsecond=0).isoformat()
    return {"resourceType": "Bundle", "id": _uid(dataset, patient or "", stamp), "type": "collection",
            "timestamp": stamp, "entry": entries}


def bundle_bytes(bundle: dict) -> bytes:
    """The bundle as UTF-8 JSON (``application/fhir+json``)."""
    return json.dumps(bundle, ensure_ascii=False, indent=1, allow_nan=False).encode("utf-8")
