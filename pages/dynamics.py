"""Reciprocal dynamics: lagged within-patient effects and the two-stage IPD meta-analysis."""
import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from core.errors import InputError, ModelError, some_names
from core.intake.dataset import data_fingerprint
from core.intake.mapping import ROLES, ColumnMapping, propose_mapping, propose_study_column, role_name
from core.intake.reading import read_table
from core.intake.validation import (
    combine_studies,
    parse_numbers,
    validate_studies,
    validate_table,
)
from core.i18n import N_, _, get_language, language, ngettext, number
from core.reporting.exports import csv_bytes
from core.reporting.figures import forest_plot
from core.reporting.tables import pooled_summary_table
from core.stats.meta import (
    lagged_within_effects,
    pool_effects,
    pool_stage1,
    sorted_study_labels,
    stage1_table,
)
from ui.auth import download
from ui.language import multiselect_placeholder
from ui.look import local_numbers, number_columns
from ui.state import dataset_picker, demo_badge
from ui.text import md

DIRECTION_TEXT = {
    "alliance_to_symptoms": N_("Alliance → next-session symptoms"),
    "symptoms_to_alliance": N_("Symptoms → next-session alliance"),
    "alliance_to_symptoms_interaction": N_("Patient mean alliance × lagged alliance deviation"),
    "symptoms_to_alliance_interaction": N_("Patient mean symptoms × lagged symptom deviation"),
}
NONE = N_("— one study (no study column) —")
NO_POST = N_("— none —")
#: The data menu: the English text is the option's stable value, shown translated.
SOURCES = (N_("Active data set"), N_("Upload studies"), N_("Pool given effects"))
DIAGRAM_LABELS = {"unstandardized": N_("unstandardized"), "standardized": N_("standardized")}



def direction_text(direction: str) -> str:
    return _(DIRECTION_TEXT[direction]) if direction in DIRECTION_TEXT else direction


def one_measure_missing(reasons: pd.Series) -> int:
    """Rows left out only because alliance or symptoms is missing (the reason's text in English or
    in this session's language: a data set validated in another language keeps its reasons)."""
    texts = set()
    for code in {"en", get_language()}:
        with language(code):
            texts |= {_("{measure} missing").format(measure=role_name(m)) for m in ("alliance", "symptoms")}
    return int(reasons.astype(str).isin(texts).sum())


@st.cache_data(show_spinner=False, max_entries=512)
def study_effects(fingerprint: str, label: str, interaction: bool, _frame: pd.DataFrame) -> dict:
    """Stage 1 in one study (cached per study, so a progress bar can show each study)."""
    return lagged_within_effects(_frame, interaction=interaction, study_label=label)


@st.cache_data(show_spinner=False, max_entries=8)
def read_studies(files: tuple[tuple[str, bytes], ...], study_column: str | None, mapping: ColumnMapping,
                 language: str):
    """The studies validated (notes and reasons in ``language``: part of the cache key)."""
    if len(files) == 1:
        raw = read_table(files[0][1], filename=files[0][0])
        return validate_studies(raw, mapping, study_column)
    parts = {Path(name).stem: validate_table(read_table(data, filename=name), mapping) for name, data in files}
    return combine_studies(parts)


def run_stage1(data: pd.DataFrame, fingerprint: str, interaction: bool) -> pd.DataFrame:
    labels = [str(x) for x in sorted_study_labels(data["study"].unique())]
    bar = st.progress(0.0, text=_("Stage 1 …"))
    effects = {}
    for i, label in enumerate(labels):
        bar.progress(i / len(labels), text=_("Stage 1: study {study} ({i} of {n})").format(
            study=md(label), i=i + 1, n=len(labels)))
        try:
            effects[label] = study_effects(fingerprint, label, interaction, data[data["study"] == label])
        except (InputError, ModelError) as err:  # left out of the pooling, with its reason
            st.warning(_("Study {study} is left out: {reason}").format(study=md(label), reason=md(str(err))))
    bar.empty()
    return stage1_table(effects)


