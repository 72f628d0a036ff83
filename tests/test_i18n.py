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
    """Every string the source passes to ``_``, ``N_`` or ``ngettext`` (as ``pybabel extract``)."""
    found: set[str] = set()
    for folder in ("core", "pages", "ui"):
        for _filename, _lineno, message, _comments, _context in extract_from_dir(
                ROOT / folder, method_map=[("**.py", "python")], keywords=KEYWORDS):
            found.update([message] if isinstance(message, str) else [m for m in message if m])
    return found


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
    missing = sorted(m for m in messages if not spanish.get(m) or not spanish.get(m).string
                     or spanish.get(m).fuzzy)
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
