"""FHIR R4 in: a Bundle (or NDJSON) of ``QuestionnaireResponse`` and ``Observation`` resources →
the same validated long table as a spreadsheet (:class:`core.intake.validation.ValidatedData`).

Parsed and validated with the maintained library ``fhir.resources`` (8.x), through its
``fhir.resources.R4B`` models: 8.x defaults to R5 and offers R4B and STU3 as subpackages; no
release of it that is still maintained ships FHIR 4.0.1 itself (6.2.x was the last, 2022, on
pydantic 1). R4B (4.3.0) is a technical correction of R4 whose changes lie elsewhere
(medication definition, evidence, subscriptions): for every element read here — Bundle,
Observation, QuestionnaireResponse, Patient, Practitioner, Encounter, Reference, Coding,
Quantity, Identifier — the R4B models list exactly R4's elements (compared with
``fhir.resources`` 6.2.2's R4 models; only ``Extension``'s value types differ by two).

Steps, each refusal one plain sentence and each unusable resource listed with its 1-based
position in the bundle (``row``: the entry's position, or the NDJSON line) and the reason:

1. **Limits, before parsing** (:mod:`core.intake.limits`): the file's size, then upper bounds of
   its resources (``"resourceType"``), JSON objects (``{``) and values (``,``) counted in the
   bytes, so that a bundle of a million resources is refused before a single one is parsed;
   nesting deeper than Python's JSON parser allows is refused as a whole, a resource nested
   deeper than :data:`~core.intake.limits.MAX_FHIR_DEPTH` levels is listed and never recursed into.
2. **Each resource validated** by its ``fhir.resources`` R4B model (wrong types, unknown elements,
   required elements missing, malformed dates and decimals).
3. **Mapping** (:class:`FhirMapping`): which ``Observation.code`` (``SYSTEM|CODE``, or a bare code)
   or ``QuestionnaireResponse.questionnaire`` (canonical URL, version ignored) is the alliance and
   which the symptom measure; an Observation's score is ``valueQuantity.value`` (or
   ``valueInteger``); a QuestionnaireResponse is scored from its answers with an instrument
   definition (:mod:`core.intake.instruments`), item number = the number at the end of the
   ``linkId`` (``7``, ``oq-7``, ``item7``); an answer outside the instrument's coding makes the
   resource unusable (listed), unanswered items follow the instrument's missing-item rule.
4. **Who**: ``subject`` → patient (the id of ``Patient/ID``, of the bundle entry it points to, or
   ``subject.identifier.value``; never a Patient resource's own identifiers, which may be record
   numbers); the first ``performer`` (Observation) or the ``author`` (QuestionnaireResponse)
   that is not the patient → therapist, by the same rule.
5. **Session**, one rule for the whole bundle, said in the notes: this dashboard's own session
   number (the extension :data:`SESSION_EXTENSION`, written by :mod:`core.reporting.fhir_export`)
   when every resource has it; else the ``encounter`` when every resource has one (encounters
   numbered 1, 2, … per patient in order of their dates); else the date (``effectiveDateTime``,
   ``effectivePeriod.start``, ``effectiveInstant``, or ``authored``): the days a patient has
   scores numbered 1, 2, … (scores of one patient on one day are one session).
6. Each measure's rows go through :func:`core.intake.validation.validate_long` (the spreadsheet's
   checks: ranges, missing-value codes, values beyond ±1,000,000, conflicting duplicates), then the
   measures are joined per patient and session.

Nothing here imports streamlit.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import InputError, TooLarge
from core.i18n import _, ngettext
from core.intake import limits
from core.intake.instruments import load_instrument, score_items
from core.intake.mapping import MEASURES, ColumnMapping, role_name
from core.intake.validation import ValidatedData, validate_long

#: This dashboard's own code systems (written by the FHIR export, read back by default).
MEASURE_SYSTEM = "urn:alliance-dashboard:measure"
INSTRUMENT_SYSTEM = "urn:alliance-dashboard:instrument"
PATIENT_SYSTEM = "urn:alliance-dashboard:patient"
THERAPIST_SYSTEM = "urn:alliance-dashboard:therapist"
SIGNAL_SYSTEM = "urn:alliance-dashboard:signal-status"
#: Extension with this dashboard's session number (valueDecimal), so that an export reads back
#: with its own session numbers.
SESSION_EXTENSION = "urn:alliance-dashboard:session-number"
#: The default mapping: this dashboard's own export.
DEFAULT_CODES = {m: f"{MEASURE_SYSTEM}|{m}" for m in MEASURES}
#: Instruments that score QuestionnaireResponse items by default.
DEFAULT_INSTRUMENTS = {"alliance": "ans", "symptoms": "oq45"}

SCORE_TYPES = ("Observation", "QuestionnaireResponse")
#: Resources a bundle may carry beside the scores (references point to them); not listed as unusable.
SUPPORTING_TYPES = ("Patient", "Practitioner", "PractitionerRole", "Encounter", "Questionnaire", "Organization",
                    "RelatedPerson")
#: Statuses whose resource holds no result to use.
UNUSABLE_STATUS = {"Observation": ("registered", "cancelled", "entered-in-error"),
                   "QuestionnaireResponse": ("entered-in-error",)}

_REFERENCE = re.compile(r"^(?:.*/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[^/]+?)(?:/_history/[^/]*)?$")
_ITEM_NUMBER = re.compile(r"(\d{1,6})\s*$")
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


# --------------------------------------------------------------------------------------------
# Reading: limits, JSON, one entry per resource, each validated by fhir.resources
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FhirEntry:
    """One resource of a bundle: its 1-based position, type, the JSON (``None`` when it could not
    be read), its ``fullUrl`` and, when it is unusable as it stands, the reason."""

    row: int
    type: str
    resource: dict | None
    full_url: str | None = None
    problem: str | None = None


@dataclass(frozen=True, eq=False)
class FhirBundle:
    """A FHIR file as read: every entry, and how it was laid out (``bundle`` or ``ndjson``)."""

    source: str
    layout: str
    entries: tuple[FhirEntry, ...]

    def __hash__(self) -> int:  # cached by the page on the file's bytes, never on this object
        return id(self)


def looks_like_fhir(name: str, data: bytes | None = None) -> bool:
    """True for a ``.json`` / ``.ndjson`` file name, or bytes that start like a FHIR resource."""
    if str(name).lower().endswith((".json", ".ndjson", ".jsonl")):
        return True
    if data is not None:
        head = data[:2000].lstrip(b"\xef\xbb\xbf \t\r\n")
        return head.startswith(b"{") and b'"resourceType"' in head
    return False


def _too_large(source: str, what: str, n: int, limit: int, hint: str) -> TooLarge:
    return TooLarge(_("{source} is too large to read: it holds {n:,} {what} or more, and at most {limit:,} are "
                      "read at once. {hint}").format(source=source, n=n, what=what, limit=limit, hint=hint))


def _check_size_and_counts(data: bytes, source: str) -> None:
    """The limits checked in the bytes, before anything is parsed (C-speed counts)."""
    if len(data) > limits.MAX_FILE_BYTES:
        raise TooLarge(_("{source} is {size:,.0f} MB; at most {max:,.0f} MB are read. Split the export (for example "
                         "by month) and read the parts one after another.").format(
            source=source, size=len(data) / 2 ** 20, max=limits.MAX_FILE_BYTES / 2 ** 20))
    split = _("Split the export (for example by month) and read the parts one after another.")
    n = data.count(b'"resourceType"')  # an upper bound: contained resources and texts count too
    n -= b'"Bundle"' in data[:4096]  # the Bundle itself
    if n > limits.MAX_FHIR_RESOURCES:
        raise _too_large(source, _("FHIR resources"), n, limits.MAX_FHIR_RESOURCES, split)
    n = data.count(b"{")
    if n > limits.MAX_FHIR_OBJECTS:
        raise _too_large(source, _("JSON objects"), n, limits.MAX_FHIR_OBJECTS, split)
    n = data.count(b",")
    if n > limits.MAX_FHIR_VALUES:
        raise _too_large(source, _("JSON values"), n, limits.MAX_FHIR_VALUES, split)


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(_("{source} is not UTF-8 text (byte {at:,} cannot be read); FHIR JSON is always UTF-8. "
                           "Export it again as JSON.").format(source=source, at=err.start + 1)) from None


def _loads(text: str, source: str, where: str = ""):
    """One JSON value; a refusal in one sentence (never a traceback)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InputError(_("{source}{where} is nested too deeply to be a FHIR resource (JSON inside JSON more than "
                           "a few hundred levels deep). Export it again from the records system.").format(
            source=source, where=where)) from None
    except json.JSONDecodeError as err:
        raise InputError(_("{source}{where} is not valid JSON (line {line:,}, column {column:,}: {problem}). Export "
                           "it again as a FHIR JSON Bundle or NDJSON.").format(
            source=source, where=where, line=err.lineno, column=err.colno, problem=err.msg)) from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise InputError(_("{source}{where} is not valid JSON ({problem}).").format(
            source=source, where=where, problem=str(err)[:200])) from None


