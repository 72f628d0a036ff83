"""Translations: complete catalogues, language chosen per context, the source scanned for strings."""
from __future__ import annotations

import threading
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from core.i18n import LANGUAGES, LOCALE_DIR, _, get_language, language, ngettext, normalise_language, set_language

ROOT = Path(__file__).resolve().parents[1]
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}


def source_messages() -> set[str]:
    """Every string the source passes to ``_``, ``N_`` or ``ngettext`` (as ``pybabel extract``); a
    plural message by its singular (the catalogue's key)."""
    found: set[str] = set()
    for folder in ("core", "pages", "ui"):
        for _filename, _lineno, message, _comments, _context in extract_from_dir(
                ROOT / folder, method_map=[("**.py", "python")], keywords=KEYWORDS):
            found.add(message if isinstance(message, str) else message[0])
    return found


def _translated(entry) -> bool:
    strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
    return bool(strings) and all(strings) and not entry.fuzzy


def catalogue(code: str):
    with (LOCALE_DIR / code / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=code)


def test_every_language_but_english_has_a_catalogue():
    assert set(LANGUAGES) == {"en", "es"}
    assert (LOCALE_DIR / "es" / "LC_MESSAGES" / "messages.po").exists()


def test_every_string_in_the_source_is_translated_into_spanish():
    messages = source_messages()
    assert "Language" in messages
    spanish = catalogue("es")
    missing = sorted(m for m in messages if not spanish.get(m) or not _translated(spanish.get(m)))
    assert missing == [], f"{len(missing)} strings lack a Spanish translation (scripts/translations.sh): {missing[:20]}"


def test_placeholders_survive_translation():
    """A translation keeps every {placeholder} of its source, so .format() cannot fail."""
    import re
    for message in catalogue("es"):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = set(re.findall(r"\{[^{}]*\}", ids[-1]))
        for text in strings:
            if text:
                assert set(re.findall(r"\{[^{}]*\}", text)) == wanted, (message.id, text)


def test_language_codes_from_browsers_and_environments():
    assert normalise_language("es-AR") == "es"
    assert normalise_language("es_ES.UTF-8") == "es"
    assert normalise_language("EN-gb") == "en"
    assert normalise_language("fr-FR") == "en"
    assert normalise_language(None) == "en"


def test_language_is_per_context_not_global():
    seen = {}

    def worker():
        set_language("es")
        seen["thread"] = _("Language")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["thread"] == "Idioma"
    assert get_language() == "en" and _("Language") == "Language"
    with language("es"):
        assert _("Language") == "Idioma"
    assert _("Language") == "Language"
    assert ngettext("{n} patient", "{n} patients", 2) == "{n} patients"


# ------------------------------------------------------------------ core's sentences in Spanish

def test_numbers_in_a_translated_sentence_follow_the_language():
    from core.i18n import LocalText, number

    with language("es"):
        assert _("{rows:,} rows or more × {columns:,} columns").format(rows=1048577, columns=3) == \
            "1.048.577 filas o más × 3 columnas"
        assert number(0.8, ".2f") == "0,80" and number(1234.5, ",.1f") == "1.234,5"
        assert number("0.8") == "0.8"  # text is never changed
        assert isinstance(_("Language"), LocalText)
    assert number(0.8, ".2f") == "0.80" and isinstance(_("Language"), str)
    # one minus sign in every language (issue 24), in sentences and on its own
    assert number(-0.5, ".1f") == "−0.5" and _("{n} rows").format(n=-3) == "−3 rows"
    with language("es"):
        assert number(-0.5, ".1f") == "−0,5"


def test_an_input_error_from_reading_in_spanish(tmp_path):
    import pytest

    from core.errors import InputError
    from core.intake.reading import read_table

    empty = tmp_path / "vacío.csv"
    empty.write_text("   \n\n", encoding="utf-8")
    with language("es"), pytest.raises(InputError) as err:
        read_table(empty)
    assert str(err.value) == "vacío.csv está vacío: no tiene fila de encabezado ni datos."
    with pytest.raises(InputError) as err:
        read_table(empty)
    assert str(err.value) == "vacío.csv is empty: it has no header row and no data."


def test_excluded_row_reasons_and_notes_in_spanish():
    import pandas as pd

    from core.intake.mapping import ColumnMapping
    from core.intake.reading import read_csv_bytes
    from core.intake.validation import validate_table

    text = ("paciente;sesion;alianza;oq\n"
            "A;1;5,5;70\nA;2;abc;\nA;3;4,5;99\nB;1;6;80\nB;2;6;-99\n;3;5;60\nC;1;5;50\nC;2;5;52\n")
    raw = read_csv_bytes(text.encode("utf-8"), "clinica.csv")
    mapping = ColumnMapping(patient="paciente", session="sesion", alliance="alianza", symptoms="oq")
    ranges = {"symptoms": (0.0, 180.0)}
    with language("es"):
        result = validate_table(raw, mapping, ranges=ranges)
    reasons = dict(zip(result.excluded["row"], result.excluded["reason"]))
    assert reasons == {3: "alianza: 'abc' no es un número; sin dato de síntomas",
                       7: "falta el identificador del paciente"}
    assert result.cell_reasons.loc[result.data["row"].eq(6).to_numpy(), "symptoms"].iloc[0] == \
        "sin dato de síntomas (código -99)"
    assert any(n.startswith("1 valor de síntomas era un código de valor faltante (-99)") for n in result.notes)
    english = validate_table(raw, mapping, ranges=ranges)
    assert dict(zip(english.excluded["row"], english.excluded["reason"]))[3] == \
        "alliance 'abc' is not a number; symptoms missing"
    pd.testing.assert_frame_equal(result.data, english.data)  # the numbers never depend on the language


