"""The Upload page for a FHIR R4 bundle (issue 29): which code or questionnaire is which measure,
how questionnaires are scored, valid ranges; then the spreadsheet's validation report and store
(:mod:`ui.upload_report`). The reading and mapping are :mod:`core.intake.fhir`'s."""
from __future__ import annotations

from collections import Counter

import streamlit as st

from core.errors import InputError
from core.i18n import N_, _, number
from core.intake.fhir import (
    DEFAULT_INSTRUMENTS,
    FhirMapping,
    FhirMeasure,
    fhir_to_validated,
    found_codes,
    propose_codes,
    read_fhir,
)
from core.intake.instruments import available_instruments
from core.intake.mapping import role_name
from ui.language import localised, multiselect_placeholder
from ui.text import md
from ui.upload_report import refuse, use_or_store, validation_report

NONE = N_("— not in the file —")
LAYOUTS = {"bundle": N_("Bundle"), "ndjson": N_("NDJSON file")}
KINDS = {"Observation": N_("Observations"), "QuestionnaireResponse": N_("questionnaire responses")}


@st.cache_data(show_spinner=False, max_entries=4)
def read_bundle(data: bytes, name: str, language: str):
    """The bundle as read and validated resource by resource (cached on the file's bytes)."""
    return read_fhir(data, name)


@st.cache_data(show_spinner=False, max_entries=8)
def map_bundle(data: bytes, name: str, mapping: FhirMapping, language: str):
    return fhir_to_validated(read_bundle(data, name, language), mapping)


def _choose_code(measure: str, found, proposal: dict) -> str | None:
    """Section 1: which found code or questionnaire is ``measure`` (None: not in the file)."""
    label = {f.key: f"{f.label} · {_(KINDS[f.kind])}: {number(f.count, ',')}" for f in found}
    options = [NONE, *(f.key for f in found)]
    default = proposal.get(measure)
    title = _("Alliance measure (code or questionnaire)") if measure == "alliance" else \
        _("Symptom measure (code or questionnaire)")
    pick = st.selectbox(title, options, index=options.index(default) if default in options else 0,
                        key=f"fhir_code_{measure}", format_func=localised(lambda o: _(NONE) if o == NONE else label[o]))
    return None if pick == NONE else pick


def _measure_spec(measure: str, pick: str, kind: str, instruments: dict) -> FhirMeasure | None:
    """Section 2: how a questionnaire is scored, or the valid range of Observation scores (None: the
    reverse-keyed items still to be said)."""
    st.markdown(f"**{md(role_name(measure).capitalize())}**")
    if kind == "QuestionnaireResponse":
        defs = [d for d in instruments.values() if d.measures == measure or d.id == "likert"]
        ids = [d.id for d in defs]
        inst = st.selectbox(_("Instrument that scores its items"), ids, index=ids.index(DEFAULT_INSTRUMENTS[measure]),
                            format_func=lambda i: instruments[i].name, key=f"fhir_inst_{measure}")
        reverse = None
        if instruments[inst].reverse_keyed is None:
            st.warning(" ".join(instruments[inst].unsourced[:1]))
            reverse = tuple(st.multiselect(_("Reverse-keyed items"), list(range(1, instruments[inst].n_items + 1)),
                                           key=f"fhir_rev_{measure}", placeholder=multiselect_placeholder([1])))
            if not reverse and not st.checkbox(_("No item needs reversing (data already keyed)"),
                                               key=f"fhir_none_{measure}"):
                return None
        st.caption(_("Each item is the number at the end of its linkId (1, oq-7, item12); answers outside the "
                     "instrument's codes make that questionnaire unusable (listed below)."))
        return FhirMeasure(codes=(pick,), instrument=inst, reverse_keyed=reverse)
    lo0, hi0 = (1.0, 7.0) if measure == "alliance" else (0.0, 180.0)
    if not st.checkbox(_("Check the {measure} range").format(measure=role_name(measure)), value=True,
                       key=f"fhir_range_on_{measure}"):
        return FhirMeasure(codes=(pick,))
    a, b = st.columns(2)
    lo = a.number_input(_("min"), value=lo0, key=f"fhir_range_lo_{measure}")
    hi = b.number_input(_("max"), value=hi0, key=f"fhir_range_hi_{measure}")
    return FhirMeasure(codes=(pick,), range=(float(lo), float(hi)))


def fhir_page(payload: bytes, file_name: str, lang: str) -> None:
    """Sections 1–4 of the Upload page for a FHIR bundle."""
    try:
        with st.spinner(_("Reading the FHIR bundle …")):
            bundle = read_bundle(payload, file_name, lang)
    except Exception as err:  # InputError: one sentence; anything else: see refuse()
        refuse(err, file_name)
    counts = Counter(e.type or _("not a resource") for e in bundle.entries).most_common(6)
    types = md(", ".join(number(n, ",") + " " + kind for kind, n in counts))  # resource types: data, escaped
    st.caption(_("Read **{name}**: a FHIR R4 {layout} of {n:,} resources ({types}), each checked against the R4 "
                 "definitions.").format(name=md(file_name), layout=_(LAYOUTS[bundle.layout]), n=len(bundle.entries),
                                        types=types))
    found = found_codes(bundle)
    if not found:
        refuse(InputError(_("{name} holds no Observation with a code and no QuestionnaireResponse with a "
                            "questionnaire: nothing to read as alliance or symptom scores.").format(name=file_name)),
               file_name)
    st.subheader(_("1. Which code is which?"))
    st.caption(_("Observations are matched by their code (SYSTEM|CODE), questionnaire responses by their "
                 "questionnaire (canonical URL). Patients come from each resource's subject, therapists from its "
                 "performer or author; how sessions are numbered is said in the report."))
    proposal = propose_codes(found)
    kinds = {f.key: f.kind for f in found}
    instruments = {d.id: d for d in available_instruments()}
    picks = {}
    for col, measure in zip(st.columns(2), ("alliance", "symptoms")):
        with col:
            picks[measure] = _choose_code(measure, found, proposal)
    specs = {}
    if any(picks.values()):
        st.subheader(_("2. Scoring and valid ranges"))
        for col, (measure, pick) in zip(st.columns(2), [(m, p) for m, p in picks.items() if p]):
            with col:
                specs[measure] = _measure_spec(measure, pick, kinds[pick], instruments)
    if not any(specs.values()):
        st.info(_("Choose the code or questionnaire of at least one measure."))
        st.stop()
    mapping = FhirMapping(**specs)
    try:
        with st.spinner(_("Checking every resource …")):
            result = map_bundle(payload, file_name, mapping, lang)
    except Exception as err:
        refuse(err, file_name)
    for message in result.messages:
        if message not in result.validated.notes:
            st.info(md(message))
    validation_report(result.validated, file_name, lang, fhir=True)
    use_or_store(result.validated, file_name, instruments=result.instruments)