def _depth(value, limit: int) -> int:
    """Nesting levels of a JSON value, counted without recursion, stopping past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item if isinstance(v, (dict, list)))
    return deepest


def _ndjson(text: str) -> bool:
    """NDJSON (bulk export): several lines, the first one a whole JSON object that is not a Bundle."""
    first, _sep, rest = text.lstrip().partition("\n")
    if not rest.strip():
        return False
    try:
        value = json.loads(first)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and value.get("resourceType") != "Bundle"


def read_fhir(data: bytes | str | Path, source: str | None = None) -> FhirBundle:
    """Read a FHIR R4 JSON Bundle, one resource, or NDJSON (one resource per line) within the limits,
    and validate every resource with ``fhir.resources`` (R4B models: see the module's docstring).

    Returns every entry with its 1-based position (``row``); an entry that cannot be used as it
    stands (not valid JSON, nested too deeply, not valid FHIR R4) carries its ``problem``. A file
    that is not a FHIR bundle at all is refused with one sentence (:class:`InputError`).
    """
    if isinstance(data, (str, Path)):
        path = Path(data)
        source = source or path.name
        if not path.is_file():
            raise InputError(_("{source} is not a file that can be read.").format(source=source))
        size = path.stat().st_size
        if size > limits.MAX_FILE_BYTES:  # before reading a byte
            raise TooLarge(_("{source} is {size:,.0f} MB; at most {max:,.0f} MB are read. Split the export (for "
                             "example by month) and read the parts one after another.").format(
                source=source, size=size / 2 ** 20, max=limits.MAX_FILE_BYTES / 2 ** 20))
        data = path.read_bytes()
    source = source or "FHIR file"
    _check_size_and_counts(data, source)
    text = _decode(data, source)
    if not text.strip():
        raise InputError(_("{source} is empty.").format(source=source))
    raw: list[tuple[int, object, str | None, str | None]] = []  # row, resource, fullUrl, problem
    split = _("Split the export (for example by month) and read the parts one after another.")
    if _ndjson(text):
        layout = "ndjson"
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            if len(raw) >= limits.MAX_FHIR_RESOURCES:
                raise _too_large(source, _("FHIR resources"), len(raw) + 1, limits.MAX_FHIR_RESOURCES, split)
            try:
                raw.append((number, _loads(line, source), None, None))
            except InputError:
                raw.append((number, None, None, _("line {line:,} is not valid JSON").format(line=number)))
    else:
        layout = "bundle"
        value = _loads(text, source)
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            raise InputError(_("{source} is JSON but not a FHIR resource (no resourceType). Export a FHIR R4 "
                               "Bundle of QuestionnaireResponse or Observation resources.").format(source=source))
        if value["resourceType"] != "Bundle":
            raw.append((1, value, None, None))
        else:
            entries = value.get("entry") or []
            if not isinstance(entries, list):
                raise InputError(_("{source}: the Bundle's entry is not a list, so it is not a valid FHIR R4 "
                                   "Bundle.").format(source=source))
            if len(entries) > limits.MAX_FHIR_RESOURCES:
                raise _too_large(source, _("bundle entries"), len(entries), limits.MAX_FHIR_RESOURCES, split)
            _check_bundle(value, source)
            for i, entry in enumerate(entries, start=1):
                if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
                    raw.append((i, None, None, _("the entry holds no resource")))
                    continue
                full = entry.get("fullUrl")
                raw.append((i, entry["resource"], full if isinstance(full, str) else None, None))
    return FhirBundle(source=source, layout=layout,
                      entries=tuple(_validated_entry(row, res, full, problem) for row, res, full, problem in raw))


def _check_bundle(bundle: dict, source: str) -> None:
    """The Bundle itself (without its entries) against the R4 model."""
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    shell = {k: v for k, v in bundle.items() if k != "entry"}
    try:
        Bundle.model_validate(shell)
    except ValidationError as err:
        raise InputError(_("{source} is not a valid FHIR R4 Bundle: {problem}.").format(
            source=source, problem=_problem(err))) from None
    except (RecursionError, ValueError, TypeError):
        raise InputError(_("{source} is not a valid FHIR R4 Bundle.").format(source=source)) from None


def _field(loc) -> str:
    """``('valueQuantity', 'value')`` → ``valueQuantity.value``; ``('item', 0, 'linkId')`` → ``item[1].linkId``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part + 1}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _problem(err) -> str:
    """The first error pydantic found, in words (the library's own message where no phrase of ours fits)."""
    errors = err.errors(include_url=False)
    if not errors:
        return str(err)[:200]
    first = errors[0]
    where, kind, message = _field(first.get("loc", ())), first.get("type", ""), first.get("msg", "")
    if kind == "missing":
        text = _("{field} is missing (required)").format(field=where)
    elif kind == "extra_forbidden":
        text = _("{field} is not an element of this resource").format(field=where)
    elif kind.endswith("_type") or kind in ("model_type", "model_attributes_type"):
        text = _("{field} has the wrong type ({problem})").format(field=where, problem=message)
    else:
        text = _("{field}: {problem}").format(field=where, problem=message) if where else message
    more = len(errors) - 1
    if more:
        text += " " + ngettext("(and {n} more problem)", "(and {n} more problems)", more).format(n=more)
    return text


