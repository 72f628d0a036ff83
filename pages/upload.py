"""Upload data: read a spreadsheet, map its columns, validate, and use it."""
import logging
from dataclasses import replace

import streamlit as st

from core.errors import InputError, some_names
from core.i18n import N_, _, get_language, ngettext, number
from core.intake.dataset import Dataset
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
    load_saved_mappings,
    matching_saved_mapping,
    propose_mapping,
    role_name,
    save_mapping,
)
from core.intake.reading import excel_sheet_names, read_table
from core.intake.validation import validate_table
from core.reporting.exports import csv_bytes
from core.store import Role, UploadConflict
from ui.auth import clinic_store, current_user, download
from ui.state import dataset_picker, set_active
from ui.text import md
from ui.language import localised, multiselect_placeholder
from ui.look import decimal_input, local_numbers

NONE = N_("— not in the file —")
LOG = logging.getLogger(__name__)
#: How a CSV file was read (shown translated).
SEPARATORS = {"\t": N_("tab-separated"), ",": N_("comma-separated"), ";": N_("semicolon-separated"),
              "|": N_("bar-separated")}
DECIMALS = {",": N_("decimal comma"), ".": N_("decimal point")}
SCORINGS = {"sum": N_("sum"), "mean": N_("mean")}
ROLE_LABELS = {"patient": N_("Patient ID"), "therapist": N_("Therapist"), "session": N_("Session number"),
               "alliance": N_("Alliance score"), "symptoms": N_("Symptom score")}
WIDE_LABELS = {"alliance": N_("Alliance score columns"), "symptoms": N_("Symptom score columns")}
#: Headers of the tables of rows (the CSV downloads keep the column names).
ROW_HEADERS = {"row": N_("row"), "reason": N_("reason"), "kept": N_("kept (a score missing)"),
               "column": N_("column"), "old": N_("old value"), "new": N_("new value")}




def headers(frame) -> dict:
    """``st.column_config`` giving a table's known columns (roles, row, reason, …) translated headers;
    the file's own columns keep their names."""
    config = {}
    for col in frame.columns:
        if col in ROLES or col == "study":
            config[col] = st.column_config.Column(role_name(col))
        elif col in ROW_HEADERS:
            config[col] = st.column_config.Column(_(ROW_HEADERS[col]))
    return config


def refuse(err: BaseException, name: str) -> None:
    """Say in one plain sentence why the file cannot be used (never a traceback), and stop."""
    if isinstance(err, InputError):
        st.error(md(err))
    elif isinstance(err, MemoryError):
        st.error(_("{name} could not be read: the dashboard ran out of memory. Try a smaller file "
                   "(for example one year or one study at a time).").format(name=md(name)))
    else:  # a bug: logged for the maintainers, one sentence for the user
        LOG.error("Unexpected error while reading %s", name, exc_info=err)
        st.error(_("{name} could not be read because of an unexpected error in the dashboard ({error}). "
                   "This is a bug: please report it on the project's issue tracker, with the file's layout "
                   "but not its data.").format(name=md(name), error=md(type(err).__name__)))
    st.stop()


def sessions_text(sessions) -> str:
    """``1, 2, 3`` or, for many, ``1 to 10000 (10,000 sessions)``."""
    sessions = sorted(sessions)
    if len(sessions) <= 12:
        return ", ".join(str(s) for s in sessions)
    return _("{first} to {last} ({n:,} sessions)").format(first=str(sessions[0]), last=str(sessions[-1]),
                                                         n=len(sessions))


# Cached results that hold sentences (reading notes, scoring messages, reasons) take the language.
@st.cache_data(show_spinner=False, max_entries=8)
def read_upload(data: bytes, name: str, sheet: str | None, language: str):
    return read_table(data, filename=name, sheet=sheet)


@st.cache_data(show_spinner=False, max_entries=8)
def sheets_of(data: bytes, name: str):
    return excel_sheet_names(data, name)


