"""``--lang en|es`` on the command line: the sentences change, the JSON's keys, numbers and
enumerated values (statuses, methods, lme4's quoted warnings) never do; English is the default."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from core.cli import main
from core.i18n import get_language

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
ROLES = ["--patient", "patient", "--session", "session", "--symptoms", "symptoms"]
#: Keys whose texts are sentences for people (they may differ between languages; their shape may not).
SENTENCES = {"reason", "definition", "definitions", "notes", "warnings", "level_advice", "sentences", "note",
             "model_errors", "summary", "sentence"}
#: Sentences under ``validation`` (its ``method`` is a sentence there; the report's ``method`` is a value).
VALIDATION_SENTENCES = {"method", "outcome", "flag"}


def run(tmp_path, lang: str, *args) -> dict:
    out = tmp_path / f"{args[0]}_{lang}.json"
    code = main([*map(str, args), "--lang", lang, "--out", str(out)])
    assert code == 0
    return json.loads(out.read_text(encoding="utf-8"))


def compare(en, es, path="", differ=None) -> list[str]:
    """Assert that ``en`` and ``es`` have the same keys, list lengths, numbers and enumerated
    values; return the paths of the sentences that differ."""
    differ = [] if differ is None else differ
    assert type(en) is type(es), path
    if isinstance(en, dict):
        assert list(en) == list(es), path
        for key in en:
            sub = f"{path}.{key}"
            if key in SENTENCES or (path.endswith(".validation") and key in VALIDATION_SENTENCES):
                _sentences(en[key], es[key], sub, differ)
            else:
                compare(en[key], es[key], sub, differ)
    elif isinstance(en, list):
        assert len(en) == len(es), path
        for i, (a, b) in enumerate(zip(en, es)):
            compare(a, b, f"{path}[{i}]", differ)
    elif isinstance(en, float):
        assert en == es or (math.isnan(en) and math.isnan(es)), path
    else:
        assert en == es, path  # ints, bools, null, and strings that are values (statuses, keys, labels)
    return differ


def _sentences(en, es, path, differ):
    """Sentences: the same shape, texts may differ (numbers inside them are written as the language writes them)."""
    if isinstance(en, dict):
        assert list(en) == list(es), path
        for key in en:
            _sentences(en[key], es[key], f"{path}.{key}", differ)
    elif isinstance(en, list):
        assert len(en) == len(es), path
        for i, (a, b) in enumerate(zip(en, es)):
            _sentences(a, b, f"{path}[{i}]", differ)
    elif isinstance(en, str):
        if en != es:
            differ.append(path)
    else:
        compare(en, es, path, differ)


def test_analyze_json_is_the_same_in_both_languages_but_for_its_sentences(tmp_path):
    args = ["analyze", DATA / "paperlike_messy.csv", *ROLES, "--alliance", "alliance", "--therapist", "therapist"]
    en, es = run(tmp_path, "en", *args), run(tmp_path, "es", *args)
    differ = compare(en, es)
    assert ".notes[0]" in differ and ".definitions.time" in differ and ".level_advice[0]" in differ
    assert es["notes"][0].startswith("Sesiones conservadas con una medida faltante")
    assert es["definitions"]["within"] == "puntaje de alianza menos la media de ese paciente"
    reasons = [r["reason"] for r in es["models"]["hybrid"]["excluded_rows"]]
    assert reasons and all(r.startswith("sin dato de") for r in reasons)
    assert en["models"]["hybrid"]["excluded_rows"][0]["reason"].endswith("missing")
    assert get_language() == "en"  # the command's language does not leak into the caller


def test_fit_keeps_lme4s_warning_in_english_and_translates_the_reasons(tmp_path):
    args = ["fit", DATA / "paperlike_messy.csv", *ROLES, "--formula", "symptoms ~ age + age_months + (1 | patient)"]
    en, es = run(tmp_path, "en", *args), run(tmp_path, "es", *args)
    differ = compare(en, es)
    assert not any(p.startswith(".warnings") for p in differ)
    assert es["warnings"] == en["warnings"] and es["warnings"][0].startswith(
        "fixed-effect model matrix is rank deficient so dropping 1 column / coefficient")
    assert {r["reason"] for r in es["excluded_rows"]} >= {"sin dato de age", "sin dato de síntomas"}


def test_signal_statuses_stay_values_and_reasons_are_spanish(tmp_path):
    args = ["signal", DATA / "signal_clinic.csv", *ROLES, "--no-validation"]
    en, es = run(tmp_path, "en", *args), run(tmp_path, "es", *args)
    differ = compare(en, es)
    assert ".definition" in differ and any(p.endswith(".reason") for p in differ)
    statuses = {s["status"] for p in es["patients"].values() for s in p["sessions"]}
    assert statuses <= {"on_track", "at_risk", "not_on_track", "unknown"} and "on_track" in statuses
    assert es["method"] == en["method"] == "mixed_model"
    assert es["definition"].startswith("1 de cada 10 pacientes que evolucionan como se espera quedará marcado")
    assert "Curso esperado: a partir de los tratamientos propios" in es["definition"]
    first = next(iter(es["patients"].values()))["sessions"][0]
    assert first["reason"] == "primera sesión: el punto de partida del curso esperado"
    worse = [s["reason"] for p in es["patients"].values() for s in p["sessions"] if "peor que lo esperado" in s["reason"]]
    assert worse and any("," in r for r in worse)  # decimal comma in the Spanish sentences


def test_html_report_in_spanish(tmp_path):
    out = tmp_path / "informe.html"
    code = main(["report", str(DATA / "paperlike_messy.csv"), *ROLES, "--alliance", "alliance", "--therapist",
                 "therapist", "--no-signal", "--lang", "es", "--out", str(out)])
    assert code == 0
    html = out.read_text(encoding="utf-8")
    assert "<html lang='es'>" in html
    for heading in ("<h1>Alianza y cambio en los síntomas: análisis multinivel</h1>", "<h2>Datos</h2>",
                    "<h2>Niveles: correlaciones intraclase</h2>", "<h2>Filas dejadas afuera</h2>",
                    "<h2>Definiciones y métodos</h2>", "<h2>Software y semilla</h2>",
                    "Modelo de panel con efectos cruzados rezagados e interceptos aleatorios (RI-CLPM)</h2>",
                    "<h3>Efectos rezagados</h3>"):
        assert heading in html
    assert "<th>sesión</th>" in html and "<th>medida</th>" in html and "<th>efecto</th>" in html
    assert "Semilla: ninguna" in html and "Sesiones conservadas con una medida faltante" in html
    assert "Alianza → síntomas de la sesión siguiente (cruzado rezagado)" in html
    for english in ("<h2>Data</h2>", "Rows left out", "Definitions and methods", "<h3>Lagged effects</h3>", "Seed:"):
        assert english not in html


def test_lang_from_the_environment_and_help_in_spanish():
    env = {"ALLIANCE_LANG": "es_AR.UTF-8", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "core", "fit", str(DATA / "paperlike_messy.csv"), *ROLES,
                           "--formula", "symptoms ~ time"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 2
    assert "La fórmula no tiene efecto aleatorio" in proc.stderr and "Traceback" not in proc.stderr
    help_text = subprocess.run([sys.executable, "-m", "core", "analyze", "--lang", "es", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=120).stdout
    assert "columna con el identificador del paciente" in help_text and "--lang {en,es}" in help_text
    # argparse's own words too (usage, section titles, -h, its refusals)
    assert help_text.startswith("uso: ") and "opciones:" in help_text and "mostrar esta ayuda y salir" in help_text
    missing = subprocess.run([sys.executable, "-m", "core", "analyze", "data.csv", "--lang", "es"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "faltan estos argumentos obligatorios: --patient" in missing.stderr
    english = subprocess.run([sys.executable, "-m", "core", "fit", str(DATA / "paperlike_messy.csv"), *ROLES,
                              "--formula", "symptoms ~ time"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "The formula has no random effect" in english.stderr  # English by default


def test_every_subcommand_takes_lang():
    from core.cli import _leaf_parsers, build_parser

    parser = build_parser()
    for leaf in _leaf_parsers(parser):
        assert any("--lang" in action.option_strings for action in leaf._actions), leaf.prog
    assert any("--lang" in a.option_strings for a in parser._actions)
