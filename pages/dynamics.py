"""Reciprocal dynamics: lagged within-patient effects and the two-stage IPD meta-analysis."""
import logging
from pathlib import Path

import pandas as pd
import streamlit as st

from core.errors import InputError, ModelError, some_names
from core.intake.dataset import data_fingerprint
from core.intake.mapping import ROLES, ColumnMapping, propose_mapping, propose_study_column
from core.intake.reading import read_table
from core.intake.validation import (
    combine_studies,
    parse_numbers,
    validate_studies,
    validate_table,
)
from core.reporting.exports import csv_bytes
from core.reporting.figures import forest_plot
from core.stats.meta import (
    lagged_within_effects,
    pool_effects,
    pool_stage1,
    sorted_study_labels,
    stage1_table,
)
from ui.auth import download
from ui.state import dataset_picker, demo_badge
from ui.text import md

DIRECTION_TEXT = {
    "alliance_to_symptoms": "Alliance → next-session symptoms",
    "symptoms_to_alliance": "Symptoms → next-session alliance",
    "alliance_to_symptoms_interaction": "Patient mean alliance × lagged alliance deviation",
    "symptoms_to_alliance_interaction": "Patient mean symptoms × lagged symptom deviation",
}
NONE = "— one study (no study column) —"


@st.cache_data(show_spinner=False, max_entries=512)
def study_effects(fingerprint: str, label: str, interaction: bool, _frame: pd.DataFrame) -> dict:
    """Stage 1 in one study (cached per study, so a progress bar can show each study)."""
    return lagged_within_effects(_frame, interaction=interaction, study_label=label)


@st.cache_data(show_spinner="Reading the files …", max_entries=8)
def read_studies(files: tuple[tuple[str, bytes], ...], study_column: str | None, mapping: ColumnMapping):
    if len(files) == 1:
        raw = read_table(files[0][1], filename=files[0][0])
        return validate_studies(raw, mapping, study_column)
    parts = {Path(name).stem: validate_table(read_table(data, filename=name), mapping) for name, data in files}
    return combine_studies(parts)


def run_stage1(data: pd.DataFrame, fingerprint: str, interaction: bool) -> pd.DataFrame:
    labels = [str(x) for x in sorted_study_labels(data["study"].unique())]
    bar = st.progress(0.0, text="Stage 1 …")
    effects = {}
    for i, label in enumerate(labels):
        bar.progress(i / len(labels), text=f"Stage 1: study {md(label)} ({i + 1} of {len(labels)})")
        try:
            effects[label] = study_effects(fingerprint, label, interaction, data[data["study"] == label])
        except (InputError, ModelError) as err:  # left out of the pooling, with its reason
            st.warning(f"Study {md(label)} is left out: {md(str(err))}")
    bar.empty()
    return stage1_table(effects)


def show_pooled(direction: str, result, effect_label: str) -> None:
    st.markdown(f"#### {DIRECTION_TEXT.get(direction, direction)}")
    m = st.columns(5)
    m[0].metric("Pooled estimate", f"{result.estimate:.3f}", help="Random-effects estimate (standardized units).")
    m[1].metric("95% CI", f"{result.ci_low:.3f} to {result.ci_high:.3f}")
    m[2].metric("p", f"{result.p:.3g}")
    m[3].metric("τ² / I²", f"{result.tau2:.4f} / {result.i2:.1f}%")
    m[4].metric("95% prediction interval", f"{result.pi_low:.3f} to {result.pi_high:.3f}")
    st.caption(f"Q = {result.q:.2f} (df = {result.k - 1}, p = {result.q_p:.3g}); k = {result.k} studies.")
    st.plotly_chart(forest_plot(result, effect_label=effect_label), width="stretch", key=f"forest_{direction}")
    table = result.studies.rename(columns={"weight": "weight (%)"})
    download(f"Per-study table (CSV): {DIRECTION_TEXT.get(direction, direction)}", csv_bytes(table),
             file_name=f"studies_{direction}.csv", mime="text/csv", key=f"csv_{direction}")


# --- RI-CLPM (issue 17): the random-intercept cross-lagged panel model beside the lagged models ---
from core.reporting.figures import riclpm_path_diagram  # noqa: E402
from core.reporting.riclpm_report import (  # noqa: E402
    CROSS_LAGGED_MEANING,
    describe_riclpm,
    fit_indices_table,
    lagged_effects_table,
    random_intercepts_table,
    shown,
)
from core.stats.riclpm import MIN_WAVES, fit_riclpm, suggested_sessions  # noqa: E402


