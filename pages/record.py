"""Record a session (therapists and supervisors): one session's scores, typed as scores or as the
items of the data set's questionnaire, stored at once as a new version of the data set; or the
questionnaire handed to the patient on this device (patient mode)."""
import datetime
import hashlib

import streamlit as st

from core.clinical.signal import status_sentence
from core.errors import InputError
from core.i18n import LANGUAGES, _, get_language, number
from core.store.errors import AccessDenied, NoSuchDataset, NoSuchPatient, StoreBusy
from core.store.record import STAFF, RecordConflict, answers_needed, parse_score, score_answers
from ui.auth import SESSION_KEY, clinic_store, current_user
from ui.clinic import clinic_signal, current_settings, patient_options, patient_signal_rows
from ui.record import numeric_keyboard, range_text, score_input, values_text
from ui.state import dataset_picker, demo_badge
from ui.text import md

ds = dataset_picker()
user = current_user()
st.title(_("Record a session"))
demo_badge(ds)
if user is None or user.role not in STAFF:
    st.info(_("Sign in as a therapist or a supervisor to record sessions."))
    st.stop()
numeric_keyboard()
store = clinic_store()


@st.cache_data(show_spinner=False, max_entries=32)
def record_form(database: str, dataset: str, version: int, user_id: int, language: str, _user):
    """What can be recorded (measures, her patients, therapists), read once per data-set version."""
    return clinic_store().record_form(_user, dataset)


try:
    version = store.dataset_version(user, ds.name)
    form = record_form(str(store.engine.url), ds.name, version, user.id, get_language(), user)
except (NoSuchDataset, AccessDenied):
    st.info(_("Sessions are recorded into a data set of the clinic database; choose one in the sidebar."))
    st.stop()

# ---------------------------------------------------------------- the last save, and its signal now
saved = st.session_state.get("rec_saved")
if saved and saved["dataset"] == ds.name:
    st.success(_("Saved: session {session:g} of patient {patient} ({values}), version {version} of the data set. The "
                 "patient page and the caseload show it now.").format(
        session=saved["session"], patient=md(saved["patient"]), values=values_text(saved["values"], form.measures),
        version=saved["version"]), icon=":material/check_circle:")
    if "symptoms" in ds.validated.measures and saved["patient"] in set(ds.data["patient"]):
        model, signal, _current = clinic_signal(ds, current_settings(ds))  # also warms the pages' caches
        mine = patient_signal_rows(ds, current_settings(ds), model, signal, saved["patient"])
        if len(mine):
            now = mine.iloc[-1]
            box = {"not_on_track": st.error, "at_risk": st.warning, "on_track": st.success}.get(now["status"], st.info)
            box(status_sentence(now["status"], now["session"], now["reason"]))
    with st.container(key="touch_links", horizontal=True):  # links: the next page runs at once, this one not again
        st.page_link("pages/patient.py", label=_("Open the patient page"), icon=":material/person:",
                     query_params={"patient": saved["patient"]}, width="stretch")
        st.page_link("pages/overview.py", label=_("Open my caseload") if user.role.value == "therapist"
                     else _("Open the clinic overview"), icon=":material/groups:", width="stretch")

# ---------------------------------------------------------------- who, which session, when
if "rec_switch_to" in st.session_state:  # set before the widgets are drawn
    st.session_state["rec_patient_kind"] = "existing"
    st.session_state["rec_patient"] = st.session_state.pop("rec_switch_to")
with st.container(key="touch_who"):
    kinds = {"existing": _("One of my patients") if user.role.value == "therapist" else _("A patient of the clinic"),
             "new": _("A new patient")}
    kind = st.radio(_("Patient"), list(kinds), format_func=kinds.get, horizontal=True, key="rec_patient_kind")
    new_patient = kind == "new"
    therapist = None
    if not new_patient:
        patients = list(form.patients)
        if not patients:
            st.info(_("You have no patients in this data set yet; add a new patient."))
            st.stop()
        asked = st.query_params.get("patient")
        if asked in form.patients and st.session_state.get("rec_patient") is None:
            st.session_state["rec_patient"] = asked
        options = patient_options(patients, st.session_state.get("rec_patient"), key="rec_patient_search")
        if st.session_state.get("rec_patient") not in options:
            st.session_state["rec_patient"] = options[0]
        patient = st.selectbox(_("Patient ID (type to search)"), options, key="rec_patient",
                               format_func=lambda p: _("{patient} (last session {session:g})").format(
                                   patient=p, session=form.patients[p][0]))
    else:
        patient = st.text_input(_("The new patient's code"), key="rec_new_code", max_chars=200,
                                help=_("The code the clinic uses for this patient (no names)."), ).strip()
        if user.role.value == "supervisor" and form.has_therapist:
            therapist = st.selectbox(_("Therapist"), form.therapists, index=None, key="rec_therapist",
                                     placeholder=_("Choose or type a therapist code"), accept_new_options=True)
    proposal = form.next_session(None if new_patient else patient)
    left, right = st.columns(2)
    session = left.number_input(_("Session number"), min_value=0, max_value=1_000_000, step=1, value=proposal,
                                key=f"rec_session_{'new' if new_patient else patient}",
                                help=_("Proposed: the session after the patient's latest one."))
    today = datetime.date.today()
    day = right.date_input(_("Date of the session"), value=today, max_value=today, key="rec_date",
                           format="DD/MM/YYYY" if get_language() == "es" else "YYYY-MM-DD")