def show_pooled(direction: str, result, effect_label: str) -> None:
    st.markdown(f"#### {md(direction_text(direction))}")
    # a small table, not st.metric: metrics cut "−0.139 to 0.052" short at 1400 px
    summary = pooled_summary_table(result)
    st.dataframe(summary, hide_index=True, width=620, key=f"pooled_{direction}",
                 column_config={"quantity": st.column_config.TextColumn(_("Random-effects model"), width="large"),
                                "value": st.column_config.TextColumn(_("Value"), width="medium")})
    st.plotly_chart(forest_plot(result, effect_label=effect_label), width="stretch", key=f"forest_{direction}")
    for warning in result.warnings:  # e.g. a study whose SE is 0, kept by REML as metafor keeps it
        st.warning(md(warning))
    table = result.studies.rename(columns={"weight": "weight (%)"})
    download(_("Per-study table (CSV): {direction}").format(direction=direction_text(direction)),
             csv_bytes(table, get_language()),
             file_name=_("studies_{direction}.csv").format(direction=direction), mime="text/csv", key=f"csv_{direction}")
    show_sensitivity(direction, result, effect_label)


# --- Meta-analysis diagnostics (issue 27): meta-regression, funnel plot and Egger's test, leave-one-out,
# influence. metafor's numbers (core.stats.meta); words in core.reporting.meta_report. ---
from core.reporting.figures import funnel_plot  # noqa: E402
from core.reporting.meta_report import (  # noqa: E402
    egger_sentence,
    influence_frame,
    leave_one_out_frame,
    meta_regression_frame,
    meta_regression_sentences,
    sensitivity_sentences,
)
from core.reporting.meta_report import headers as meta_headers  # noqa: E402
from core.stats.meta import influence, leave_one_out, meta_regression  # noqa: E402


def shown_table(frame: pd.DataFrame, labels: dict, key: str) -> None:
    """A small table with translated headers and the language's decimal separator."""
    written, config = local_numbers(frame, number_columns(frame, default=3, labels=labels))
    st.dataframe(written, hide_index=True, width="stretch", column_config=config, key=key)


def show_sensitivity(direction: str, result, effect_label: str) -> None:
    """Funnel plot with Egger's test, leave-one-out and influence, in an expander under the forest plot."""
    with st.expander(_("Sensitivity: funnel plot and Egger's test, leave-one-out, influence"),
                     expanded=st.session_state.get("dyn_open_sensitivity", False)):
        st.plotly_chart(funnel_plot(result, effect_label=effect_label), width="stretch", key=f"funnel_{direction}")
        st.write(egger_sentence(result.regtest))
        loo, infl = leave_one_out(result), influence(result)
        for sentence in sensitivity_sentences(result, loo, infl):
            st.markdown(f"- {md(sentence)}")
        st.markdown(_("**Each study left out in turn** (metafor's leave1out)"))
        shown = leave_one_out_frame(loo)
        shown_table(shown, meta_headers(shown), f"loo_{direction}")
        st.markdown(_("**Influence diagnostics** (metafor's influence)"))
        shown = influence_frame(infl)
        shown_table(shown, meta_headers(shown), f"influence_{direction}")
        c = st.columns(2)
        with c[0]:
            download(_("Leave-one-out (CSV)"), csv_bytes(loo, get_language()),
                     file_name=_("leave_one_out_{direction}.csv").format(direction=direction), mime="text/csv",
                     key=f"loo_csv_{direction}")
        with c[1]:
            download(_("Influence (CSV)"), csv_bytes(infl, get_language()),
                     file_name=_("influence_{direction}.csv").format(direction=direction), mime="text/csv",
                     key=f"influence_csv_{direction}")


def show_meta_regression(direction: str, estimates, ses, labels, moderators: pd.DataFrame) -> None:
    """The meta-regression of one direction (or of the given effects) on the chosen moderators; a moderator
    choice that cannot be fitted is said in one sentence, and the rest of the page goes on."""
    try:
        result = meta_regression(estimates, ses, moderators, labels=labels, method=method, knapp_hartung=kh)
    except (InputError, ModelError) as err:
        st.warning(md(err))
        return
    st.markdown(_("**Meta-regression on {moderators}** ({direction})").format(
        moderators=md(", ".join(map(str, moderators.columns))), direction=md(direction_text(direction))))
    frame = meta_regression_frame(result)
    shown_table(frame, meta_headers(frame), f"mods_{direction}")
    for sentence in meta_regression_sentences(result):
        st.markdown(f"- {md(sentence)}")
    for warning in result.warnings:
        st.warning(md(warning))
    download(_("Meta-regression (CSV): {direction}").format(direction=direction_text(direction)),
             csv_bytes(result.coefficients, get_language()),
             file_name=_("meta_regression_{direction}.csv").format(direction=direction), mime="text/csv",
             key=f"mods_csv_{direction}")


