"""FHIR bundles for the tests and the benchmark: small valid ones, one with every kind of broken
resource, and hostile ones (generated on demand, never committed)."""
from __future__ import annotations

import json
from pathlib import Path

CODES = "http://clinic.example/codes"
OQ45_QUESTIONNAIRE = "http://clinic.example/fhir/Questionnaire/oq45"


def observation(patient: str, date: str | None, code: str, value, therapist: str | None = "T1", **extra) -> dict:
    """An Observation of a score (``code`` in the clinic's code system ``CODES``)."""
    res = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": CODES, "code": code}]},
           "subject": {"reference": f"Patient/{patient}"}, "valueQuantity": {"value": value}}
    if date is not None:
        res["effectiveDateTime"] = date
    if therapist is not None:
        res["performer"] = [{"reference": f"Practitioner/{therapist}"}]
    res.update(extra)
    return res


def questionnaire_response(patient: str, date: str | None, answers: list, questionnaire: str = OQ45_QUESTIONNAIRE,
                           therapist: str | None = "T1", **extra) -> dict:
    """A QuestionnaireResponse with items ``1 … n`` (``None``: not answered)."""
    res = {"resourceType": "QuestionnaireResponse", "status": "completed", "questionnaire": questionnaire,
           "subject": {"reference": f"Patient/{patient}"},
           "item": [{"linkId": str(i), "answer": [{"valueInteger": a}]} if a is not None else {"linkId": str(i)}
                    for i, a in enumerate(answers, start=1)]}
    if date is not None:
        res["authored"] = date
    if therapist is not None:
        res["author"] = {"reference": f"Practitioner/{therapist}"}
    res.update(extra)
    return res


def bundle(resources: list) -> dict:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} if isinstance(r, dict) else r for r in resources]}


def as_bytes(value) -> bytes:
    return json.dumps(value).encode("utf-8")


def mapping():
    """The clinic's mapping: alliance = WAI Observations (1–7), symptoms = OQ Observations (0–180) or the
    OQ-45 questionnaire."""
    from core.intake.fhir import FhirMapping, FhirMeasure

    return FhirMapping(alliance=FhirMeasure(codes=(f"{CODES}|wai",), range=(1.0, 7.0)),
                       symptoms=FhirMeasure(codes=("oq", OQ45_QUESTIONNAIRE), range=(0.0, 180.0)))


def broken_bundle() -> tuple[bytes, dict[int, str], set[int]]:
    """A bundle with good resources and every kind of broken one.

    Returns the bytes, ``{position: words its reason must hold}`` for every bad resource, and the
    positions of the good score resources (each must reach the table)."""
    items_out = [2] * 45
    items_out[2] = 9
    resources = [
        observation("P1", "2024-01-01", "oq", 80),                                       # 1 good
        observation("P1", "2024-01-01", "oq", "abc"),                                    # 2 wrong type
        {k: v for k, v in observation("P2", "2024-01-01", "oq", 70).items() if k != "subject"},  # 3 no patient
        observation("P1", "2024-01-01", "phq9", 12),                                     # 4 unknown code
        questionnaire_response("P3", "2024-02-01T10:00:00Z", items_out),                 # 5 item out of range
        questionnaire_response("P3", "2024-02-01T10:00:00Z", [1] * 45,
                               questionnaire="http://other.example/Questionnaire/x"),   # 6 unknown questionnaire
        {"resourceType": "Condition", "subject": {"reference": "Patient/P1"}},          # 7 not a score
        {"resourceType": "Patient", "id": "P1"},                                         # 8 supporting (good)
        observation("P1", "2024-01-01", "wai", 5.5),                                     # 9 good (same session as 1)
        observation("P1", "2024-01-08", "oq", 75),                                       # 10 good
        questionnaire_response("P2", "2024-03-01", [1] * 45),                            # 11 good
        observation("P1", "2024-01-15", "oq", 70, status="entered-in-error"),            # 12 entered in error
        observation("P1", "2024-01-22", "oq", 200),                                      # 13 out of range
        observation("P1", "2024-01-29", "oq", 60, subject={"reference": "Group/G1"}),    # 14 not a patient
        {"resourceType": "Observation", "status": "final"},                              # 15 code missing
        {k: v for k, v in observation("P4", None, "oq", 60).items()},                    # 16 no date
        "not a resource",                                                                # 17 not an entry
        observation("P2", "2024-03-08", "wai", 8),                                       # 18 out of range
        questionnaire_response("P2", "2024-03-15", [1] * 40 + [None] * 5),               # 19 too many items missing
        {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1},
         "subject": {"reference": "Patient/P1"}, "colour": "red"},                      # 20 unknown element
        {"resourceType": "Bogus"},                                                       # 21 not a FHIR type
        observation("P5", "2024-04-01", "oq", 50, subject={"reference": "urn:uuid:p5"}),  # 22 good, via fullUrl
        {"resourceType": "Patient", "id": "P5"},                                         # 23 supporting (fullUrl)
    ]
    b = bundle(resources)
    b["entry"][22]["fullUrl"] = "urn:uuid:p5"
    bad = {2: "valueQuantity.value", 3: "no patient", 4: "phq9", 5: "item 3 = 9", 6: "other.example",
           7: "Condition", 12: "entered-in-error", 13: "200 is outside", 14: "Group", 15: "code is missing",
           16: "no date", 17: "no resource", 18: "8 is outside", 19: "items missing", 20: "colour",
           21: "Bogus"}
    good = {1, 9, 10, 11, 22}
    return as_bytes(b), bad, good