@st.cache_data(show_spinner="Fitting the RI-CLPM …", max_entries=64)
def riclpm_fit(fingerprint: str, study: str, first: int, last: int, free_lags: bool, _data: pd.DataFrame):
    """The fitted RI-CLPM, or the sentence saying why it cannot be fitted (cached per data and options)."""
    try:
        return fit_riclpm(_data, first, last, free_lags=free_lags)
    except (InputError, ModelError) as err:
        return str(err)


def _riclpm_comparison(result, stage1: pd.DataFrame, study: str) -> pd.DataFrame:
    """The two lagged models side by side, per direction."""
    rows = []
    for direction in ("alliance_to_symptoms", "symptoms_to_alliance"):
        ml = stage1[(stage1["study"].astype(str) == study) & (stage1["direction"] == direction)]
        entry = result.lagged[direction]
        if isinstance(entry, list):
            est = ", ".join(f"{e['estimate']:.3f}" for e in entry)
            se = ", ".join(f"{e['se']:.3f}" for e in entry)
            p = ", ".join(f"{e['p']:.3g}" for e in entry)
            std = ", ".join(f"{e['std_all']:.3f}" for e in entry)
        else:
            est, se, p = f"{entry['estimate']:.3f}", f"{entry['se']:.3f}", f"{entry['p']:.3g}"
            std = f"{sum(entry['std_all']) / len(entry['std_all']):.3f}"
        rows.append({
            "direction": DIRECTION_TEXT[direction],
            "lagged multilevel (z-scores)": f"{ml['estimate'].iloc[0]:.3f}" if len(ml) else "—",
            "SE (multilevel)": f"{ml['se'].iloc[0]:.3f}" if len(ml) else "—",
            "RI-CLPM estimate": est, "SE (RI-CLPM)": se, "p (RI-CLPM)": p, "RI-CLPM std.all": std,
        })
    return pd.DataFrame(rows)


