"""Model explorer (researcher): the level decision, the ANS study's ladder, the model builder,
figures of the disaggregation and diagnostics, and the self-contained report."""
import pandas as pd
import streamlit as st

from core.errors import ModelError
from core.i18n import N_, _, get_language, language, ngettext, number
from core.intake.mapping import ROLES
from core.reporting.exports import csv_bytes
from core.reporting.figures import (
    between_within_scatter,
    caterpillar,
    residual_diagnostics,
    spaghetti,
)
from core.reporting.html_report import build_html_report
from core.reporting.tables import (
    comparison_table,
    describe_model,
    fit_table,
    fixed_effects_table,
    model_name,
    variance_table,
    with_model_names,
)
from core.stats.models import (
    BuilderOptions,
    LadderResult,
    ModelResult,
    builder_spec,
    fit_custom_model,
    fit_formula_model,
    fit_ladder,
)
from ui.auth import clinic_store, current_user, download
from ui.clinic import current_settings, measure_labels
from ui.look import local_numbers, number_columns
from ui.state import dataset_picker, demo_badge
from ui.text import code, md
from ui.language import localised, multiselect_placeholder


# The fitted models hold sentences (titles, advice, notes, reasons): cached per language too.
@st.cache_data(show_spinner=False, max_entries=8)
def ladder_for(fingerprint: str, language: str, _data: pd.DataFrame, _cells=None) -> LadderResult:
    return fit_ladder(_data, cell_reasons=_cells)



@st.cache_data(show_spinner=False, max_entries=32)
def custom_for(fingerprint: str, options: BuilderOptions, language: str, _data: pd.DataFrame,
               _cells=None, df_method: str = "satterthwaite") -> ModelResult | str:
    try:
        return fit_custom_model(_data, options, cell_reasons=_cells, df_method=df_method)
    except ModelError as err:
        return str(err)


@st.cache_data(show_spinner=False, max_entries=32)
def formula_for(fingerprint: str, formula: str, predictor: str, language: str, _data: pd.DataFrame,
                _cells=None, df_method: str = "satterthwaite") -> ModelResult | str:
    try:
        return fit_formula_model(_data, formula, key="custom", cell_reasons=_cells, predictor=predictor,
                                 df_method=df_method)
    except ModelError as err:
        return str(err)


@st.cache_data(show_spinner=False, max_entries=16)
def intervals_for(fingerprint: str, formula: str, df_method: str, method: str, nboot: int, seed: int,
                  language: str, _model: ModelResult):
    """lme4's confint() rows of the builder's model (core.stats.intervals), or the reason it failed."""
    from core.stats.intervals import confint

    try:
        return confint(_model.formula_fit, method, nboot=nboot, seed=seed)
    except ModelError as err:
        return str(err)


def csv_button(frame: pd.DataFrame, label: str, name: str) -> None:
    """A CSV download; ``name`` (an ``N_`` file name) keys the button and is translated as the file's name."""
    download(label, csv_bytes(frame, get_language()), file_name=_(name), mime="text/csv", key=f"csv_{name}")


#: Headers of the model tables (the downloads keep the column names), translated where shown.
HEADERS = {"model": N_("Model"), "effect": N_("Effect"), "estimate": N_("Estimate"), "se": N_("SE"), "df": N_("df"),
           "t": "t", "p": "p", "ci_low": N_("95% CI low"), "ci_high": N_("95% CI high"), "component": N_("Component"),
           "value": N_("Value"), "fuller": N_("Fuller model"), "simpler": N_("Simpler model"), "chisq": "χ²",
           "formula": N_("Formula"), "observations": N_("Sessions"), "patients": N_("Patients"),
           "rows_left_out": N_("Rows left out"), "loglik_reml": N_("Log-likelihood (REML)"),
           "loglik_ml": N_("Log-likelihood (ML)"), "parameters_ml": N_("Parameters (ML)"), "aic": "AIC", "bic": "BIC",
           "r2_marginal": N_("Marginal R²"), "r2_conditional": N_("Conditional R²"), "converged": N_("Converged"),
           "singular": N_("Singular"), "warnings": N_("Warnings"), "row": N_("row"), "reason": N_("reason"),
           "parameter": N_("Parameter")}



