"""FHIR R4 in and out (core/intake/fhir.py, core/reporting/fhir_export.py): the round trip of the demo
clinic, every broken resource listed and nothing else lost, sessions, questionnaire scoring, limits."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.i18n import language
from core.intake import limits
from core.intake.fhir import FhirMapping, FhirMeasure, fhir_to_validated, read_fhir, read_fhir_validated
from core.intake.fhir import found_codes, propose_codes
from core.intake.instruments import load_instrument, score_items
from core.reporting.fhir_export import bundle_bytes, fhir_bundle
from tests import fhir_support as fs

COLUMNS = ["patient", "therapist", "session", "alliance", "symptoms"]


@pytest.fixture(scope="module")
def demo():
    from core.demo import demo_dataset

    return demo_dataset()


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a = a[COLUMNS].sort_values(["patient", "session"]).reset_index(drop=True)
    b = b[COLUMNS].sort_values(["patient", "session"]).reset_index(drop=True)
    assert list(a["patient"]) == list(b["patient"])
    assert list(a["therapist"]) == list(b["therapist"])
    assert np.array_equal(a["session"].to_numpy(float), b["session"].to_numpy(float))
    for m in ("alliance", "symptoms"):  # scores as JSON numbers: the same floats
        np.testing.assert_allclose(a[m].to_numpy(float), b[m].to_numpy(float), rtol=0, atol=1e-12)


def test_demo_clinic_round_trip_gives_the_same_data_set(demo):
    from core.clinical.signal import compute_signal, published_settings

    settings, _note = published_settings(demo.data["symptoms"])
    signal = compute_signal(demo.data, settings).sessions
    bundle = fhir_bundle(demo.data, dataset=demo.name, signal=signal, instruments=demo.instruments)
    result = read_fhir_validated(bundle_bytes(bundle), source="demo.json")
    assert result.validated.excluded.empty
    _same(demo.data, result.validated.data)
    assert result.validated.data["patient"].nunique() == 120
    assert "session numbers this dashboard wrote" in result.session_rule


def test_export_is_a_valid_r4_bundle_with_the_signal_as_interpretation(demo):
    from fhir.resources.R4B.bundle import Bundle

    from core.clinical.signal import compute_signal, published_settings

    settings, _note = published_settings(demo.data["symptoms"])
    signal = compute_signal(demo.data, settings).sessions
    pid = "D003"
    bundle = fhir_bundle(demo.data, dataset=demo.name, signal=signal, patient=pid)
    Bundle.model_validate(json.loads(bundle_bytes(bundle)))  # raises on anything not R4
    entries = [e["resource"] for e in bundle["entry"]]
    mine = demo.data[demo.data["patient"] == pid]
    assert len(entries) == mine["alliance"].notna().sum() + mine["symptoms"].notna().sum()
    assert {e["subject"]["reference"] for e in entries} == {f"Patient/{pid}"}
    # a therapist code with a space is not a FHIR id: a logical reference by identifier
    assert entries[0]["performer"][0]["identifier"]["value"] == mine["therapist"].iloc[0]
    symptoms = [e for e in entries if e["code"]["coding"][0]["code"] == "symptoms"]
    mine_signal = signal[signal["patient"] == pid].set_index("session")
    for e in symptoms:
        session = e["extension"][0]["valueDecimal"]
        concept = e["interpretation"][0]
        assert concept["coding"][0]["code"] == mine_signal.loc[session, "status"]
        assert concept.get("text", "") == mine_signal.loc[session, "reason"]


def test_broken_bundle_lists_every_bad_resource_and_loses_nothing_else():
    data, bad, good = fs.broken_bundle()
    result = fhir_to_validated(read_fhir(data, "broken.json"), fs.mapping())
    v = result.validated
    listed = dict(zip(v.excluded["row"], v.excluded["reason"]))
    assert set(listed) == set(bad)  # every bad resource, and only those
    for row, words in bad.items():
        assert words in listed[row], (row, listed[row])
    # every good score resource reached the table: P1's two sessions (resources 1 + 9, then 10),
    # P2's questionnaire (11), P5 through the bundle's fullUrl (22)
    table = v.data.set_index(["patient", "session"])
    assert table.loc[("P1", 1), "symptoms"] == 80 and table.loc[("P1", 1), "alliance"] == 5.5
    assert table.loc[("P1", 2), "symptoms"] == 75
    assert table.loc[("P2", 1), "symptoms"] == pytest.approx(score_items(
        pd.DataFrame([[1] * 45]), load_instrument("oq45")).total.iloc[0])
    assert table.loc[("P5", 1), "symptoms"] == 50
    assert sorted(v.data["row"]) == [1, 10, 11, 22]
    assert v.n_rows_read == 23
    assert any("Patient" in n for n in v.notes)  # the supporting Patients are said, not listed


def test_reasons_follow_the_language():
    data, _bad, _good = fs.broken_bundle()
    with language("es"):
        v = fhir_to_validated(read_fhir(data, "broken.json"), fs.mapping()).validated
    reasons = dict(zip(v.excluded["row"], v.excluded["reason"]))
    assert reasons[3].startswith("sin paciente")
    assert "no está asignado" in reasons[4]


def test_found_codes_and_proposal():
    data, _bad, _good = fs.broken_bundle()
    found = found_codes(read_fhir(data, "broken.json"))
    keys = {f.key for f in found}
    assert f"{fs.CODES}|oq" in keys and fs.OQ45_QUESTIONNAIRE in keys
    proposal = propose_codes(found)
    assert proposal["alliance"] == f"{fs.CODES}|wai"
    assert proposal["symptoms"] in (f"{fs.CODES}|oq", fs.OQ45_QUESTIONNAIRE)


def test_sessions_by_date_one_per_day_and_in_order():
    resources = [fs.observation("A", "2024-03-08T17:00:00-03:00", "oq", 70),
                 fs.observation("A", "2024-03-01", "oq", 80),
                 fs.observation("A", "2024-03-01T10:05:00Z", "wai", 5),
                 fs.observation("B", "2024-05-02", "oq", 60)]
    v = fhir_to_validated(read_fhir(fs.as_bytes(fs.bundle(resources)), "b.json"), fs.mapping()).validated
    a = v.data[v.data["patient"] == "A"].set_index("session")
    assert list(a.index) == [1, 2]
    assert a.loc[1, "symptoms"] == 80 and a.loc[1, "alliance"] == 5 and a.loc[2, "symptoms"] == 70
    assert list(a["date"]) == ["2024-03-01", "2024-03-08"]
    assert v.data.loc[v.data["patient"] == "B", "session"].tolist() == [1]
    assert "same day are one session" in v.notes[0]


def test_sessions_by_encounter():
    resources = [fs.observation("A", "2024-03-08", "oq", 70, encounter={"reference": "Encounter/e2"}),
                 fs.observation("A", "2024-03-01", "oq", 80, encounter={"reference": "Encounter/e1"}),
                 fs.observation("A", "2024-03-02", "wai", 5, encounter={"reference": "Encounter/e1"})]
    v = fhir_to_validated(read_fhir(fs.as_bytes(fs.bundle(resources)), "b.json"), fs.mapping()).validated
    a = v.data.set_index("session")
    assert a.loc[1, "symptoms"] == 80 and a.loc[1, "alliance"] == 5 and a.loc[2, "symptoms"] == 70
    assert "encounter" in v.notes[0]


def test_questionnaire_items_scored_with_the_instrument_definition():
    answers = [2] * 45
    answers[0] = 4                     # item 1 is reverse-keyed in the OQ-45.2: scored 0
    answers[5] = None                  # one of 45 missing: prorated (up to 10% allowed)
    res = fs.questionnaire_response("Q", "2024-01-01", answers)
    for item in res["item"]:           # linkIds as a records system may write them
        item["linkId"] = f"oq45-{item['linkId']}"
    res["item"].append({"linkId": "comment", "answer": [{"valueString": "fine"}]})
    v = fhir_to_validated(read_fhir(fs.as_bytes(fs.bundle([res])), "q.json"), fs.mapping())
    expected = score_items(pd.DataFrame([[np.nan if a is None else a for a in answers]]), load_instrument("oq45"))
    assert v.validated.data["symptoms"].iloc[0] == pytest.approx(expected.total.iloc[0])
    assert v.instruments == (("symptoms", "oq45"),)
    assert any("comment" in m for m in v.messages)  # the answer that is no item is said


def test_ndjson_rows_are_line_numbers():
    lines = [json.dumps(fs.observation("A", "2024-01-01", "oq", 70)), "",
             json.dumps(fs.observation("A", "2024-01-08", "oq", 900)), "{not json"]
    v = read_fhir_validated("\n".join(lines).encode(), fs.mapping(), source="x.ndjson").validated
    assert v.data["symptoms"].tolist() == [70]
    reasons = dict(zip(v.excluded["row"], v.excluded["reason"]))
    assert set(reasons) == {3, 4} and "outside" in reasons[3] and "not valid JSON" in reasons[4]


def test_nothing_usable_is_one_sentence():
    data = fs.as_bytes(fs.bundle([fs.observation("A", "2024-01-01", "phq9", 3)]))
    with pytest.raises(InputError, match=r"None of the 1 resource of x.json can be used \(resource 1: code"):
        read_fhir_validated(data, fs.mapping(), source="x.json")


@pytest.mark.parametrize("maker, words", [
    (fs.fhir_deep_nesting, "nested too deeply"),
    (fs.fhir_over_size, "at most 200 MB"),
    (fs.fhir_million_resources, "1,000,000 FHIR resources or more"),
    (fs.fhir_many_values, "9,900,000 bundle entries"),
])
def test_hostile_bundles_end_in_one_sentence(tmp_path, maker, words):
    path = maker(tmp_path)
    with pytest.raises(InputError) as err:
        read_fhir_validated(path, fs.mapping())
    message = str(err.value)
    assert words in message and "\n" not in message and "Traceback" not in message


def test_limits_are_checked_before_parsing(monkeypatch):
    """A bundle over the resources limit is refused from a count of its bytes: json is never called."""
    import core.intake.fhir as fhir

    line = b'{"resourceType":"Observation"}\n'
    data = line * (limits.MAX_FHIR_RESOURCES + 1)
    monkeypatch.setattr(fhir.json, "loads", lambda *a, **k: pytest.fail("parsed before the limit was checked"))
    with pytest.raises(InputError, match="FHIR resources or more"):
        read_fhir(data, "many.ndjson")


def test_a_resource_nested_too_deeply_is_listed_and_the_rest_kept(tmp_path):
    v = read_fhir_validated(fs.fhir_deep_resource(tmp_path), fs.mapping()).validated
    assert v.excluded_records() == [{"row": 1, "reason": f"nested more than {limits.MAX_FHIR_DEPTH} levels deep; "
                                                          "not read"}]
    assert v.data["symptoms"].tolist() == [80]


def test_mapping_by_bare_code_and_questionnaire_id():
    resources = [fs.observation("A", "2024-01-01", "oq", 70),
                 fs.questionnaire_response("A", "2024-01-01", [1] * 12,
                                           questionnaire="http://x.example/Questionnaire/ans|2.0")]
    mapping = FhirMapping(symptoms=FhirMeasure(codes=("oq",)),
                          alliance=FhirMeasure(codes=("ans",), reverse_keyed=()))
    v = fhir_to_validated(read_fhir(fs.as_bytes(fs.bundle(resources)), "x.json"), mapping).validated
    assert v.data[["alliance", "symptoms"]].iloc[0].tolist() == [1.0, 70.0]