def test_a_signal_status_reason_and_sentence_in_spanish():
    import pandas as pd

    from core.clinical.signal import SignalSettings, compute_signal, status_label, status_sentence

    data = pd.DataFrame({"patient": ["A", "A", "B", "B", "C", "C"], "session": [1, 2, 1, 2, 1, 2],
                         "symptoms": [80.0, 95.0, 70.0, 60.0, 60.0, 69.0]})
    settings = SignalSettings(reliable_change=14.0)
    with language("es"):
        result = compute_signal(data, settings)
        now = result.patients.set_index("patient")
        assert now.loc["A", "status"] == "not_on_track"  # enumerated values never change
        assert now.loc["A", "reason"] == "15 puntos peor que en la admisión: un deterioro confiable (cambio confiable 14)"
        assert now.loc["C", "reason"] == "9 puntos peor que en la admisión: al menos la mitad del cambio confiable (14)"
        assert status_label("not_on_track") == "fuera de curso" and status_label("on_track") == "en curso esperado"
        assert status_sentence("at_risk", 2, now.loc["C", "reason"]).startswith("En riesgo (sesión 2): 9 puntos")
        assert result.definition.startswith("Sin modelo local: Tratamientos completos de esta clínica (pacientes con al menos 4 sesiones): 0")
    english = compute_signal(data, settings).patients.set_index("patient")
    assert english.loc["A", "reason"] == "15 points worse than at intake: a reliable deterioration (reliable change 14)"


def test_a_model_error_in_spanish():
    import pandas as pd
    import pytest

    from core.errors import ModelError
    from core.stats.formula import fit_formula, parse_formula

    with language("es"), pytest.raises(ModelError) as err:
        parse_formula("symptoms ~ time")
    assert str(err.value) == "La fórmula no tiene efecto aleatorio; agregue uno como (1 | patient)."
    data = pd.DataFrame({"patient": list("AABBCC"), "session": [1, 2] * 3, "symptoms": [5.0] * 6, "row": range(2, 8)})
    with language("es"), pytest.raises(ModelError) as err:
        fit_formula(data, "symptoms ~ 1 + (1 | patient)")
    assert "no hay nada que modelar" in str(err.value)


def test_role_and_status_names_and_definitions_follow_the_language():
    from core.intake.mapping import role_name
    from core.reporting.json_report import DEFINITIONS, definitions
    from core.store.users import Role, role_label

    with language("es"):
        assert role_name("symptoms") == "síntomas" and role_name("oq_total") == "oq_total"
        assert role_label(Role.SUPERVISOR) == "supervisor/a"
        spanish = definitions()
    assert set(spanish) == set(DEFINITIONS) and spanish["within"] == "puntaje de alianza menos la media de ese paciente"
    assert definitions() == DEFINITIONS


def test_translated_text_is_not_cached_across_languages():
    from core.demo import demo_dataset

    with language("es"):
        spanish = demo_dataset()
    english = demo_dataset()
    assert english is demo_dataset() and spanish is not english  # cached per language
    assert english.data.equals(spanish.data)


def test_importing_the_translations_does_not_load_babel():
    import subprocess
    import sys

    code = ("import sys, core.i18n, core.intake.reading; from core.i18n import _; _('Language'); "
            "print('babel' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_no_message_hides_where_extraction_cannot_see_it():
    """pybabel does not extract ``_("…")`` written inside an f-string's braces, nor the text of
    ``_(f"…")`` (it has no fixed text): either would stay English with this test still passing."""
    import ast

    keywords = {"_", "N_", "ngettext"}
    found = []
    for folder in ("core", "pages", "ui"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in keywords \
                        and any(isinstance(a, ast.JoinedStr) for a in node.args):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}(f\"…\")")
                if isinstance(node, ast.FormattedValue):
                    for sub in ast.walk(node.value):
                        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in keywords \
                                and any(isinstance(a, (ast.Constant, ast.JoinedStr)) for a in sub.args):
                            found.append(f"{path.relative_to(ROOT)}:{sub.lineno} {sub.func.id}() inside an f-string")
    assert found == [], found


def test_no_sentence_is_translated_once_at_import():
    """``_()`` at module or class level, or in a default argument, runs once at import, in whatever
    language is current then: mark such constants with ``N_`` and translate where they are shown."""
    import ast

    found = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def visit(node, in_function):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    for default in [*child.args.defaults, *child.args.kw_defaults]:
                        if default is not None:
                            visit(ast.Expression(default), in_function)
                    visit(child.body if isinstance(child, ast.Lambda) else ast.Module(child.body, []), True)
                    continue
                if not in_function and isinstance(child, ast.Call) and isinstance(child.func, ast.Name) \
                        and child.func.id in ("_", "ngettext"):
                    found.append(f"{path.relative_to(ROOT)}:{child.lineno}")
                visit(child, in_function)

        visit(tree, False)
    assert found == [], found
