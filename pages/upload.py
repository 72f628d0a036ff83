"""Upload data: read a spreadsheet, map its columns, validate, and use it."""
import logging
from dataclasses import replace

import streamlit as st

from core.errors import InputError, some_names
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
    save_mapping,
)
from core.intake.reading import excel_sheet_names, read_table
from core.intake.validation import validate_table
from core.reporting.exports import csv_bytes
from core.store import Role, UploadConflict
from ui.auth import clinic_store, current_user, download
from ui.state import dataset_picker, set_active
from ui.text import md

NONE = "— not in the file —"
LOG = logging.getLogger(__name__)


def refuse(err: BaseException, name: str) -> None:
    """Say in one plain sentence why the file cannot be used (never a traceback), and stop."""
    if isinstance(err, InputError):
        st.error(md(err))
    elif isinstance(err, MemoryError):
        st.error(f"{md(name)} could not be read: the dashboard ran out of memory. Try a smaller file "
                 "(for example one year or one study at a time).")
    else:  # a bug: logged for the maintainers, one sentence for the user
        LOG.error("Unexpected error while reading %s", name, exc_info=err)
        st.error(f"{md(name)} could not be read because of an unexpected error in the dashboard "
                 f"({md(type(err).__name__)}). This is a bug: please report it on the project's issue "
                 "tracker, with the file's layout but not its data.")
    st.stop()


def sessions_text(sessions) -> str:
    """``1, 2, 3`` or, for many, ``1 to 10000 (10,000 sessions)``."""
    sessions = sorted(sessions)
    if len(sessions) <= 12:
        return ", ".join(str(s) for s in sessions)
    return f"{sessions[0]} to {sessions[-1]} ({len(sessions):,} sessions)"


@st.cache_data(show_spinner=False, max_entries=8)
def read_upload(data: bytes, name: str, sheet: str | None):
    return read_table(data, filename=name, sheet=sheet)


@st.cache_data(show_spinner=False, max_entries=8)
def sheets_of(data: bytes, name: str):
    return excel_sheet_names(data, name)


@st.cache_data(show_spinner="Scoring items …", max_entries=8)
def score_upload(data: bytes, name: str, sheet, specs: tuple[ItemScoring, ...]):
    """The file as read, with a score column added per item-scored measure, and the scorings."""
    raw = read_upload(data, name, sheet)
    results = {}
    frame = raw.frame
    for spec in specs:
        frame, results[spec.measure] = add_item_scores(frame, spec, INSTRUMENTS[spec.instrument], raw.decimal)
    return replace(raw, frame=frame), results


@st.cache_data(show_spinner="Checking every row …", max_entries=8)
def validate_upload(data: bytes, name: str, sheet, mapping: ColumnMapping, ranges: dict,
                    wide: WideLayout | None, specs: tuple[ItemScoring, ...] = ()):
    raw, results = score_upload(data, name, sheet, specs)
    explanations = {m: r.scores["reason"] for m, r in results.items()}
    return validate_table(raw, mapping, ranges=ranges, wide=wide, explanations=explanations)


INSTRUMENTS = {d.id: d for d in available_instruments()}

dataset_picker()
st.title("Upload data")
st.write("One row per patient and session (long), or one row per patient with a column per session "
         "and measure (wide, e.g. `ans_s1 … oq_s4`). CSV with `,` `;` or tab, decimal point or comma, "
         "UTF-8 or Latin-1; or Excel (.xlsx). The data stay on this computer.")

upload = st.file_uploader("Spreadsheet", type=["csv", "txt", "tsv", "xlsx", "xlsm"], key="upload_file")
if upload is None:
    st.stop()
payload = upload.getvalue()

try:
    sheet = None
    if upload.name.lower().endswith((".xlsx", ".xlsm")):
        names = sheets_of(payload, upload.name)
        sheet = st.selectbox("Sheet", names, key="upload_sheet") if len(names) > 1 else names[0]
    raw = read_upload(payload, upload.name, sheet)