def show_riclpm(data: pd.DataFrame, fingerprint: str, stage1: pd.DataFrame, excluded: pd.DataFrame) -> None:
    """The RI-CLPM section: options, estimates, path diagram, sentences, fit, comparison, downloads."""
    st.subheader("Random-intercept cross-lagged panel model (RI-CLPM)")
    st.write("The lagged multilevel model above works with each patient's deviations from their own mean. The "
             "RI-CLPM (Hamaker et al., 2015), which Falkenström et al. (2022) recommend for reciprocal effects, "
             "models the sessions as waves: a random intercept holds each patient's stable level of alliance and "
             "symptoms, and the session-to-session deviations from it carry over to the next session. Missed "
             "sessions are handled by full-information maximum likelihood, so patients who drop out keep their "
             "early sessions. The numbers equal R's lavaan (missing = \"ml\").")
    labels = [str(x) for x in sorted_study_labels(data["study"].unique())]
    study = labels[0]
    if len(labels) > 1:  # the study with the most patients first: the one most likely to identify the model
        sizes = data.groupby(data["study"].astype(str))["patient"].nunique()
        largest = max(labels, key=lambda label: sizes.get(label, 0))
        study = st.selectbox("Study for the RI-CLPM (one study at a time)", labels, index=labels.index(largest),
                             key="ri_study")
    sub = data[data["study"].astype(str) == study]
    sessions = sorted(int(s) for s in pd.to_numeric(sub["session"], errors="coerce").dropna().unique() if s % 1 == 0)
    if len(sessions) < MIN_WAVES:
        st.info(f"The RI-CLPM needs at least {MIN_WAVES:d} sessions; this data set has {len(sessions):d}.")
        return
    default = suggested_sessions(sub)
    c = st.columns([3, 2, 2])
    first, last = c[0].select_slider("Sessions (waves)", options=sessions, value=default, key="ri_sessions",
                                     help="Sessions FIRST–LAST are the waves; a session a patient missed is a "
                                          "missing wave. At most 12 sessions.")
    free = c[1].checkbox("Free lagged effects per session pair", key="ri_free",
                         help="Default: each lagged effect is equal over sessions (--free-lags on the command line).")
    standardized = c[2].radio("Diagram labels", ["unstandardized", "standardized"], horizontal=True,
                              key="ri_diagram") == "standardized"
    result = riclpm_fit(f"{fingerprint}:{study}", study, int(first), int(last), bool(free),
                        sub[["patient", "session", "alliance", "symptoms"]])
    if isinstance(result, str):  # not identified with these options: say why, the user may change them
        st.warning(md(result))
        return
    f = result.fit
    m = st.columns(3)
    m[0].metric("Patients", result.n_patients, help="Patients with a score in these sessions.")
    m[1].metric("Sessions", f"{result.first:g}–{result.last:g}")
    m[2].metric("Free parameters", f["npar"], help="Including the observed means, as lavaan counts them.")
    m = st.columns(3)
    m[0].metric(f"χ² (df = {f['df']:g})", f"{f['chisq']:.2f}",
                help=f"p = {f['pvalue']:.3g}" if f["pvalue"] is not None else None)
    m[1].metric("CFI", f"{f['cfi']:.3f}")
    m[2].metric("RMSEA", f"{f['rmsea']:.3f}", help=f"90% CI {f['rmsea_ci_low']:.3f} to {f['rmsea_ci_high']:.3f}")
    for warning in result.warnings:
        st.warning(warning)
    st.markdown("**What a cross-lagged effect means here.** " + CROSS_LAGGED_MEANING)
    st.plotly_chart(riclpm_path_diagram(result, standardized=standardized), width="stretch", key="ri_diagram_fig")
    st.markdown("\n".join(f"- {md(s)}" for s in describe_riclpm(result)))
    st.markdown("**Lagged effects** (unstandardized, with lavaan's std.all beside them)")
    st.dataframe(shown(lagged_effects_table(result)), hide_index=True, width="stretch")
    st.markdown("**Beside the lagged multilevel model** (stage 1 above: z-scored, patient-mean-centred, lag to "
                "the session exactly one earlier)")
    st.dataframe(_riclpm_comparison(result, stage1, study), hide_index=True, width="stretch")
    st.caption("The two models answer related questions with different units: the multilevel coefficients are "
               "in standard deviations of all sessions' scores; the RI-CLPM's std.all standardizes by the "
               "within-person variation the model implies at each session.")
    st.markdown("**Random intercepts** (each patient's usual level)")
    st.dataframe(shown(random_intercepts_table(result)), hide_index=True)
    st.markdown("**Fit** (as lavaan's fitMeasures)")
    st.dataframe(fit_indices_table(result), hide_index=True)
    partial = excluded["reason"].astype(str).str.fullmatch(r"(alliance|symptoms) missing").sum() if len(excluded) else 0
    notes = []
    if partial:
        notes.append(f"{partial} sessions with only one of the two measures are not in this data set (rows left "
                     "out); `python -m core riclpm` on the file uses them, as lavaan does.")
    if result.n_rows_outside:
        notes.append(f"{result.n_rows_outside} patient-sessions lie outside sessions {result.first}–{result.last} "
                     "and are not part of this model.")
    if notes:
        st.caption(" ".join(notes))
    with st.expander("Patients per session, patients left out, and the command line"):
        st.dataframe(result.coverage.rename(columns={"alliance": "patients with alliance",
                                                     "symptoms": "patients with symptoms"}),
                     hide_index=True)
        if len(result.excluded_patients):
            st.dataframe(result.excluded_patients, hide_index=True)
        st.code(f"python -m core riclpm DATA.csv --patient patient --session session --alliance alliance "
                f"--symptoms symptoms --sessions {result.first}-{result.last}" + (" --free-lags" if free else ""),
                language="bash")
    import json as _json

    from core.reporting.json_report import clean

    download("RI-CLPM report (JSON, the command line's keys)",
             _json.dumps(clean(result.to_dict()), indent=2, allow_nan=False).encode(),
             file_name=f"riclpm_{result.first}-{result.last}.json", mime="application/json", key="ri_json")
# --- end RI-CLPM ---


ds = dataset_picker()
st.title("Reciprocal dynamics")
st.write("Within each patient, does a session with better alliance than usual come before lower symptoms "
         "next session, and do higher symptoms than usual come before lower alliance next session? "
         "Stage 1 fits these lagged within-patient models per study (z-scores, patient means and "
         "deviations, lag only to the session exactly one earlier); stage 2 pools them with a "
         "random-effects meta-analysis (Flückiger et al., 2020).")

source = st.radio("Data", ["Active data set", "Upload studies", "Pool given effects"], horizontal=True,
                  key="dyn_source")
c = st.columns(3)
method = c[0].radio("τ² estimator", ["reml", "dl"], format_func=lambda m: {"reml": "REML", "dl": "DerSimonian–Laird"}[m],
                    horizontal=True, key="dyn_method")
kh = c[1].checkbox("Knapp–Hartung adjustment", key="dyn_kh",
                   help="t distribution with k − 1 df and a rescaled SE (as metafor's test = 'knha').")
interaction = c[2].checkbox("Cross-level interaction (patient mean × lagged deviation)", key="dyn_interaction")