def study_level_columns(frame: pd.DataFrame, skip=()) -> list[str]:
    """Columns with one value per study (candidates for moderators), in the table's order."""
    out = []
    for col in frame.columns:
        if col in (*ROLES, "row", "study", *skip):
            continue
        values = frame[[col, "study"]].dropna()
        if len(values) and values.groupby("study")[col].nunique().le(1).all() and values[col].nunique() > 1:
            out.append(col)
    return out
# --- end meta-analysis diagnostics ---


# --- RI-CLPM (issue 17): the random-intercept cross-lagged panel model beside the lagged models ---
from core.reporting.figures import riclpm_path_diagram  # noqa: E402
from core.reporting.riclpm_report import (  # noqa: E402
    COLUMN_LABELS,
    CROSS_LAGGED_MEANING,
    describe_riclpm,
    fit_indices_table,
    lagged_effects_table,
    random_intercepts_table,
    shown,
)
from core.stats.riclpm import MIN_WAVES, fit_riclpm, identification_needs, identified_sessions  # noqa: E402
from ui.language import localised


@st.cache_data(show_spinner=False, max_entries=64)
def riclpm_fit(fingerprint: str, study: str, first: int, last: int, free_lags: bool, language: str,
               _data: pd.DataFrame):
    """The fitted RI-CLPM, or the sentence saying why it cannot be fitted (cached per data, options and
    language: the result holds warnings and reasons)."""
    try:
        return fit_riclpm(_data, first, last, free_lags=free_lags)
    except (InputError, ModelError) as err:
        return str(err)


@st.cache_data(show_spinner=False, max_entries=64)
def riclpm_window(fingerprint: str, _data: pd.DataFrame):
    """The default sessions: the widest range on which the model is identified on these data (equal
    lagged effects), so that the page never refuses its own default; ``None`` when there is none."""
    return identified_sessions(_data)


def _riclpm_comparison(result, stage1: pd.DataFrame, study: str) -> pd.DataFrame:
    """The two lagged models side by side, per direction."""
    rows = []
    for direction in ("alliance_to_symptoms", "symptoms_to_alliance"):
        ml = stage1[(stage1["study"].astype(str) == study) & (stage1["direction"] == direction)]
        entry = result.lagged[direction]
        if isinstance(entry, list):  # free lags: one value per session pair ("; ": the decimal may be a comma)
            est = "; ".join(number(e["estimate"], ".3f") for e in entry)
            se = "; ".join(number(e["se"], ".3f") for e in entry)
            p = "; ".join(number(e["p"], ".3g") for e in entry)
            std = "; ".join(number(e["std_all"], ".3f") for e in entry)
        else:
            est, se, p = number(entry["estimate"], ".3f"), number(entry["se"], ".3f"), number(entry["p"], ".3g")
            std = number(sum(entry["std_all"]) / len(entry["std_all"]), ".3f")
        rows.append({
            "direction": direction_text(direction),
            "lagged multilevel (z-scores)": number(ml["estimate"].iloc[0], ".3f") if len(ml) else "—",
            "SE (multilevel)": number(ml["se"].iloc[0], ".3f") if len(ml) else "—",
            "RI-CLPM estimate": est, "SE (RI-CLPM)": se, "p (RI-CLPM)": p, "RI-CLPM std.all": std,
        })
    return pd.DataFrame(rows)


#: Headers of the RI-CLPM and row tables (the frames and the JSON keep their English keys).
RICLPM_HEADERS = {"effect": N_("Effect"), "sessions": N_("Sessions"), "estimate": N_("Estimate"), "se": N_("SE"),
                  "z": "z", "p": "p", "ci_low": N_("95% CI low"), "ci_high": N_("95% CI high"), "std.all": "std.all",
                  "component": N_("Component"), "index": N_("Index"), "value": N_("Value"),
                  "direction": N_("Direction"), "lagged multilevel (z-scores)": N_("lagged multilevel (z-scores)"),
                  "SE (multilevel)": N_("SE (multilevel)"), "RI-CLPM estimate": N_("RI-CLPM estimate"),
                  "SE (RI-CLPM)": N_("SE (RI-CLPM)"), "p (RI-CLPM)": N_("p (RI-CLPM)"),
                  "RI-CLPM std.all": N_("RI-CLPM std.all"), "session": N_("Session"),
                  "patients with alliance": N_("patients with alliance"),
                  "patients with symptoms": N_("patients with symptoms"), "patient": N_("Patient"),
                  "reason": N_("reason"), "row": N_("row"), "study": N_("Study")}


