"""One patient's course in sentences: the words the patient page and the one-page summary share.

- :func:`jt_word`: a Jacobson–Truax status (:func:`core.clinical.indices.jacobson_truax_status`)
  in the current language;
- :func:`rupture_sentences`: one sentence per possible rupture (alliance below the patient's mean so
  far by more than the threshold, :func:`core.clinical.indices.flag_ruptures_so_far`) and whether
  the next session repaired it;
- :func:`change_sentence`: the change from the first to the last symptom score and its status.
"""
from __future__ import annotations

import pandas as pd

from core.i18n import N_, _
from core.reporting.formatting import format_number

#: Jacobson–Truax statuses (``core.clinical.indices.jacobson_truax_status``) in words.
JT_WORDS = {"recovered": N_("recovered"), "improved": N_("improved"), "unchanged": N_("unchanged"),
            "deteriorated": N_("deteriorated"), "unknown": N_("unknown")}


def jt_word(status) -> str:
    """A Jacobson–Truax status in the current language (anything else as it is)."""
    return _(JT_WORDS[status]) if isinstance(status, str) and status in JT_WORDS else status


def rupture_sentences(sessions: pd.DataFrame) -> list[str]:
    """A sentence per flagged session of ``sessions`` (one patient, with the columns of
    :func:`core.clinical.indices.flag_ruptures_so_far`), in session order."""
    if "rupture" not in sessions:
        return []
    out = []
    for _row, r in sessions[sessions["rupture"].astype(bool)].iterrows():
        if pd.isna(r["repaired"]):
            template = _("Possible rupture in session {session:g}: alliance was {gap:.2f} points below this "
                         "patient's mean so far; there is no next session yet.")
        elif r["repaired"]:
            template = _("Possible rupture in session {session:g}: alliance was {gap:.2f} points below this "
                         "patient's mean so far; alliance recovered in the next session.")
        else:
            template = _("Possible rupture in session {session:g}: alliance was {gap:.2f} points below this "
                         "patient's mean so far; alliance stayed low in the next session.")
        out.append(template.format(session=r["session"], gap=abs(r["alliance_within_so_far"])))
    return out


def change_sentence(first: float, last: float, status: str, reliable_change: float, decimals: int) -> str:
    """"From the first to the last session the symptom score changed by −29 points: improved (reliable
    change 14 points)." (``decimals``: 0 for whole-number scores)."""
    return _("From the first to the last session the symptom score changed by {change} points: {status} "
             "(reliable change {rc:.3g} points).").format(change=format_number(last - first, decimals, signed=True),
                                                          status=jt_word(status), rc=reliable_change)


#: The OQ-45.2 scales a symptom axis can be titled with.
OQ45_SCALES = ("total", "mean_item")


def chart_labels(measures, *, symptom_scale: str | None = None, higher_is_worse: bool = True,
                 alliance_range: tuple[float, float] | None = None, alliance_is_ans: bool = False) -> dict:
    """Per measure the patient chart's panel title (with the direction) and axis title (with the
    scale, its range and what a higher score means), e.g. ``("Symptoms (lower is better)", "OQ-45.2
    total (0–180, higher = more symptoms)")`` and ``("Alliance (higher is better)", "Alliance, ANS
    mean item score (1–7)")``. ``symptom_scale``: ``"total"`` or ``"mean_item"`` for the OQ-45.2,
    else a plain symptom score; ``alliance_range``: the alliance scale's full range when known."""
    from core.i18n import number

    labels = {}
    if "symptoms" in measures:
        scales = {"total": _("OQ-45.2 total (0–180, {meaning})"), "mean_item": _("OQ-45.2 mean item score (0–4, {meaning})")}
        meaning = _("higher = more symptoms") if higher_is_worse else _("higher = fewer symptoms")
        axis = scales.get(symptom_scale, _("Symptom score ({meaning})")).format(meaning=meaning)
        title = _("Symptoms (lower is better)") if higher_is_worse else _("Symptoms (higher is better)")
        labels["symptoms"] = (title, axis)
    if "alliance" in measures:
        if alliance_is_ans and alliance_range is not None:
            axis = _("Alliance, ANS mean item score ({low}–{high})").format(low=number(alliance_range[0], "g"),
                                                                            high=number(alliance_range[1], "g"))
        elif alliance_range is not None:
            axis = _("Alliance score ({low}–{high})").format(low=number(alliance_range[0], "g"),
                                                             high=number(alliance_range[1], "g"))
        else:
            axis = _("Alliance score")
        labels["alliance"] = (_("Alliance (higher is better)"), axis)
    return labels
