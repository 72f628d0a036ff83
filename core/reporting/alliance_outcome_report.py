"""Early alliance → post-treatment outcome as people read it: the per-study table, the sentence for a
methods section, the supervisor's plain sentence, and the HTML report's section.

The Reciprocal dynamics page, the Clinic overview, the HTML report and ``python -m core
alliance-outcome`` show the same numbers: those of :func:`core.stats.alliance_outcome.alliance_outcome`.
"""
from __future__ import annotations

import html
from typing import Any

import pandas as pd

from core.errors import InputError
from core.i18n import N_, _
from core.reporting.formatting import format_number
from core.reporting.tables import _p_phrase
from core.stats.alliance_outcome import OUTCOME_POST, AllianceOutcomeResult, alliance_outcome

#: Headers of :func:`stage1_frame` and of the patients' table, for display (the frames keep these keys).
HEADERS = {
    "study": N_("Study"), "n_patients": N_("Patients"), "estimate": N_("β (standardized)"), "se": N_("SE"),
    "t": "t", "df": N_("df"), "p": "p", "ci_low": N_("95% CI low"), "ci_high": N_("95% CI high"), "r": "r",
    "patient": N_("Patient"), "early_alliance": N_("Early alliance (mean)"), "n_early": N_("Early sessions"),
    "intake": N_("Intake"), "post": N_("Outcome"), "row": N_("row"), "reason": N_("reason"),
}


def headers(frame: pd.DataFrame) -> dict[str, str]:
    """The display header of each column of ``frame`` this module knows, in the current language."""
    return {c: _(HEADERS[c]) for c in frame.columns if c in HEADERS}


def stage1_frame(result: AllianceOutcomeResult) -> pd.DataFrame:
    """Stage 1 per study (the page's table and its CSV): ``study, n_patients, estimate, se, t, df, p,
    ci_low, ci_high, r``."""
    return result.stage1_table()


def outcome_phrase(result: AllianceOutcomeResult) -> str:
    """The outcome in words: the post-treatment column, or the last symptom score after the window."""
    if result.outcome == OUTCOME_POST:
        return _("the post-treatment score ({column})").format(column=result.post_column)
    return _("the last symptom score after session {last}").format(last=result.early[1])


def _interval(low: float, high: float) -> str:
    return _("{low} to {high}").format(low=format_number(low, 2), high=format_number(high, 2))


def methods_sentence(result: AllianceOutcomeResult) -> str:
    """One sentence a methods or results section can use, in the current language.

    Pooled: "Early alliance (the mean alliance score in sessions 1–4) and post-treatment outcome (…),
    adjusted for the intake symptom score, over 8 studies (640 patients): pooled standardized β = −0.23
    (95% CI −0.31 to −0.15; p < .001; random effects, REML); pooled r = −0.28 (95% CI …); τ² = …,
    I² = …%." One study: the OLS coefficient with its t-based CI and r.
    """
    first, last = result.early
    outcome = outcome_phrase(result)
    method = result.method.upper() + (" + Knapp–Hartung" if result.knapp_hartung else "")
    if result.pooled is not None:
        pooled, r = result.pooled, result.pooled_r()
        text = _("Early alliance (the mean alliance score in sessions {first}–{last}) and {outcome}, adjusted for the "
                 "intake symptom score, over {k} studies ({n} patients): pooled standardized β = {b} (95% CI "
                 "{interval}; {p}; random effects, {method}), τ² = {tau2}, I² = {i2}%").format(
            first=first, last=last, outcome=outcome, k=pooled.k, n=result.n_patients,
            b=format_number(pooled.estimate, 2), interval=_interval(pooled.ci_low, pooled.ci_high),
            p=_p_phrase(pooled.p), method=method, tau2=format_number(pooled.tau2, 3),
            i2=format_number(pooled.i2, 1))
        if r is not None:
            text += _("; pooled r = {r} (95% CI {interval}; Fisher's z, back-transformed)").format(
                r=format_number(r["r"], 2), interval=_interval(r["ci_low"], r["ci_high"]))
        return text + "."
    (label, s), = result.stage1.items()
    return _("Early alliance (the mean alliance score in sessions {first}–{last}) and {outcome}, adjusted for the "
             "intake symptom score ({n} patients; ordinary least squares on z-scores): standardized β = {b} (95% CI "
             "{interval}; {p}; t with {df} df); r = {r}.").format(
        first=first, last=last, outcome=outcome, n=s["n_patients"], b=format_number(s["estimate"], 2),
        interval=_interval(s["ci_low"], s["ci_high"]), p=_p_phrase(s["p"]), df=s["df"],
        r=format_number(s["r"], 2))