def riclpm_headers(frame: pd.DataFrame) -> dict:
    """``st.column_config`` with translated headers for the columns of ``frame`` this page knows."""
    labels = {**COLUMN_LABELS, **RICLPM_HEADERS}
    return {col: st.column_config.Column(_(labels[col])) for col in frame.columns if col in labels}


def show_riclpm(data: pd.DataFrame, fingerprint: str, stage1: pd.DataFrame, excluded: pd.DataFrame) -> None:
    """The RI-CLPM section: options, estimates, path diagram, sentences, fit, comparison, downloads."""
    st.subheader(_("Random-intercept cross-lagged panel model (RI-CLPM)"))
    st.write(_("The lagged multilevel model above works with each patient's deviations from their own mean. The "
             "RI-CLPM (Hamaker et al., 2015), which Falkenström et al. (2022) recommend for reciprocal effects, "
             "models the sessions as waves: a random intercept holds each patient's stable level of alliance and "
             "symptoms, and the session-to-session deviations from it carry over to the next session. Missed "
             "sessions are handled by full-information maximum likelihood, so patients who drop out keep their "
             "early sessions. The numbers equal R's lavaan (missing = \"ml\")."))
    labels = [str(x) for x in sorted_study_labels(data["study"].unique())]
    study = labels[0]
    if len(labels) > 1:  # the study with the most patients first: the one most likely to identify the model
        sizes = data.groupby(data["study"].astype(str))["patient"].nunique()
        largest = max(labels, key=lambda label: sizes.get(label, 0))
        study = st.selectbox(_("Study for the RI-CLPM (one study at a time)"), labels, index=labels.index(largest),
                             key="ri_study")
    sub = data[data["study"].astype(str) == study]
    sessions = sorted(int(s) for s in pd.to_numeric(sub["session"], errors="coerce").dropna().unique() if s % 1 == 0)
    if len(sessions) < MIN_WAVES:
        st.info(_("The RI-CLPM needs at least {needed:d} sessions; this data set has {n:d}.").format(
            needed=MIN_WAVES, n=len(sessions)))
        return
    default = riclpm_window(f"{fingerprint}:{study}", sub[["patient", "session", "alliance", "symptoms"]])
    if default is None:  # said before any fit: no range of sessions can identify the model on these data
        st.info(md(identification_needs(sub)))
        return
    c = st.columns([3, 2, 2])
    first, last = c[0].select_slider(_("Sessions (waves)"), options=sessions, value=default, key="ri_sessions",
                                     help=_("Sessions FIRST–LAST are the waves; a session a patient missed is a "
                                            "missing wave. At most 12 sessions."))
    free = c[1].checkbox(_("Free lagged effects per session pair"), key="ri_free",
                         help=_("Default: each lagged effect is equal over sessions (--free-lags on the command "
                                "line)."))
    standardized = c[2].radio(_("Diagram labels"), list(DIAGRAM_LABELS), horizontal=True, key="ri_diagram",
                              format_func=localised(lambda k: _(DIAGRAM_LABELS[k]))) == "standardized"
    with st.spinner(_("Fitting the RI-CLPM …")):
        result = riclpm_fit(f"{fingerprint}:{study}", study, int(first), int(last), bool(free), get_language(),
                            sub[["patient", "session", "alliance", "symptoms"]])
    if isinstance(result, str):  # not identified with these options: say why, the user may change them
        st.warning(md(result))
        return
    f = result.fit
    m = st.columns(3)
    m[0].metric(_("Patients"), result.n_patients, help=_("Patients with a score in these sessions."))
    m[1].metric(_("Sessions"), f"{result.first:g}–{result.last:g}")
    m[2].metric(_("Free parameters"), f["npar"], help=_("Including the observed means, as lavaan counts them."))
    m = st.columns(3)
    m[0].metric(_("χ² (df = {df:g})").format(df=f["df"]), number(f["chisq"], ".2f"),
                help=_("p = {p:.3g}").format(p=f["pvalue"]) if f["pvalue"] is not None else None)
    m[1].metric("CFI", number(f["cfi"], ".3f"))
    m[2].metric("RMSEA", number(f["rmsea"], ".3f"), help=_("90% CI {low:.3f} to {high:.3f}").format(
        low=f["rmsea_ci_low"], high=f["rmsea_ci_high"]))
    for warning in result.warnings:
        st.warning(md(warning))
    st.markdown(_("**What a cross-lagged effect means here.** {meaning}").format(meaning=_(CROSS_LAGGED_MEANING)))
    st.plotly_chart(riclpm_path_diagram(result, standardized=standardized), width="stretch", key="ri_diagram_fig")
    st.markdown("\n".join(f"- {md(s)}" for s in describe_riclpm(result)))
    st.markdown(_("**Lagged effects** (unstandardized, with lavaan's std.all beside them)"))
    lagged = shown(lagged_effects_table(result))
    st.dataframe(lagged, hide_index=True, width="stretch", column_config=riclpm_headers(lagged))
    st.markdown(_("**Beside the lagged multilevel model** (stage 1 above: z-scored, patient-mean-centred, lag to "
                  "the session exactly one earlier)"))
    comparison = _riclpm_comparison(result, stage1, study)
    st.dataframe(comparison, hide_index=True, width="stretch", column_config=riclpm_headers(comparison))
    st.caption(_("The two models answer related questions with different units: the multilevel coefficients are "
                 "in standard deviations of all sessions' scores; the RI-CLPM's std.all standardizes by the "
                 "within-person variation the model implies at each session."))
    st.markdown(_("**Random intercepts** (each patient's usual level)"))
    intercepts = shown(random_intercepts_table(result))
    st.dataframe(intercepts, hide_index=True, column_config=riclpm_headers(intercepts))
    st.markdown(_("**Fit** (as lavaan's fitMeasures)"))
    fit_indices = fit_indices_table(result)
    st.dataframe(fit_indices, hide_index=True, column_config=riclpm_headers(fit_indices))
    partial = one_measure_missing(excluded["reason"]) if len(excluded) else 0
    notes = []
    if partial:
        notes.append(ngettext("{n} session with only one of the two measures is not in this data set (rows left "
                              "out); `python -m core riclpm` on the file uses it, as lavaan does.",
                              "{n} sessions with only one of the two measures are not in this data set (rows left "
                              "out); `python -m core riclpm` on the file uses them, as lavaan does.",
                              partial).format(n=partial))
    if result.n_rows_outside:
        notes.append(ngettext("{n} patient-session lies outside sessions {first}–{last} and is not part of this "
                              "model.",
                              "{n} patient-sessions lie outside sessions {first}–{last} and are not part of this "
                              "model.", result.n_rows_outside).format(
            n=result.n_rows_outside, first=str(result.first), last=str(result.last)))
    if notes:
        st.caption(" ".join(notes))
    with st.expander(_("Patients per session, patients left out, and the command line")):
        coverage = result.coverage.rename(columns={"alliance": "patients with alliance",
                                                   "symptoms": "patients with symptoms"})
        st.dataframe(coverage, hide_index=True, column_config=riclpm_headers(coverage))
        if len(result.excluded_patients):
            st.dataframe(result.excluded_patients, hide_index=True,
                         column_config=riclpm_headers(result.excluded_patients))
        st.code(f"python -m core riclpm DATA.csv --patient patient --session session --alliance alliance "
                f"--symptoms symptoms --sessions {result.first}-{result.last}" + (" --free-lags" if free else ""),
                language=None)  # plain: the highlighter's cyan and teal are 2.5–2.7:1 on the code background
    import json as _json

    from core.reporting.json_report import clean

    download(_("RI-CLPM report (JSON, the command line's keys)"),
             _json.dumps(clean(result.to_dict()), indent=2, allow_nan=False).encode(),
             file_name=f"riclpm_{result.first}-{result.last}.json", mime="application/json", key="ri_json")