def _validated_entry(row: int, resource, full_url: str | None, problem: str | None) -> FhirEntry:
    """One resource checked: nesting (without recursion), then its ``fhir.resources`` R4B model."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    if problem is not None or not isinstance(resource, dict):
        return FhirEntry(row, "", None, full_url, problem or _("not a JSON object"))
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or not kind:
        return FhirEntry(row, "", None, full_url, _("no resourceType: not a FHIR resource"))
    depth = _depth(resource, limits.MAX_FHIR_DEPTH)
    if depth > limits.MAX_FHIR_DEPTH:
        return FhirEntry(row, kind, None, full_url,
                         _("nested more than {max} levels deep; not read").format(max=limits.MAX_FHIR_DEPTH))
    try:
        model = get_fhir_model_class(kind)
    except (ValueError, KeyError, AttributeError):
        return FhirEntry(row, kind, None, full_url, _("'{type}' is not a FHIR R4 resource type").format(type=kind[:60]))
    try:
        model.model_validate(resource)
    except ValidationError as err:
        return FhirEntry(row, kind, None, full_url, _("not a valid FHIR R4 {type}: {problem}").format(
            type=kind, problem=_problem(err)))
    except (RecursionError, ValueError, TypeError, ArithmeticError) as err:
        return FhirEntry(row, kind, None, full_url, _("not a valid FHIR R4 {type}: {problem}").format(
            type=kind, problem=type(err).__name__))
    return FhirEntry(row, kind, resource, full_url)


# --------------------------------------------------------------------------------------------
# Mapping: which resources are which measure
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FhirMeasure:
    """How one measure is found in a bundle and scored.

    ``codes``: ``SYSTEM|CODE`` or a bare ``CODE`` (matched against every ``Observation.code.coding``),
    or a questionnaire's canonical URL (matched against ``QuestionnaireResponse.questionnaire``,
    its ``|version`` ignored; the URL's last path segment, the Questionnaire's id, matches too).
    ``instrument``: the instrument definition that scores QuestionnaireResponse items (default:
    ANS for alliance, OQ-45.2 for symptoms); ``reverse_keyed``: the reverse-keyed items, when the
    definition has none sourced (``()``: none to reverse); ``coding``: the answers' coding when it
    differs from the definition's. ``range``: the valid range of Observation scores.
    """

    codes: tuple[str, ...]
    instrument: str | None = None
    reverse_keyed: tuple[int, ...] | None = None
    coding: tuple[float, float] | None = None
    range: tuple[float, float] | None = None


@dataclass(frozen=True)
class FhirMapping:
    """Which resources are the alliance and which the symptom measure (``None``: not read)."""

    alliance: FhirMeasure | None = None
    symptoms: FhirMeasure | None = None

    def measures(self) -> dict[str, FhirMeasure]:
        return {m: getattr(self, m) for m in MEASURES if getattr(self, m) is not None and getattr(self, m).codes}


def default_mapping() -> FhirMapping:
    """This dashboard's own export: ``urn:alliance-dashboard:measure|alliance`` and ``|symptoms``."""
    return FhirMapping(**{m: FhirMeasure(codes=(DEFAULT_CODES[m],)) for m in MEASURES})


