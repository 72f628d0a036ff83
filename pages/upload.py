"""Upload data: read a spreadsheet, map its columns, validate, and use it."""
from dataclasses import replace

import streamlit as st

from core.errors import InputError, some_names
from core.i18n import N_, _, get_language
from core.intake.fhir import looks_like_fhir
from core.intake.instruments import (
    ItemScoring,
    add_item_scores,
    available_instruments,
    guess_item_columns,
)
from core.intake.mapping import (
    ROLES,
    ColumnMapping,
    SavedMapping,
    WideLayout,
    detect_wide_layout,
    matching_saved_mapping,
    propose_mapping,
    role_name,
)
from core.intake.reading import excel_sheet_names, read_table
from core.intake.validation import validate_table
from core.store import Role
from streamlit.runtime.scriptrunner import get_script_run_ctx

from ui.auth import clinic_store, current_user
from ui.budget import SENTENCE_BUSY, UPLOAD_MEMORY_KEY, BudgetExceeded, UploadMemory, file_limit_mb, frame_bytes, \
    read_estimate, take_refusal
from ui.fhir_upload import fhir_page
from ui.state import dataset_picker
from ui.text import md
from ui.language import localised, multiselect_placeholder
from ui.upload_report import refuse, use_or_store, validation_report
from ui.look import decimal_input

NONE = N_("— not in the file —")
SESSION_MAPPINGS_KEY = "_session_mappings"
#: How a CSV file was read (shown translated).
SEPARATORS = {"\t": N_("tab-separated"), ",": N_("comma-separated"), ";": N_("semicolon-separated"),
              "|": N_("bar-separated")}
DECIMALS = {",": N_("decimal comma"), ".": N_("decimal point")}
SCORINGS = {"sum": N_("sum"), "mean": N_("mean")}
ROLE_LABELS = {"patient": N_("Patient ID"), "therapist": N_("Therapist"), "session": N_("Session number"),
               "alliance": N_("Alliance score"), "symptoms": N_("Symptom score"),
               "post": N_("Post-treatment score (one per patient)")}
WIDE_LABELS = {"alliance": N_("Alliance score columns"), "symptoms": N_("Symptom score columns")}


def sessions_text(sessions) -> str:
    """``1, 2, 3`` or, for many, ``1 to 10000 (10,000 sessions)``."""
    sessions = sorted(sessions)
    if len(sessions) <= 12:
        return ", ".join(str(s) for s in sessions)
    return _("{first} to {last} ({n:,} sessions)").format(first=str(sessions[0]), last=str(sessions[-1]),
                                                         n=len(sessions))


def upload_memory(upload) -> UploadMemory:
    """This session's current upload, kept once per stage under the memory budgets (ui.budget):
    never in ``st.cache_data``, which kept a pickled copy of every stage for all sessions, long
    after their tabs closed, and handed each caller another copy."""
    user = current_user()
    large = user is not None and user.role is Role.SUPERVISOR
    memory = st.session_state.get(UPLOAD_MEMORY_KEY)
    if not isinstance(memory, UploadMemory) or memory.large != large:
        ctx = get_script_run_ctx()
        memory = UploadMemory(ctx.session_id if ctx else "local", large)
        st.session_state[UPLOAD_MEMORY_KEY] = memory
    memory.use_file(upload.file_id)
    return memory


def over_budget(err: BudgetExceeded) -> None:
    """One sentence for an upload the memory budgets refused, and stop."""
    if str(err) == SENTENCE_BUSY:
        st.error(_("The dashboard is holding as much uploaded data as it can right now (other large files are "
                   "being read); try again in a few minutes, or upload a smaller file."))
    else:
        st.error(_("This file needs more memory than one session may use; upload a smaller part of it (for "
                   "example one year or one study at a time)."))
    st.stop()


# Results that hold sentences (reading notes, scoring messages, reasons) take the language.
def read_upload(memory: UploadMemory, data: bytes, name: str, sheet: str | None, language: str):
    return memory.get("read", (sheet, language), lambda: read_table(data, filename=name, sheet=sheet),
                      read_estimate(data, name))


def score_upload(memory: UploadMemory, data: bytes, name: str, sheet, specs: tuple[ItemScoring, ...], language: str):
    """The file as read, with a score column added per item-scored measure, and the scorings."""
    raw = read_upload(memory, data, name, sheet, language)
    if not specs:
        return raw, {}

    def score():
        results = {}
        frame = raw.frame
        for spec in specs:
            frame, results[spec.measure] = add_item_scores(frame, spec, INSTRUMENTS[spec.instrument], raw.decimal)
        return replace(raw, frame=frame), results

    stage = "scored:" + ",".join(spec.measure for spec in specs)  # the expander's preview and the whole
    return memory.get(stage, (sheet, specs, language), score, frame_bytes(raw))