# --- end RI-CLPM ---


# --- Early alliance → post-treatment outcome (issue 30): per study, pooled, and for one clinic ---
from core.reporting.alliance_outcome_report import (  # noqa: E402
    clinic_sentence,
    methods_sentence,
    stage1_frame,
)
from core.reporting.alliance_outcome_report import headers as outcome_headers  # noqa: E402
from core.reporting.figures import early_alliance_scatter  # noqa: E402
from core.stats.alliance_outcome import alliance_outcome, outcome_columns  # noqa: E402

LAST_AFTER = "__last_after_window__"


@st.cache_data(show_spinner=False, max_entries=32)
def outcome_result(fingerprint: str, first: int, last: int, post: str | None, pool_method: str, knha: bool,
                   language: str, _data: pd.DataFrame):
    """The early alliance → outcome analysis, or the sentence saying why it cannot be made (cached per data,
    options and language: the result holds reasons)."""
    try:
        return alliance_outcome(_data, early=(first, last), post=post, study="study", method=pool_method,
                                knapp_hartung=knha)
    except (InputError, ModelError) as err:
        return str(err)


def show_alliance_outcome(data: pd.DataFrame, post_label: str | None) -> None:
    """The section: the early window and the outcome to choose, the per-study table, the forest plot (pooled)
    or the scatter (one clinic), a sentence for a methods section, the patients left out, CSV.
    ``post_label``: the file's header of the post-treatment score role, if mapped."""
    st.subheader(_("Early alliance and post-treatment outcome"))
    st.write(_("Do patients whose alliance was better early in treatment end treatment with fewer symptoms, at the "
               "same intake? Per study, the post-treatment score (z-scored) is regressed on the mean alliance of the "
               "early sessions and the intake symptom score (both z-scored; ordinary least squares); with several "
               "studies the coefficients, and Pearson's r through Fisher's z, are pooled with the model above "
               "(Flückiger et al., 2018, 2020)."))
    sessions = sorted(int(x) for x in pd.to_numeric(data["session"], errors="coerce").dropna().unique() if x % 1 == 0)
    if len(sessions) < 2:
        st.info(_("The analysis needs at least two session numbers."))
        return
    first = 1 if 1 in sessions else sessions[0]
    last = max([x for x in sessions if x <= first + 3] or [first])
    c = st.columns([3, 2])
    window = c[0].select_slider(_("Early sessions (their alliance scores are averaged)"), options=sessions,
                                value=(first, last), key="ao_window")
    columns = outcome_columns(data)
    options = [*columns, LAST_AFTER]
    # keyed by the choices: a data set with a post-treatment score opens on it, not on the last choice elsewhere
    chosen = c[1].selectbox(_("Outcome"), options, key="ao_outcome:" + "|".join(columns), format_func=localised(
        lambda o: _("Last symptom score after the early sessions") if o == LAST_AFTER else
        _("Post-treatment score (mapped)") if o == "post" else o))
    post = None if chosen == LAST_AFTER else chosen
    used = data[["study", "patient", "session", "alliance", "symptoms", *([post] if post else [])]]
    with st.spinner(_("Fitting …")):
        result = outcome_result(data_fingerprint(used), int(window[0]), int(window[1]), post, method, kh,
                                get_language(), used)
    if isinstance(result, str):
        st.info(md(result))
        return
    if post is not None:
        result = replace(result, post_column=(post_label or post) if post == "post" else post)
    st.markdown(_("**For a methods section:** {sentence}").format(sentence=md(methods_sentence(result))))
    table = stage1_frame(result)
    shown_table(table, outcome_headers(table), "ao_stage1")
    if result.pooled is not None:
        st.plotly_chart(forest_plot(result.pooled, effect_label=_("standardized coefficient of early alliance")),
                        width="stretch", key="ao_forest")
    else:
        st.info(md(clinic_sentence(result)))
        st.plotly_chart(early_alliance_scatter(result), width="stretch", key="ao_scatter")
    for label, reason in result.excluded_studies.items():
        st.warning(_("Study {study} is left out: {reason}").format(study=md(label), reason=md(reason)))
    if result.excluded:
        left = pd.DataFrame(result.excluded)[["patient", "row", "reason"]]
        with st.expander(ngettext("{n:,} patient left out (an early alliance, intake or outcome score missing)",
                                  "{n:,} patients left out (an early alliance, intake or outcome score missing)",
                                  len(left)).format(n=len(left))):
            st.dataframe(left, hide_index=True, width="stretch",
                         column_config={c: st.column_config.Column(h) for c, h in outcome_headers(left).items()})
    download(_("Early alliance and outcome, per study (CSV)"), csv_bytes(table, get_language()),
             file_name=_("early_alliance_outcome.csv"), mime="text/csv", key="ao_csv")