def table_config(frame: pd.DataFrame, decimals: int = 4) -> dict:
    """Headers, number formats (whole numbers without decimals) and a wide effect column."""
    labels = {col: _(label) for col, label in HEADERS.items()}
    config = number_columns(frame, default=decimals, labels=labels)
    if "effect" in frame:
        config["effect"] = st.column_config.TextColumn(labels["effect"], width=295)
    return config


def show_table(frame: pd.DataFrame, decimals: int = 4, **kwargs) -> None:
    """``st.dataframe`` with :func:`table_config`; in Spanish the numbers written with a decimal comma
    (ui.look.local_numbers), an empty cell as "—" in either language."""
    written, config = local_numbers(frame, table_config(frame, decimals))
    st.dataframe(written, hide_index=True, width="stretch", column_config=config, **kwargs)


def shown(frame: pd.DataFrame) -> pd.DataFrame:
    """Rounded for the screen; p below 0.0001 written as '< 0.0001' (downloads keep every digit)."""
    out = frame.round(4)
    if "p" in out:
        out["p"] = frame["p"].map(lambda p: "< " + number(0.0001, ".4f") if p < 1e-4 else number(p, ".4f"))
    return out


def model_messages(model: ModelResult) -> None:
    for w in model.warnings:
        st.warning(md(w))


def report_html(validated, ladder: LadderResult, models: list, seed, dataset_name: str, language_code: str) -> bytes:
    """The HTML report in the page's language (Streamlit may build a download's data outside this run)."""
    with language(language_code):
        return build_html_report(validated, ladder, models, seed=seed, dataset_name=dataset_name)


ds = dataset_picker()
data = ds.data
lang = get_language()
st.title(_("Model explorer"))
demo_badge(ds)
if "symptoms" not in ds.validated.measures:
    st.warning(_("The models need a symptom score; this data set has none."))
    st.stop()
cells = ds.validated.cell_reasons
with st.spinner(_("Fitting the model ladder (REML and ML) …")):
    ladder = ladder_for(ds.fingerprint, lang, data, cells)

# ---------------------------------------------------------------- levels
st.subheader(_("1. Levels: how much of the variation lies where?"))
c = st.columns(3)
c[0].metric(_("Patient ICC"), number(ladder.icc["patient"], ".3f") if ladder.icc["patient"] is not None else "—",
            help=_("Patient variance / (patient + residual variance), two-level unconditional model (REML)."))
c[1].metric(_("Therapist share"), number(ladder.icc["therapist"], ".3f") if ladder.icc["therapist"] is not None else "—",
            help=_("Therapist variance / total variance, three-level unconditional model (REML)."))
c[2].metric(_("Patients / sessions"), " / ".join(number(n, ",") for n in (ladder.n_patients, ladder.n_observations)))
for advice in ladder.advice:
    st.info(md(advice))
for key, reason in ladder.errors.items():
    st.warning(_("**{model}** could not be fitted: {reason}").format(model=md(model_name(key)), reason=md(reason)))

# ---------------------------------------------------------------- ladder
st.subheader(_("2. The model ladder (as Tables 2 and 3 of the ANS study)"))
fixed = fixed_effects_table(ladder.models)
ladder_shown = with_model_names(shown(fixed.drop(columns=["term"])))
show_table(ladder_shown, key="ladder_table")
with st.expander(_("In words"), expanded=True):
    for key in ("time", "hybrid", "hybrid_detrended", "interaction"):
        if key in ladder.models:
            st.markdown(f"**{md(ladder.models[key].spec.title or key)}** ({code(key)})")
            for sentence in describe_model(ladder.models[key])[1:]:
                st.markdown(f"- {md(sentence)}")