def validate_upload(memory: UploadMemory, data: bytes, name: str, sheet, mapping: ColumnMapping, ranges: dict,
                    wide: WideLayout | None, specs: tuple[ItemScoring, ...], language: str):
    raw, results = score_upload(memory, data, name, sheet, specs, language)
    explanations = {m: r.scores["reason"] for m, r in results.items()}
    key = (sheet, mapping, tuple(sorted(ranges.items())), wide, specs, language)
    return memory.get("validated", key, lambda: validate_table(raw, mapping, ranges=ranges, wide=wide,
                                                               explanations=explanations), frame_bytes(raw))


def saved_mappings() -> list[SavedMapping]:
    """The saved mappings this session may use: the clinic database's for a supervisor, else the
    ones saved in this browser session (a signed-out visitor's never reach anyone else)."""
    user = current_user()
    if user is not None and user.role is Role.SUPERVISOR:
        return clinic_store().saved_mappings(user)
    return list(st.session_state.get(SESSION_MAPPINGS_KEY, []))


def keep_mapping(saved: SavedMapping) -> str:
    """Save a mapping where this session's mappings live; the sentence that says where."""
    user = current_user()
    if user is not None and user.role is Role.SUPERVISOR:
        clinic_store().save_mapping(user, saved)
        return _("Mapping **{name}** saved in the clinic database, for every supervisor's next upload.").format(
            name=md(saved.name))
    kept = [m for m in st.session_state.get(SESSION_MAPPINGS_KEY, []) if m.name != saved.name]
    st.session_state[SESSION_MAPPINGS_KEY] = [*kept, saved]
    return _("Mapping **{name}** saved for this browser session only (sign in as a supervisor to save it for "
             "the clinic).").format(name=md(saved.name))


INSTRUMENTS = {d.id: d for d in available_instruments()}
lang = get_language()

dataset_picker()
st.title(_("Upload data"))
st.write(_("One row per patient and session (long), or one row per patient with a column per session "
           "and measure (wide, e.g. `ans_s1 … oq_s4`). CSV with `,` `;` or tab, decimal point or comma, "
           "UTF-8 or Latin-1; or Excel (.xlsx). The data stay on this computer."))

user = current_user()
large = user is not None and user.role is Role.SUPERVISOR
if not large:
    st.info(_("Without signing in, files up to {mb} MB are read, and they are forgotten when this browser "
              "session ends.").format(mb=file_limit_mb(False)))
ctx = get_script_run_ctx()
if take_refusal(ctx.session_id if ctx else None) is not None:
    st.error(_("The file was not uploaded: it is larger than this session may upload, or the dashboard is holding "
               "as much uploaded data as it can right now. Try again in a few minutes, or upload a smaller file."))
st.caption(_("Or a FHIR R4 bundle from the clinical record (.json, or .ndjson as a bulk export writes it) of "
             "QuestionnaireResponse or Observation resources."))
upload = st.file_uploader(_("Spreadsheet"), type=["csv", "txt", "tsv", "xlsx", "xlsm", "json", "ndjson"],
                          key="upload_file", max_upload_size=file_limit_mb(large))
if upload is None:
    st.session_state.pop(UPLOAD_MEMORY_KEY, None)  # nothing uploaded now: nothing kept
    st.stop()
payload = upload.getvalue()
if looks_like_fhir(upload.name, payload):  # issue 29: a FHIR bundle has its own mapping, then the same report
    fhir_page(payload, upload.name, lang)
    st.stop()
memory = upload_memory(upload)

try:
    sheet = None
    if upload.name.lower().endswith((".xlsx", ".xlsm")):
        names = memory.get("sheets", None, lambda: excel_sheet_names(payload, upload.name), 0)
        sheet = st.selectbox(_("Sheet"), names, key="upload_sheet") if len(names) > 1 else names[0]
    raw = read_upload(memory, payload, upload.name, sheet, lang)
except BudgetExceeded as err:
    over_budget(err)
except Exception as err:  # InputError: a plain sentence; anything else: see refuse()
    refuse(err, upload.name)

if raw.kind == "csv":
    st.caption(_("Read **{name}**: {rows:,} rows, {columns:,} columns; {separator}, {decimal}, {encoding}.").format(
        name=md(upload.name), rows=len(raw.frame), columns=len(raw.columns),
        separator=_(SEPARATORS[raw.delimiter]), decimal=_(DECIMALS.get(raw.decimal, DECIMALS["."])),
        encoding=md(raw.encoding)))
