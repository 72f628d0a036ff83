"""Column mapping: which column of a spreadsheet holds the patient, therapist, session and measures.

The mapping is proposed from header names (English and Spanish, accents and case ignored),
corrected by the user, and can be saved as JSON so that next month's spreadsheet of the same
shape maps in one click. Wide files (one row per patient, one column per measure and session,
such as ``ans_s1 … oq_s4`` or ``bdi.pre, bdi.2m``) are recognised and described by
:class:`WideLayout` for :func:`core.intake.reshape.wide_to_long`.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field

from core.errors import InputError, some_names
from core.i18n import N_, _

#: The roles a column can play. ``patient`` and ``session`` are required, and at least one measure.
#: ``post``: a post-treatment symptom score, one value per patient (repeated in the patient's rows,
#: or in one of them), for the early alliance → outcome analysis (:mod:`core.stats.alliance_outcome`).
ROLES = ("patient", "therapist", "session", "alliance", "symptoms", "post")
MEASURES = ("alliance", "symptoms")
#: The roles' names in sentences (translated where shown: :func:`role_name`).
ROLE_NAMES = {"patient": N_("patient"), "therapist": N_("therapist"), "session": N_("session"),
              "alliance": N_("alliance"), "symptoms": N_("symptoms"), "study": N_("study"),
              "post": N_("post-treatment score")}


def role_name(role: str) -> str:
    """A role's (or measure's) name in the current language; any other name as it is.

    >>> role_name("symptoms"), role_name("oq_total")
    ('symptoms', 'oq_total')
    """
    return _(ROLE_NAMES[role]) if role in ROLE_NAMES else role

# Normalised header names (lower case, no accents, no separators) proposed for each role,
# most specific first. Spanish as used in Latin-American clinics (Manubens et al., 2023).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "patient": ("patient", "patientid", "idpatient", "paciente", "idpaciente", "pacienteid",
                "client", "clientid", "cliente", "idcliente", "consultante", "participant",
                "participante", "subject", "sujeto", "case", "caso", "pid", "id", "codigo",
                "code", "person", "persona"),
    "therapist": ("therapist", "therapistid", "terapeuta", "idterapeuta", "terapeutaid",
                  "clinician", "clinico", "counselor", "counsellor", "psicologo", "psicologa",
                  "profesional", "tid"),
    "session": ("session", "sessionnumber", "sessionno", "sesion", "nsesion", "nrosesion",
                "numerosesion", "sesionnro", "sesionn", "sesionno", "nosesion", "sessionid",
                "visit", "visita", "occasion",
                "ocasion", "wave", "ola", "timepoint", "week", "semana", "day", "days", "dia",
                "dias", "sess", "ses"),
    "alliance": ("alliance", "alianza", "ans", "anstotal", "ansmean", "anspromedio", "anstot",
                 "wai", "waitotal", "wais", "waisr", "srs", "hat", "calpas", "alianzaterapeutica",
                 "therapeuticalliance", "workingalliance"),
    "symptoms": ("symptoms", "symptom", "sintomas", "sintoma", "sintomatologia", "oq", "oq45",
                 "oqtotal", "oq45total", "oqtot", "oqmean", "oqpromedio", "oq452", "distress",
                 "malestar", "bdi", "bdiii", "phq9", "phq", "gad7", "core", "coreom", "core10",
                 "sclr90", "scl90", "outcome", "resultado", "ors"),
}
#: Words that mark a post-treatment score (``oq_post``, ``bdi.post``, ``post_tratamiento``, ``oq_final``).
POST_WORDS = ("post", "posttreatment", "postratamiento", "posttratamiento", "posttest", "postest", "final",
              "end", "egreso", "alta")
#: The post-treatment role is proposed only for a header that is exactly one of these: a post word
#: alone or after (or before) a symptom measure's name, so that ``ans_post`` (an alliance score) or
#: ``postcode`` is not taken for it.
SYNONYMS["post"] = tuple(dict.fromkeys(
    ("post", "posttreatment", "postratamiento", "posttratamiento", "postscore", "puntajepost", "posttest", "postest")
    + tuple(f"{m}{w}" for m in SYNONYMS["symptoms"] for w in POST_WORDS)
    + tuple(f"{w}{m}" for m in SYNONYMS["symptoms"] for w in POST_WORDS)))


def normalise_header(name: str) -> str:
    """Lower case, accents removed, only letters and digits: ``'Sesión Nº'`` → ``'sesionno'``."""
    text = unicodedata.normalize("NFKD", str(name))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return re.sub(r"[^a-z0-9]", "", text.lower())


@dataclass(frozen=True)
class ColumnMapping:
    """Which file column plays which role (``None``: not in the file)."""

    patient: str | None = None
    session: str | None = None
    therapist: str | None = None
    alliance: str | None = None
    symptoms: str | None = None
    post: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {role: getattr(self, role) for role in ROLES}

    def used(self) -> dict[str, str]:
        """Roles that are mapped, role → column."""
        return {r: c for r, c in self.as_dict().items() if c}

    def check(self, columns: list[str]) -> None:
        """Raise :class:`InputError` when a required role is unmapped or a column is missing."""
        missing = [r for r in ("patient", "session") if not getattr(self, r)]
        if missing:
            text = (_("Choose the column that holds the patient and the session (the file's columns are: {columns}).")
                    if len(missing) == 2 else
                    _("Choose the column that holds the patient (the file's columns are: {columns}).")
                    if missing[0] == "patient" else
                    _("Choose the column that holds the session (the file's columns are: {columns})."))
            raise InputError(text.format(columns=some_names(columns)))
        if not (self.alliance or self.symptoms):
            raise InputError(_("Choose at least one measure column: alliance or symptoms."))
        for role, col in self.used().items():
            if col not in columns:
                raise InputError(_("The file has no column '{column}' for the {role}; its columns are: {columns}.")
                                 .format(column=col, role=role_name(role), columns=some_names(columns)))
        cols = list(self.used().values())
        dup = {c for c in cols if cols.count(c) > 1}
        if dup:
            raise InputError(_("Column '{column}' is chosen for two roles; each role needs its own column.").format(
                column=sorted(dup)[0]))


def _match(header: str, role: str) -> tuple[int, int]:
    """``(score, rank)``: score 3 exact, 2 starts with, 1 contains, 0 no; rank = position in
    :data:`SYNONYMS` of the synonym giving that score (lower is more specific)."""
    best, best_rank = 0, len(SYNONYMS[role])
    for rank, syn in enumerate(SYNONYMS[role]):
        if header == syn:
            return 3, rank
        if len(syn) >= 3 and header.startswith(syn):
            score = 2
        elif len(syn) >= 4 and syn in header:
            score = 1
        else:
            continue
        if score > best:
            best, best_rank = score, rank
    return best, best_rank


_POST_RANK = {syn: rank for rank, syn in enumerate(SYNONYMS["post"])}


def _proposal(header: str, role: str) -> tuple[int, int]:
    """:func:`_match`, but the post-treatment role only on an exact match (a set look-up: its
    synonyms are many)."""
    if role == "post":
        rank = _POST_RANK.get(header)
        return (3, rank) if rank is not None else (0, len(_POST_RANK))
    return _match(header, role)


def _score(header: str, role: str) -> int:
    """How well a normalised header fits a role: 3 exact, 2 starts with, 1 contains, 0 no."""
    return _match(header, role)[0]


def propose_mapping(columns: list[str]) -> ColumnMapping:
    """Propose a column for each role from the header names; each column is used at most once.

    Exact matches of a synonym win over prefixes, prefixes over substrings; among equals the
    more specific synonym wins (``paciente`` over ``id``), then the leftmost column. Roles are
    assigned in the order of :data:`ROLES`. The post-treatment score is proposed only for an exact
    match (``post``, ``oq_post``, ``bdi.post``, ``oq_final``).

    >>> propose_mapping(["paciente", "sesion", "oq", "oq_post"]).post
    'oq_post'
    """
    # Only a header's start is compared (synonyms are short): 16,384 headers of 32,767 characters
    # would otherwise take minutes on every rerun of the Upload page.
    normalised = {c: normalise_header(c[:_MAX_WIDE_NAME]) for c in columns}
    taken: set[str] = set()
    chosen: dict[str, str | None] = {}
    candidates = []
    for role in ROLES:
        for pos, col in enumerate(columns):
            s, rank = _proposal(normalised[col], role)
            if s:
                candidates.append((-s, rank, ROLES.index(role), pos, role, col))
    for *_rank, role, col in sorted(candidates):
        if role in chosen or col in taken:
            continue
        chosen[role] = col
        taken.add(col)
    return ColumnMapping(**{r: chosen.get(r) for r in ROLES})


# ---------------------------------------------------------------------------- wide layouts

_PRE = {"pre", "baseline", "base", "intake", "bl", "inicio", "admision", "t0pre"}
_POST = {"post", "end", "final", "fin", "termino", "alta"}
_SESSION_TOKEN = re.compile(
    r"^(?:s|ses|sess|session|sesion|t|time|w|wave|v|visit|visita|occ|ola)?(\d+)"
    r"(?:m|mo|month|months|mes|meses|w|wk|week|weeks|semana|semanas|d|day|days)?$"
)
_TOKEN = re.compile(r"[A-Za-z]*\d+[A-Za-z]*|pre|post|baseline|base|intake|bl|end|final|inicio|fin|alta", re.I)
_SEPARATORS = "._- "
_TRAILING_NUMBER = re.compile(r"^(?P<stem>.*[A-Za-z])[._\- ]*(?P<token>\d+)$")
#: A wide column's name is short (``ans_s12``, ``bdi.pre``); longer headers are not looked at, so
#: that a file of long headers costs no more than a file of short ones.
_MAX_WIDE_NAME = 64


def _stem_ok(stem: str) -> bool:
    """A stem ends in letters and digits, at least one of them a letter (``ans``, ``oq45``)."""
    run = len(stem) - len(stem.rstrip("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
    return any(ch.isascii() and ch.isalpha() for ch in stem[len(stem) - run:]) if run else False


def _split_token(name: str) -> tuple[str, str] | None:
    """The shortest stem and the token after it (separators between): ``'ans_s3'`` → ``('ans', 's3')``.

    The same split as the former pattern ``^(.*?[A-Za-z][A-Za-z0-9]*?)[separators]*(token)$``
    (a lazy stem), found by trying each start of the token in turn, each try linear; the pattern
    itself backtracked in cubic time on a long name without a token (3,000 letters: 4 minutes).
    """
    for j in range(1, len(name)):
        if name[j] in _SEPARATORS or not _TOKEN.fullmatch(name, j):
            continue
        stem = name[:j].rstrip(_SEPARATORS)
        if stem and _stem_ok(stem):
            return stem, name[j:]
    return None


def _split_wide_column(col: str) -> tuple[str, str] | None:
    """``'ans_s3'`` → ``('ans', 's3')``, ``'bdi.pre'`` → ``('bdi', 'pre')``, ``'ans3'`` → ``('ans', '3')``.

    None when the name does not end in a session token (or is longer than a wide column's name).
    """
    name = col.strip()
    if len(name) > _MAX_WIDE_NAME:
        return None
    split = _split_token(name)
    if split:
        stem, token = split
        if session_from_token(token) is not None or normalise_header(token) in _POST:
            return stem.rstrip("._- "), token
    m = _TRAILING_NUMBER.match(name)  # no separator: 'ans3', 'wai12'
    if m:
        return m.group("stem").rstrip("._- "), m.group("token")
    return None


def session_from_token(token: str) -> int | None:
    """Session number in a wide column's suffix: ``s3``→3, ``3``→3, ``2m``→2, ``pre``→0; ``post`` → None (placed last)."""
    t = normalise_header(token)
    if t in _PRE:
        return 0
    m = _SESSION_TOKEN.match(t)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class WideLayout:
    """A wide file: one row per patient, ``columns[stem][session] = column name``.

    ``measures`` says which stem holds which measure, e.g. ``{"alliance": "ans", "symptoms": "oq"}``;
    ``post`` names each stem's post-treatment column (``{"oq": "oq_post"}``): one value per patient, not
    a session (the *post-treatment score* role).
    """

    columns: dict[str, dict[int, str]]
    measures: dict[str, str] = field(default_factory=dict)
    post: dict[str, str] = field(default_factory=dict)


def detect_wide_layout(columns: list[str]) -> WideLayout | None:
    """Find measure stems repeated over sessions (``ans_s1``, ``ans_s2`` … or ``ans1``, ``ans2`` …);
    None if the file is long.

    A stem counts when it appears with at least two different session tokens. A ``post``/``end``
    column is not a session: it is the stem's post-treatment score (``WideLayout.post``), one value
    per patient, kept as a column of its own (the *post-treatment score* role).
    """
    groups: dict[str, dict[str, str]] = {}
    for col in columns:
        split = _split_wide_column(col)
        if not split:
            continue
        stem, token = split
        if not stem or normalise_header(stem) in {"", "s", "t"}:
            continue
        groups.setdefault(stem, {})[token] = col
    layout: dict[str, dict[int, str]] = {}
    posts: dict[str, str] = {}
    for stem, tokens in groups.items():
        numbered: dict[int, str] = {}
        post = []
        for token, col in tokens.items():
            n = session_from_token(token)
            if n is None:
                if normalise_header(token) in _POST:
                    post.append(col)
                continue
            if n in numbered:  # two columns map to the same session: not a clean wide stem
                numbered = {}
                break
            numbered[n] = col
        if len(numbered) >= 2:
            layout[stem] = dict(sorted(numbered.items()))
            if post:
                posts[stem] = post[0]
    if not layout:
        return None
    measures: dict[str, str] = {}
    for stem in layout:
        norm = normalise_header(stem)
        for role in MEASURES:
            if role not in measures and _score(norm, role):
                measures[role] = stem
                break
    return WideLayout(columns=layout, measures=measures, post=posts)


# ---------------------------------------------------------------------------- saved mappings

@dataclass(frozen=True)
class SavedMapping:
    """A named mapping with the header set it was made for (its 'shape')."""

    name: str
    headers: tuple[str, ...]
    mapping: ColumnMapping
    wide_measures: dict[str, str] | None = None
    ranges: dict[str, tuple[float, float]] | None = None


def saved_mapping_record(saved: SavedMapping) -> dict:
    """A saved mapping as plain JSON values (the file's and the clinic database's form)."""
    return {"name": saved.name, "headers": list(saved.headers), "mapping": saved.mapping.as_dict(),
            "wide_measures": saved.wide_measures,
            "ranges": {k: list(v) for k, v in saved.ranges.items()} if saved.ranges else None}


def saved_mapping_from_record(item: dict) -> SavedMapping:
    """The inverse of :func:`saved_mapping_record`."""
    ranges = item.get("ranges")
    return SavedMapping(name=item["name"], headers=tuple(item["headers"]), mapping=ColumnMapping(**item["mapping"]),
                        wide_measures=item.get("wide_measures"),
                        ranges={k: tuple(v) for k, v in ranges.items()} if ranges else None)


def matching_saved_mapping(columns: list[str], saved: list[SavedMapping]) -> SavedMapping | None:
    """The saved mapping made for exactly this header set (order ignored), if any."""
    key = sorted(normalise_header(c) for c in columns)
    for m in reversed(saved):
        if sorted(normalise_header(c) for c in m.headers) == key:
            return m
    return None


def mapping_to_json(mapping: ColumnMapping) -> str:
    return json.dumps(asdict(mapping))


STUDY_SYNONYMS = ("study", "studyid", "studyname", "estudio", "idestudio", "site", "sitio", "centre",
                  "center", "centro", "sample", "muestra", "dataset", "cohort", "cohorte", "trial")


def propose_study_column(columns: list[str]) -> str | None:
    """The column that most likely names the study in a multi-study file (None if none)."""
    for syn in STUDY_SYNONYMS:
        for col in columns:
            if len(col) <= _MAX_WIDE_NAME and normalise_header(col) == syn:
                return col
    return None