# ------------------------------------------------------------------------------------- hostile bundles

def fhir_deep_nesting(folder: Path, levels: int = 100_000) -> Path:
    """JSON nested 100,000 levels deep inside a bundle's entry."""
    text = ('{"resourceType":"Bundle","type":"collection","entry":[{"resource":'
            + '{"resourceType":"Observation","extension":' + "[" * levels + "]" * levels + "}}]}")
    path = folder / "deep.json"
    path.write_text(text)
    return path


def fhir_deep_resource(folder: Path, levels: int = 400) -> Path:
    """A QuestionnaireResponse whose items nest 400 levels (within JSON's limit, beyond a resource's)."""
    item: dict = {"linkId": "1", "answer": [{"valueInteger": 1}]}
    for _ in range(levels):
        item = {"linkId": "g", "item": [item]}
    res = questionnaire_response("P1", "2024-01-01", [1] * 45)
    res["item"].append(item)
    path = folder / "deep_resource.json"
    path.write_bytes(as_bytes(bundle([res, observation("P1", "2024-01-01", "oq", 80)])))
    return path


def fhir_million_resources(folder: Path, n: int = 1_000_000) -> Path:
    """NDJSON with a million small Observations (about 100 MB: under the size limit)."""
    line = '{"resourceType":"Observation","status":"final","code":{"text":"oq"},"valueQuantity":{"value":80}}\n'
    path = folder / "million.ndjson"
    with path.open("w") as handle:
        for _ in range(n // 1000):
            handle.write(line * 1000)
    return path


def fhir_over_size(folder: Path, mb: int = 201) -> Path:
    """A bundle of 201 MB (a sparse file: its size is refused before a byte is read)."""
    path = folder / "big.json"
    with path.open("wb") as handle:
        handle.write(b'{"resourceType":"Bundle","type":"collection","entry":[')
        handle.truncate(mb * 2 ** 20)
    return path


def fhir_giant_text(folder: Path, mb: int = 190) -> Path:
    """One Observation with a 190 MB note (under the size limit; few objects)."""
    text = json.dumps(bundle([observation("P1", "2024-01-01", "oq", 80, note=[{"text": "@@"}])]))
    head, tail = text.split("@@")
    path = folder / "giant_text.json"
    with path.open("w") as handle:
        handle.write(head)
        chunk = "x" * 2 ** 20
        for _ in range(mb):
            handle.write(chunk)
        handle.write(tail)
    return path


def fhir_many_objects(folder: Path, n: int = 495_000) -> Path:
    """One QuestionnaireResponse with 495,000 empty items (just under the JSON objects limit)."""
    res = questionnaire_response("P1", "2024-01-01", [1] * 2)
    path = folder / "many_objects.json"
    text = json.dumps(bundle([res]))
    cut = text.index('"item": [') + len('"item": [')
    with path.open("w") as handle:
        handle.write(text[:cut])
        handle.write('{"linkId":"x"},' * (n - 10))
        handle.write(text[cut:])
    return path


def fhir_many_values(folder: Path, n: int = 9_900_000) -> Path:
    """A bundle whose entry list holds 9.9 million numbers (just under the JSON values limit)."""
    path = folder / "many_values.json"
    with path.open("w") as handle:
        handle.write('{"resourceType":"Bundle","type":"collection","entry":[')
        handle.write("1," * (n - 1) + "1]}")
    return path


HOSTILE = {"deep nesting (100,000 levels)": fhir_deep_nesting, "a resource nested 400 levels": fhir_deep_resource,
           "1,000,000 resources (NDJSON)": fhir_million_resources, "201 MB": fhir_over_size,
           "190 MB of text in one resource": fhir_giant_text, "495,000 JSON objects": fhir_many_objects,
           "9,900,000 JSON values": fhir_many_values}