variance = variance_table(ladder.models)
comparisons = comparison_table(ladder)
# one table per row: side by side, the tests' χ², df and p fell off the right edge at 1400 px
st.markdown(_("**Likelihood-ratio tests (ML refits)**"))
tests_shown = with_model_names(shown(comparisons[["fuller", "simpler", "chisq", "df", "p"]]))
show_table(tests_shown, decimals=2, key="comparison_table")
for row in comparisons[comparisons["note"].astype(str).str.strip() != ""].itertuples():
    st.caption(_("{fuller} vs {simpler}: {note}").format(fuller=md(model_name(row.fuller)),
                                                         simpler=md(model_name(row.simpler)), note=md(row.note)))
st.markdown(_("**Variance components (REML)**"))
variance_shown = with_model_names(variance.drop(columns=["key"]))
show_table(variance_shown, decimals=5, key="variance_table")
fits = fit_table(ladder.models)
with st.expander(_("Fit, convergence and singular fits")):
    fits_shown = with_model_names(fits.round(3))
    show_table(fits_shown, decimals=3)
    for m in ladder.models.values():
        for w in m.warnings:
            st.warning(f"**{md(m.spec.title or m.key)}**: {md(w)}")
with st.container(horizontal=True):  # flows onto a second line on a narrow screen instead of cutting labels
    csv_button(fixed, _("Fixed effects (CSV)"), N_("fixed_effects.csv"))
    csv_button(variance, _("Variance components (CSV)"), N_("variance_components.csv"))
    csv_button(comparisons, _("Comparisons (CSV)"), N_("comparisons.csv"))
    csv_button(fits, _("Fit (CSV)"), N_("fit.csv"))

# ---------------------------------------------------------------- builder
st.subheader(_("3. Model builder"))
b = st.columns(3)
DIRECTIONS = {"alliance_to_symptoms": N_("alliance → symptoms"), "symptoms_to_alliance": N_("symptoms → alliance")}
direction = b[0].radio(_("Direction"), list(DIRECTIONS), key="mb_direction", format_func=localised(lambda d: _(DIRECTIONS[d])),
                       disabled="alliance" not in ds.validated.measures)
detrend = b[1].checkbox(_("Control for time (detrending)"), key="mb_detrend")
interaction = b[1].checkbox(_("Between × within interaction"), key="mb_interaction")
slope = b[2].checkbox(_("Random slope for within"), key="mb_slope",
                      help=_("The within effect varies by patient: `(within | patient)`."))
therapist = b[2].checkbox(_("Therapist level"), key="mb_therapist", disabled=not ds.validated.has_therapist)
extra = [col for col in data.columns if col not in (*ROLES, "row")]
covariates = st.multiselect(_("Covariates (patient- or session-level columns; a column is a number when every "
                              "filled cell is a number, otherwise its sorted first value is the reference)"),
                            extra, key="mb_covariates", placeholder=multiselect_placeholder(extra))
options = BuilderOptions(direction=direction, detrend=detrend, interaction=interaction,
                         covariates=tuple(covariates), random_slope_within=slope, therapist_level=therapist)
inference = st.columns(3)
DF_METHODS = {"satterthwaite": N_("Satterthwaite (lmerTest)"), "kr": N_("Kenward–Roger (pbkrtest)")}
df_method = inference[0].radio(
    _("Degrees of freedom of the t tests"), list(DF_METHODS), key="mb_df", horizontal=True,
    format_func=localised(lambda k: _(DF_METHODS[k])),
    help=_("Kenward–Roger also adjusts the standard errors for the uncertainty in the variance estimates "
           "(better with few patients); python -m core fit --df kr."))
CI_METHODS = {"none": N_("none"), "wald": N_("Wald"), "profile": N_("likelihood profile"),
              "boot": N_("parametric bootstrap")}
ci_method = inference[1].selectbox(
    _("95% intervals for every parameter"), list(CI_METHODS), key="mb_ci", format_func=localised(lambda k: _(CI_METHODS[k])),
    help=_("As lme4's confint(): fixed effects, random-effect SDs and correlations, sigma. The profile takes "
           "seconds to minutes; the bootstrap refits the model once per sample (python -m core fit --confint)."))
