"""The Upload page's validation report and "Use it" step, shared by a spreadsheet and a FHIR bundle
(moved here from pages/upload.py for issue 29, unchanged for a spreadsheet)."""
from __future__ import annotations

import logging

import streamlit as st

from core.errors import InputError
from core.i18n import N_, _, ngettext, number
from core.intake.dataset import Dataset
from core.intake.mapping import ROLES, role_name
from core.reporting.exports import csv_bytes
from core.store import Role, UploadConflict
from ui import auth
from ui.auth import clinic_store, current_user
from ui.language import multiselect_placeholder
from ui.look import local_numbers
from ui.state import set_active
from ui.text import md

LOG = logging.getLogger("pages.upload")
#: Headers of the tables of rows (the CSV downloads keep the column names).
ROW_HEADERS = {"row": N_("row"), "reason": N_("reason"), "kept": N_("kept (a score missing)"),
               "column": N_("column"), "old": N_("old value"), "new": N_("new value")}


def headers(frame, fhir: bool = False) -> dict:
    """``st.column_config`` giving a table's known columns (roles, row, reason, …) translated headers;
    the file's own columns keep their names. ``fhir``: ``row`` is a resource's position in the bundle."""
    config = {}
    for col in frame.columns:
        if col in ROLES or col == "study":
            config[col] = st.column_config.Column(role_name(col))
        elif col == "row" and fhir:
            config[col] = st.column_config.Column(_("resource"))
        elif col == "date" and fhir:  # the session's date, from the resources (not a column of a file)
            config[col] = st.column_config.Column(_("date"))
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


def validation_report(validated, file_name: str, lang: str, fhir: bool = False) -> None:
    """"3. Validation report": counts, notes, every row (or resource) left out with its reason (also
    as CSV), and a preview of the validated table."""
    st.subheader(_("3. Validation report"))
    data = validated.data
    m = st.columns(5)
    m[0].metric(_("Resources read") if fhir else _("Rows read"), number(validated.n_rows_read, ","))
    m[1].metric(_("Sessions used") if fhir else _("Rows used"), number(len(data), ","))
    m[2].metric(_("Resources left out") if fhir else _("Rows left out"), number(len(validated.excluded), ","))
    missing = validated.rows_missing()
    m[3].metric(_("Scores missing"), number(len(missing), ","))
    m[4].metric(_("Patients"), number(data["patient"].nunique(), ","))
    for note in validated.notes:
        st.info(md(note))
    post_missing = getattr(validated, "post_missing", None)
    if post_missing is not None and len(post_missing):  # issue 30: who lacks a post-treatment score
        with st.expander(_("Patients without a post-treatment score ({n:,})").format(n=len(post_missing))):
            st.dataframe(post_missing, hide_index=True, width="stretch", column_config=headers(post_missing, fhir))
    problems = validated.excluded if fhir else validated.excluded_for()
    if len(problems):
        n_out, n_missing = len(validated.excluded), len(missing)
        if fhir:
            said = [ngettext("{n:,} resource cannot be used.", "{n:,} resources cannot be used.", n_out).format(n=n_out),
                    _("Each is listed with its position in the bundle (the first resource = 1) and the reason; the "
                      "others are used. Fix them in the records system and export again, or go on.")]
        else:
            problems = problems.assign(kept=problems["row"].isin(missing["row"]))
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
        st.dataframe(problems, hide_index=True, width="stretch", height=240, column_config=headers(problems, fhir))
        auth.download(_("Download the list of rows left out (CSV)"), csv_bytes(problems, lang),
                 file_name=_("rows_left_out.csv"), mime="text/csv", key="excluded_csv",
                 what=f"{file_name}: rows left out (CSV)")
    else:
        st.success(_("Every resource can be used.") if fhir else _("Every row can be used."))

    st.write(_("Preview of the validated table:"))
    written, config = local_numbers(data.head(50), headers(data, fhir))  # Spanish: 5,21
    st.dataframe(written, hide_index=True, width="stretch", column_config=config)


def use_or_store(validated, file_name: str, instruments: tuple[tuple[str, str], ...] | None = None,
                 file_id: str | None = None):
    """"4. Use it": make it the active data set (signed out), or preview and store it in the clinic
    database in one transaction (supervisors). Returns the name given and the right-hand column.

    The name proposed is the file's (without its extension), afresh for every new file (``file_id``:
    the upload's id, else its name): the name typed for the last file is never kept for the next
    one, whose rows would otherwise go into the last one's data set by surprise."""
    data = validated.data
    st.subheader(_("4. Use it"))
    user = current_user()
    c1, c2 = st.columns(2)
    if st.session_state.get("dataset_name_for") != (file_id or file_name):
        st.session_state["dataset_name_for"] = file_id or file_name
        st.session_state["dataset_name"] = file_name.rsplit(".", 1)[0]
    name = c1.text_input(_("Name for this data set"), key="dataset_name")
    if user is None:
        if c1.button(_("Use this data"), type="primary", key="use_data"):
            set_active(Dataset(name=name, validated=validated, instruments=tuple(instruments or ())))
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
                                                                           shareable=shareable,
                                                                           instruments=instruments or None)
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
                    st.dataframe(preview.changed, hide_index=True, width="stretch",
                                 column_config=headers(preview.changed))
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
                    st.success(_("Stored: {added:,} added, {changed:,} changed, {unchanged:,} left alone. **{name}** "
                                 "is now the active data set.").format(added=result.added, changed=result.changed,
                                                                       unchanged=result.unchanged,
                                                                       name=md(result.dataset)))
    return name, c2