else:
    st.caption(_("Read **{name}**: {rows:,} rows, {columns:,} columns.").format(
        name=md(upload.name), rows=len(raw.frame), columns=len(raw.columns)))

# ---------------------------------------------------------------- mapping
# A new file or sheet starts from its own proposed mapping, not the previous file's choices.
signature = (upload.name, sheet, tuple(raw.columns))
if st.session_state.get("mapping_made_for") != signature:
    for key in [k for k in st.session_state if str(k).startswith(("map_", "wide_", "range_"))]:
        del st.session_state[key]
    st.session_state["mapping_made_for"] = signature

match = matching_saved_mapping(raw.columns, saved_mappings())
proposed = match.mapping if match else propose_mapping(raw.columns)
layout = detect_wide_layout(raw.columns) if not proposed.session else None
if match:
    st.success(_("Columns mapped with your saved mapping **{name}**. Check and correct below.").format(
        name=md(match.name)))

# ---------------------------------------------------------------- scores from items
specs: list[ItemScoring] = []
if layout is None:
    with st.expander(_("Scores from item columns (optional)"), expanded=False):
        st.caption(_("A measure can be one score column, or item columns scored by an instrument "
                     "definition (reverse keys, sum or mean, missing-item rule). Facts that could not "
                     "be sourced are left for you to fill in; nothing is guessed."))
        for measure in ("alliance", "symptoms"):
            defs = [d for d in INSTRUMENTS.values() if d.measures == measure or d.id == "likert"]
            guesses = {d.id: guess_item_columns(raw.columns, d.column_prefixes, d.n_items) for d in defs}
            best = max(defs, key=lambda d: len(guesses[d.id]))
            if not st.checkbox(_("Score **{measure}** from item columns").format(measure=role_name(measure)),
                               value=len(guesses[best.id]) >= 3, key=f"items_on_{measure}"):
                continue
            ids = [d.id for d in defs]
            c = st.columns([2, 1, 1, 1])
            inst = c[0].selectbox(_("Instrument"), ids, index=ids.index(best.id),
                                  format_func=lambda i: INSTRUMENTS[i].name, key=f"items_inst_{measure}")
            d = INSTRUMENTS[inst]
            lo = decimal_input(_("Lowest item code"), float(d.item_min), key=f"items_lo_{measure}", where=c[1])
            hi = decimal_input(_("Highest item code"), float(d.item_max), key=f"items_hi_{measure}", where=c[2])
            scoring = c[3].radio(_("Score"), ["sum", "mean"], index=["sum", "mean"].index(d.scoring),
                                 key=f"items_scoring_{measure}", horizontal=True, format_func=localised(lambda k: _(SCORINGS[k])))
            item_cols = st.multiselect(_("Item columns, in item order"), raw.columns, default=guesses[inst],
                                       key=f"items_cols_{measure}", placeholder=multiselect_placeholder(raw.columns))
            reverse = None
            if d.reverse_keyed is None:
                st.warning(" ".join(d.unsourced[:1]))
                reverse = tuple(st.multiselect(_("Reverse-keyed items"), list(range(1, d.n_items + 1)),
                                               key=f"items_rev_{measure}", placeholder=multiselect_placeholder([1])))
                if not reverse and not st.checkbox(_("No item needs reversing (data already keyed)"),
                                                   key=f"items_none_{measure}"):
                    continue
            spec = ItemScoring(measure=measure, instrument=inst, item_columns=tuple(item_cols),
                               coding_min=lo, coding_max=hi, scoring=scoring, reverse_keyed=reverse)
            try:
                with st.spinner(_("Scoring items …")):
                    results = score_upload(memory, payload, upload.name, sheet, (spec,), lang)[1]
            except InputError as err:
                st.error(md(err))
                continue
            except BudgetExceeded as err:
                over_budget(err)
            except Exception as err:
                refuse(err, upload.name)
            result = results[measure]
            specs.append(spec)
            alpha = result.alpha.get("total")
            refs = "; ".join(_("{value:.2f} in {sample}").format(value=r["value"], sample=md(r["sample"]))
                             for r in d.reference_alpha)
            fields = dict(measure=role_name(measure).capitalize(), instrument=md(d.name),
                          scoring=_(SCORINGS.get(result.scoring, result.scoring)), n=len(item_cols),
                          alpha=alpha, complete=result.n_alpha["total"], published=refs)
            st.success((_("{measure} = {instrument}, {scoring} of {n} items. Cronbach's α in this sample: "
                          "**{alpha:.2f}** ({complete} complete questionnaires); published: {published}.") if refs
                        else _("{measure} = {instrument}, {scoring} of {n} items. Cronbach's α in this sample: "
                               "**{alpha:.2f}** ({complete} complete questionnaires).")).format(**fields))
            for message in result.messages:
                st.info(message)

