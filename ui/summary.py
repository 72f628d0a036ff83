"""The patient page's one-page summary download (issue 29): the PDF is made only when the button is
clicked (Streamlit's deferred download), in the page's language, and the click is audited."""
from __future__ import annotations

import streamlit as st

from core.i18n import _, get_language, language
from core.reporting.summary_pdf import PatientSummary, summary_pdf
from ui import auth
from ui.state import dataset_title


def summary_button(summary: PatientSummary, *, dataset: str, key: str = "patient_pdf") -> None:
    """A download button for ``summary`` as a PDF (who produced it: the signed-in user, else a
    visitor); the export is logged like every download."""
    user = auth.current_user()
    summary.produced_by = user.display_name if user is not None else _("a visitor not signed in")
    summary.dataset = dataset_title(dataset)
    lang = get_language()

    def make() -> bytes:  # runs on another thread when clicked: carry the page's language there
        with language(lang):
            return summary_pdf(summary)

    auth.download(_("Download a one-page summary (PDF)"), make, file_name=f"summary_{summary.patient}.pdf",
             mime="application/pdf", key=key, what=f"{dataset}: patient {summary.patient} summary (PDF)",
             help=_("For the clinical record: the status and why, the chart, reliable change, ruptures and the "
                    "definitions on one A4 page."), icon=":material/picture_as_pdf:")
    st.caption(_("The PDF is made on this computer when you click; nothing is sent anywhere."))