def _canonical(url: str) -> str:
    return url.split("|", 1)[0].rstrip("/")


def _codings(resource: dict) -> list[tuple[str | None, str]]:
    code = resource.get("code") or {}
    return [(c.get("system"), str(c.get("code"))) for c in code.get("coding") or [] if c.get("code") is not None]


def _matches(resource: dict, kind: str, wanted: str) -> bool:
    wanted = wanted.strip()
    if kind == "Observation":
        for system, code in _codings(resource):
            if wanted == code or (system is not None and wanted == f"{system}|{code}"):
                return True
        return False
    questionnaire = resource.get("questionnaire")
    if not isinstance(questionnaire, str):
        return False
    have, want = _canonical(questionnaire), _canonical(wanted)
    return have == want or have.rsplit("/", 1)[-1] == want


@dataclass(frozen=True)
class FoundCode:
    """A code (Observations) or questionnaire (QuestionnaireResponses) found in a bundle."""

    key: str       # what a mapping names: SYSTEM|CODE or the canonical URL
    kind: str      # "Observation" or "QuestionnaireResponse"
    label: str     # for people: the display or text, else the key
    count: int


def found_codes(bundle: FhirBundle) -> list[FoundCode]:
    """Every Observation code and questionnaire in the bundle, most frequent first (what the Upload
    page offers for each measure)."""
    counts: Counter = Counter()
    labels: dict[tuple[str, str], str] = {}
    for entry in bundle.entries:
        res = entry.resource
        if res is None or entry.type not in SCORE_TYPES:
            continue
        if entry.type == "Observation":
            coding = (res.get("code") or {}).get("coding") or []
            first = next((c for c in coding if c.get("code") is not None), None)
            if first is None:
                continue
            key = f"{first['system']}|{first['code']}" if first.get("system") else str(first["code"])
            label = first.get("display") or (res.get("code") or {}).get("text") or key
        else:
            questionnaire = res.get("questionnaire")
            if not isinstance(questionnaire, str):
                continue
            key = label = _canonical(questionnaire)
        counts[(entry.type, key)] += 1
        labels.setdefault((entry.type, key), str(label))
    return [FoundCode(key=k, kind=t, label=labels[(t, k)], count=n) for (t, k), n in counts.most_common()]


_HINTS = {"symptoms": ("symptom", "oq", "oq-45", "oq45", "outcome questionnaire", "phq", "gad", "core-", "core10", "bdi",
                       "scl", "distress", "síntoma", "sintoma"),
          "alliance": ("alliance", "alianza", "ans", "wai", "srs", "negotiation", "negociación")}


def propose_codes(found: list[FoundCode]) -> dict[str, str]:
    """A first guess of which found code is which measure: this dashboard's own codes, else words in
    the label or URL (``OQ-45``, ``alliance``, ``WAI`` …); the user checks and corrects it."""
    proposal: dict[str, str] = {}
    for measure in MEASURES:
        own = next((f.key for f in found if f.key == DEFAULT_CODES[measure]), None)
        if own:
            proposal[measure] = own
    for measure in MEASURES:
        if measure in proposal:
            continue
        for f in found:
            text = f"{f.label} {f.key}".lower()
            words = set(re.findall(r"[a-záéíóúñ0-9\-]+", text))
            hit = any((h in words) if len(h) <= 3 else (h in text) for h in _HINTS[measure])
            if hit and f.key not in proposal.values():
                proposal[measure] = f.key
                break
    return proposal


# --------------------------------------------------------------------------------------------
# From resources to rows
# --------------------------------------------------------------------------------------------

def _date_of(resource: dict, kind: str) -> str | None:
    """The resource's date as written (``YYYY-MM-DD``, its own local day), or None."""
    if kind == "Observation":
        value = resource.get("effectiveDateTime") or resource.get("effectiveInstant") \
            or (resource.get("effectivePeriod") or {}).get("start")
    else:
        value = resource.get("authored")
    if not isinstance(value, str):
        return None
    m = _DATE.match(value)
    if not m:
        return None
    return "-".join(p for p in m.groups() if p)


