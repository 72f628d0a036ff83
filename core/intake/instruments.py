"""Questionnaire definitions and scoring from item columns.

A measure (alliance or symptoms) is either one score column, or item columns scored by an
*instrument definition* kept as a JSON data file in ``core/intake/instrument_definitions/``: the number
of items, the response coding, the reverse-keyed items, the subscales, sum or mean scoring, the
rule for missing items, the clinical cut-off and reliable change, and the sources these facts
come from. A fact that could not be sourced is ``null`` in the file and explained in plain words
in ``unsourced``; the user can edit it (:meth:`InstrumentDefinition.with_changes`) and save the
edited definition (:func:`save_instrument`). Keys are never guessed: a definition whose
reverse-keyed items are unknown (``reverse_keyed: null``) refuses to score until the user marks
them (or confirms there are none), and a subscale whose items are unknown is not scored.

Shipped definitions
-------------------
``oq45``   Outcome Questionnaire-45.2: 45 items coded 0-4, items 1, 12, 13, 20, 21, 24, 31, 37
           and 43 reverse-keyed, sum 0-180, clinical cut-off 63.5 (63/64), reliable change 14
           (Lambert et al., 2004; Lambert, Hansen & Finch, 2001).
``ans``    Alliance Negotiation Scale, client version: 12 items coded 1-7, mean item score
           (Doran, Safran, Waizmann, Bolger & Muran, 2012).
``likert`` Generic Likert template on which the user sets the items and marks reverse-keyed items
           (see also :func:`generic_likert`).

Formulas
--------
- Reverse keying: ``x' = item_min + item_max - x``.
- Recoding another coding to the definition's (e.g. OQ items coded 1-5 instead of 0-4):
  ``x' = to_min + (x - from_min) * (to_max - to_min) / (from_max - from_min)``; for 1-5 to 0-4
  this is ``x - 1``.
- Missing items (``missing_rule = {"method": "prorate", "max_missing_fraction": f}``): with
  ``a`` of the ``k`` items of a scale answered and ``k - a <= f * k``, the prorated sum is
  ``(sum of answered items) * k / a`` (the mean of the answered items times ``k``) and the mean
  item score is ``(sum of answered items) / a``. With more missing items the score is missing and
  the ``reason`` column says why. Values outside the response range or not numbers count as
  missing and are reported.
- Cronbach's alpha (Cronbach, 1951): ``k / (k - 1) * (1 - sum of item variances / variance of
  the total)``, sample variances (ddof = 1), rows with every item answered (listwise).

Nothing here imports streamlit.

References
----------
Cronbach, L. J. (1951). Coefficient alpha and the internal structure of tests. Psychometrika,
16(3), 297-334.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import InputError
from core.i18n import _, ngettext, number

#: Folder of the shipped definitions (one JSON file per instrument).
DEFINITIONS_DIR = Path(__file__).resolve().parent / "instrument_definitions"

MEASURES = ("alliance", "symptoms")
SCORINGS = ("sum", "mean")
HIGHER_IS = ("better", "worse")
MISSING_METHODS = ("prorate",)

#: Name of the total score column in :attr:`ScoreResult.scores`.
TOTAL = "total"
#: Per-row count of missing or invalid items (over all items of the instrument).
N_MISSING = "n_missing_items"
#: Per-row plain-language explanation of missing scores ("" when every score was computed).
REASON = "reason"
_RESERVED = {TOTAL, N_MISSING, REASON}

_FIELDS = (
    "id", "name", "measures", "n_items", "item_min", "item_max", "reverse_keyed", "subscales",
    "scoring", "missing_rule", "score_range", "clinical_cutoff", "reliable_change", "higher_is",
    "column_prefixes", "reference_alpha", "source", "unsourced", "notes", "item_texts", "response_labels",
)
_REQUIRED = ("id", "name", "measures", "n_items", "item_min", "item_max", "scoring")
_EPS = 1e-9


# --------------------------------------------------------------------------------------------
# Definition
# --------------------------------------------------------------------------------------------

def _fmt(x: float) -> str:
    """A number without a useless ``.0`` (63.5 -> '63.5', 4.0 -> '4')."""
    x = float(x)
    return str(int(x)) if x.is_integer() else number(x, "g")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) \
        and math.isfinite(float(x))


def _as_item_number(x: Any, what: str, name: str, n_items: int) -> int:
    if not _is_number(x) or not float(x).is_integer():
        raise InputError(_("{what} of {name} must be whole item numbers, but it contains {value!r}.").format(
            what=what, name=name, value=x))
    i = int(x)
    if not 1 <= i <= n_items:
        raise InputError(_("{what} of {name} contains item {item}, but the items are numbered 1 to {n}.").format(
            what=what, name=name, item=i, n=n_items))
    return i


def _item_list(items: Any, what: str, name: str, n_items: int) -> tuple[int, ...]:
    if isinstance(items, (str, bytes)) or not isinstance(items, (Sequence, set, frozenset,
                                                                 np.ndarray)):
        raise InputError(_("{what} of {name} must be a list of item numbers.").format(what=what, name=name))
    out = [_as_item_number(x, what, name, n_items) for x in items]
    dups = sorted({i for i in out if out.count(i) > 1})
    if dups:
        raise InputError(_("{what} of {name} lists item {items} more than once.").format(
            what=what, name=name, items=", ".join(map(str, dups))))
    return tuple(sorted(out))


@dataclass(frozen=True)
class InstrumentDefinition:
    """One questionnaire: items, coding, keys, subscales, scoring and sources.

    Fields (the JSON file has the same keys):

    - ``id``, ``name``: short identifier and display name.
    - ``measures``: ``"alliance"`` or ``"symptoms"``.
    - ``n_items``: number of items, numbered 1..n_items.
    - ``item_min``, ``item_max``: response coding as shipped (OQ-45.2: 0-4; ANS: 1-7).
    - ``reverse_keyed``: tuple of item numbers scored ``item_min + item_max - x``; ``None`` when
      not sourced (scoring then refuses until the user marks them; ``()`` means none).
    - ``subscales``: ``{name: tuple of item numbers}``; an item tuple of ``None`` means the
      subscale exists but its items are not sourced, so it is not scored.
    - ``scoring``: ``"sum"`` or ``"mean"`` (mean item score = sum / items answered).
    - ``missing_rule``: ``{"method": "prorate", "max_missing_fraction": f}`` (see module doc).
    - ``clinical_cutoff``: scores above it are in the clinical range (OQ-45.2: 63.5, i.e. 64 or
      more); on the scale of ``scoring`` and the coding ``item_min..item_max``; ``None`` if none.
    - ``reliable_change``: smallest reliable change (OQ-45.2: 14), same scale; ``None`` if none.
    - ``higher_is``: ``"better"`` or ``"worse"``.
    - ``column_prefixes``: header prefixes used to find item columns (``oq`` finds ``oq1..oq45``).
    - ``reference_alpha``: published Cronbach's alphas, ``({"value", "sample", "source"}, ...)``.
    - ``source``: full citations; ``unsourced``: plain sentences naming what could not be
      sourced and must be checked by the user; ``notes``: other plain remarks.
    - ``item_texts``: optional ``{language code: [text of item 1, ..., item n]}``, the wording patients
      read in patient mode (*Record a session*); none are shipped (the OQ-45.2 and ANS wordings are
      the publishers'): a clinic with the licence adds them in its own copy of the definition.
    - ``response_labels``: optional ``{language code: [label of item_min, ..., label of item_max]}``
      (whole-number codes only), e.g. ``{"en": ["Never", ..., "Almost always"]}``.

    ``score_range`` is derived (sum: ``n_items*item_min .. n_items*item_max``; mean:
    ``item_min .. item_max``). The definition is validated on construction; invalid input raises
    :class:`~core.errors.InputError`.
    """

    id: str
    name: str
    measures: str
    n_items: int
    item_min: float
    item_max: float
    reverse_keyed: tuple[int, ...] | None = ()
    subscales: dict[str, tuple[int, ...] | None] = field(default_factory=dict)
    scoring: str = "sum"
    missing_rule: dict[str, Any] = field(
        default_factory=lambda: {"max_missing_fraction": 0.1, "method": "prorate"})
    clinical_cutoff: float | None = None
    reliable_change: float | None = None
    higher_is: str = "worse"
    column_prefixes: tuple[str, ...] = ()
    reference_alpha: tuple[dict[str, Any], ...] = ()
    source: tuple[str, ...] = ()
    unsourced: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    item_texts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    response_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(definition_to_json(self))

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if not isinstance(self.id, str) or not self.id.strip():
            raise InputError(_("The instrument definition needs a non-empty 'id'."))
        name = self.name if isinstance(self.name, str) and self.name.strip() else None
        if name is None:
            raise InputError(_("The instrument definition '{id}' needs a non-empty 'name'.").format(id=self.id))
        if self.measures not in MEASURES:
            raise InputError(_("'measures' of {name} must be 'alliance' or 'symptoms', not {value!r}.").format(
                name=name, value=self.measures))
        if not _is_number(self.n_items) or not float(self.n_items).is_integer() \
                or int(self.n_items) < 1:
            raise InputError(_("'n_items' of {name} must be a whole number of at least 1.").format(name=name))
        set_("n_items", int(self.n_items))
        n = self.n_items
        for k in ("item_min", "item_max"):
            if not _is_number(getattr(self, k)):
                raise InputError(_("'{field}' of {name} must be a number.").format(field=k, name=name))
            v = float(getattr(self, k))
            set_(k, int(v) if v.is_integer() else v)
        if self.item_min >= self.item_max:
            raise InputError(_("The response range of {name} must go from a lower to a higher value, not {lo} "
                               "to {hi}.").format(name=name, lo=_fmt(self.item_min), hi=_fmt(self.item_max)))
        if self.reverse_keyed is not None:
            set_("reverse_keyed", _item_list(self.reverse_keyed, _("The reverse-keyed items"),
                                             name, n))
        if not isinstance(self.subscales, Mapping):
            raise InputError(_("'subscales' of {name} must map each subscale name to its items.").format(name=name))
        subs: dict[str, tuple[int, ...] | None] = {}
        for sname, items in self.subscales.items():
            if not isinstance(sname, str) or not sname.strip():
                raise InputError(_("Every subscale of {name} needs a name.").format(name=name))
            if sname in _RESERVED:
                raise InputError(_("A subscale of {name} cannot be called '{subscale}'; rename it.").format(
                    name=name, subscale=sname))
            if items is None:
                subs[sname] = None
                continue
            its = _item_list(items, _("Subscale '{subscale}'").format(subscale=sname), name, n)
            if not its:
                raise InputError(_("Subscale '{subscale}' of {name} has no items; list its item "
                                   "numbers or set it to null if they are not known.").format(subscale=sname, name=name))
            subs[sname] = its
        set_("subscales", subs)
        if self.scoring not in SCORINGS:
            raise InputError(_("'scoring' of {name} must be 'sum' or 'mean', not {value!r}.").format(
                name=name, value=self.scoring))
        rule = self.missing_rule
        if not isinstance(rule, Mapping):
            raise InputError(_("'missing_rule' of {name} must give a method and a max_missing_fraction.").format(
                name=name))
        method = rule.get("method", "prorate")
        frac = rule.get("max_missing_fraction", 0.0)
        unknown = set(rule) - {"method", "max_missing_fraction"}
        if unknown:
            raise InputError(_("'missing_rule' of {name} has unknown setting '{setting}'; use 'method' and "
                               "'max_missing_fraction'.").format(name=name, setting=sorted(unknown)[0]))
        if method not in MISSING_METHODS:
            raise InputError(_("The missing-item method of {name} must be 'prorate', not {value!r}.").format(
                name=name, value=method))
        if not _is_number(frac) or not 0 <= float(frac) < 1:
            raise InputError(_("'max_missing_fraction' of {name} must be a number from 0 "
                               "(no missing item allowed) to below 1.").format(name=name))
        set_("missing_rule", {"max_missing_fraction": float(frac), "method": method})
        lo, hi = self.score_range
        if self.clinical_cutoff is not None:
            if not _is_number(self.clinical_cutoff):
                raise InputError(_("'clinical_cutoff' of {name} must be a number or null.").format(name=name))
            if not lo <= float(self.clinical_cutoff) <= hi:
                raise InputError(_("The clinical cut-off of {name} ({cutoff}) lies outside its score range "
                                   "{lo}-{hi}.").format(name=name, cutoff=_fmt(self.clinical_cutoff),
                                                        lo=_fmt(lo), hi=_fmt(hi)))
            set_("clinical_cutoff", float(self.clinical_cutoff))
        if self.reliable_change is not None:
            if not _is_number(self.reliable_change) or float(self.reliable_change) <= 0:
                raise InputError(_("'reliable_change' of {name} must be a positive number or null.").format(name=name))
            set_("reliable_change", float(self.reliable_change))
        if self.higher_is not in HIGHER_IS:
            raise InputError(_("'higher_is' of {name} must be 'better' or 'worse', not {value!r}.").format(
                name=name, value=self.higher_is))
        for k in ("column_prefixes", "source", "unsourced", "notes"):
            v = getattr(self, k)
            if v is None:
                v = ()
            if isinstance(v, str) or not all(isinstance(s, str) for s in v):
                raise InputError(_("'{field}' of {name} must be a list of texts.").format(field=k, name=name))
            set_(k, tuple(v))
        refs = self.reference_alpha or ()
        if isinstance(refs, Mapping) or not all(isinstance(r, Mapping) and _is_number(r.get("value"))
                                                for r in refs):
            raise InputError(_("'reference_alpha' of {name} must be a list of entries, each with a "
                               "numeric 'value' (and a 'sample' and 'source').").format(name=name))
        set_("reference_alpha", tuple(dict(r) for r in refs))
        n_codes = int(self.item_max - self.item_min) + 1 if float(self.item_min).is_integer() \
            and float(self.item_max).is_integer() else None
        for k, count in (("item_texts", n), ("response_labels", n_codes)):
            texts = getattr(self, k) or {}
            if not isinstance(texts, Mapping) or not all(
                    isinstance(code, str) and code.strip() and not isinstance(v, str) and isinstance(v, Sequence)
                    and all(isinstance(t, str) and t.strip() for t in v) for code, v in texts.items()):
                raise InputError(_("'{field}' of {name} must map each language code to a list of texts.").format(
                    field=k, name=name))
            if texts and count is None:
                raise InputError(_("'response_labels' of {name} need whole-number response codes.").format(name=name))
            wrong = next((code for code, v in texts.items() if len(v) != count), None)
            if wrong is not None:
                raise InputError(_("'{field}' of {name} for '{language}' must have {n} texts, one for each "
                                   "item or response code.").format(field=k, name=name, language=wrong, n=count))
            set_(k, {str(code): tuple(v) for code, v in texts.items()})

    # -- derived ------------------------------------------------------------------------------
    @property
    def score_range(self) -> tuple[float, float]:
        """(lowest, highest) possible score: sum ``n*item_min..n*item_max``, mean ``item_min..item_max``."""
        if self.scoring == "sum":
            return (self.n_items * self.item_min, self.n_items * self.item_max)
        return (self.item_min, self.item_max)

    @property
    def keys_sourced(self) -> bool:
        """True when the reverse-keyed items are known (possibly none)."""
        return self.reverse_keyed is not None

    @property
    def scored_subscales(self) -> dict[str, tuple[int, ...]]:
        """Subscales whose item lists are known (only these are scored)."""
        return {k: v for k, v in self.subscales.items() if v is not None}

    # -- edits --------------------------------------------------------------------------------
    def with_changes(self, **changes: Any) -> "InstrumentDefinition":
        """A copy with some fields changed (validated), e.g. ``d.with_changes(reverse_keyed=[2, 5])``.

        This is :func:`dataclasses.replace`; unknown field names raise InputError. Changing
        ``item_min``/``item_max`` or ``scoring`` this way does *not* convert the cut-off and
        reliable change: use :meth:`with_coding` and :meth:`with_scoring` for that.
        """
        bad = [k for k in changes if k not in _FIELDS or k == "score_range"]
        if bad:
            raise InputError(_("'{field}' is not a field of an instrument definition that can be "
                               "changed.").format(field=bad[0]))
        return dataclasses.replace(self, **changes)

    def with_coding(self, item_min: float, item_max: float) -> "InstrumentDefinition":
        """The same instrument expressed in another item coding, cut-off and reliable change converted.

        Items map linearly ``x' = item_min' + (x - item_min) * s`` with
        ``s = (item_max' - item_min') / (item_max - item_min)``; hence a sum ``S`` maps to
        ``n*item_min' + s*(S - n*item_min)``, a mean ``m`` to ``item_min' + s*(m - item_min)``,
        and a change (reliable change) is multiplied by ``s``. Example: OQ-45.2 coded 1-5 has
        cut-off ``45 + 63.5 = 108.5`` and reliable change 14.
        """
        if not (_is_number(item_min) and _is_number(item_max)) or item_min >= item_max:
            raise InputError(_("The new coding must go from a lower to a higher number."))
        s = (item_max - item_min) / (self.item_max - self.item_min)
        k = self.n_items if self.scoring == "sum" else 1
        cut = None if self.clinical_cutoff is None else \
            k * item_min + s * (self.clinical_cutoff - k * self.item_min)
        rc = None if self.reliable_change is None else self.reliable_change * s
        return dataclasses.replace(self, item_min=item_min, item_max=item_max,
                                   clinical_cutoff=cut, reliable_change=rc)

    def with_scoring(self, scoring: str) -> "InstrumentDefinition":
        """The same instrument scored as ``"sum"`` or ``"mean"``, cut-off and reliable change converted.

        mean item score = sum / n_items, so a sum cut-off ``c`` becomes ``c / n_items``
        (OQ-45.2: 63.5 / 45 = 1.411) and likewise the reliable change (14 / 45 = 0.311).
        """
        if scoring not in SCORINGS:
            raise InputError(_("Scoring must be 'sum' or 'mean', not {value!r}.").format(value=scoring))
        if scoring == self.scoring:
            return self
        f = 1 / self.n_items if scoring == "mean" else self.n_items
        return dataclasses.replace(
            self, scoring=scoring,
            clinical_cutoff=None if self.clinical_cutoff is None else self.clinical_cutoff * f,
            reliable_change=None if self.reliable_change is None else self.reliable_change * f)

    def describe(self) -> str:
        """One paragraph in plain words: items, coding, keys, scoring, cut-offs, what is unsourced."""
        lo, hi = self.score_range
        sentences = {
            ("sum", "worse"): _("{name}: {n} items coded {lo}-{hi}, scored as the sum ({score_lo}-{score_hi}; "
                                "higher is worse)."),
            ("sum", "better"): _("{name}: {n} items coded {lo}-{hi}, scored as the sum ({score_lo}-{score_hi}; "
                                 "higher is better)."),
            ("mean", "worse"): _("{name}: {n} items coded {lo}-{hi}, scored as the mean item score "
                                 "({score_lo}-{score_hi}; higher is worse)."),
            ("mean", "better"): _("{name}: {n} items coded {lo}-{hi}, scored as the mean item score "
                                  "({score_lo}-{score_hi}; higher is better)."),
        }
        parts = [sentences[(self.scoring, self.higher_is)].format(
            name=self.name, n=self.n_items, lo=_fmt(self.item_min), hi=_fmt(self.item_max),
            score_lo=_fmt(lo), score_hi=_fmt(hi))]
        if self.reverse_keyed is None:
            parts.append(_("Reverse-keyed items: not sourced, to be marked by the user."))
        elif self.reverse_keyed:
            parts.append(_("Reverse-keyed items: {items}.").format(items=", ".join(map(str, self.reverse_keyed))))
        else:
            parts.append(_("No reverse-keyed items."))
        if self.subscales:
            parts.append(_("Subscales: {subscales}.").format(subscales="; ".join(
                _("{subscale} (items not sourced)").format(subscale=k) if v is None else
                ngettext("{subscale} ({n} item)", "{subscale} ({n} items)", len(v)).format(subscale=k, n=len(v))
                for k, v in self.subscales.items())))
        f = self.missing_rule["max_missing_fraction"]
        parts.append(_("Up to {percent}% missing items are prorated.").format(percent=_fmt(round(100 * f, 6)))
                     if f > 0 else _("No missing item is allowed."))
        if self.clinical_cutoff is not None:
            parts.append(_("Clinical cut-off {value}.").format(value=_fmt(round(self.clinical_cutoff, 4))))
        if self.reliable_change is not None:
            parts.append(_("Reliable change {value}.").format(value=_fmt(round(self.reliable_change, 4))))
        return " ".join(parts)


def definition_from_dict(d: Mapping[str, Any]) -> InstrumentDefinition:
    """Build and validate a definition from a dict as stored in JSON (see the field list above).

    ``score_range``, if present, must agree with the derived range (it is informative only).
    Unknown keys raise InputError, so a misspelt key in a hand-edited file is not ignored.
    """
    if not isinstance(d, Mapping):
        raise InputError(_("An instrument definition must be a JSON object with named fields."))
    unknown = [k for k in d if k not in _FIELDS]
    if unknown:
        raise InputError(_("The instrument definition has an unknown field '{field}'; the fields are: {fields}.").format(
            field=unknown[0], fields=", ".join(_FIELDS)))
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise InputError(_("The instrument definition lacks the field '{field}'.").format(field=missing[0]))
    kw = {k: v for k, v in d.items() if k != "score_range"}
    defn = InstrumentDefinition(**kw)
    sr = d.get("score_range")
    if sr is not None:
        ok = isinstance(sr, Sequence) and not isinstance(sr, str) and len(sr) == 2 \
            and all(_is_number(x) for x in sr)
        if not ok or any(abs(float(a) - float(b)) > _EPS for a, b in zip(sr, defn.score_range)):
            lo, hi = defn.score_range
            raise InputError(_("The score range of {name} should be {lo}-{hi} for {n} items coded "
                               "{item_min}-{item_max} and {scoring} scoring; correct or remove 'score_range'.").format(
                name=defn.name, lo=_fmt(lo), hi=_fmt(hi), n=defn.n_items, item_min=_fmt(defn.item_min),
                item_max=_fmt(defn.item_max), scoring=defn.scoring))
    return defn


def definition_to_dict(defn: InstrumentDefinition) -> dict[str, Any]:
    """Plain JSON-ready dict (lists, not tuples), including the derived ``score_range``."""
    return {
        "id": defn.id,
        "name": defn.name,
        "measures": defn.measures,
        "n_items": defn.n_items,
        "item_min": defn.item_min,
        "item_max": defn.item_max,
        "reverse_keyed": None if defn.reverse_keyed is None else list(defn.reverse_keyed),
        "subscales": {k: None if v is None else list(v) for k, v in defn.subscales.items()},
        "scoring": defn.scoring,
        "missing_rule": dict(defn.missing_rule),
        "score_range": list(defn.score_range),
        "clinical_cutoff": defn.clinical_cutoff,
        "reliable_change": defn.reliable_change,
        "higher_is": defn.higher_is,
        "column_prefixes": list(defn.column_prefixes),
        "reference_alpha": [dict(r) for r in defn.reference_alpha],
        "source": list(defn.source),
        "unsourced": list(defn.unsourced),
        "notes": list(defn.notes),
        "item_texts": {k: list(v) for k, v in defn.item_texts.items()},
        "response_labels": {k: list(v) for k, v in defn.response_labels.items()},
    }


def definition_to_json(defn: InstrumentDefinition) -> str:
    """The definition as indented JSON text (for saving or downloading)."""
    return json.dumps(definition_to_dict(defn), indent=2, ensure_ascii=False) + "\n"


def definition_from_json(text: str | bytes, where: str | None = None) -> InstrumentDefinition:
    """Parse JSON text (e.g. an uploaded, user-edited definition) and validate it."""
    where = _("The instrument definition") if where is None else where
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        line = _(" (line {line})").format(line=e.lineno) if isinstance(e, json.JSONDecodeError) else ""
        raise InputError(_("{what} is not valid JSON{line}; check its brackets, commas and quotes.").format(
            what=where, line=line)) from None
    return definition_from_dict(d)


def save_instrument(defn: InstrumentDefinition, path: str | Path) -> Path:
    """Write the definition as JSON to ``path`` and return the path."""
    p = Path(path)
    p.write_text(definition_to_json(defn), encoding="utf-8")
    return p


def load_instrument(id_or_path: str | Path) -> InstrumentDefinition:
    """Load a definition by id (``"oq45"``, ``"ans"``, ``"likert"``) or from a JSON file path."""
    s = str(id_or_path)
    p = Path(s)
    if p.suffix.lower() == ".json" or p.is_file():
        if not p.is_file():
            raise InputError(_("There is no instrument definition file at {path}.").format(path=s))
        return definition_from_json(p.read_bytes(), where=_("The file {name}").format(name=p.name))
    key = s.strip().lower()
    f = DEFINITIONS_DIR / f"{key}.json"
    if f.is_file():
        return definition_from_json(f.read_bytes(), where=_("The file {name}").format(name=f.name))
    for d in available_instruments():
        if d.id.lower() == key:
            return d
    ids = ", ".join(d.id for d in available_instruments())
    raise InputError(_("There is no instrument called '{name}'; choose one of: {ids}.").format(name=s, ids=ids))


def available_instruments() -> list[InstrumentDefinition]:
    """All shipped definitions, sorted by id."""
    defs = [definition_from_json(f.read_bytes(), where=_("The file {name}").format(name=f.name))
            for f in sorted(DEFINITIONS_DIR.glob("*.json"))]
    return sorted(defs, key=lambda d: d.id)


def generic_likert(n_items: int, item_min: float, item_max: float,
                   reverse_keyed: Sequence[int] = (), scoring: str = "mean",
                   measures: str = "alliance", *, name: str | None = None,
                   higher_is: str | None = None,
                   max_missing_fraction: float = 0.1) -> InstrumentDefinition:
    """A Likert definition built on the fly: the user gives the items, coding and reverse keys.

    ``higher_is`` defaults to ``"better"`` for alliance and ``"worse"`` for symptoms.
    Reverse-keyed items are scored ``item_min + item_max - x``.
    """
    return InstrumentDefinition(
        id="likert",
        name=name or _("Likert scale ({n} items, {lo}-{hi})").format(n=n_items, lo=_fmt(item_min), hi=_fmt(item_max)),
        measures=measures,
        n_items=n_items,
        item_min=item_min,
        item_max=item_max,
        reverse_keyed=tuple(reverse_keyed),
        subscales={},
        scoring=scoring,
        missing_rule={"max_missing_fraction": max_missing_fraction, "method": "prorate"},
        higher_is=higher_is or ("better" if measures == "alliance" else "worse"),
        column_prefixes=("item", "q", "p", "i"),
        unsourced=(_("A generic Likert definition: the reverse-keyed items and scoring are what the "
                     "user set, not a published key."),),
    )


# --------------------------------------------------------------------------------------------
# Item columns
# --------------------------------------------------------------------------------------------

def _norm(s: str) -> str:
    s = unicodedata.normalize("NFKD", str(s)).encode("ascii", "ignore").decode().lower().strip()
    return re.sub(r"[\s_.\-/]+", "_", s).strip("_")


def item_column_map(columns: Sequence[str], prefix_candidates: Sequence[str] = ("item", "q", "i", "p"),
                    n_items: int | None = None) -> dict[int, str]:
    """Find item columns in a header list: ``{item number: column}``, ordered by item number.

    A column matches a prefix when it is the prefix (separators such as ``_ . - space`` and
    case and accents ignored), optionally followed by ``item``/``it``/``q``/``p``/``i``/``n``,
    then the item number with optional leading zeros and nothing after it: with prefix ``oq``
    this finds ``oq1``, ``OQ_01``, ``oq-item-3``; with ``ans`` it finds ``ans_1``, ``ANS 12``.
    The candidate prefix matching the most columns wins (ties: the earlier candidate). If two
    columns give the same item number, the first is kept. With ``n_items``, numbers above it are
    dropped. Use :func:`guess_item_columns` for the plain ordered list.
    """
    best: dict[int, str] = {}
    for prefix in prefix_candidates:
        p = _norm(prefix).replace("_", "")
        if not p:
            continue
        pat = re.compile("^" + "_?".join(map(re.escape, p))
                         + r"_?(?:item|it|q|p|i|n)?_?0*([1-9][0-9]{0,2})$")
        found: dict[int, str] = {}
        for col in columns:
            m = pat.match(_norm(col))
            if m:
                i = int(m.group(1))
                if (n_items is None or i <= n_items) and i not in found:
                    found[i] = col
        if len(found) > len(best):
            best = found
    return dict(sorted(best.items()))


def guess_item_columns(columns: Sequence[str], prefix_candidates: Sequence[str] = ("item", "q", "i", "p"),
                       n_items: int | None = None) -> list[str]:
    """Item columns found in ``columns`` (see :func:`item_column_map`), ordered by item number.

    Example: ``guess_item_columns(["id", "OQ_02", "OQ_01"], ["oq"]) == ["OQ_01", "OQ_02"]``.
    Gaps are possible: compare the length with ``n_items`` or use :func:`item_column_map`.
    """
    return list(item_column_map(columns, prefix_candidates, n_items).values())


# --------------------------------------------------------------------------------------------
# Recoding, scoring, alpha
# --------------------------------------------------------------------------------------------

def _to_numeric(s: pd.Series, decimal: str = ".") -> pd.Series:
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.astype(float)
    t = s.astype("string").str.strip()
    if decimal == ",":
        t = t.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    return pd.to_numeric(t.replace("", pd.NA), errors="coerce").astype(float)


def recode_items(items_df: pd.DataFrame, from_min: float, from_max: float,
                 to_min: float, to_max: float) -> pd.DataFrame:
    """Linearly recode item columns from one coding to another.

    ``x' = to_min + (x - from_min) * (to_max - to_min) / (from_max - from_min)``; e.g. OQ-45.2
    items coded 1-5 -> 0-4 is ``x - 1``. Blank cells stay missing; a value outside
    ``from_min..from_max`` (or not a number) raises InputError, since it means the stated
    coding is wrong.
    """
    if not all(_is_number(x) for x in (from_min, from_max, to_min, to_max)) \
            or from_min >= from_max or to_min >= to_max:
        raise InputError(_("A coding must go from a lower to a higher number."))
    out = {}
    for col in items_df.columns:
        raw = items_df[col]
        x = _to_numeric(raw)
        bad = (x.isna() & raw.notna() & (raw.astype("string").str.strip() != "")) \
            | (x < from_min - _EPS) | (x > from_max + _EPS)
        if bad.any():
            v = raw[bad].iloc[0]
            raise InputError(_("Column '{column}' has the value {value!r}, outside the stated coding {lo}-{hi}; "
                               "check the coding of the items.").format(column=col, value=v, lo=_fmt(from_min),
                                                                         hi=_fmt(from_max)))
        out[col] = to_min + (x - from_min) * (to_max - to_min) / (from_max - from_min)
    return pd.DataFrame(out, index=items_df.index)


def cronbach_alpha(items_df: pd.DataFrame) -> float:
    """Cronbach's alpha (Cronbach, 1951) of the item columns, rows with every item answered.

    ``alpha = k / (k - 1) * (1 - sum_i var(item_i) / var(total))`` with sample variances
    (ddof = 1) over the complete rows (listwise deletion, as ``psych::alpha(use =
    "complete.obs")`` and ``pingouin.cronbach_alpha(nan_policy="listwise")``). Non-numeric cells
    count as missing. Items must already be keyed (reverse-keyed items reversed). Returns NaN
    when fewer than two complete rows remain or the total has no variance. Fewer than two item
    columns raise InputError.
    """
    k = items_df.shape[1]
    if k < 2:
        raise InputError(_("Cronbach's alpha needs at least two item columns."))
    x = pd.DataFrame({c: _to_numeric(items_df[c]) for c in items_df.columns}).dropna()
    if len(x) < 2:
        return float("nan")
    a = x.to_numpy(float)
    var_total = a.sum(axis=1).var(ddof=1)
    if var_total <= 0:
        return float("nan")
    return float(k / (k - 1) * (1 - a.var(axis=0, ddof=1).sum() / var_total))


@dataclass
class ScoreResult:
    """Scores computed from item columns, with everything needed to explain them.

    - ``scores``: DataFrame with the index of the item data and columns ``total``, one column per
      scored subscale, ``n_missing_items`` (missing or invalid items of the instrument, per row)
      and ``reason`` (why a score is missing, e.g. ``"2 of 12 items missing (more than 10%)"``;
      ``""`` when every score of the row was computed).
    - ``definition``: the definition as applied (after a ``scoring`` override); its
      ``clinical_cutoff`` / ``reliable_change`` are on the scale of ``scores``.
    - ``scoring``: ``"sum"`` or ``"mean"``; ``coding``: item coding of the scores (the
      definition's); ``input_coding``: coding of the data as given; ``recoded``: whether the
      items were recoded from ``input_coding`` to ``coding``.
    - ``alpha``: Cronbach's alpha of the keyed items per scale (``"total"`` and each scored
      subscale) in this sample; ``n_alpha``: complete rows it used.
    - ``n_prorated``: rows whose total was prorated from fewer items.
    - ``invalid_counts``: per item column, how many cells were not numbers or out of range.
    - ``messages``: plain sentences on what was done or could not be done.
    """

    scores: pd.DataFrame
    definition: InstrumentDefinition
    scoring: str
    coding: tuple[float, float]
    input_coding: tuple[float, float]
    recoded: bool
    alpha: dict[str, float]
    n_alpha: dict[str, int]
    n_prorated: int
    invalid_counts: dict[str, int]
    messages: list[str]

    @property
    def total(self) -> pd.Series:
        """The total score column."""
        return self.scores[TOTAL]

    @property
    def clinical_cutoff(self) -> float | None:
        return self.definition.clinical_cutoff

    @property
    def reliable_change(self) -> float | None:
        return self.definition.reliable_change


def _resolve_columns(items_df: pd.DataFrame, defn: InstrumentDefinition,
                     item_columns: Mapping[int, str] | Sequence[str] | None) -> list[str]:
    n = defn.n_items
    if item_columns is None:
        cols = list(items_df.columns)
        if len(cols) != n:
            raise InputError(_("{name} has {n} items but the item table has {k} columns; choose the item columns.").format(
                name=defn.name, n=n, k=len(cols)))
    elif isinstance(item_columns, Mapping):
        keys = set()
        for k in item_columns:
            if not _is_number(k) or not float(k).is_integer():
                raise InputError(_("Item numbers must be whole numbers, not {value!r}.").format(value=k))
            keys.add(int(k))
        extra = sorted(k for k in keys if not 1 <= k <= n)
        if extra:
            raise InputError(_("{name} has items 1 to {n}, so there is no item {item}.").format(
                name=defn.name, n=n, item=extra[0]))
        missing = [i for i in range(1, n + 1) if i not in keys]
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise InputError(ngettext("No column is chosen for item {items} of {name}; choose a column for every item.",
                                      "No column is chosen for items {items} of {name}; choose a column for every item.",
                                      len(missing)).format(items=shown, name=defn.name))
        cols = [item_columns[k] for k in sorted(item_columns, key=int)]
    else:
        if isinstance(item_columns, str):
            raise InputError(_("Give the item columns as a list of column names."))
        cols = list(item_columns)
        if len(cols) != n:
            raise InputError(_("{name} has {n} items but {k} item columns were chosen; choose one column per item.").format(
                name=defn.name, n=n, k=len(cols)))
    absent = [c for c in cols if c not in items_df.columns]
    if absent:
        raise InputError(_("The item column '{column}' is not in the data.").format(column=absent[0]))
    dups = sorted({c for c in cols if cols.count(c) > 1}, key=cols.index)
    if dups:
        raise InputError(_("The column '{column}' is chosen for more than one item; choose one "
                           "column per item.").format(column=dups[0]))
    return cols


def _pct(f: float) -> str:
    return f"{_fmt(round(100 * f, 6))}%"


def score_items(items_df: pd.DataFrame, definition: InstrumentDefinition,
                item_columns: Mapping[int, str] | Sequence[str] | None = None,
                coding_min: float | None = None, coding_max: float | None = None,
                scoring: str | None = None, decimal: str = ".") -> ScoreResult:
    """Score item columns with an instrument definition.

    Parameters
    ----------
    items_df
        One row per questionnaire (e.g. per patient and session). Without ``item_columns`` its
        columns are items 1..n in order; otherwise other columns are ignored.
    definition
        The instrument. If its reverse-keyed items are not sourced (``None``) scoring is refused
        with InputError: mark them first (``definition.with_changes(reverse_keyed=[...])``).
    item_columns
        ``{item number: column}`` or a list of columns ordered as items 1..n.
    coding_min, coding_max
        Coding of the data when it differs from the definition's (e.g. OQ-45.2 items coded 1-5):
        items are recoded linearly to the definition's coding first (see :func:`recode_items`),
        so the cut-off and reliable change keep their meaning.
    scoring
        ``"sum"`` or ``"mean"`` to override the definition's scoring; the cut-off and reliable
        change are converted (see :meth:`InstrumentDefinition.with_scoring`).
    decimal
        Decimal separator of text cells (``","`` for files with decimal commas).

    Steps: values that are not numbers or lie outside the coding count as missing and are
    reported; items are recoded if needed; reverse-keyed items become ``item_min + item_max - x``;
    each scale (total and every subscale with known items) is scored by the missing rule
    (module docstring): prorated sum ``= sum * k / answered`` or mean ``= sum / answered``, missing
    with a reason when more than ``max_missing_fraction`` of its ``k`` items are missing.
    """
    defn = definition if scoring is None else definition.with_scoring(scoring)
    if defn.reverse_keyed is None:
        raise InputError(_("The reverse-keyed items of {name} are not sourced; mark which "
                           "items are reverse-keyed (or confirm that none need reversing) before "
                           "scoring.").format(name=defn.name))
    if not isinstance(items_df, pd.DataFrame):
        raise InputError(_("The items must be given as a table with one column per item."))
    if (coding_min is None) != (coding_max is None):
        raise InputError(_("Give both the lowest and the highest code of the items, or neither."))
    if coding_min is None:
        in_min, in_max = defn.item_min, defn.item_max
    else:
        if not (_is_number(coding_min) and _is_number(coding_max)) or coding_min >= coding_max:
            raise InputError(_("The item coding must go from a lower to a higher number."))
        in_min, in_max = float(coding_min), float(coding_max)
    recoded = abs(in_min - defn.item_min) > _EPS or abs(in_max - defn.item_max) > _EPS
    cols = _resolve_columns(items_df, defn, item_columns)
    n = defn.n_items
    messages: list[str] = []
    row_label = items_df["row"] if "row" in items_df.columns else pd.Series(
        items_df.index, index=items_df.index)

    # 1. numbers within the input coding; everything else is missing and reported
    data: dict[int, np.ndarray] = {}
    invalid_counts: dict[str, int] = {}
    obs_min, obs_max = math.inf, -math.inf
    labels = row_label.to_numpy()
    for i, col in enumerate(cols, start=1):
        raw = items_df[col]
        num = _to_numeric(raw, decimal)
        text = raw.astype("string").str.strip()
        blank = (raw.isna() | (text == "").fillna(True)).to_numpy(bool)
        v = num.to_numpy(float)
        not_num = np.isnan(v) & ~blank
        with np.errstate(invalid="ignore"):
            out = ~np.isnan(v) & ((v < in_min - _EPS) | (v > in_max + _EPS))
        if not np.isnan(v).all():
            obs_min = min(obs_min, float(np.nanmin(v)))
            obs_max = max(obs_max, float(np.nanmax(v)))
        bad = not_num | out
        n_bad = int(bad.sum())
        if n_bad:
            invalid_counts[col] = n_bad
            pos = np.flatnonzero(bad)[:3]
            vals = raw.to_numpy()[pos]
            ex = "; ".join(_("row {row}: {value!r}").format(row=labels[j], value=val) for j, val in zip(pos, vals))
            messages.append(ngettext(
                "Column '{column}' (item {item}) has {n} value that is not a number from {lo} to {hi} ({examples}); "
                "treated as missing.",
                "Column '{column}' (item {item}) has {n} values that are not a number from {lo} to {hi} ({examples}); "
                "treated as missing.", n_bad).format(column=col, item=i, n=n_bad, lo=_fmt(in_min), hi=_fmt(in_max),
                                                     examples=ex))
        data[i] = np.where(bad, np.nan, v)
    x = pd.DataFrame(data, index=items_df.index, columns=list(range(1, n + 1)), dtype=float)
    width = in_max - in_min
    coding_hint = None
    if invalid_counts and math.isfinite(obs_min):
        shift = obs_max - in_max
        if shift > 0 and obs_min >= in_min + shift - _EPS:
            coding_hint = _("The items run from {low} to {high}, not {lo}-{hi}: if your study coded the items "
                            "{new_lo}-{new_hi}, give that coding so they are recoded.").format(
                low=_fmt(obs_min), high=_fmt(obs_max), lo=_fmt(in_min), hi=_fmt(in_max),
                new_lo=_fmt(in_min + shift), new_hi=_fmt(in_max + shift))
            messages.append(coding_hint)

    # 2. recode to the definition's coding
    if recoded:
        x = recode_items(x, in_min, in_max, defn.item_min, defn.item_max)
        messages.append(_("Items recoded from {lo}-{hi} to {new_lo}-{new_hi} (x' = {new_lo} + (x - {lo}) * {factor}).").format(
            lo=_fmt(in_min), hi=_fmt(in_max), new_lo=_fmt(defn.item_min), new_hi=_fmt(defn.item_max),
            factor=_fmt((defn.item_max - defn.item_min) / width)))

    # 3. reverse keying
    for i in defn.reverse_keyed:
        x[i] = defn.item_min + defn.item_max - x[i]

    # 4. scales
    frac = defn.missing_rule["max_missing_fraction"]
    scales = {TOTAL: tuple(range(1, n + 1)), **defn.scored_subscales}
    scores = pd.DataFrame(index=items_df.index)
    reasons = pd.Series("", index=items_df.index, dtype=object)
    alpha: dict[str, float] = {}
    n_alpha: dict[str, int] = {}
    n_prorated = 0
    too_many = (_("{missing} of {k} items missing (more than {percent})") if frac > 0
                else _("{missing} of {k} items missing (none allowed)"))
    for sname, items in scales.items():
        sub = x[list(items)]
        k = len(items)
        answered = sub.notna().sum(axis=1)
        n_miss = k - answered
        ok = (answered > 0) & (n_miss <= frac * k + _EPS)
        total = sub.sum(axis=1, min_count=1)
        val = total * k / answered if defn.scoring == "sum" else total / answered
        scores[sname] = val.where(ok).astype(float)
        if sname == TOTAL:
            scores[N_MISSING] = n_miss.astype(int)
            n_prorated = int((ok & (n_miss > 0)).sum())
        label = "" if sname == TOTAL else f"{sname}: "
        before, _mark, after = too_many.format(missing="\x00", k=k, percent=_pct(frac)).partition("\x00")
        why = before + n_miss.astype(str) + after
        why = why.where(answered > 0, _("all {k} items missing").format(k=k))
        reasons = reasons.where(ok, reasons.where(reasons == "", reasons + "; ") + label + why)
        complete = sub.dropna()
        n_alpha[sname] = int(len(complete))
        alpha[sname] = cronbach_alpha(sub) if k >= 2 else float("nan")
    scores[REASON] = reasons.astype(str)
    cols_order = [TOTAL, *defn.scored_subscales, N_MISSING, REASON]
    scores = scores[cols_order]

    for sname, items in defn.subscales.items():
        if items is None:
            messages.append(_("Subscale '{subscale}' is not scored: its items are not sourced; add "
                              "them to the definition to score it.").format(subscale=sname))
    if n_prorated:
        messages.append(ngettext("{n} total score was prorated from the answered items (up to {percent} missing allowed).",
                                 "{n} total scores were prorated from the answered items (up to {percent} missing allowed).",
                                 n_prorated).format(n=n_prorated, percent=_pct(frac)))
    n_lost = int(scores[TOTAL].isna().sum())
    if n_lost:
        messages.append(ngettext("{n} of {total} total score is missing; the 'reason' column says why.",
                                 "{n} of {total} total scores are missing; the 'reason' column says why.",
                                 n_lost).format(n=n_lost, total=len(scores)))
        if n_lost == len(scores) and invalid_counts:
            first = coding_hint or messages[0]
            raise InputError(_("No questionnaire could be scored. {why}").format(why=first))
    return ScoreResult(scores=scores, definition=defn, scoring=defn.scoring,
                       coding=(defn.item_min, defn.item_max), input_coding=(in_min, in_max),
                       recoded=recoded, alpha=alpha, n_alpha=n_alpha, n_prorated=n_prorated,
                       invalid_counts=invalid_counts, messages=messages)


def keyed_items(items_df: pd.DataFrame, definition: InstrumentDefinition,
                item_columns: Mapping[int, str] | Sequence[str] | None = None,
                coding_min: float | None = None, coding_max: float | None = None) -> pd.DataFrame:
    """Items as scored: invalid values missing, recoded to the definition's coding, reverse-keyed.

    Columns are item numbers 1..n. Useful for item-level displays and for
    :func:`cronbach_alpha` on a custom set of items.
    """
    defn = definition
    if defn.reverse_keyed is None:
        raise InputError(_("The reverse-keyed items of {name} are not sourced; mark them "
                           "before keying the items.").format(name=defn.name))
    cols = _resolve_columns(items_df, defn, item_columns)
    in_min = defn.item_min if coding_min is None else coding_min
    in_max = defn.item_max if coding_max is None else coding_max
    x = pd.DataFrame({i: _to_numeric(items_df[c]) for i, c in enumerate(cols, start=1)},
                     index=items_df.index)
    x = x.where((x >= in_min - _EPS) & (x <= in_max + _EPS))
    if (in_min, in_max) != (defn.item_min, defn.item_max):
        x = recode_items(x, in_min, in_max, defn.item_min, defn.item_max)
    for i in defn.reverse_keyed:
        x[i] = defn.item_min + defn.item_max - x[i]
    return x


@dataclass(frozen=True)
class ItemScoring:
    """How one measure of an upload is scored from its item columns (kept with a saved mapping)."""

    measure: str
    instrument: str  # id of the definition, e.g. "oq45"
    item_columns: tuple[str, ...]
    coding_min: float | None = None
    coding_max: float | None = None
    scoring: str | None = None
    reverse_keyed: tuple[int, ...] | None = None  # the user's marking, when the definition has none

    @property
    def column(self) -> str:
        """Name of the score column added to the table."""
        return f"{self.measure} score ({self.instrument})"


def add_item_scores(frame: pd.DataFrame, spec: ItemScoring, definition: InstrumentDefinition,
                    decimal: str = ".") -> tuple[pd.DataFrame, ScoreResult]:
    """Score the items of ``spec`` and add the total as a text column ``spec.column``.

    The new column holds the score as text (so that validation reads it like any score column)
    or an empty cell where the score is missing; ``ScoreResult.scores["reason"]`` says why, and
    :func:`core.intake.validation.validate_long` takes those reasons (``explanations``) so that each row
    left out names the items that were missing.
    """
    if spec.reverse_keyed is not None:
        definition = definition.with_changes(reverse_keyed=list(spec.reverse_keyed))
    result = score_items(frame, definition, item_columns=list(spec.item_columns),
                         coding_min=spec.coding_min, coding_max=spec.coding_max,
                         scoring=spec.scoring, decimal=decimal)
    out = frame.copy()
    total = result.total
    out[spec.column] = total.map(lambda v: "" if pd.isna(v) else repr(float(v)))
    return out, result