scored = {spec.measure: spec for spec in specs}
st.subheader(_("1. Which column is which?"))
options = [NONE, *raw.columns]
chosen = {}
cols = st.columns(len(ROLES))
for col, role in zip(cols, ROLES):
    if layout is not None and role in ("session", "alliance", "symptoms"):
        continue
    if role in scored:
        col.caption(_("{role}: scored from items").format(role=_(ROLE_LABELS[role])))
        chosen[role] = scored[role].column
        continue
    default = getattr(proposed, role)
    pick = col.selectbox(_(ROLE_LABELS[role]), options, index=options.index(default) if default in options else 0,
                         key=f"map_{role}", format_func=localised(lambda o: _(NONE) if o == NONE else o))
    chosen[role] = None if pick == NONE else pick

wide = None
if layout is not None:
    stems = list(layout.columns)
    st.info(_("This looks like a **wide** file: repeated columns for {columns} over sessions {sessions}. "
              "The session number is taken from each column name.").format(
        columns=md(some_names(stems)), sessions=md(sessions_text({s for v in layout.columns.values() for s in v}))))
    measures = {}
    wcols = st.columns(2)
    for wc, role in zip(wcols, ("alliance", "symptoms")):
        opts = [NONE, *stems]
        default = (match.wide_measures or {}).get(role) if match else layout.measures.get(role)
        pick = wc.selectbox(_(WIDE_LABELS[role]), opts, index=opts.index(default) if default in opts else 0,
                            key=f"wide_{role}", format_func=localised(lambda o: _(NONE) if o == NONE else o))
        if pick != NONE:
            measures[role] = pick
    wide = WideLayout(columns={s: layout.columns[s] for s in measures.values()}, measures=measures)
    chosen["session"] = None

st.subheader(_("2. Valid ranges (optional)"))
st.caption(_("Values outside a range are left out, each listed with its row. ANS mean item score: 1–7; "
             "OQ-45.2 total: 0–180."))
ranges = {}
rcols = st.columns(2)
saved_ranges = (match.ranges or {}) if match else {}
for rc, measure in zip(rcols, ("alliance", "symptoms")):
    if not (chosen.get(measure) or (wide and measure in wide.measures)):
        continue
    if measure in scored:
        rc.caption(_("{measure}: the instrument's score range is checked.").format(
            measure=role_name(measure).capitalize()))
        continue
    lo0, hi0 = saved_ranges.get(measure, (1.0, 7.0) if measure == "alliance" else (0.0, 180.0))
    on = rc.checkbox(_("Check the {measure} range").format(measure=role_name(measure)), value=measure in saved_ranges or measure == "alliance",
                     key=f"range_on_{measure}")
    if on:
        a, b = rc.columns(2)
        lo = decimal_input(_("min"), float(lo0), key=f"range_lo_{measure}", where=a)
        hi = decimal_input(_("max"), float(hi0), key=f"range_hi_{measure}", where=b)
        ranges[measure] = (lo, hi)

for measure, spec in scored.items():
    d = INSTRUMENTS[spec.instrument].with_scoring(spec.scoring)
    ranges[measure] = tuple(float(x) for x in d.score_range)
mapping = ColumnMapping(**chosen)
try:
    with st.spinner(_("Checking every row …")):
        validated = validate_upload(memory, payload, upload.name, sheet, mapping, ranges, wide, tuple(specs), lang)
except BudgetExceeded as err:
    over_budget(err)
except Exception as err:
    refuse(err, upload.name)

validation_report(validated, upload.name, lang)
name, c2 = use_or_store(validated, upload.name, file_id=upload.file_id)
map_name = c2.text_input(_("Save this mapping as"), value=name, key="mapping_name",
                         help=_("Next time a spreadsheet with the same columns is uploaded, it maps in one click."))
if c2.button(_("Save mapping"), key="save_mapping"):
    try:
        said = keep_mapping(SavedMapping(name=map_name.strip(), headers=tuple(raw.columns), mapping=mapping,
                                         wide_measures=dict(wide.measures) if wide else None,
                                         ranges=ranges or None))
    except InputError as err:
        st.error(md(err))
    else:
        st.success(said)
