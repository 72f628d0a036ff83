"""Plan a study (researcher): simulation-based power for one fixed effect, as R's simr computes it,
over a range of numbers of patients, with the sentence a methods section needs."""
import pandas as pd
import streamlit as st

from core.errors import InputError, ModelError
from core.i18n import N_, _, get_language, number
from core.reporting.exports import csv_bytes
from core.reporting.figures import power_curve
from core.stats.power import HOENIG_HEISEY, PowerAnalysis, default_sizes, fixed_effects, power_analysis
from core.stats.power_run import LocalRunner, progress_text
from ui.auth import download
from ui.state import dataset_picker, demo_badge
from ui.text import code, md
from ui.language import localised
from ui.look import decimal_input

#: Model menu: the English name is the option's stable value, shown translated (format_func).
PRESETS = {
    N_("Alliance → symptoms: between and within"): "symptoms ~ alliance_between + alliance_within + (1 | patient)",
    N_("… controlling for time"): "symptoms ~ alliance_between + alliance_within + time + (1 | patient)",
    N_("… with the between × within interaction"): "symptoms ~ alliance_between * alliance_within + (1 | patient)",
    N_("… with a random slope for within"): "symptoms ~ alliance_between + alliance_within + (alliance_within | patient)",
    N_("Symptoms over time (random slope)"): "symptoms ~ time + (time | patient)",
}
OWN = N_("Your own formula (lme4 notation)")
ESTIMATE, CHOSEN = N_("the estimate in this data (observed power)"), N_("the smallest effect of interest (recommended)")



@st.cache_data(show_spinner=False, max_entries=32)
def fixed_for(fingerprint: str, formula: str, language: str, _validated) -> pd.DataFrame | str:
    """The fixed effects, or the sentence (in ``language``) saying why the model cannot be fitted."""
    try:
        return fixed_effects(_validated.data, formula, role_headers=_validated.mapping.used(),
                             cell_reasons=_validated.cell_reasons)
    except (ModelError, InputError) as err:
        return str(err)


@st.cache_data(show_spinner=False, max_entries=32)
def power_for(fingerprint: str, formula: str, term: str, effect: float | None, patients: tuple[int, ...],
              nsim: int, seed: int, alpha: float, test: str, language: str, _validated) -> PowerAnalysis | str:
    """The power curve (cached on the data's fingerprint, every option and the language of a refusal);
    a progress bar with simulations done and time left while it runs."""
    bar = st.progress(0.0, text=_("Fitting the model and building the designs …"))

    def show(done: int, total: int, seconds_left: float | None) -> None:
        bar.progress(done / total if total else 1.0, text=progress_text(done, total, seconds_left))

    try:
        return power_analysis(_validated.data, formula, term, effect=effect, patients=list(patients), nsim=nsim,
                              seed=seed, alpha=alpha, runner=LocalRunner(), progress=show,
                              role_headers=_validated.mapping.used(), cell_reasons=_validated.cell_reasons, test=test)
    except (ModelError, InputError) as err:
        return str(err)
    finally:
        bar.empty()


def parse_sizes(text: str) -> list[int] | str:
    try:
        sizes = sorted({int(part) for part in text.replace(";", ",").split(",") if part.strip()})
    except ValueError:
        return _("Write the numbers of patients as whole numbers separated by commas, such as 48, 96, 192.")
    if not sizes:
        return _("Give at least one number of patients.")
    if sizes[0] < 2:
        return _("A multilevel model needs at least 2 patients.")
    if len(sizes) > 12:
        return _("Choose at most 12 numbers of patients (each runs every simulation again).")
    return sizes


ds = dataset_picker()
data = ds.data
st.title(_("Plan a study: power"))
demo_badge(ds)
st.markdown(_(
    "How many patients does a study need to detect an effect? As R's **simr** computes it: outcomes are "
    "simulated from the model fitted to this data (with the effect set to the value you choose), on a design "
    "with *N* patients (the first *N* patients of the file, recycled as new patients beyond the observed "
    "number); each simulated study is refitted by REML and the effect tested as simr tests it by default, with "
    "Kenward–Roger's F test (or, by choice, Satterthwaite's t-test). "
    "Power is the share of significant tests, with its exact 95% interval. The same seed gives the same "
    "result on any machine; `python -m core power` runs the same computation, also on a Dask cluster."))
