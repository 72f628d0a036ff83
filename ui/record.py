"""Shared pieces of the *Record a session* page and patient mode: the numeric keyboard on tablets,
large touch targets, a typed score checked as it is typed, and the history of recorded values that
the patient page shows on request.

Numeric keyboard: Streamlit's text input has ``inputmode="text"`` and offers no parameter for it
(``st.number_input`` writes ``type="number"``, which takes no decimal comma in many browsers and shows
the spin buttons; streamlit/streamlit#9763 set its ``inputmode`` to ``""``). Every text input whose
key starts with :data:`DECIMAL_KEY` gets ``inputmode="decimal"`` from a small script in the page
itself (:func:`numeric_keyboard`; no request leaves the page), so a tablet or phone opens its number
pad with a decimal separator.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import InputError
from core.i18n import _, number
from core.store.record import Measure, check_score, parse_score

#: Widget keys starting with this get the tablet's number pad (``inputmode="decimal"``).
DECIMAL_KEY = "dec_"
#: Touch targets at least 48 px high (WCAG 2.5.5 asks 44), text 1.1 rem, in the containers keyed
#: ``touch`` (``st.container(key="touch…")``).
TOUCH_CSS = """
<style>
[class*="st-key-touch"] button { min-height: 3rem; font-size: 1.05rem; }
[class*="st-key-touch"] input { min-height: 2.75rem; font-size: 1.1rem; }
[class*="st-key-touch"] [data-baseweb="select"] > div { min-height: 3rem; font-size: 1.05rem; }
[class*="st-key-touch"] [role="radiogroup"] label { min-height: 2.75rem; align-items: center; padding-right: 0.75rem; }
[class*="st-key-touch"] [data-testid="stPageLink-NavLink"] {
  min-height: 3rem; justify-content: center; border: 1px solid rgba(49, 51, 63, 0.3); border-radius: 0.5rem;
}
</style>
"""
NUMERIC_SCRIPT = """
<script>
(function () {
  function mark() {
    document.querySelectorAll('[class*="st-key-%(key)s"] input').forEach(function (input) {
      if (input.getAttribute("inputmode") !== "decimal") {
        input.setAttribute("inputmode", "decimal");
        input.setAttribute("autocomplete", "off");
      }
    });
  }
  mark();
  if (!window.__allianceDecimalObserver) {
    window.__allianceDecimalObserver = new MutationObserver(mark);
    window.__allianceDecimalObserver.observe(document.body, {childList: true, subtree: true});
  }
})();
</script>
""" % {"key": DECIMAL_KEY}


def numeric_keyboard() -> None:
    """Large touch targets and the number pad for every text input keyed :data:`DECIMAL_KEY`…."""
    st.html(TOUCH_CSS + NUMERIC_SCRIPT, unsafe_allow_javascript=True)


def range_text(measure: Measure) -> str:
    """``1–7`` (the valid range in the language's numbers) or ``""`` when none is known."""
    if measure.low is None or measure.high is None:
        return ""
    return f"{number(measure.low, 'g')}–{number(measure.high, 'g')}"


def score_input(measure: Measure, key: str, label: str, value: str = "") -> tuple[float | None, str | None]:
    """A text input for one score with the number pad; returns ``(value, refusal)``: the score as a
    number (``None`` when blank) and, for a value that is not a number or lies outside the valid range,
    the one sentence saying so (shown under the field at once)."""
    if key not in st.session_state:
        st.session_state[key] = value
    text = st.text_input(label, key=key, placeholder=range_text(measure) or None)
    try:
        return check_score(measure, parse_score(text)), None
    except InputError as err:
        st.error(str(err), icon=":material/error:")
        return None, str(err)


def values_text(values: dict, measures) -> str:
    """``alliance 5,5 · symptoms 71`` in the interface language (blank measures left out)."""
    from core.intake.mapping import role_name

    labels = {m.name: m.label for m in measures}
    return " · ".join(f"{labels.get(k, role_name(k))} {number(v, 'g')}" for k, v in values.items() if v is not None) or "—"


def history_on_request(dataset: str, patient: str) -> None:
    """The patient page's *recorded values and corrections*: shown on request (a toggle), for a
    therapist of the patient or a supervisor; every value a correction replaced stays listed."""
    from core.store.errors import AccessDenied, NoSuchDataset, NoSuchPatient
    from core.store.record import STAFF
    from ui.auth import clinic_store, current_user
    from ui.look import local_numbers

    user = current_user()
    if user is None or user.role not in STAFF:
        return
    if not st.toggle(_("Show recorded values and corrections"), key="patient_history",
                     help=_("Sessions recorded on the Record a session page, in patient mode or from the command "
                            "line, and every correction with the values it replaced.")):
        return
    try:
        frame = clinic_store().session_history(user, dataset, patient)
    except (AccessDenied, NoSuchDataset, NoSuchPatient):  # e.g. an upload kept in this browser session
        st.caption(_("This data set is not stored in the clinic database, so it has no history."))
        return
    if frame.empty:
        st.caption(_("No session of this patient was recorded or corrected here; the values came from uploads."))
        return
    actions = {"recorded": _("recorded"), "corrected": _("corrected")}
    shown = pd.DataFrame({
        "session": frame["session"].astype(float),
        "date": frame["session_date"].fillna("—"),
        "when": frame["at"].dt.strftime("%Y-%m-%d %H:%M UTC"),
        "who": frame["username"].fillna(""),
        "what": frame["action"].map(lambda a: actions.get(a, a)),
        "before": [values_text(v, ()) if isinstance(v, dict) else "—" for v in frame["before"]],
        "after": [values_text(v, ()) for v in frame["after"]],
        "reason": frame["reason"].map(lambda r: r if isinstance(r, str) and r else "—"),
    })
    config = {"session": st.column_config.NumberColumn(_("session"), format="%.0f"), "date": _("session date"),
              "when": _("saved"), "who": _("by"), "what": _("what"), "before": _("before"), "after": _("after"),
              "reason": _("reason")}
    written, config = local_numbers(shown, config)
    st.dataframe(written, hide_index=True, width="stretch", column_config=config)