slot = hashlib.sha1(f"{ds.name}|{patient}|{session}|{new_patient}".encode()).hexdigest()[:10]
stored = None
if patient and not new_patient:
    try:
        stored = store.stored_session(user, ds.name, patient, session)
    except (InputError, NoSuchPatient) as err:
        st.error(str(err))
        st.stop()
# What the form showed before this run: a save compares it with what is stored now, so a session someone
# else recorded or corrected meanwhile is refused with a sentence, never overwritten silently.
seen_key = f"rec_seen_{slot}"
seen = st.session_state.get(seen_key, stored.revision if stored is not None else None)
if stored is not None:
    who = (_("by {user} on {when}").format(user=md(stored.recorded_by), when=stored.recorded_at.strftime("%Y-%m-%d %H:%M UTC"))
           if stored.recorded_by else _("by an upload"))
    st.warning(_("Session {session:g} of patient {patient} is already recorded {who}: {values}. To change it, edit the "
                 "values below and give the reason for the correction; the earlier values stay in the history.").format(
        session=session, patient=md(patient), who=who, values=values_text(stored.values, form.measures)),
        icon=":material/history:")

# ---------------------------------------------------------------- the scores
values, refusals = {}, []
for i, measure in enumerate(form.measures):
    with st.container(key=f"touch_measure_{i}", border=True):
        scale = range_text(measure)
        valid = _("valid range {range}").format(range=scale) if scale else ""
        st.markdown(f"**{md(measure.title)}**" + (f" · {md(valid)}" if valid else ""))
        prefill = "" if stored is None or stored.values.get(measure.name) is None \
            else number(stored.values[measure.name], "g")
        entry = "score"
        if measure.instrument is not None:
            modes = {"score": _("the score"),
                     "items": _("the answers to the {n} items of {name}").format(n=measure.instrument.n_items,
                                                                                 name=measure.instrument.name)}
            entry = st.radio(_("Enter"), list(modes), format_func=modes.get, horizontal=True, key=f"rec_entry_{i}")
        elif measure.no_items:
            st.caption(_("Only the score can be entered: {why}").format(why=md(measure.no_items)))
        if entry == "score":
            label = _("{measure} score").format(measure=measure.label)
            value, refusal = score_input(measure, f"dec_{i}_{slot}", label[:1].upper() + label[1:], prefill)
        else:
            defn = measure.instrument
            st.caption(_("Type each answer as its code, {low} to {high}; leave an item blank if it was not answered "
                         "(up to {missing} may be; the score is then prorated). Reverse-keyed items are reversed when "
                         "scored.").format(low=number(defn.item_min, "g"), high=number(defn.item_max, "g"),
                                           missing=defn.n_items - answers_needed(measure)))
            answers, refusal = {}, None
            per_row = 5
            for start in range(1, defn.n_items + 1, per_row):
                cols = st.columns(per_row)
                for k in range(start, min(start + per_row, defn.n_items + 1)):
                    text = cols[k - start].text_input(_("Item {n}").format(n=k), key=f"dec_item_{i}_{k}_{slot}",
                                                      placeholder=f"{number(defn.item_min, 'g')}–"
                                                                  f"{number(defn.item_max, 'g')}")
                    try:
                        answers[k] = parse_score(text)
                    except InputError as err:
                        refusal = refusal or _("Item {n}: {reason}").format(n=k, reason=str(err))
            value = None
            if refusal is None and any(v is not None for v in answers.values()):
                try:
                    value = score_answers(measure, answers)
                    n = sum(v is not None for v in answers.values())
                    st.info(_("Score from the items: **{score}** ({n} of {total} answered).").format(
                        score=number(round(value, 2), "g"), n=n, total=defn.n_items))
                except InputError as err:
                    refusal = str(err)
            if refusal:
                st.error(refusal, icon=":material/error:")
        values[measure.name] = value
        if refusal:
            refusals.append(refusal)