@st.cache_data(show_spinner=False, max_entries=8)
def score_upload(data: bytes, name: str, sheet, specs: tuple[ItemScoring, ...], language: str):
    """The file as read, with a score column added per item-scored measure, and the scorings."""
    raw = read_upload(data, name, sheet, language)
    results = {}
    frame = raw.frame
    for spec in specs:
        frame, results[spec.measure] = add_item_scores(frame, spec, INSTRUMENTS[spec.instrument], raw.decimal)
    return replace(raw, frame=frame), results


@st.cache_data(show_spinner=False, max_entries=8)
def validate_upload(data: bytes, name: str, sheet, mapping: ColumnMapping, ranges: dict,
                    wide: WideLayout | None, specs: tuple[ItemScoring, ...], language: str):
    raw, results = score_upload(data, name, sheet, specs, language)
    explanations = {m: r.scores["reason"] for m, r in results.items()}
    return validate_table(raw, mapping, ranges=ranges, wide=wide, explanations=explanations)


INSTRUMENTS = {d.id: d for d in available_instruments()}
lang = get_language()

dataset_picker()
st.title(_("Upload data"))
st.write(_("One row per patient and session (long), or one row per patient with a column per session "
           "and measure (wide, e.g. `ans_s1 … oq_s4`). CSV with `,` `;` or tab, decimal point or comma, "
           "UTF-8 or Latin-1; or Excel (.xlsx). The data stay on this computer."))

upload = st.file_uploader(_("Spreadsheet"), type=["csv", "txt", "tsv", "xlsx", "xlsm"], key="upload_file")
if upload is None:
    st.stop()
payload = upload.getvalue()

try:
    sheet = None
    if upload.name.lower().endswith((".xlsx", ".xlsm")):
        names = sheets_of(payload, upload.name)
        sheet = st.selectbox(_("Sheet"), names, key="upload_sheet") if len(names) > 1 else names[0]
    raw = read_upload(payload, upload.name, sheet, lang)
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

saved = load_saved_mappings()
match = matching_saved_mapping(raw.columns, saved)
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
                    results = score_upload(payload, upload.name, sheet, (spec,), lang)[1]
            except InputError as err:
                st.error(md(err))
                continue
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
        validated = validate_upload(payload, upload.name, sheet, mapping, ranges, wide, tuple(specs), lang)
except Exception as err:
    refuse(err, upload.name)

# ---------------------------------------------------------------- report
st.subheader(_("3. Validation report"))
data = validated.data
m = st.columns(5)
m[0].metric(_("Rows read"), number(validated.n_rows_read, ","))
m[1].metric(_("Rows used"), number(len(data), ","))
m[2].metric(_("Rows left out"), number(len(validated.excluded), ","))
missing = validated.rows_missing()
m[3].metric(_("Scores missing"), number(len(missing), ","))
m[4].metric(_("Patients"), number(data["patient"].nunique(), ","))
for note in validated.notes:
    st.info(md(note))
problems = validated.excluded_for()
if len(problems):
    problems = problems.assign(kept=problems["row"].isin(missing["row"]))
    n_out, n_missing = len(validated.excluded), len(missing)
    said = [ngettext("{n:,} row cannot be used.", "{n:,} rows cannot be used.", n_out).format(n=n_out)
            if n_out else "",
            ngettext("{n:,} session is kept with a score missing (used wherever that score is not needed: "
                     "models without it, figures, clinical views).",
                     "{n:,} sessions are kept with a score missing (used wherever that score is not needed: "
                     "models without it, figures, clinical views).", n_missing).format(n=n_missing)
            if n_missing else "",
            _("Each is listed with its spreadsheet row number (header = row 1) and the reason; fix them in the "
              "file and upload again, or go on.")]
    st.warning(" ".join(t for t in said if t))
    st.dataframe(problems, hide_index=True, width="stretch", height=240, column_config=headers(problems))
    download(_("Download the list of rows left out (CSV)"), csv_bytes(problems, lang),
             file_name=_("rows_left_out.csv"), mime="text/csv", key="excluded_csv",
             what=f"{upload.name}: rows left out (CSV)")