if "symptoms" not in ds.validated.measures:
    st.warning(_("Power analysis needs a symptom score (the outcome); this data set has none."))
    st.stop()

# ---------------------------------------------------------------- the model and the term
st.subheader(_("1. The model and the effect to detect"))
has_alliance = "alliance" in ds.validated.measures
presets = {k: v for k, v in PRESETS.items() if has_alliance or "alliance" not in v}
choice = st.selectbox(_("Model"), [*presets, OWN], key="pw_model", format_func=localised(_))
if choice == OWN:
    formula = st.text_input(_("Formula"), value=next(iter(presets.values())), key="pw_formula",
                            help=_("Names: the roles (`patient`, `therapist`, `session`, `alliance`, `symptoms`), "
                                   "`time`, `alliance_between`, `alliance_within`, `symptoms_between`, "
                                   "`symptoms_within`, and other columns of the file by their header.")).strip()
else:
    formula = presets[choice]
st.code(formula, language=None)
with st.spinner(_("Fitting the model …")):
    fixed = fixed_for(ds.fingerprint, formula, get_language(), ds.validated)
if isinstance(fixed, str):
    st.error(fixed)
    st.stop()
terms = [t for t in fixed["term"] if t != "intercept"] or list(fixed["term"])
default_term = "alliance_within" if "alliance_within" in terms else terms[0]
term = st.selectbox(_("Effect to detect (fixed effect)"), terms, index=terms.index(default_term), key="pw_term")
row = fixed.set_index("term").loc[term]
st.caption(_("In this data: estimate {estimate:.4g} (SE {se:.3g}, df {df:.1f}, p = {p:.3g}), {n:,} patients.").format(
    estimate=row["estimate"], se=row["se"], df=row["df"], p=row["p"], n=ds.validated.data["patient"].nunique()))
mode = st.radio(_("Value of the effect in the simulations"), [CHOSEN, ESTIMATE], key="pw_mode", horizontal=True,
                format_func=localised(_))
if mode == ESTIMATE:
    st.warning(_(HOENIG_HEISEY))

# ---------------------------------------------------------------- the plan
n_observed = int(data["patient"].nunique())
with st.form("pw_form"):
    c = st.columns(4)
    effect = None
    if mode == CHOSEN:
        effect = decimal_input(_("Smallest effect of interest"), None, key="pw_effect", where=c[0],
                               placeholder=_("e.g. -0.05"),
                                   help=_("In the outcome's units per unit of the predictor: the smallest effect "
                                          "that would matter clinically (for the ANS study's within effect, "
                                          "e.g. -0.05 OQ points per alliance point)."))
    sizes_text = c[1].text_input(_("Numbers of patients"), key="pw_sizes",
                                 value=", ".join(str(n) for n in default_sizes(n_observed)))
    nsim = c[2].number_input(_("Simulations per number"), min_value=10, max_value=100_000, value=1000, step=100,
                             key="pw_nsim", help=_("1,000 (simr's default) gives power to about ±3 points."))
    seed = c[3].number_input(_("Seed"), min_value=0, value=1, step=1, key="pw_seed")
    alpha = c[0].selectbox(_("Significance level α"), [0.05, 0.01, 0.10], key="pw_alpha",
                           format_func=localised(lambda a: number(a, "g")))
    TESTS = {"kr": N_("Kenward–Roger (pbkrtest; simr's default)"), "satterthwaite": N_("Satterthwaite (lmerTest)")}
    test = c[1].radio(_("Test of each simulated study"), list(TESTS), key="pw_test",
                      format_func=localised(lambda k: _(TESTS[k])),
                      help=_("simr tests a fixed effect of a linear mixed model with Kenward–Roger's F test by "
                             "default; Satterthwaite's t-test is lmerTest's summary (python -m core power --test)."))
    submitted = st.form_submit_button(_("Compute power"), type="primary", key="pw_compute")