try:
    if source == "Pool given effects":
        upload = st.file_uploader("Effects file (one row per study: label, estimate, SE)", type=["csv", "txt", "xlsx"],
                                  key="pool_file")
        if upload is None:
            st.stop()
        raw = read_table(upload.getvalue(), filename=upload.name)
        cols = raw.columns
        p = st.columns(3)
        label = p[0].selectbox("Label column", cols, key="pool_label")
        est = p[1].selectbox("Estimate column", cols, index=min(1, len(cols) - 1), key="pool_estimate")
        se = p[2].selectbox("SE column", cols, index=min(2, len(cols) - 1), key="pool_se")
        e, _, _ = parse_numbers(raw.frame[est], raw.decimal)
        s, _, _ = parse_numbers(raw.frame[se], raw.decimal)
        ok = e.notna() & s.gt(0)
        if (~ok).any():
            st.warning("Rows left out (estimate not a number or SE not positive): " +
                       some_names(raw.frame.loc[~ok, "row"], limit=20))
        result = pool_effects(e[ok].to_numpy(), s[ok].to_numpy(), labels=raw.frame.loc[ok, label].tolist(),
                              method=method, knapp_hartung=kh)
        show_pooled("pooled", result, est)
        st.stop()

    if source == "Upload studies":
        files = st.file_uploader("One file with a study column, or several files (one per study)",
                                 type=["csv", "txt", "xlsx"], accept_multiple_files=True, key="dyn_files")
        if not files:
            st.stop()
        first = read_table(files[0].getvalue(), filename=files[0].name)
        proposed = propose_mapping(first.columns)
        study_col = propose_study_column(first.columns) if len(files) == 1 else None
        m = st.columns(5)
        opts = first.columns
        pick = {}
        for col, role in zip(m, ("patient", "session", "alliance", "symptoms")):
            default = getattr(proposed, role)
            pick[role] = col.selectbox(role.capitalize(), opts, index=opts.index(default) if default in opts else 0,
                                       key=f"dyn_map_{role}")
        if len(files) == 1:
            study_col = m[4].selectbox("Study", opts, index=opts.index(study_col) if study_col in opts else 0,
                                       key="dyn_map_study")
        validated = read_studies(tuple((f.name, f.getvalue()) for f in files), study_col, ColumnMapping(**pick))
        data = validated.data
        if len(validated.excluded):
            with st.expander(f"{len(validated.excluded)} rows left out"):
                st.dataframe(validated.excluded, hide_index=True, width="stretch")
    else:
        demo_badge(ds)
        validated = ds.validated
        extra = [c for c in ds.data.columns if c not in (*ROLES, "row")]
        default = propose_study_column(extra)
        choices = [NONE, *extra]
        study_col = st.selectbox("Study column", choices, index=choices.index(default) if default else 0,
                                 key="dyn_study_column")
        if not {"alliance", "symptoms"} <= set(validated.measures):
            st.warning("The lagged models need both alliance and symptoms.")
            st.stop()
        data = ds.data.copy()
        data["study"] = "this data set" if study_col == NONE else data[study_col].astype(str)

    fingerprint = data_fingerprint(data[["study", "patient", "session", "alliance", "symptoms"]])
    n_studies = data["study"].nunique()
    stage1 = run_stage1(data, fingerprint, interaction)
    st.subheader("Stage 1: per study")
    wide = stage1.pivot_table(index=["study", "n_patients", "n_observations"], columns="direction",
                              values=["estimate", "se"]).reset_index()
    wide.columns = [" ".join(c for c in col if c).strip() for col in wide.columns]
    st.dataframe(wide.round(4), hide_index=True, width="stretch")
    for (label, direction), row in stage1.set_index(["study", "direction"]).iterrows():
        if row["singular"] or not row["converged"]:
            what = "singular fit (a variance at zero)" if row["singular"] else "the fit did not converge cleanly"
            st.warning(f"Study {md(label)}, {DIRECTION_TEXT.get(direction, direction)}: {md(what)}. "
                       + md(" ".join(row["warnings"])))
    download("Stage 1 table (CSV)", csv_bytes(stage1), file_name="stage1.csv", mime="text/csv", key="stage1_csv")
    if n_studies < 2:
        st.info("One study: these are its lagged within-patient effects (standardized). Add a study column or "
                "upload several studies to pool them.")
    else:
        st.subheader("Stage 2: pooled over studies")
        for direction, result in pool_stage1(stage1, method, kh).items():
            show_pooled(direction, result, "standardized lagged coefficient")
    show_riclpm(data, fingerprint, stage1, validated.excluded)
except (InputError, ModelError) as err:
    st.error(md(err))
except MemoryError:
    st.error("The dashboard ran out of memory with these files. Try smaller files (for example one study "
             "at a time).")
except Exception as err:  # a bug: logged for the maintainers, one sentence for the user (no traceback)
    logging.getLogger(__name__).error("Unexpected error on the Reciprocal dynamics page", exc_info=err)
    st.error(f"The files could not be analysed because of an unexpected error in the dashboard "
             f"({md(type(err).__name__)}). This is a bug: please report it on the project's issue tracker, "
             "with the files' layout but not their data.")