def _moment_of(resource: dict, kind: str) -> str:
    """The full date-time as written, for ordering encounters (text order is time order for one zone)."""
    if kind == "Observation":
        value = resource.get("effectiveDateTime") or resource.get("effectiveInstant") \
            or (resource.get("effectivePeriod") or {}).get("start")
    else:
        value = resource.get("authored")
    return value if isinstance(value, str) else ""


class _Resolver:
    """References → the IDs the dashboard uses (the rule in the module's docstring)."""

    def __init__(self, bundle: FhirBundle) -> None:
        self.by_url: dict[str, FhirEntry] = {}
        for entry in bundle.entries:
            if entry.resource is None:
                continue
            if entry.full_url:
                self.by_url[entry.full_url] = entry
            rid = entry.resource.get("id")
            if isinstance(rid, str):
                self.by_url.setdefault(f"{entry.type}/{rid}", entry)

    def who(self, ref, kinds: tuple[str, ...]) -> tuple[str | None, str | None]:
        """``(id, type)`` of a Reference to one of ``kinds`` (type ``None`` when not said)."""
        if not isinstance(ref, dict):
            return None, None
        text = ref.get("reference")
        declared = ref.get("type")
        if isinstance(text, str) and text.strip():
            text = text.strip()
            entry = self.by_url.get(text)
            if entry is not None:
                rid = entry.resource.get("id")
                return (str(rid) if rid else None), entry.type
            m = _REFERENCE.match(text)
            if m:
                return m.group("id"), m.group("type")
            return None, declared
        ident = ref.get("identifier") or {}
        value = ident.get("value")
        if isinstance(value, str) and value.strip():
            kind = declared or {PATIENT_SYSTEM: "Patient", THERAPIST_SYSTEM: "Practitioner"}.get(ident.get("system"))
            return value.strip(), kind
        return None, declared

    def encounter(self, ref) -> str | None:
        if not isinstance(ref, dict):
            return None
        text = ref.get("reference")
        if isinstance(text, str) and text.strip():
            return text.strip()
        value = (ref.get("identifier") or {}).get("value")
        return f"identifier:{value}" if isinstance(value, str) and value.strip() else None


def _session_extension(resource: dict) -> float | None:
    for ext in resource.get("extension") or []:
        if ext.get("url") == SESSION_EXTENSION:
            for key in ("valueDecimal", "valueInteger", "valuePositiveInt", "valueUnsignedInt"):
                value = ext.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    return float(value)
    return None


def _answers(resource: dict) -> tuple[list[tuple[str, object]], str | None]:
    """Every answered item ``(linkId, value)``, nested items included (without recursion)."""
    out, stack = [], list(reversed(resource.get("item") or []))
    while stack:
        item = stack.pop()
        answers = item.get("answer") or []
        for answer in answers:
            value = None
            for key in ("valueInteger", "valueDecimal"):
                if key in answer:
                    value = answer[key]
            if value is None and "valueCoding" in answer:
                coding = answer["valueCoding"]
                for ext in coding.get("extension") or []:
                    if ext.get("url", "").endswith(("/ordinalValue", "/itemWeight")) and "valueDecimal" in ext:
                        value = ext["valueDecimal"]
                if value is None:
                    value = coding.get("code")
            if value is None and "valueString" in answer:
                value = answer["valueString"]
            if value is None:
                return out, _("item '{item}' has an answer that is not a number").format(item=str(item.get("linkId"))[:40])
            out.append((str(item.get("linkId")), value))
            stack.extend(reversed(answer.get("item") or []))
        stack.extend(reversed(item.get("item") or []))
    return out, None


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(float(value)) else None
    try:
        x = float(str(value).strip().replace(",", "."))
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass
class _Candidate:
    row: int
    kind: str
    measure: str
    patient: str
    therapist: str | None
    value: str            # the score as text ("" when it comes from items, see explanation)
    explanation: str      # why the score is missing ("" when it is there)
    date: str | None
    moment: str
    encounter: str | None
    session_number: float | None
    session: float = 0.0  # numbered by _sessions()


@dataclass(frozen=True, eq=False)
class FhirImport:
    """A bundle mapped and validated: the table, what scored the questionnaires, and the scoring's messages."""

    validated: ValidatedData
    instruments: tuple[tuple[str, str], ...] = ()
    session_rule: str = ""
    messages: tuple[str, ...] = field(default_factory=tuple)


def _definition(measure: str, spec: FhirMeasure):
    defn = load_instrument(spec.instrument or DEFAULT_INSTRUMENTS[measure])
    if spec.reverse_keyed is not None:
        defn = defn.with_changes(reverse_keyed=list(spec.reverse_keyed))
    return defn