if submitted:
    sizes = parse_sizes(sizes_text)
    if isinstance(sizes, str):
        st.error(sizes)
    elif mode == CHOSEN and effect is None:
        st.error(_("Enter the smallest effect of interest (or choose the estimate in this data, observed power)."))
    else:
        st.session_state["pw_request"] = (formula, term, effect, tuple(sizes), int(nsim), int(seed), float(alpha), test)

request = st.session_state.get("pw_request")
if request is None or request[:2] != (formula, term):
    st.info(_("Choose the effect and the numbers of patients, then *Compute power*."))
    st.stop()

# ---------------------------------------------------------------- the result
st.subheader(_("2. Power by number of patients"))
result = power_for(ds.fingerprint, *request, language=get_language(), _validated=ds.validated)
if isinstance(result, str):
    st.error(result)
    st.stop()
if result.at_observed_effect:
    st.warning(_(HOENIG_HEISEY))
smallest = result.smallest_n(0.8)
m = st.columns(3)
m[0].metric(_("Effect simulated"), number(result.effect, ".4g"),
            help=_("Estimate in this data: {estimate:.4g}").format(estimate=result.observed))
largest = max(p.n_patients for p in result.points)
m[1].metric(_("N for 80% power"), f"{smallest:d}" if smallest else f"> {largest:d}",
            help=_("The smallest number of patients computed whose power reaches 80% (the interval matters too); "
                   "'> {largest:d}': none of those computed does, try larger numbers.").format(largest=largest))
m[2].metric(_("Simulations"), _("{nsim:,} per N").format(nsim=result.nsim),
            help=_("Ran on {engine} in {seconds:.1f} s.").format(engine=md(result.engine), seconds=result.seconds))
st.plotly_chart(power_curve(result), width="stretch", key="pw_curve")
table = result.table()
shown = table.assign(power=table["power"].map(lambda p: "—" if pd.isna(p) else number(p, ".1%")),
                     interval=[("—" if pd.isna(lo) else f"{number(lo, '.1%')} – {number(hi, '.1%')}")
                               for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)])
# the columns keep their names (tests and code read them); the headers are translated
st.dataframe(shown[["n_patients", "n_observations", "power", "interval", "nsim", "n_failed", "n_singular"]].rename(columns={
    "n_patients": "patients", "n_observations": "sessions", "interval": "95% interval (Clopper–Pearson)",
    "nsim": "simulations", "n_failed": "failed fits", "n_singular": "singular fits"}), hide_index=True, width="stretch",
    key="pw_table",
    column_config={"patients": st.column_config.NumberColumn(_("patients")),
                   "sessions": st.column_config.NumberColumn(_("sessions")),
                   "power": st.column_config.TextColumn(_("power")),
                   "95% interval (Clopper–Pearson)": st.column_config.TextColumn(_("95% interval (Clopper–Pearson)")),
                   "simulations": st.column_config.NumberColumn(_("simulations")),
                   "failed fits": st.column_config.NumberColumn(_("failed fits")),
                   "singular fits": st.column_config.NumberColumn(_("singular fits"))})
download(_("Power table (CSV)"), csv_bytes(table, get_language()), file_name=_("power.csv"), mime="text/csv",
         key="pw_csv")

st.subheader(_("3. For the methods section"))
st.code(result.report()["methods_sentence"], language=None, wrap_lines=True)
sizes_arg = ",".join(str(p.n_patients) for p in result.points)
effect_arg = "" if result.at_observed_effect else f" --effect {result.effect:g}"
cli = (f"python -m core power {ds.validated.source} --patient … --session … --symptoms … --alliance … "
       f"--formula \"{result.formula}\" --term {result.term}{effect_arg} --patients {sizes_arg} "
       f"--nsim {result.nsim} --seed {result.seed} --alpha {result.alpha:g} --test {result.test}")
st.caption(_("Command line: {command} (add {option} to run on a Dask cluster).").format(
    command=code(cli), option=code("--scheduler ADDRESS")))