nboot = inference[2].number_input(_("Bootstrap samples"), min_value=100, max_value=10000, value=1000, step=100,
                                  key="mb_nboot", disabled=ci_method != "boot")
# The builder's choices write the formula; a researcher may type another one (lme4 notation).
built = builder_spec(options).formula
if st.session_state.get("mb_formula_built") != built:
    st.session_state["mb_formula_built"] = built
    st.session_state["mb_formula"] = built
typed = st.text_input(
    _("Formula (lme4 notation)"), key="mb_formula",
    help=_("Names: `patient`, `therapist`, `session`, `alliance`, `symptoms`, `time`, `alliance_between`, "
           "`alliance_within`, `symptoms_between`, `symptoms_within` (`between` and `within` are the builder's "
           "predictor), and every other column of the file (in backticks if the name has spaces). Operators: "
           "`+ * : 0 +`, `(x | patient)`, `(1 | patient) + (0 + x | patient)`; `I(time^2)`, `log(x)`. Each model "
           "uses the sessions with every variable it names; the others are listed below it."))
custom = None
own_formula = None
if typed.strip() and " ".join(typed.split()) != " ".join(built.split()):
    own_formula = typed.strip()
    with st.spinner(_("Fitting the model …")):
        result = formula_for(ds.fingerprint, own_formula,
                             "symptoms" if direction == "symptoms_to_alliance" else "alliance", lang, data, cells,
                             df_method)
elif "alliance" in ds.validated.measures:
    with st.spinner(_("Fitting the model …")):
        result = custom_for(ds.fingerprint, options, lang, data, cells, df_method)
else:
    result = None
    st.info(_("The builder's between/within models need an alliance score; type a formula to fit another model."))
if isinstance(result, str):
    st.error(md(result))
elif result is not None:
    custom = result
    st.markdown(_("**Fitted:**"))
    st.code(custom.formula, language=None)
    m = st.columns(3)
    m[0].metric(_("Sessions used"), number(custom.n_observations, ","),
                help=_("Rows with every variable of the formula."))
    m[1].metric(_("Marginal R²"), number(custom.r2_marginal, ".3f") if custom.r2_marginal is not None else "—",
                help=_("Nakagawa: variance explained by the fixed effects (performance::r2_nakagawa)."))
    m[2].metric(_("Conditional R²"), number(custom.r2_conditional, ".3f") if custom.r2_conditional is not None else "—",
                help=_("Nakagawa: variance explained by fixed and random effects. None for a singular fit."))
    if custom.aic is not None:
        st.caption(_("ML fit: log-likelihood {loglik:.2f}, {n:d} parameters, AIC {aic:.1f}, BIC {bic:.1f}.").format(
            loglik=custom.loglik_ml, n=custom.n_params_ml, aic=custom.aic, bic=custom.bic))
    table = fixed_effects_table({"custom": custom}).drop(columns=["model", "term"])
    custom_shown = shown(table)
    show_table(custom_shown, key="custom_table")
    st.caption(_("Degrees of freedom, p-values and 95% CIs by {method}.").format(method=_(DF_METHODS[df_method])))
    if ci_method != "none":
        with st.spinner(_("Computing the intervals …")):
            intervals = intervals_for(ds.fingerprint, custom.formula, df_method, ci_method, int(nboot), 1, lang, custom)
        if isinstance(intervals, str):
            st.error(md(intervals))
        else:
            st.markdown(_("**95% intervals ({method}, as lme4's confint)**").format(method=_(CI_METHODS[ci_method])))
            ci_table = pd.DataFrame(intervals.records()).rename(columns={"low": "ci_low", "high": "ci_high"})
            show_table(ci_table.round(4), key="custom_confint")
            for w in intervals.warnings:
                st.warning(md(w))
            csv_button(ci_table, _("Intervals (CSV)"), N_("builder_intervals.csv"))
    if custom.spec.predictor:
        for sentence in describe_model(custom):
            st.markdown(f"- {md(sentence)}")
    custom_variance = variance_table({"custom": custom}).drop(columns=["model", "key"])
    show_table(custom_variance, decimals=5, key="custom_variance")
    model_messages(custom)
    if len(custom.excluded):
        n_left = len(custom.excluded)
        with st.expander(ngettext("{n:,} row left out of this model (a variable it needs is missing)",
                                  "{n:,} rows left out of this model (a variable it needs is missing)",
                                  n_left).format(n=n_left)):
            st.dataframe(custom.excluded, hide_index=True, width="stretch", key="custom_excluded",
                         column_config=table_config(custom.excluded, decimals=0))
    csv_button(table, _("This model's fixed effects (CSV)"), N_("builder_fixed_effects.csv"))