def fhir_to_validated(bundle: FhirBundle, mapping: FhirMapping | None = None) -> FhirImport:
    """Map and validate a bundle read by :func:`read_fhir` (the steps of the module's docstring).

    Every resource that cannot be used is in ``validated.excluded`` as ``row`` (its 1-based position)
    and ``reason``; every other resource's score is in ``validated.data`` (one row per patient and
    session, ``row`` = the position of the session's first resource, and a ``date`` column when
    the resources are dated). Refused with one sentence when no resource can be used.
    """
    mapping = mapping or default_mapping()
    wanted = mapping.measures()
    if not wanted:
        raise InputError(_("Say which code or questionnaire is the alliance measure and which the symptom measure."))
    source = bundle.source
    resolver = _Resolver(bundle)
    excluded: list[tuple[int, str]] = []
    candidates: list[_Candidate] = []
    supporting: Counter = Counter()
    questionnaires: dict[str, list[tuple[int, dict]]] = {m: [] for m in wanted}
    messages: list[str] = []
    definitions = {}
    for measure, spec in wanted.items():
        try:
            definitions[measure] = _definition(measure, spec)
        except InputError as err:
            raise InputError(_("{measure}: {problem}").format(measure=role_name(measure).capitalize(), problem=err)) from None

    for entry in bundle.entries:
        res = entry.resource
        if entry.problem is not None:
            excluded.append((entry.row, entry.problem))
            continue
        if entry.type not in SCORE_TYPES:
            if entry.type in SUPPORTING_TYPES:
                supporting[entry.type] += 1
            else:
                excluded.append((entry.row, _("a {type} resource holds no questionnaire score; only "
                                              "QuestionnaireResponse and Observation resources are read").format(type=entry.type)))
            continue
        status = res.get("status")
        if status in UNUSABLE_STATUS[entry.type]:
            excluded.append((entry.row, _("status '{status}': no result to use").format(status=status)))
            continue
        measure = next((m for m, spec in wanted.items() if any(_matches(res, entry.type, c) for c in spec.codes)), None)
        if measure is None:
            if entry.type == "Observation":
                codes = ", ".join(f"{s}|{c}" if s else c for s, c in _codings(res)) or _("no code")
                excluded.append((entry.row, _("code {code} is not mapped to the alliance or the symptom measure").format(
                    code=codes[:120])))
            else:
                excluded.append((entry.row, _("questionnaire {questionnaire} is not mapped to the alliance or the "
                                              "symptom measure").format(
                    questionnaire=str(res.get("questionnaire") or _("(none named)"))[:120])))
            continue
        patient, ptype = resolver.who(res.get("subject"), ("Patient",))
        if ptype is not None and ptype != "Patient":
            excluded.append((entry.row, _("the subject is a {type}, not a Patient").format(type=ptype)))
            continue
        if not patient:
            excluded.append((entry.row, _("no patient: subject is missing or does not name a Patient")))
            continue
        therapist = None
        people = (res.get("performer") or []) if entry.type == "Observation" else \
            [res["author"]] if isinstance(res.get("author"), dict) else []
        for person in people:
            who, wtype = resolver.who(person, ("Practitioner", "PractitionerRole"))
            if who and wtype not in ("Patient", "RelatedPerson", "Organization", "Device", "CareTeam") \
                    and not (wtype is None and who == patient):
                therapist = who
                break
        value, explanation = "", ""
        if entry.type == "Observation":
            quantity = res.get("valueQuantity")
            number = None
            if isinstance(quantity, dict) and "value" in quantity:
                number = quantity["value"]
            elif "valueInteger" in res:
                number = res["valueInteger"]
            if number is None:
                absent = (res.get("dataAbsentReason") or {})
                why = absent.get("text") or next((c.get("code") for c in absent.get("coding") or []), None)
                excluded.append((entry.row, _("no value (data absent: {why})").format(why=str(why)[:80]) if why else
                                 _("no numeric value (valueQuantity or valueInteger)")))
                continue
            value = str(number)
        else:
            questionnaires[measure].append((len(candidates), res))
        candidates.append(_Candidate(
            row=entry.row, kind=entry.type, measure=measure, patient=patient, therapist=therapist, value=value,
            explanation=explanation, date=_date_of(res, entry.type), moment=_moment_of(res, entry.type),
            encounter=resolver.encounter(res.get("encounter")), session_number=_session_extension(res)))

    # questionnaires: every answer checked, then scored by the instrument definition
    dropped: set[int] = set()
    for measure, items in questionnaires.items():
        if not items:
            continue
        defn = definitions[measure]
        spec = wanted[measure]
        lo, hi = spec.coding or (defn.item_min, defn.item_max)
        rows, kept = [], []
        ignored: Counter = Counter()
        for position, res in items:
            answers, problem = _answers(res)
            cand = candidates[position]
            values: dict[int, float] = {}
            for link, raw in answers:
                if problem:
                    break
                m = _ITEM_NUMBER.search(link)
                item = int(m.group(1)) if m else None
                if item is None or not 1 <= item <= defn.n_items:
                    ignored[link] += 1
                    continue
                x = _number(raw)
                if x is None:
                    problem = _("item {item}'s answer '{value}' is not a number").format(item=item, value=str(raw)[:40])
                elif not lo - 1e-9 <= x <= hi + 1e-9:
                    problem = _("item {item} = {value} is outside the answers {lo:g}–{hi:g} of {instrument}").format(
                        item=item, value=_fmt(x), lo=lo, hi=hi, instrument=defn.name)
                elif item in values:
                    problem = _("item {item} is answered twice").format(item=item)
                else:
                    values[item] = x
            if problem:
                excluded.append((cand.row, problem))
                dropped.add(position)
                continue
            rows.append([values.get(i, np.nan) for i in range(1, defn.n_items + 1)])
            kept.append(position)
        if ignored:
            n = sum(ignored.values())
            messages.append(ngettext(
                "{n} answer whose linkId is not an item number of {instrument} (1–{k}) was not used (for example "
                "'{example}').",
                "{n} answers whose linkId is not an item number of {instrument} (1–{k}) were not used (for example "
                "'{example}').", n).format(n=n, instrument=defn.name, k=defn.n_items,
                                           example=next(iter(ignored))[:40]))
        if not kept:
            continue
        table = pd.DataFrame(rows, columns=[str(i) for i in range(1, defn.n_items + 1)])
        table["row"] = [candidates[p].row for p in kept]
        try:
            result = score_items(table, defn, item_columns=[str(i) for i in range(1, defn.n_items + 1)],
                                 coding_min=spec.coding[0] if spec.coding else None,
                                 coding_max=spec.coding[1] if spec.coding else None)
        except InputError as err:
            raise InputError(_("{measure}: {problem}").format(measure=role_name(measure).capitalize(), problem=err)) from None
        for position, total, reason in zip(kept, result.total, result.scores["reason"]):
            cand = candidates[position]
            cand.value = "" if pd.isna(total) else repr(float(total))
            cand.explanation = "" if cand.value else str(reason)
        # the total is what a session needs: the subscales and the per-row 'reason' column are the
        # spreadsheet's business (each unusable questionnaire is listed with its reason here)
        quiet = {_("Subscale '{subscale}' is not scored: its items are not sourced; add them to the definition to "
                   "score it.").format(subscale=s) for s in defn.subscales}
        lost = int(result.total.isna().sum())
        quiet.add(ngettext("{n} of {total} total score is missing; the 'reason' column says why.",
                           "{n} of {total} total scores are missing; the 'reason' column says why.",
                           lost).format(n=lost, total=len(result.total)))
        messages.extend(m for m in result.messages if m not in quiet)

    live = [c for i, c in enumerate(candidates) if i not in dropped]
    rule, live, lost = _sessions(live)
    excluded.extend(lost)
    if supporting:
        messages.append(_("Resources read for their references only: {counts}.").format(
            counts=", ".join(f"{n:,} {t}" for t, n in sorted(supporting.items()))))
    validated = _validate(live, excluded, wanted, definitions, source, len(bundle.entries), rule, messages)
    instruments = tuple((m, definitions[m].id) for m in wanted if questionnaires[m])
    return FhirImport(validated=validated, instruments=instruments, session_rule=rule, messages=tuple(messages))