except Exception as err:  # InputError: a plain sentence; anything else: see refuse()
    refuse(err, upload.name)

how = f"{len(raw.frame):,} rows, {len(raw.columns)} columns"
if raw.kind == "csv":
    delim = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "bar"}[raw.delimiter]
    how += f"; {delim}-separated, decimal {'comma' if raw.decimal == ',' else 'point'}, {raw.encoding}"
st.caption(f"Read **{md(upload.name)}**: {how}.")

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
    st.success(f"Columns mapped with your saved mapping **{md(match.name)}**. Check and correct below.")

# ---------------------------------------------------------------- scores from items
specs: list[ItemScoring] = []
if layout is None:
    with st.expander("Scores from item columns (optional)", expanded=False):
        st.caption("A measure can be one score column, or item columns scored by an instrument "
                   "definition (reverse keys, sum or mean, missing-item rule). Facts that could not "
                   "be sourced are left for you to fill in; nothing is guessed.")
        for measure in ("alliance", "symptoms"):
            defs = [d for d in INSTRUMENTS.values() if d.measures == measure or d.id == "likert"]
            guesses = {d.id: guess_item_columns(raw.columns, d.column_prefixes, d.n_items) for d in defs}
            best = max(defs, key=lambda d: len(guesses[d.id]))
            if not st.checkbox(f"Score **{measure}** from item columns",
                               value=len(guesses[best.id]) >= 3, key=f"items_on_{measure}"):
                continue
            ids = [d.id for d in defs]
            c = st.columns([2, 1, 1, 1])
            inst = c[0].selectbox("Instrument", ids, index=ids.index(best.id),
                                  format_func=lambda i: INSTRUMENTS[i].name, key=f"items_inst_{measure}")
            d = INSTRUMENTS[inst]
            lo = c[1].number_input("Lowest item code", value=float(d.item_min), key=f"items_lo_{measure}")
            hi = c[2].number_input("Highest item code", value=float(d.item_max), key=f"items_hi_{measure}")
            scoring = c[3].radio("Score", ["sum", "mean"], index=["sum", "mean"].index(d.scoring),
                                 key=f"items_scoring_{measure}", horizontal=True)
            item_cols = st.multiselect("Item columns, in item order", raw.columns, default=guesses[inst],
                                       key=f"items_cols_{measure}")
            reverse = None
            if d.reverse_keyed is None:
                st.warning(" ".join(d.unsourced[:1]))
                reverse = tuple(st.multiselect("Reverse-keyed items", list(range(1, d.n_items + 1)),
                                               key=f"items_rev_{measure}"))
                if not reverse and not st.checkbox("No item needs reversing (data already keyed)",
                                                   key=f"items_none_{measure}"):
                    continue
            spec = ItemScoring(measure=measure, instrument=inst, item_columns=tuple(item_cols),
                               coding_min=lo, coding_max=hi, scoring=scoring, reverse_keyed=reverse)
            try:
                _, results = score_upload(payload, upload.name, sheet, (spec,))
            except InputError as err:
                st.error(str(err))
                continue
            except Exception as err:
                refuse(err, upload.name)
            result = results[measure]
            specs.append(spec)
            alpha = result.alpha.get("total")
            refs = "; ".join(f"{r['value']:.2f} in {r['sample']}" for r in d.reference_alpha)
            st.success(f"{measure.capitalize()} = {d.name}, {result.scoring} of {len(item_cols)} items. "
                       f"Cronbach's α in this sample: **{alpha:.2f}** ({result.n_alpha['total']} complete "
                       f"questionnaires)" + (f"; published: {refs}." if refs else "."))
            for message in result.messages:
                st.info(message)

scored = {spec.measure: spec for spec in specs}
st.subheader("1. Which column is which?")
options = [NONE, *raw.columns]
chosen = {}
role_labels = {"patient": "Patient ID", "therapist": "Therapist", "session": "Session number",
               "alliance": "Alliance score", "symptoms": "Symptom score"}