with st.container(key="touch_save"):
    reason = None
    if stored is not None:
        reason = st.text_input(_("Reason for the correction"), key=f"rec_reason_{slot}",
                               placeholder=_("e.g. the score was typed wrongly; the paper sheet says 72"))
    label = _("Save the correction") if stored is not None else _("Save session {session:g}").format(session=session)
    if st.button(label, type="primary", key="rec_save", width="stretch", disabled=not patient):
        problem = refusals[0] if refusals else None
        if problem is None and seen is not None and not (reason or "").strip():
            problem = _("Give the reason for the correction; it is kept with the earlier values.")
        if problem is None and stored is None and all(v is None for v in values.values()):
            problem = _("Enter at least one score for session {session:g}.").format(session=session)
        if problem is None and new_patient and user.role.value == "supervisor" and form.has_therapist and not therapist:
            problem = _("Choose the therapist of the new patient '{patient}'.").format(patient=md(patient))
        if problem is not None:
            st.error(problem, icon=":material/block:")
        else:
            try:
                result = store.record_session(user, ds.name, patient, session, values, session_date=day,
                                              reason=reason if seen is not None else None, expected=seen,
                                              therapist=therapist, new_patient=new_patient)
            except (InputError, RecordConflict, NoSuchPatient, AccessDenied, StoreBusy) as err:
                st.error(str(err), icon=":material/block:")
            else:
                st.session_state["rec_saved"] = {"dataset": result.dataset, "patient": result.patient,
                                                 "session": result.session, "version": result.version,
                                                 "values": result.values}
                for key in [k for k in st.session_state if str(k).startswith(("dec_", "rec_reason_", "rec_new_code",
                                                                                   "rec_session_", "rec_seen_"))]:
                    del st.session_state[key]
                if new_patient:  # the new patient is now one of the list: chosen there on the next run
                    st.session_state["rec_switch_to"] = result.patient
                st.rerun()

st.session_state[seen_key] = stored.revision if stored is not None else None

# ---------------------------------------------------------------- patient mode
st.divider()
st.subheader(_("Patient mode: the questionnaire on this device"))
st.caption(_("For the waiting room: this device then shows only this patient's questionnaire for this session, in "
             "the patient's language, with no other patient's data and no way to other pages. When the patient "
             "finishes, the answers are scored and stored, the device thanks them and stays locked until a staff "
             "member signs in again. Your sign-in on this device ends with it."))
asked = [m for m in form.measures if m.instrument is not None]
why_not = None
if not asked:
    why_not = _("No questionnaire of this data set can be answered item by item here, so patient mode has nothing to "
                "ask; enter the scores above.")
elif not patient:
    why_not = _("Choose the patient first.")
elif stored is not None:
    why_not = _("This session is already recorded; patient mode is for a session not recorded yet.")
elif st.session_state.get(SESSION_KEY) is None:
    why_not = _("Patient mode needs a sign-in of your own on this device; sign in again.")
with st.container(key="touch_kiosk"):
    codes = list(LANGUAGES)
    language = st.selectbox(_("The patient's language"), codes, index=codes.index(get_language()),
                            format_func=LANGUAGES.get, key="rec_kiosk_language")
    if asked:
        st.caption(_("The patient will answer: {questionnaires}.").format(
            questionnaires=", ".join(md(m.instrument.name) for m in asked)))
    if st.button(_("Start patient mode for patient {patient}, session {session:g}").format(
            patient=md(patient or "—"), session=session), key="rec_kiosk_start", width="stretch",
            disabled=why_not is not None):
        try:
            store.start_kiosk(user, st.session_state[SESSION_KEY], ds.name, patient, session, language,
                              session_date=day, new_patient=new_patient)
        except (InputError, NoSuchPatient, AccessDenied, StoreBusy) as err:
            st.error(str(err), icon=":material/block:")
        else:
            st.rerun()
    if why_not:
        st.caption(why_not)
outcomes = store.kiosk_outcomes(user)
if len(outcomes):
    st.caption(_("Your latest questionnaires in patient mode:"))
    for row in outcomes.itertuples():
        state = (_("stored") if row.outcome == "stored" else
                 _("not finished") if row.finished is None else _("not stored: {why}").format(why=row.outcome))
        st.markdown("- " + md(_("patient {patient}, session {session:g}: {state}").format(
            patient=row.patient, session=row.session, state=state)))