# --- end early alliance → outcome ---


ds = dataset_picker()
st.title(_("Reciprocal dynamics"))
st.write(_("Within each patient, does a session with better alliance than usual come before lower symptoms "
         "next session, and do higher symptoms than usual come before lower alliance next session? "
         "Stage 1 fits these lagged within-patient models per study (z-scores, patient means and "
         "deviations, lag only to the session exactly one earlier); stage 2 pools them with a "
         "random-effects meta-analysis (Flückiger et al., 2020)."))

source = st.radio(_("Data"), SOURCES, horizontal=True, key="dyn_source", format_func=localised(_))
c = st.columns(3)
method = c[0].radio(_("τ² estimator"), ["reml", "dl"],
                    format_func=lambda m: {"reml": "REML", "dl": "DerSimonian–Laird"}[m], horizontal=True,
                    key="dyn_method")
kh = c[1].checkbox(_("Knapp–Hartung adjustment"), key="dyn_kh",
                   help=_("t distribution with k − 1 df and a rescaled SE (as metafor's test = 'knha')."))
interaction = c[2].checkbox(_("Cross-level interaction"), key="dyn_interaction",
                            help=_("Patient mean × lagged deviation: does the lagged effect depend on the patient's "
                                   "usual level?"))

try:
    if source == "Pool given effects":
        upload = st.file_uploader(_("Effects file (one row per study: label, estimate, SE)"),
                                  type=["csv", "txt", "xlsx"], key="pool_file")
        if upload is None:
            st.stop()
        raw = read_table(upload.getvalue(), filename=upload.name)
        cols = raw.columns
        p = st.columns(3)
        label = p[0].selectbox(_("Label column"), cols, key="pool_label")
        est = p[1].selectbox(_("Estimate column"), cols, index=min(1, len(cols) - 1), key="pool_estimate")
        se = p[2].selectbox(_("SE column"), cols, index=min(2, len(cols) - 1), key="pool_se")
        e = parse_numbers(raw.frame[est], raw.decimal)[0]
        s = parse_numbers(raw.frame[se], raw.decimal)[0]
        ok = e.notna() & s.ge(0)  # an SE of 0 is kept by REML (with a warning) and refused by DL, as metafor
        if (~ok).any():
            st.warning(_("Rows left out (estimate not a number, or SE not a number or negative): {rows}").format(
                rows=md(some_names(raw.frame.loc[~ok, "row"], limit=20))))
        result = pool_effects(e[ok].to_numpy(), s[ok].to_numpy(), labels=raw.frame.loc[ok, label].tolist(),
                              method=method, knapp_hartung=kh)
        show_pooled("pooled", result, est)
        others = [c for c in cols if c not in (label, est, se)]
        mods = st.multiselect(_("Study-level moderators (meta-regression)"), others, key="pool_mods",
                              placeholder=multiselect_placeholder(others),
                              help=_("As metafor's rma(mods = ~ ...): numbers as they are, text as categories."))
        if mods:
            frame = raw.frame.loc[ok, mods]
            show_meta_regression("pooled", e[ok].to_numpy(), s[ok].to_numpy(), raw.frame.loc[ok, label].tolist(),
                                 frame)
        st.stop()

    if source == "Upload studies":
        files = st.file_uploader(_("One file with a study column, or several files (one per study)"),
                                 type=["csv", "txt", "xlsx"], accept_multiple_files=True, key="dyn_files")
        if not files:
            st.stop()
        first = read_table(files[0].getvalue(), filename=files[0].name)
        proposed = propose_mapping(first.columns)
        study_col = propose_study_column(first.columns) if len(files) == 1 else None
        m = st.columns(6)
        opts = first.columns
        pick = {}
        for col, role in zip(m, ("patient", "session", "alliance", "symptoms")):
            default = getattr(proposed, role)
            pick[role] = col.selectbox(role_name(role).capitalize(), opts, index=opts.index(default) if default in opts else 0,
                                       key=f"dyn_map_{role}")
        if len(files) == 1:
            study_col = m[4].selectbox(role_name("study").capitalize(), opts, index=opts.index(study_col) if study_col in opts else 0,
                                       key="dyn_map_study")
        post_opts = [NO_POST, *opts]  # the post-treatment score (issue 30), optional
        post_col = m[5].selectbox(role_name("post").capitalize(), post_opts,
                                  index=post_opts.index(proposed.post) if proposed.post in post_opts else 0,
                                  key="dyn_map_post", format_func=localised(lambda o: _(NO_POST) if o == NO_POST else o))
        pick["post"] = None if post_col == NO_POST else post_col
        with st.spinner(_("Reading the files …")):
            validated = read_studies(tuple((f.name, f.getvalue()) for f in files), study_col, ColumnMapping(**pick),
                                     get_language())
        data = validated.data
        if len(validated.excluded):
            n_out = len(validated.excluded)
            with st.expander(ngettext("{n:,} row left out", "{n:,} rows left out", n_out).format(n=n_out)):
                st.dataframe(validated.excluded, hide_index=True, width="stretch",
                             column_config=riclpm_headers(validated.excluded))
    else:
        demo_badge(ds)
        validated = ds.validated
        extra = [c for c in ds.data.columns if c not in (*ROLES, "row")]
        default = propose_study_column(extra)
        choices = [NONE, *extra]
        study_col = st.selectbox(_("Study column"), choices, index=choices.index(default) if default else 0,
                                 key="dyn_study_column", format_func=localised(lambda o: _(NONE) if o == NONE else o))
        if not {"alliance", "symptoms"} <= set(validated.measures):
            st.warning(_("The lagged models need both alliance and symptoms."))
            st.stop()
        data = ds.data.copy()
        data["study"] = _("this data set") if study_col == NONE else data[study_col].astype(str)

    fingerprint = data_fingerprint(data[["study", "patient", "session", "alliance", "symptoms"]])
    n_studies = data["study"].nunique()
    stage1 = run_stage1(data, fingerprint, interaction)
    st.subheader(_("Stage 1: per study"))
    wide = stage1.pivot_table(index=["study", "n_patients", "n_observations"], columns="direction",
                              values=["estimate", "se"]).reset_index()
    wide.columns = [" ".join(c for c in col if c).strip() for col in wide.columns]
    # short headers, so that every column fits at 1400 px (the downloads keep the long names)
    stage1_headers = {"study": _("Study"), "n_patients": _("Patients"), "n_observations": _("Sessions")}
    for col in wide.columns:
        for stat, stat_label in (("estimate", N_("{arrow} estimate")), ("se", N_("{arrow} SE"))):
            for key, arrow in (("alliance_to_symptoms_interaction", "A×A → S"), ("symptoms_to_alliance_interaction", "S×S → A"),
                               ("alliance_to_symptoms", "A → S"), ("symptoms_to_alliance", "S → A")):
                if col == f"{stat} {key}":
                    stage1_headers[col] = _(stat_label).format(arrow=arrow)
    written, config = local_numbers(wide, number_columns(wide, default=4, labels=stage1_headers))  # Spanish: 0,0264
    st.dataframe(written, hide_index=True, width="stretch", column_config=config)
    st.caption(_("A → S: alliance → next-session symptoms; S → A: symptoms → next-session alliance (standardized "
                 "lagged within-patient coefficients and their SEs)."))
    for (label, direction), row in stage1.set_index(["study", "direction"]).iterrows():
        if row["singular"] or not row["converged"]:
            what = (_("Study {study}, {direction}: singular fit (a variance at zero).") if row["singular"] else
                    _("Study {study}, {direction}: the fit did not converge cleanly."))
            # lme4's own warning texts stay as lme4 writes them (English)
            st.warning(what.format(study=md(label), direction=md(direction_text(direction))) + " "
                       + md(" ".join(row["warnings"])))
    download(_("Stage 1 table (CSV)"), csv_bytes(stage1, get_language()), file_name=_("stage1.csv"), mime="text/csv",
             key="stage1_csv")
    if n_studies < 2:
        st.info(_("One study: these are its lagged within-patient effects (standardized). Add a study column or "
                  "upload several studies to pool them."))
    else:
        st.subheader(_("Stage 2: pooled over studies"))
        candidates = study_level_columns(data, skip=[study_col] if study_col else [])
        mods = st.multiselect(_("Study-level moderators (meta-regression)"), candidates, key="dyn_mods",
                              placeholder=multiselect_placeholder(candidates),
                              help=_("Columns with one value per study; as metafor's rma(mods = ~ ...)."))
        for direction, result in pool_stage1(stage1, method, kh).items():
            show_pooled(direction, result, _("standardized lagged coefficient"))
            if mods:
                part = stage1[stage1["direction"] == direction]
                by_study = data.groupby(data["study"].astype(str))[mods].first()
                show_meta_regression(direction, part["estimate"].to_numpy(), part["se"].to_numpy(),
                                     part["study"].tolist(), by_study.loc[part["study"].astype(str)])
    show_alliance_outcome(data, validated.mapping.post)
    show_riclpm(data, fingerprint, stage1, validated.excluded)
except (InputError, ModelError) as err:
    st.error(md(err))
except MemoryError:
    st.error(_("The dashboard ran out of memory with these files. Try smaller files (for example one study "
               "at a time)."))
except Exception as err:  # a bug: logged for the maintainers, one sentence for the user (no traceback)
    logging.getLogger(__name__).error("Unexpected error on the Reciprocal dynamics page", exc_info=err)
    st.error(_("The files could not be analysed because of an unexpected error in the dashboard ({error}). This is "
               "a bug: please report it on the project's issue tracker, with the files' layout but not their "
               "data.").format(error=md(type(err).__name__)))