cols = st.columns(len(ROLES))
for col, role in zip(cols, ROLES):
    if layout is not None and role in ("session", "alliance", "symptoms"):
        continue
    if role in scored:
        col.caption(f"{role_labels[role]}: scored from items")
        chosen[role] = scored[role].column
        continue
    default = getattr(proposed, role)
    pick = col.selectbox(role_labels[role], options, index=options.index(default) if default in options else 0,
                         key=f"map_{role}")
    chosen[role] = None if pick == NONE else pick

wide = None
if layout is not None:
    stems = list(layout.columns)
    st.info(f"This looks like a **wide** file: repeated columns for {md(some_names(stems))} over sessions "
            f"{md(sessions_text({s for v in layout.columns.values() for s in v}))}. "
            "The session number is taken from each column name.")
    measures = {}
    wcols = st.columns(2)
    for wc, role in zip(wcols, ("alliance", "symptoms")):
        opts = [NONE, *stems]
        default = (match.wide_measures or {}).get(role) if match else layout.measures.get(role)
        pick = wc.selectbox(f"{role_labels[role]} columns", opts,
                            index=opts.index(default) if default in opts else 0, key=f"wide_{role}")
        if pick != NONE:
            measures[role] = pick
    wide = WideLayout(columns={s: layout.columns[s] for s in measures.values()}, measures=measures)
    chosen["session"] = None

st.subheader("2. Valid ranges (optional)")
st.caption("Values outside a range are left out, each listed with its row. ANS mean item score: 1–7; "
           "OQ-45.2 total: 0–180.")
ranges = {}
rcols = st.columns(2)
saved_ranges = (match.ranges or {}) if match else {}
for rc, measure in zip(rcols, ("alliance", "symptoms")):
    if not (chosen.get(measure) or (wide and measure in wide.measures)):
        continue
    if measure in scored:
        rc.caption(f"{measure.capitalize()}: the instrument's score range is checked.")
        continue
    lo0, hi0 = saved_ranges.get(measure, (1.0, 7.0) if measure == "alliance" else (0.0, 180.0))
    on = rc.checkbox(f"Check the {measure} range", value=measure in saved_ranges or measure == "alliance",
                     key=f"range_on_{measure}")
    if on:
        a, b = rc.columns(2)
        lo = a.number_input("min", value=float(lo0), key=f"range_lo_{measure}")
        hi = b.number_input("max", value=float(hi0), key=f"range_hi_{measure}")
        ranges[measure] = (lo, hi)

for measure, spec in scored.items():
    d = INSTRUMENTS[spec.instrument].with_scoring(spec.scoring)
    ranges[measure] = tuple(float(x) for x in d.score_range)
mapping = ColumnMapping(**chosen)
try:
    validated = validate_upload(payload, upload.name, sheet, mapping, ranges, wide, tuple(specs))
except Exception as err:
    refuse(err, upload.name)

# ---------------------------------------------------------------- report
st.subheader("3. Validation report")
data = validated.data
m = st.columns(5)
m[0].metric("Rows read", f"{validated.n_rows_read:,}")
m[1].metric("Rows used", f"{len(data):,}")
m[2].metric("Rows left out", f"{len(validated.excluded):,}")
missing = validated.rows_missing()
m[3].metric("Scores missing", f"{len(missing):,}")
m[4].metric("Patients", f"{data['patient'].nunique():,}")
for note in validated.notes:
    st.info(md(note))
problems = validated.excluded_for()
if len(problems):
    problems = problems.assign(kept=problems["row"].isin(missing["row"]))
    said = [f"{len(validated.excluded):,} rows cannot be used" if len(validated.excluded) else "",
            f"{len(missing):,} sessions are kept with a score missing (used wherever that score is not "
            "needed: models without it, figures, clinical views)" if len(missing) else ""]
    st.warning("; ".join(t for t in said if t).capitalize() + ". Each is listed with its spreadsheet row "
               "number (header = row 1) and the reason; fix them in the file and upload again, or go on.")
    st.dataframe(problems, hide_index=True, width="stretch", height=240)
    download("Download the list of rows left out (CSV)", csv_bytes(problems),
             file_name="rows_left_out.csv", mime="text/csv", key="excluded_csv",
             what=f"{upload.name}: rows left out (CSV)")