def _sessions(cands: list[_Candidate]) -> tuple[str, list[_Candidate], list[tuple[int, str]]]:
    """Number each resource's session (one rule for the bundle); resources that cannot be placed are lost."""
    if not cands:
        return "", cands, []
    if all(c.session_number is not None for c in cands):
        for c in cands:
            c.session = c.session_number
        return _("Sessions: the session numbers this dashboard wrote into the bundle (its session-number "
                 "extension)."), cands, []
    if all(c.encounter for c in cands):
        first: dict[tuple[str, str], tuple] = {}
        for c in cands:
            key = (c.patient, c.encounter)
            when = (0, c.moment, c.row) if c.moment else (1, "", c.row)
            first[key] = min(first.get(key, when), when)
        order: dict[str, list] = {}
        for (patient, enc), when in first.items():
            order.setdefault(patient, []).append((when, enc))
        number = {}
        for patient, encs in order.items():
            for k, (_when, enc) in enumerate(sorted(encs), start=1):
                number[(patient, enc)] = k
        for c in cands:
            c.session = float(number[(c.patient, c.encounter)])
        undated = sum(1 for when in first.values() if when[0] == 1)
        rule = _("Sessions: each encounter is one session, numbered 1, 2, … per patient in order of the encounter's "
                 "earliest date (effectiveDateTime or authored).")
        if undated:
            rule += " " + ngettext("{n} encounter has no dated resource and is placed after the dated ones, in the "
                                   "bundle's order.",
                                   "{n} encounters have no dated resource and are placed after the dated ones, in "
                                   "the bundle's order.", undated).format(n=undated)
        return rule, cands, []
    lost = [(c.row, _("no date (effectiveDateTime or authored) and no encounter: its session cannot be placed"))
            for c in cands if c.date is None]
    dated = [c for c in cands if c.date is not None]
    days: dict[str, set] = {}
    for c in dated:
        days.setdefault(c.patient, set()).add(c.date)
    rank = {(p, d): k for p, ds in days.items() for k, d in enumerate(sorted(ds), start=1)}
    for c in dated:
        c.session = float(rank[(c.patient, c.date)])
    return _("Sessions: numbered 1, 2, … per patient in order of the resources' dates (effectiveDateTime or "
             "authored); a patient's scores on the same day are one session."), dated, lost


