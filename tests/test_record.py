"""Recording one session (core.store.record), on SQLite and on a real PostgreSQL server: one
transaction with a new data-set version, the history of corrections, the audit entry, every refusal
in one sentence, two people saving the same session at once, and patient mode held with the sign-in
session."""
from __future__ import annotations

import json
import re
import threading
import time

import pytest
import sqlalchemy as sa

from core.errors import InputError
from core.store import AccessDenied, ClinicStore, NoSuchPatient
from core.store.record import (
    RecordConflict,
    SessionRecords,
    check_score,
    parse_score,
    parse_session_date,
    recording_instrument,
    score_answers,
)
from core.store.schema import observations, session_history

DATASET = "Demo clinic"


@pytest.fixture
def clinic(store):
    store.seed_demo()
    people = {name: store.authenticate(f"demo-{name}", "demo")
              for name in ("supervisor", "therapist-ana", "therapist-bruno", "researcher")}
    return store, people


def counts(store: ClinicStore) -> tuple[int, int, int]:
    """(observation rows, history rows, the demo data set's version)."""
    with store.engine.connect() as conn:
        n_obs = conn.execute(sa.select(sa.func.count()).select_from(observations)).scalar_one()
        n_hist = conn.execute(sa.select(sa.func.count()).select_from(session_history)).scalar_one()
        version = conn.execute(sa.text("SELECT version FROM datasets WHERE name = :n"), {"n": DATASET}).scalar_one()
    return n_obs, n_hist, version


def ana_patient(store, ana, last: float = 8.0) -> str:
    form = store.record_form(ana, DATASET)
    return next(p for p, (s, _t) in form.patients.items() if s == last)


def test_the_form_offers_her_patients_the_measures_and_their_ranges(clinic):
    store, people = clinic
    ana, sup = people["therapist-ana"], people["supervisor"]
    form = store.record_form(ana, DATASET)
    mine = {p for p in store.patient_ids(sup, DATASET)
            if store.patient_sessions(sup, DATASET, p, log_view=False)["therapist"].iloc[-1] == "T01 Ana"}
    assert set(form.patients) == mine and form.therapists == ("T01 Ana",)
    alliance, symptoms = form.measure("alliance"), form.measure("symptoms")
    assert (alliance.low, alliance.high, symptoms.low, symptoms.high) == (1, 7, 0, 180)
    assert symptoms.instrument.id == "oq45" and symptoms.whole and not alliance.whole
    assert alliance.instrument is None and "not sourced" in alliance.no_items   # the ANS keys are unsourced
    p = ana_patient(store, ana)
    assert form.next_session(p) == 9 and form.next_session(None) == 1
    assert len(store.record_form(sup, DATASET).therapists) == 6
    with pytest.raises(AccessDenied):
        store.record_form(people["researcher"], DATASET)


def test_a_session_is_one_transaction_with_a_new_version_history_and_audit(clinic):
    store, people = clinic
    ana, sup = people["therapist-ana"], people["supervisor"]
    p = ana_patient(store, ana)
    n_obs, n_hist, version = counts(store)
    result = store.record_session(ana, DATASET, p, 9, {"alliance": "3,5", "symptoms": "140"}, session_date="2026-03-02")
    assert (result.action, result.version, result.values) == ("recorded", version + 1,
                                                              {"alliance": 3.5, "symptoms": 140.0})
    assert counts(store) == (n_obs + 1, n_hist + 1, version + 1)
    rows = store.patient_sessions(ana, DATASET, p, log_view=False)
    last = rows.iloc[-1]
    assert (last["session"], last["alliance"], last["symptoms"], last["therapist"]) == (9, 3.5, 140, "T01 Ana")
    assert store.dataset_version(ana, DATASET) == version + 1
    entry = store.audit_log(sup).iloc[0]
    assert (entry["username"], entry["action"]) == ("demo-therapist-ana", "session recorded")
    assert f"patient {p}, session 9 (2026-03-02)" in entry["detail"] and "symptoms 140" in entry["detail"]