else:
    st.success("Every row can be used.")

st.write("Preview of the validated table:")
st.dataframe(data.head(50), hide_index=True, width="stretch")

# ---------------------------------------------------------------- use / save
st.subheader("4. Use it")
user = current_user()
c1, c2 = st.columns(2)
name = c1.text_input("Name for this data set", value=upload.name.rsplit(".", 1)[0], key="dataset_name")
if user is None:
    if c1.button("Use this data", type="primary", key="use_data"):
        set_active(Dataset(name=name, validated=validated))
        st.success(f"**{md(name)}** is now the active data set on every page (this browser session only; "
                   "sign in as a supervisor to store it for the clinic).")
elif user.role != Role.SUPERVISOR:
    c1.info("Only supervisors store data for the clinic.")
else:
    clinic = clinic_store()
    if clinic.is_demo_database:
        c1.warning("This is the **demo database**: the demo accounts' passwords are public. Store no real "
                   "patient's data here; a clinic's database is made with `python -m core store init`.")
    others = [c for c in data.columns if c not in (*ROLES, "row", "study")]
    try:
        before = clinic.dataset_info(user, name.strip()).shareable_columns
    except Exception:  # noqa: BLE001 - a new data set: nothing shared yet
        before = ()
    shareable = c1.multiselect(
        "Other columns researchers may see", others, default=[c for c in before if c in others],
        key="shareable_columns",
        help="Researchers see pseudonymised patient, therapist and study labels, the session and the measures, "
             "and only the columns chosen here (numbers, or categories shared by at least 5 patients; never "
             "free text). Default: none.")
    if c1.button("Preview what changes in the clinic database", type="primary", key="preview_upload"):
        try:
            st.session_state["upload_preview"] = clinic.preview_upload(user, name.strip(), validated,
                                                                       shareable=shareable)
        except InputError as err:
            st.error(md(err))
    preview = st.session_state.get("upload_preview")
    if preview is not None and preview.dataset == name.strip():
        p = st.columns(3)
        p[0].metric("Patient-sessions added", f"{len(preview.added):,}")
        p[1].metric("Changed", f"{preview.changed[['patient', 'session']].drop_duplicates().shape[0]:,}")
        p[2].metric("Left alone", f"{preview.unchanged:,}")
        if len(preview.changed):
            with st.expander("What changes"):
                st.dataframe(preview.changed, hide_index=True, width="stretch")
        st.caption("Researchers will see: " + (", ".join(md(c) for c in preview.shareable or ()) or "no other column")
                   + " (besides pseudonymised IDs, sessions and measures).")
        if st.button(f"Store in '{md(preview.dataset)}'", key="apply_upload"):
            try:
                result = clinic.apply_upload(user, preview)
            except UploadConflict as err:
                st.error(str(err))
            else:
                st.session_state.pop("upload_preview", None)
                st.session_state["active_dataset"] = result.dataset
                st.success(f"Stored: {result.added:,} added, {result.changed:,} changed, {result.unchanged:,} "
                           f"left alone. **{md(result.dataset)}** is now the active data set.")
map_name = c2.text_input("Save this mapping as", value=name, key="mapping_name",
                         help="Next time a spreadsheet with the same columns is uploaded, it maps in one click.")
if c2.button("Save mapping", key="save_mapping"):
    path = save_mapping(SavedMapping(name=map_name, headers=tuple(raw.columns), mapping=mapping,
                                     wide_measures=dict(wide.measures) if wide else None,
                                     ranges=ranges or None))
    st.success(f"Mapping **{md(map_name)}** saved ({md(path)}).")
