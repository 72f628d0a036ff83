"""The patient page's one-page summary download (issue 29): the PDF is made only when the button is
clicked (Streamlit's deferred download), in the page's language, and the click is audited."""
from __future__ import annotations

import streamlit as st

from core.i18n import _, get_language, language
from core.reporting.summary_pdf import PatientSummary, summary_pdf
from ui import auth
from ui.state import dataset_title


def summary_button(summary: PatientSummary, *, dataset: str, instruments: tuple = (), key: str = "patient_pdf") -> None:
    """For the clinical record: a download button for ``summary`` as a PDF (who produced it: the
    signed-in user, else a visitor) and one for the patient's course as a FHIR R4 Bundle of
    Observations (the signal status as each symptom score's interpretation); both made on click,
    both logged like every download."""
    user = auth.current_user()
    summary.produced_by = user.display_name if user is not None else _("a visitor not signed in")
    summary.dataset = dataset_title(dataset)
    lang = get_language()

    def make() -> bytes:  # runs on another thread when clicked: carry the page's language there
        with language(lang):
            return summary_pdf(summary)

    left, right = st.columns(2)
    with left:
        auth.download(_("Download a one-page summary (PDF)"), make, file_name=f"summary_{summary.patient}.pdf",
                      mime="application/pdf", key=key, what=f"{dataset}: patient {summary.patient} summary (PDF)",
                      help=_("For the clinical record: the status and why, the chart, reliable change, ruptures and "
                             "the definitions on one A4 page."), icon=":material/picture_as_pdf:")

    def course() -> bytes:
        from core.reporting.fhir_export import bundle_bytes, fhir_bundle

        with language(lang):
            return bundle_bytes(fhir_bundle(summary.sessions, dataset=dataset, signal=summary.signal,
                                            instruments=instruments, patient=summary.patient))

    with right:
        auth.download(_("Download the course for the record system (FHIR)"), course,
                      file_name=f"patient_{summary.patient}.fhir.json", mime="application/fhir+json",
                      key=f"{key}_fhir", what=f"{dataset}: patient {summary.patient} course (FHIR bundle)",
                      help=_("A FHIR R4 Bundle of Observations: every score, with the early-warning status as each "
                             "symptom score's interpretation."), icon=":material/data_object:")
    st.caption(_("Both files are made on this computer when you click; nothing is sent anywhere."))