else:
    st.success(_("Every row can be used."))

st.write(_("Preview of the validated table:"))
written, config = local_numbers(data.head(50), headers(data))  # Spanish: 5,21
st.dataframe(written, hide_index=True, width="stretch", column_config=config)

# ---------------------------------------------------------------- use / save
st.subheader(_("4. Use it"))
user = current_user()
c1, c2 = st.columns(2)
name = c1.text_input(_("Name for this data set"), value=upload.name.rsplit(".", 1)[0], key="dataset_name")
if user is None:
    if c1.button(_("Use this data"), type="primary", key="use_data"):
        set_active(Dataset(name=name, validated=validated))
        st.success(_("**{name}** is now the active data set on every page (this browser session only; "
                     "sign in as a supervisor to store it for the clinic).").format(name=md(name)))
elif user.role != Role.SUPERVISOR:
    c1.info(_("Only supervisors store data for the clinic."))
else:
    clinic = clinic_store()
    if clinic.is_demo_database:
        c1.warning(_("This is the **demo database**: the demo accounts' passwords are public. Store no real "
                     "patient's data here; a clinic's database is made with `python -m core store init`."))
    others = [c for c in data.columns if c not in (*ROLES, "row", "study")]
    try:
        before = clinic.dataset_info(user, name.strip()).shareable_columns
    except Exception:  # noqa: BLE001 - a new data set: nothing shared yet
        before = ()
    shareable = c1.multiselect(
        _("Other columns researchers may see"), others, default=[c for c in before if c in others],
        key="shareable_columns", placeholder=multiselect_placeholder(others),
        help=_("Researchers see pseudonymised patient, therapist and study labels, the session and the measures, "
               "and only the columns chosen here (numbers, or categories shared by at least 5 patients; never "
               "free text). Default: none."))
    if c1.button(_("Preview what changes in the clinic database"), type="primary", key="preview_upload"):
        try:
            st.session_state["upload_preview"] = clinic.preview_upload(user, name.strip(), validated,
                                                                       shareable=shareable)
        except InputError as err:
            st.error(md(err))
    preview = st.session_state.get("upload_preview")
    if preview is not None and preview.dataset == name.strip():
        p = st.columns(3)
        p[0].metric(_("Patient-sessions added"), number(len(preview.added), ","))
        p[1].metric(_("Changed"), number(preview.changed[["patient", "session"]].drop_duplicates().shape[0], ","))
        p[2].metric(_("Left alone"), number(preview.unchanged, ","))
        if len(preview.changed):
            with st.expander(_("What changes")):
                st.dataframe(preview.changed, hide_index=True, width="stretch", column_config=headers(preview.changed))
        st.caption(_("Researchers will see: {columns} (besides pseudonymised IDs, sessions and measures).").format(
            columns=", ".join(md(c) for c in preview.shareable or ()) or _("no other column")))
        if st.button(_("Store in '{name}'").format(name=md(preview.dataset)), key="apply_upload"):
            try:
                result = clinic.apply_upload(user, preview)
            except UploadConflict as err:
                st.error(md(err))
            else:
                st.session_state.pop("upload_preview", None)
                st.session_state["active_dataset"] = result.dataset
                st.success(_("Stored: {added:,} added, {changed:,} changed, {unchanged:,} left alone. **{name}** is "
                             "now the active data set.").format(added=result.added, changed=result.changed,
                                                                unchanged=result.unchanged, name=md(result.dataset)))
map_name = c2.text_input(_("Save this mapping as"), value=name, key="mapping_name",
                         help=_("Next time a spreadsheet with the same columns is uploaded, it maps in one click."))
if c2.button(_("Save mapping"), key="save_mapping"):
    path = save_mapping(SavedMapping(name=map_name, headers=tuple(raw.columns), mapping=mapping,
                                     wide_measures=dict(wide.measures) if wide else None,
                                     ranges=ranges or None))
    st.success(_("Mapping **{name}** saved ({path}).").format(name=md(map_name), path=md(path)))