def _validate(cands: list[_Candidate], excluded: list[tuple[int, str]], wanted: dict[str, FhirMeasure],
              definitions: dict, source: str, n_resources: int, rule: str, messages: list[str]) -> ValidatedData:
    """Each measure's rows through :func:`validate_long`, then joined per patient and session."""
    has_therapist = any(c.therapist for c in cands)
    parts, notes, ranges = {}, [], {}
    for measure, spec in wanted.items():
        mine = [c for c in cands if c.measure == measure]
        if spec.range is not None:
            ranges[measure] = tuple(float(x) for x in spec.range)
        elif any(c.kind == "QuestionnaireResponse" for c in mine):
            ranges[measure] = tuple(float(x) for x in definitions[measure].score_range)
        if not mine:
            continue
        frame = pd.DataFrame({
            "patient": [c.patient for c in mine],
            "session": [_fmt(c.session) for c in mine],
            "value": [c.value for c in mine],
            "row": [c.row for c in mine],
        })
        if has_therapist:
            frame["therapist"] = [c.therapist or "" for c in mine]
        frame["date"] = [c.date or "" for c in mine]
        why = pd.Series([c.explanation for c in mine], index=frame.index)
        part = validate_long(frame, ColumnMapping(patient="patient", session="session", therapist="therapist" if
                                                  has_therapist else None, **{measure: "value"}),
                             ranges={measure: ranges[measure]} if measure in ranges else None, source=source,
                             explanations={measure: why}, allow_empty=True)
        parts[measure] = part
        excluded.extend(zip(part.excluded["row"].astype(int), part.excluded["reason"].astype(str)))
        notes.extend(n for n in part.notes if n not in notes)
    data = _join(parts, has_therapist, notes)
    excluded_frame = pd.DataFrame({"row": pd.array([r for r, _t in excluded], dtype="int64"),
                                   "reason": pd.array([t for _r, t in excluded], dtype=object)})
    excluded_frame = excluded_frame.sort_values("row", kind="stable").reset_index(drop=True)
    if data.empty:
        first = excluded_frame.iloc[0] if len(excluded_frame) else None
        raise InputError(ngettext(
            "None of the {n:,} resource of {source} can be used (resource {row}: {reason}). Check which codes or "
            "questionnaires are the alliance and the symptom measure.",
            "None of the {n:,} resources of {source} can be used (for example resource {row}: {reason}). Check which "
            "codes or questionnaires are the alliance and the symptom measure.", n_resources).format(
            n=n_resources, source=source, row=int(first["row"]) if first is not None else 0,
            reason=first["reason"] if first is not None else _("no score")))
    measures = [m for m in MEASURES if m in data.columns]
    cells = pd.DataFrame({m: [""] * len(data) for m in measures})
    all_notes = [rule, *messages, *notes] if rule else [*messages, *notes]
    mapping = ColumnMapping(patient="patient", session="session", therapist="therapist" if has_therapist else None,
                            **{m: m for m in measures})
    return ValidatedData(data=data, excluded=excluded_frame, notes=tuple(t for t in all_notes if t), mapping=mapping,
                         source=source, n_rows_read=n_resources, ranges=ranges, cell_reasons=cells)


def _join(parts: dict[str, ValidatedData], has_therapist: bool, notes: list[str]) -> pd.DataFrame:
    """One row per patient and session from each measure's validated rows."""
    keys = ["patient", "session"]
    frames = []
    for measure, part in parts.items():
        d = part.data
        if d.empty:
            continue
        cols = {"patient": d["patient"].astype(str), "session": pd.to_numeric(d["session"]).astype(float),
                measure: d[measure].astype(float), f"row_{measure}": d["row"].astype(int),
                f"date_{measure}": d["date"].astype(str) if "date" in d else ""}
        if has_therapist:
            cols[f"therapist_{measure}"] = d["therapist"].astype(str)
        frames.append(pd.DataFrame(cols))
    if not frames:
        return pd.DataFrame(columns=["patient", "session", "row"])
    data = frames[0]
    for frame in frames[1:]:
        data = data.merge(frame, on=keys, how="outer")
    measures = [m for m in MEASURES if m in data.columns]
    out = pd.DataFrame({"patient": data["patient"].astype(str)})
    if has_therapist:
        therapist = pd.Series([None] * len(data), index=data.index, dtype=object)
        differ = 0
        for m in reversed(measures):  # the symptom resource's therapist first, then the alliance's
            col = data[f"therapist_{m}"]
            if therapist.notna().any():
                both = therapist.notna() & col.notna() & (therapist != col)
                differ += int(both.sum())
            therapist = therapist.where(therapist.notna(), col)
        out["therapist"] = therapist.astype(str)
        if differ:
            notes.append(ngettext("In {n} session the alliance and the symptom resources name different therapists; "
                                  "the symptom resource's is used.",
                                  "In {n} sessions the alliance and the symptom resources name different therapists; "
                                  "the symptom resource's is used.", differ).format(n=differ))
    out["session"] = data["session"].astype(float)
    for m in measures:
        out[m] = data[m].astype(float)
    rows = np.column_stack([data[f"row_{m}"].to_numpy(dtype=float) for m in measures])
    out["row"] = np.nanmin(rows, axis=1).astype(np.int64)
    dates = None
    for m in measures:
        col = data[f"date_{m}"].where(data[f"date_{m}"].notna(), "").astype(str)
        dates = col if dates is None else dates.where(dates != "", col)
    if dates is not None and (dates != "").any():
        out["date"] = dates.to_numpy(dtype=object)
    out = out.sort_values(keys, kind="stable").reset_index(drop=True)
    if len(out) and (out["session"] % 1 == 0).all():
        out["session"] = out["session"].astype(np.int64)
    lead = ["patient", "therapist", "session", "alliance", "symptoms", "row"]
    return out[[c for c in lead if c in out.columns] + [c for c in out.columns if c not in lead]]


def read_fhir_validated(data: bytes | str | Path, mapping: FhirMapping | None = None,
                        source: str | None = None) -> FhirImport:
    """:func:`read_fhir` then :func:`fhir_to_validated` (the command line's path)."""
    return fhir_to_validated(read_fhir(data, source), mapping)
