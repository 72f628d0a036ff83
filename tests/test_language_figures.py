"""Issue 18: the figures, tables, sentences and power texts that ``core`` builds, in Spanish.

Every public figure function of :mod:`core.reporting.figures` is built inside
``core.i18n.language("es")`` on small data; no title, axis title, legend entry, annotation, marker
text or hover template may keep a word only English has (``tests/language_support.english_words``,
which leaves Plotly's ``%{…}`` placeholders and snake_case names alone). The same for the tables of
:mod:`core.reporting.tables` (headers people read, labels and sentences), for the power module's
methods sentence, warning, progress and refusals, and for ``python -m core power --lang es``, whose
JSON keeps exactly the English keys and numbers.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import core.reporting.figures as F
from core.cli import main
from core.errors import ModelError
from core.i18n import get_language, language
from tests.language_support import _figure_texts, english_words
from tests.power_cases import DATA as POWER_DATA
from tests.power_cases import HYBRID, paperlike

DATA = "tests/data"


def english_left(texts) -> dict[str, list[str]]:
    """Each text that still holds English-only words, with those words."""
    return {t: english_words(t) for t in texts if isinstance(t, str) and english_words(t)}


def figure_english(fig) -> dict[str, list[str]]:
    return english_left(_figure_texts(fig.to_json()))


@pytest.fixture(scope="module")
def demo():
    from core.clinical.indices import flag_ruptures_so_far, patient_sessions
    from core.clinical.signal import SignalSettings, compute_signal
    from core.demo import demo_clinic

    data = demo_clinic()
    with language("es"):  # the signal's reasons (the hover text of each session) are sentences
        signal = compute_signal(data, SignalSettings()).sessions
    sessions = flag_ruptures_so_far(patient_sessions(data, ["alliance", "symptoms"]))
    return data, signal, sessions


@pytest.fixture(scope="module")
def power_result():
    from core.stats.power import power_analysis
    from core.stats.power_run import LocalRunner

    # an effect of interest and the observed one (the Hoenig & Heisey warning): 2 × 2 × 3 refits
    data = paperlike()
    planned = power_analysis(data, HYBRID, "alliance_within", effect=-0.05, patients=[24, 48], nsim=3, seed=2,
                             runner=LocalRunner(1))
    observed = power_analysis(data, HYBRID, "alliance_within", patients=[24, 48], nsim=3, seed=2,
                              runner=LocalRunner(1))
    return planned, observed


def _spanish_figures(demo, power_result):
    from core.clinical.indices import therapist_trajectories
    from core.stats.decomposition import session_summary
    from core.stats.alliance_outcome import alliance_outcome
    from core.stats.meta import pool_effects
    from core.stats.riclpm import fit_riclpm

    data, signal, sessions = demo
    mine = sessions[sessions["patient"] == "D017"].sort_values("session")
    pool = pd.read_csv(f"{DATA}/pool_bcg.csv")
    rng = np.random.default_rng(1)
    model = SimpleNamespace(residuals=rng.normal(size=60), fitted=rng.normal(size=60),
                            random_effects=pd.DataFrame({"patient": [f"P{i}" for i in range(20)],
                                                         "intercept": rng.normal(size=20),
                                                         "intercept_se": np.full(20, 0.3)}))
    patients = sorted(data["patient"].unique())[:8]
    status = dict(zip(patients, ["not_on_track", "at_risk", "on_track", "unknown"] * 2))
    riclpm = fit_riclpm(pd.read_csv(f"{DATA}/paperlike_public.csv", dtype={"patient": str}), 1, 4)
    line = pd.DataFrame({"session": [1, 8], "expected": [80.0, 60.0]})
    with language("es"):
        for details in (False, True):  # the default labels and band (the pages pass their own)
            yield f"patient_chart(details={details})", F.patient_chart(
                mine, ["alliance", "symptoms"], signal=signal[signal["patient"] == "D017"], cutoff=63.5,
                details=details)
        yield "small_multiples", F.small_multiples(sessions, patients, "symptoms", cutoff=63.5, status=status)
        yield "therapist_trajectory_figure", F.therapist_trajectory_figure(therapist_trajectories(data, "symptoms"),
                                                                           "symptoms", max_therapists=2)
        result = pool_effects(pool["estimate"], pool["se"], labels=pool["study"].tolist())
        yield "forest_plot", F.forest_plot(result)
        yield "funnel_plot", F.funnel_plot(result)
        yield "early_alliance_scatter", F.early_alliance_scatter(alliance_outcome(data))
        yield "between_within_scatter", F.between_within_scatter(data)
        yield "spaghetti", F.spaghetti(data, "symptoms", line, max_patients=5)
        yield "residual_diagnostics", F.residual_diagnostics(model)
        yield "caterpillar", F.caterpillar(model)
        yield "session_means_figure", F.session_means_figure(session_summary(data, ["alliance", "symptoms"]),
                                                             ["alliance", "symptoms"])
        for standardized in (False, True):
            yield f"riclpm_path_diagram({standardized})", F.riclpm_path_diagram(riclpm, standardized)
        yield "power_curve", F.power_curve(power_result[0])


def test_every_figure_function_is_built_in_spanish(demo, power_result):
    names = []
    for name, fig in _spanish_figures(demo, power_result):
        names.append(name.split("(")[0])
        assert figure_english(fig) == {}, name
        assert fig.layout.separators == ",.", name  # decimal comma on ticks and in hover numbers
    public = {n for n in dir(F) if not n.startswith("_") and callable(getattr(F, n))
              and getattr(getattr(F, n), "__module__", "") == F.__name__}
    assert public <= set(names), public - set(names)  # a new figure function needs a Spanish check here
    assert get_language() == "en"


def test_spanish_figures_say_it_in_spanish_and_keep_the_numbers(demo, power_result):
    figures = dict(_spanish_figures(demo, power_result))
    chart = figures["patient_chart(details=False)"]
    names = {t.name for t in chart.data}
    assert {"fuera de curso", "en curso esperado", "sin estado", "ruptura",
            "curso esperado desde este punto de partida", "punto de corte clínico (63,5)"} <= names
    red = next(t for t in chart.data if t.name == "fuera de curso")
    assert "Sesión %{x}: puntaje %{y:.0f}" in red.hovertemplate  # Plotly's placeholders intact
    assert chart.layout.xaxis2.title.text == "Sesión"
    forest = figures["forest_plot"]
    assert forest.layout.xaxis.title.text == "Efecto" and "Combinado (efectos aleatorios)" in forest.layout.yaxis.ticktext
    notes = [a.text for a in forest.layout.annotations]
    assert any(t.startswith("Heterogeneidad: τ² = 0,") for t in notes)  # decimal comma
    assert "<b>Estimación [IC 95%]</b>" in notes and "<b>100%</b>" in notes
    assert "IC 95% %{customdata[0]:.3f} a %{customdata[1]:.3f}" in forest.data[0].hovertemplate
    assert figures["spaghetti"].layout.title.text.startswith("Trayectorias por paciente (los primeros 5 de ")
    assert "terapeutas con más sesiones" in figures["therapist_trajectory_figure"].layout.title.text
    assert figures["power_curve"].layout.yaxis.title.text == "Potencia"
    # the same figure in English: same data, English words
    with language("en"):
        english = F.power_curve(power_result[0])
    assert english.layout.yaxis.title.text == "Power" and english.layout.separators is None
    assert list(english.data[1].y) == list(figures["power_curve"].data[1].y)


def test_caller_labels_are_kept(demo):
    data, signal, sessions = demo
    mine = sessions[sessions["patient"] == "D017"].sort_values("session")
    labels = {"symptoms": ("Síntomas (menos es mejor)", "OQ-45.2 total (0–180)"), "alliance": ("Alianza", "ANS")}
    with language("es"):
        fig = F.patient_chart(mine, ["alliance", "symptoms"], signal=signal[signal["patient"] == "D017"],
                              labels=labels, band_label="rango habitual")
    assert fig.layout.yaxis.title.text == "OQ-45.2 total (0–180)" and "rango habitual" in {t.name for t in fig.data}


# ------------------------------------------------------------------------------------------ tables

@pytest.fixture(scope="module")
def ladder():
    from core.intake.mapping import ColumnMapping
    from core.intake.reading import read_table
    from core.intake.validation import validate_table
    from core.stats.models import fit_ladder

    v = validate_table(read_table(f"{DATA}/paperlike_public.csv"),
                       ColumnMapping(patient="patient", therapist="therapist", session="session",
                                     alliance="alliance", symptoms="symptoms"))
    return fit_ladder(v.data)


def test_every_table_builder_in_spanish(ladder):
    from core.reporting import tables as T
    from core.stats.meta import pool_effects

    pool = pd.read_csv(f"{DATA}/pool_bcg.csv")
    result = pool_effects(pool["estimate"], pool["se"], labels=pool["study"].tolist())
    with language("es"):
        built = {
            "fixed_effects_table": T.fixed_effects_table(ladder.models),
            "variance_table": T.variance_table(ladder.models),
            "fit_table": T.fit_table(ladder.models).drop(columns=["warnings"]),  # lme4's warnings stay English
            "comparison_table": T.comparison_table(ladder),
            "excluded_table": T.excluded_table(ladder.models["hybrid"]),
            "pooled_summary_table": T.pooled_summary_table(result),
        }
        sentences = [s for m in ladder.models.values() for s in T.describe_model(m)]
        shown = {name: T.table_headers(frame) for name, frame in built.items()}
    for name, frame in built.items():
        texts = [str(c) for c in shown[name].columns]
        # values: labels and sentences; formulas, model keys and term names are identifiers (stay English)
        texts += [v for c in frame.columns for v in frame[c] if isinstance(v, str)
                  and c not in ("formula", "model", "term", "simpler", "fuller", "key")]
        assert english_left(texts) == {}, name
    assert english_left(sentences) == {}
    assert len(sentences) == sum(len(m.fixed) for m in ladder.models.values())
    # numbers unchanged, keys English (pages and CSVs rely on them)
    english = T.fixed_effects_table(ladder.models)
    assert list(built["fixed_effects_table"].columns) == list(english.columns)
    assert built["fixed_effects_table"]["estimate"].equals(english["estimate"])
    assert list(shown["fixed_effects_table"].columns[:4]) == ["modelo", "efecto", "término", "estimación"]
    hybrid = built["fixed_effects_table"].query("model == 'hybrid'").set_index("term")
    assert hybrid.loc["between", "effect"] == "Entre: media del paciente en alianza (centrada)"
    pooled = built["pooled_summary_table"].set_index("quantity")["value"]
    assert pooled["Intervalo de confianza del 95%"] == "{} a {}".format(
        f"{result.ci_low:.3f}", f"{result.ci_high:.3f}").replace("-", "−").replace(".", ",")


def test_effect_sentences_in_spanish_with_a_decimal_comma(ladder):
    from core.reporting.tables import describe_effect

    hybrid = ladder.models["hybrid"]
    with language("es"):
        between = describe_effect("between", hybrid.term("between"), hybrid)
        within = describe_effect("within", hybrid.term("within"), hybrid)
    assert between.startswith("Los pacientes cuyo puntaje de alianza promedio era un punto más alto tuvieron "
                              "puntajes de síntomas 0,36 puntos más bajos (IC 95% ")
    assert within.startswith("En las sesiones en que el puntaje de alianza estuvo un punto por encima del promedio "
                             "propio del paciente, el puntaje de síntomas fue 0,01 puntos más bajo")
    assert "p = ,837" in within


# ------------------------------------------------------------------------------------------- power

def test_power_methods_sentence_warning_and_progress_in_spanish(power_result):
    from core.stats.power import methods_sentence
    from core.stats.power_run import LocalRunner, progress_text, time_left

    planned, observed = power_result
    with language("es"):
        sentence = methods_sentence(planned)
        report = observed.report()
        progress = [progress_text(0, 3000, None), progress_text(350, 3000, 75.0), time_left(4000), time_left(0.3)]
        engine = LocalRunner(2).describe()
    assert english_left([sentence, report["methods_sentence"], report["method"], *report["warnings"], *progress,
                         engine]) == {}
    assert sentence.startswith("La potencia para detectar un efecto de alliance_within de −0,05 (el menor efecto de "
                               "interés; estimación en los datos ")
    assert "con α = 0,05" in sentence and "Semilla 2." in sentence and "N = 24: " in sentence
    assert "Hoenig y Heisey" in report["warnings"][0] and "su estimación en los datos" in report["methods_sentence"]
    assert progress[:2] == ["0 de 3.000 simulaciones", "350 de 3.000 simulaciones, faltan unos 1 min 15 s"]
    # the numbers do not depend on the language
    with language("es"):
        spanish = planned.report()
    english = planned.report()
    assert spanish["power"] == english["power"] and spanish.keys() == english.keys()
    assert english["methods_sentence"].startswith("Power to detect an effect of alliance_within of −0.05")


@pytest.mark.parametrize("call", [
    lambda d: __import__("core.stats.power", fromlist=["x"]).prepare(d, HYBRID, "time"),
    lambda d: __import__("core.stats.power", fromlist=["x"]).prepare(d, HYBRID, "alliance_within", alpha=2),
    lambda d: __import__("core.stats.power", fromlist=["x"]).prepare(d, HYBRID, "alliance_within", patients=[1]),
])
def test_power_refusals_in_spanish(call):
    data = paperlike()
    with language("es"), pytest.raises(ModelError) as err:
        call(data)
    assert english_left([str(err.value)]) == {} and str(err.value)[0].isupper()


ROLES = ["--patient", "patient", "--session", "session", "--alliance", "alliance", "--symptoms", "symptoms",
         "--therapist", "therapist"]


def _keys(value, path=""):
    """Every key path of a JSON document (list items by position)."""
    if isinstance(value, dict):
        return {f"{path}.{k}" for k in value} | {p for k, v in value.items() for p in _keys(v, f"{path}.{k}")}
    if isinstance(value, list):
        return {p for i, v in enumerate(value) for p in _keys(v, f"{path}[{i}]")}
    return set()


def test_cli_power_in_spanish_keeps_the_json_keys(tmp_path, capsys):
    args = ["power", str(POWER_DATA), *ROLES, "--formula", HYBRID, "--term", "alliance_within", "--patients", "24",
            "--nsim", "2", "--workers", "1"]
    reports = {}
    for lang in ("en", "es"):
        out = tmp_path / f"power_{lang}.json"
        assert main([*args, "--lang", lang, "--out", str(out)]) == 0
        reports[lang] = json.loads(out.read_text(encoding="utf-8"))
        reports[lang + "_stderr"] = capsys.readouterr().err
    en, es = reports["en"], reports["es"]
    assert _keys(en) == _keys(es) and list(en) == list(es)
    assert en["power"] == es["power"] and en["effect"] == es["effect"] and en["term"] == es["term"]
    assert "power: 2 of 2 simulations" in reports["en_stderr"]
    assert "potencia: 2 de 2 simulaciones" in reports["es_stderr"]
    assert english_left([es["methods_sentence"], es["method"], *es["warnings"], es["engine"]]) == {}
    assert es["warnings"][0].startswith("La potencia calculada con el efecto observado")
    # a refusal: one Spanish sentence, exit 2
    assert main([*args, "--patients", "24,muchos", "--lang", "es"]) == 2
    err = capsys.readouterr().err
    assert "no es una lista de números enteros" in err and "Traceback" not in err
    assert get_language() == "en"


# ------------------------------------------------------------------------------------- HTML report

def _report_figures(text: str) -> list[str]:
    """The texts of every Plotly figure embedded in an HTML report (``Plotly.newPlot(id, data, layout)``)."""
    import re

    decoder, texts = json.JSONDecoder(), []
    for match in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', text):
        data, end = decoder.raw_decode(text, match.end())
        layout, _ = decoder.raw_decode(text[end:].lstrip().lstrip(",").lstrip())
        texts.append(_figure_texts(json.dumps({"data": data, "layout": layout})))
    return texts


def test_html_report_in_spanish_has_no_english_figure_text_or_header(tmp_path):
    import re

    from core.demo import demo_clinic

    csv = tmp_path / "demo.csv"
    demo_clinic()[["patient", "therapist", "session", "alliance", "symptoms"]].to_csv(csv, index=False)
    out = tmp_path / "informe.html"
    assert main(["report", str(csv), "--patient", "patient", "--session", "session", "--symptoms", "symptoms",
                 "--alliance", "alliance", "--therapist", "therapist", "--lang", "es", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    figures = _report_figures(text)
    # between/within, trajectories, residuals, random intercepts, RI-CLPM diagram, early alliance → outcome
    assert len(figures) == 6
    assert all(english_left(texts) == {} for texts in figures), [english_left(t) for t in figures]
    headers = re.findall(r"<th>([^<]*)</th>", text)
    assert english_left(headers) == {} and {"estimación", "componente", "log-verosimilitud (REML)"} <= set(headers)
    assert "<td>sí</td>" in text and "<td>True</td>" not in text