#: The supervisor's sentence, one per direction (whole sentences, for translation).
CLINIC_SENTENCES = {
    "lower": N_("In this clinic, patients whose alliance in sessions {first}–{last} was one SD higher ended with "
                "symptoms {size} SD lower, adjusting for where they started; 95% CI {interval} ({n} patients)."),
    "higher": N_("In this clinic, patients whose alliance in sessions {first}–{last} was one SD higher ended with "
                 "symptoms {size} SD higher, adjusting for where they started; 95% CI {interval} ({n} patients)."),
    "same": N_("In this clinic, patients whose alliance in sessions {first}–{last} was one SD higher ended with the "
               "same symptoms, adjusting for where they started; 95% CI {interval} ({n} patients)."),
}
#: Added when the interval includes 0.
MAY_BE_CHANCE = N_("The interval includes 0, so this may be chance.")


def clinic_figures(result: AllianceOutcomeResult | str) -> dict[str, Any] | None:
    """The numbers :func:`clinic_sentence` says, as plain JSON values (the first study's stage 1:
    ``first``, ``last`` (the early window), ``estimate``, ``ci_low``, ``ci_high``, ``n_patients``);
    None for a result that is the sentence saying why there is none. What the clinic database keeps
    per data set version (:meth:`core.store.ClinicStore.kept_result`)."""
    if isinstance(result, str):
        return None
    s = next(iter(result.stage1.values()))
    return {"first": int(result.early[0]), "last": int(result.early[1]), "estimate": float(s["estimate"]),
            "ci_low": float(s["ci_low"]), "ci_high": float(s["ci_high"]), "n_patients": int(s["n_patients"])}


def clinic_sentence(result: AllianceOutcomeResult | dict[str, Any]) -> str:
    """The plain sentence for the supervisor's Clinic overview (one clinic: the first study's stage 1),
    from the result or its :func:`clinic_figures`.

    "In this clinic, patients whose alliance in sessions 1–4 was one SD higher ended with symptoms 0.23 SD
    lower, adjusting for where they started; 95% CI −0.41 to −0.05 (96 patients)."
    """
    s = result if isinstance(result, dict) else clinic_figures(result)
    est = s["estimate"]
    direction = "lower" if est < 0 else "higher" if est > 0 else "same"
    text = _(CLINIC_SENTENCES[direction]).format(first=s["first"], last=s["last"],
                                                 size=format_number(abs(est), 2),
                                                 interval=_interval(s["ci_low"], s["ci_high"]), n=s["n_patients"])
    if s["ci_low"] <= 0 <= s["ci_high"]:
        text += " " + _(MAY_BE_CHANCE)
    return text


def for_clinic(data: pd.DataFrame, early=(1, 4), post: str | None = None,
               post_label: str | None = None) -> AllianceOutcomeResult | str:
    """The clinic's result, or the sentence saying why there is none. ``post``: the post-treatment column;
    default: the *post-treatment score* role when the data have one with a value, else the last symptom
    score after the window."""
    if post is None and "post" in data.columns and pd.to_numeric(data["post"], errors="coerce").notna().any():
        post = "post"
    try:
        return alliance_outcome(data, early=early, post=post, post_label=post_label)
    except InputError as err:
        return str(err)


def alliance_outcome_section_html(result: AllianceOutcomeResult | str, table_html, figure_html) -> str:
    """The HTML report's section; ``table_html(frame)`` and ``figure_html(fig)`` embed a table and a figure."""
    from core.reporting.figures import early_alliance_scatter

    heading = _("Early alliance and post-treatment outcome")
    parts = [f"<h2 id='alliance-outcome'>{html.escape(heading, quote=False)}</h2>"]
    if isinstance(result, str):
        text = _("Not computed: {reason}").format(reason=result)
        parts.append(f"<p class='warn'>{html.escape(text)}</p>")
        return "\n".join(parts)
    parts.append(f"<p>{html.escape(methods_sentence(result))}</p>")
    if len(result.stage1) == 1:
        parts.append(f"<p>{html.escape(clinic_sentence(result))}</p>")
    table = stage1_frame(result)
    parts.append(table_html(table.rename(columns=headers(table))))
    if result.excluded:
        left = pd.DataFrame(result.excluded)[["patient", "row", "reason"]]
        parts.append("<p>" + html.escape(_("Patients left out (an early alliance, an intake or an outcome score is "
                                           "missing):"), quote=False) + "</p>")
        parts.append(table_html(left.rename(columns=headers(left))))
    if len(result.stage1) == 1:
        parts.append(figure_html(early_alliance_scatter(result)))
    return "\n".join(parts)