# ---------------------------------------------------------------- figures
st.subheader(_("4. Figures"))
tabs = st.tabs([_("Between and within"), _("Trajectories"), _("Residuals"), _("Random effects")])
outcome, predictor = ("alliance", "symptoms") if direction == "symptoms_to_alliance" else ("symptoms", "alliance")
usable_custom = custom if custom is not None and "intercept" in custom.random_effects else None
diag = usable_custom or ladder.models.get("hybrid") or ladder.models.get("unconditional")
with tabs[0]:
    if predictor in data.columns and outcome in data.columns:
        st.plotly_chart(between_within_scatter(data, predictor, outcome), width="stretch", key="fig_bw")
with tabs[1]:
    time_model = ladder.models.get("time")
    line = None
    if time_model is not None:
        sessions = sorted(data["session"].unique())
        est = time_model.fixed.set_index("term")["estimate"]
        line = pd.DataFrame({"session": sessions,
                             "expected": [est["intercept"] + est["time"] * (s - data["session"].min()) for s in sessions]})
    axis = measure_labels(ds, current_settings(ds)).get("symptoms", ("", None))[1]
    st.plotly_chart(spaghetti(data, "symptoms", line, y_title=axis), width="stretch", key="fig_spaghetti")
    st.caption(_("Red: the time model's fixed-effect line (clinic average)."))
with tabs[2]:
    if diag is not None:
        st.plotly_chart(residual_diagnostics(diag), width="stretch", key="fig_resid")
        st.caption(_("Model: {formula}").format(formula=code(diag.formula)))
with tabs[3]:
    if diag is not None:
        st.plotly_chart(caterpillar(diag), width="stretch", key="fig_caterpillar")
        st.caption(_("Model: {formula}").format(formula=code(diag.formula)))

# ---------------------------------------------------------------- report
st.subheader(_("5. Report"))
st.write(_("One self-contained HTML file (opens with no network): data summary, the ladder and the builder's "
           "model with sentences, figures, rows left out, definitions, software versions. The same numbers as "
           "`python -m core report` / `analyze` on the same file."))
cli = (f"python -m core report {ds.validated.source} --patient … --session … --symptoms … --alliance …"
       + (" --therapist …" if ds.validated.has_therapist else "")
       + (" --builder" if custom else "") + (" --reverse" if direction == "symptoms_to_alliance" else "")
       + (" --detrend" if detrend else "") + (" --interaction" if interaction else "")
       + "".join(f" --covariate {c}" for c in covariates) + (" --random-slope-within" if slope else "")
       + (" --therapist-level" if therapist else ""))
st.caption(_("Command line: {command}").format(command=code(cli)))
if own_formula:
    fit_cli = f"python -m core fit {ds.validated.source} --patient … --session … --symptoms … --formula \"{own_formula}\""
    st.caption(_("Your formula on the command line: {command}").format(command=code(fit_cli)))
reader = current_user()
clinic = clinic_store() if reader is not None else None


def logged_report():
    """Built by the server when the button is clicked (outside this run); the export is logged
    once the report was built, never for a download that failed."""
    html = report_html(ds.validated, ladder, [custom] if custom else [], 2023 if ds.is_demo else None, ds.name, lang)
    if reader is not None:
        clinic.log(reader, "export", f"{ds.name}: HTML report")
    return html


st.download_button(_("Download the report (HTML)"), logged_report, key="report_html", mime="text/html",
                   file_name=_("alliance_report.html"), on_click="ignore")