def test_a_correction_needs_a_reason_and_keeps_the_earlier_value(clinic):
    store, people = clinic
    ana = people["therapist-ana"]
    p = ana_patient(store, ana)
    store.record_session(ana, DATASET, p, 9, {"alliance": 5.0, "symptoms": 70})
    with pytest.raises(RecordConflict, match="already recorded by demo-therapist-ana .* give the reason"):
        store.record_session(ana, DATASET, p, 9, {"symptoms": 71})
    stored = store.stored_session(ana, DATASET, p, 9)
    result = store.record_session(ana, DATASET, p, 9, {"symptoms": 77}, reason="typed 70 for 77",
                                  expected=stored.revision)
    assert result.action == "corrected" and result.values == {"alliance": 5.0, "symptoms": 77.0}
    history = store.session_history(ana, DATASET, p)
    assert list(history["action"]) == ["recorded", "corrected"]
    assert history["before"].iloc[1] == {"alliance": 5.0, "symptoms": 70.0}
    assert history["after"].iloc[1] == {"alliance": 5.0, "symptoms": 77.0}
    assert history["reason"].iloc[1] == "typed 70 for 77"
    # a correction saved from what was seen before the first correction is refused, not applied
    with pytest.raises(RecordConflict, match="changed by demo-therapist-ana .* since you opened it"):
        store.record_session(ana, DATASET, p, 9, {"symptoms": 78}, reason="again", expected=stored.revision)
    assert store.stored_session(ana, DATASET, p, 9).values["symptoms"] == 77
    # an uploaded session can be corrected too: its upload value is the history's "before"
    stored4 = store.stored_session(ana, DATASET, p, 4)
    store.record_session(ana, DATASET, p, 4, {"alliance": 6.0}, reason="scanned sheet", expected=stored4.revision)
    assert store.session_history(ana, DATASET, p)["before"].iloc[-1] == stored4.values


@pytest.mark.parametrize("values, session, kwargs, error, message", [
    ({"alliance": 8}, 9, {}, InputError, "The alliance score 8 is outside its valid range 1–7"),
    ({"symptoms": -1}, 9, {}, InputError, "The symptoms score \u22121 is outside its valid range 0–180"),
    ({"bdi": 3}, 9, {}, InputError, "'bdi' is not a measure of the data set 'Demo clinic'"),
    ({"alliance": "high"}, 9, {}, InputError, "'high' is not a number"),
    ({"alliance": ""}, 9, {}, InputError, "Enter at least one score for session 9"),
    ({"alliance": 5}, 2.5, {}, InputError, "whole number from 0 to 1,000,000"),
    ({"alliance": 5}, 9, {"session_date": "2999-01-01"}, InputError, "is in the future"),
    ({"alliance": 5}, 9, {"session_date": "31/03/2026"}, InputError, "YYYY-MM-DD"),
    ({"alliance": 5}, 9, {"new_patient": True}, InputError, "There is already a patient"),
])
def test_refusals_are_one_sentence_and_write_nothing(clinic, values, session, kwargs, error, message):
    store, people = clinic
    ana = people["therapist-ana"]
    p = ana_patient(store, ana)
    before = counts(store)
    with pytest.raises(error) as caught:
        store.record_session(ana, DATASET, p, session, values, **kwargs)
    assert message in str(caught.value)
    sentence = str(caught.value)
    assert not re.search(r"(?<!e\.g)\. [A-Z]", sentence) and "\n" not in sentence and sentence.endswith(".")
    assert counts(store) == before


def test_a_therapist_records_only_her_patients_and_may_add_one(clinic):
    store, people = clinic
    ana, bruno, sup = people["therapist-ana"], people["therapist-bruno"], people["supervisor"]
    brunos = ana_patient(store, bruno)
    before = counts(store)
    with pytest.raises(NoSuchPatient, match="not among the patients you can record"):
        store.record_session(ana, DATASET, brunos, 9, {"alliance": 5})
    with pytest.raises(AccessDenied):
        store.record_session(ana, DATASET, "N-100", 1, {"alliance": 5}, therapist="T02 Bruno", new_patient=True)
    with pytest.raises(AccessDenied):
        store.record_session(people["researcher"], DATASET, brunos, 9, {"alliance": 5})
    assert counts(store) == before
    with pytest.raises(NoSuchPatient, match="must be added as new"):  # a typo never adds a patient
        store.record_session(ana, DATASET, "N-100", 1, {"symptoms": 90})
    store.record_session(ana, DATASET, "N-100", 1, {"symptoms": 90}, new_patient=True)
    assert "N-100" in store.record_form(ana, DATASET).patients
    assert "N-100" not in store.record_form(bruno, DATASET).patients
    with pytest.raises(InputError, match="Choose the therapist of the new patient"):
        store.record_session(sup, DATASET, "N-101", 1, {"symptoms": 90}, new_patient=True)
    store.record_session(sup, DATASET, "N-101", 1, {"symptoms": 90}, new_patient=True, therapist="T02 Bruno")
    assert "N-101" in store.record_form(bruno, DATASET).patients


def test_a_failure_inside_the_transaction_leaves_nothing(clinic, monkeypatch):
    store, people = clinic
    ana = people["therapist-ana"]
    p = ana_patient(store, ana)
    before = counts(store)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ClinicStore, "_audit", broken)
    with pytest.raises(RuntimeError):
        store.record_session(ana, DATASET, p, 9, {"alliance": 5, "symptoms": 60})
    monkeypatch.undo()
    assert counts(store) == before
    assert store.stored_session(ana, DATASET, p, 9) is None


@pytest.mark.parametrize("who", ["same therapist twice", "therapist and supervisor"])
def test_two_people_saving_the_same_session_at_once(clinic, monkeypatch, who):
    """Both read "not recorded yet"; the first to write holds the data set's row while it writes (here
    made slow), the second then finds the row and is told; exactly one row, one history entry, one
    new version, and the stored values are all the first's."""
    store, people = clinic
    ana = people["therapist-ana"]
    other = ana if who == "same therapist twice" else people["supervisor"]
    p = ana_patient(store, ana)
    before = counts(store)
    original = SessionRecords._stored_row
    slow_first = threading.Event()

    def slow_read(self, conn, ds, patient, session):
        row = original(self, conn, ds, patient, session)
        if not slow_first.is_set():
            slow_first.set()
            time.sleep(1.0)  # inside the first transaction, after it found nothing stored
        return row

    monkeypatch.setattr(SessionRecords, "_stored_row", slow_read)
    barrier = threading.Barrier(2)
    outcome = {}

    def save(name, user, values):
        barrier.wait()
        try:
            outcome[name] = store.record_session(user, DATASET, p, 9, values)
        except RecordConflict as err:
            outcome[name] = err

    threads = [threading.Thread(target=save, args=("a", ana, {"alliance": 4.0, "symptoms": 100})),
               threading.Thread(target=save, args=("b", other, {"alliance": 6.0, "symptoms": 50}))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = [k for k, v in outcome.items() if not isinstance(v, Exception)]
    refused = [k for k, v in outcome.items() if isinstance(v, RecordConflict)]
    assert len(stored) == 1 and len(refused) == 1, outcome
    assert "nothing was saved" in str(outcome[refused[0]])
    assert counts(store) == (before[0] + 1, before[1] + 1, before[2] + 1)
    winner = {"a": {"alliance": 4.0, "symptoms": 100.0}, "b": {"alliance": 6.0, "symptoms": 50.0}}[stored[0]]
    assert store.stored_session(ana, DATASET, p, 9).values == winner


def test_unique_key_stops_a_second_insert_that_skipped_the_lock(clinic, monkeypatch):
    """Behind the lock, the database's unique key on (data set, patient, session): a save whose read
    missed the other's row is refused as a conflict, not stored twice."""
    store, people = clinic
    ana = people["therapist-ana"]
    p = ana_patient(store, ana)
    store.record_session(ana, DATASET, p, 9, {"alliance": 5})
    before = counts(store)
    monkeypatch.setattr(SessionRecords, "_stored_row", lambda self, conn, ds, patient, session: None)
    with pytest.raises(RecordConflict, match="at the same moment"):
        store.record_session(ana, DATASET, p, 9, {"alliance": 6})
    assert counts(store) == before


# ------------------------------------------------------------------------------ patient mode
def test_patient_mode_signs_no_one_in_and_holds_one_questionnaire(clinic):
    store, people = clinic
    ana, sup = people["therapist-ana"], people["supervisor"]
    p = ana_patient(store, ana)
    session_id, ticket = store.start_session(ana)
    key = "a-browser-key-of-the-tablet-0123456789"  # the key the tablet's page keeps (ui.auth)
    token, _seconds = store.redeem_ticket(ticket, key)
    assert store.session_user(token=token, browser_key=key) == ana
    store.start_kiosk(ana, session_id, DATASET, p, 9, "es")
    assert store.session_user(token=token, browser_key=key) is None and store.session_user(session_id=session_id) is None
    state = store.kiosk_of(token=token)
    assert (state.patient, state.session, state.language, state.finished) == (p, 9.0, "es", False)
    assert [m.name for m in state.measures] == ["symptoms"]
    with pytest.raises(AccessDenied):  # one patient mode per sign-in; a second start is refused
        store.start_kiosk(ana, session_id, DATASET, p, 10, "es")
    for item in range(1, 46):
        store.kiosk_answer(session_id, "symptoms", item, 2)
    assert store.kiosk_of(session_id=session_id).answers["symptoms"][45] == 2
    assert store.finish_kiosk(session_id) == "stored"
    state = store.kiosk_of(token=token)
    assert state.finished and state.outcome == "stored"   # locked until a staff member signs in
    assert store.session_user(token=token, browser_key=key) is None
    assert store.stored_session(ana, DATASET, p, 9).values["symptoms"] == 90.0
    history = store.session_history(ana, DATASET, p)
    assert history["via"].iloc[-1] == "patient mode" and history["username"].iloc[-1] == "demo-therapist-ana"
    store.end_kiosk(sup, session_id)
    assert store.kiosk_of(token=token) is None and store.session_user(token=token, browser_key=key) is None
    actions = list(store.audit_log(sup)["action"][:3])
    assert actions == ["patient mode ended", "session recorded", "patient mode started"]


def test_patient_mode_refusals(clinic):
    store, people = clinic
    ana, bruno = people["therapist-ana"], people["therapist-bruno"]
    p = ana_patient(store, ana)
    session_id, _ticket = store.start_session(ana)
    with pytest.raises(InputError, match="already recorded"):
        store.start_kiosk(ana, session_id, DATASET, p, 4, "en")
    with pytest.raises(NoSuchPatient):
        store.start_kiosk(ana, session_id, DATASET, ana_patient(store, bruno), 9, "en")
    brunos_session, _ticket = store.start_session(bruno)
    with pytest.raises(AccessDenied):  # only her own sign-in session becomes patient mode
        store.start_kiosk(ana, brunos_session, DATASET, p, 9, "en")
    assert store.kiosk_of(session_id=session_id) is None
    # too few answers: nothing stored, the reason kept, the tablet still locked
    store.start_kiosk(ana, session_id, DATASET, p, 9, "en")
    for item in range(1, 30):
        store.kiosk_answer(session_id, "symptoms", item, 1)
    outcome = store.finish_kiosk(session_id)
    assert "items missing" in outcome and store.stored_session(ana, DATASET, p, 9) is None
    assert store.kiosk_of(session_id=session_id).finished


# ------------------------------------------------------------------------------ pure helpers
def test_parsing_and_range_checks():
    assert parse_score("5,5") == 5.5 and parse_score(" 71 ") == 71 and parse_score("") is None
    for bad in ("abc", "inf", "1e309", "5,5,5"):
        with pytest.raises(InputError):
            parse_score(bad)
    from core.store.record import Measure

    ans = Measure("alliance", 1, 7)
    assert check_score(ans, 7) == 7 and check_score(ans, 1) == 1 and check_score(ans, None) is None
    with pytest.raises(InputError, match="outside its valid range 1–7"):
        check_score(ans, 7.01)
    assert check_score(Measure("bdi"), 63) == 63
    assert parse_session_date(None) is None and parse_session_date("2026-01-31") == "2026-01-31"


def test_items_are_scored_with_the_instrument_reverse_keys_and_prorating():
    from core.store.record import Measure

    oq = recording_instrument("oq45")
    m = Measure("symptoms", 0, 180, oq)
    answers = {i: 4 for i in range(1, 46)}
    # the nine reverse-keyed items answered 4 count 0: 36 × 4
    assert score_answers(m, answers) == 144
    answers.pop(2)
    answers.pop(3)  # 2 of 45 missing (≤ 10%): prorated, (34 × 4) × 45 / 43
    assert score_answers(m, answers) == pytest.approx(34 * 4 * 45 / 43)
    with pytest.raises(InputError, match="answer more items"):
        score_answers(m, {i: 1 for i in range(1, 35)})
    with pytest.raises(InputError, match="its answers run from 0 to 4"):
        score_answers(m, {1: 5})
    # a data set stored as mean item scores (range 0–4) is scored as the mean
    assert recording_instrument("oq45", (0.0, 4.0)).scoring == "mean"


def test_a_clinic_copy_of_a_definition_is_used(tmp_path, monkeypatch):
    """$ALLIANCE_DATA_DIR/instruments/ans.json with the reverse keys marked lets the ANS be scored from items."""
    from core.intake.instruments import definition_to_dict, load_instrument

    folder = tmp_path / "instruments"
    folder.mkdir()
    own = definition_to_dict(load_instrument("ans"))
    own["reverse_keyed"] = []
    own["item_texts"] = {"es": [f"Pregunta {i}" for i in range(1, 13)]}
    (folder / "ans.json").write_text(json.dumps(own), encoding="utf-8")
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path))
    defn = recording_instrument("ans")
    assert defn.reverse_keyed == () and defn.item_texts["es"][0] == "Pregunta 1"


def test_patient_mode_for_a_new_patient(clinic):
    store, people = clinic
    ana = people["therapist-ana"]
    session_id, _ticket = store.start_session(ana)
    store.start_kiosk(ana, session_id, DATASET, "N-200", 1, "en", new_patient=True)
    for item in range(1, 46):
        store.kiosk_answer(session_id, "symptoms", item, 1)
    assert store.finish_kiosk(session_id) == "stored"
    assert store.record_form(ana, DATASET).patients["N-200"] == (1.0, "T01 Ana")
