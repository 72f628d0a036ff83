"""Wide to long: one row per patient and session from one row per patient."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import InputError
from core.i18n import _
from core.intake.limits import MAX_CELLS
from core.intake.mapping import WideLayout
from core.intake.reading import ROW


def wide_to_long(frame: pd.DataFrame, layout: WideLayout, id_columns: list[str],
                 session_name: str = "session") -> pd.DataFrame:
    """Stack a wide table to long format, taking the session number from the column names.

    ``frame`` has one row per patient; ``layout.columns[stem][session]`` names the column of
    that measure at that session. The result has ``id_columns`` (repeated per session), the
    spreadsheet ``row`` of the patient's row, ``session``, and one column per stem (text cells,
    as read). Sessions where every measure cell is empty are left out: a wide sheet has an
    empty cell for every session a patient did not attend, which is not an error. Other
    columns (not ids, not measures) are kept, repeated per session (renamed ``"<name> (file)"``
    when the name is already taken by the session or a measure stem).
    """
    for col in id_columns:
        if col not in frame.columns:
            raise InputError(_("The file has no column '{column}'.").format(column=col))
    measure_cols = {c for sessions in layout.columns.values() for c in sessions.values()}
    missing = sorted(c for c in measure_cols if c not in frame.columns)
    if missing:
        raise InputError(_("The file has no column '{column}'.").format(column=missing[0]))
    keep = [c for c in frame.columns if c not in measure_cols and c not in id_columns and c != ROW]
    # A kept column named like the session or a measure stem is renamed, not overwritten.
    taken = {session_name, *layout.columns, *id_columns, ROW}
    renamed = {c: f"{c} (file)" for c in keep if c in taken}
    sessions = sorted({s for sessions in layout.columns.values() for s in sessions})
    if not sessions:
        raise InputError(_("Choose the repeated columns that hold the scores of each session."))
    # One matrix (patients × sessions) per measure stem, read row by row: the long table comes out
    # ordered by spreadsheet row, then session, in time linear in the number of cells.
    n, k = len(frame), len(sessions)
    stems = {}
    any_value = np.zeros(n * k, dtype=bool)
    for stem, by_session in layout.columns.items():
        cells = np.full((n, k), "", dtype=object)
        present = [(j, by_session[s]) for j, s in enumerate(sessions) if by_session.get(s)]
        if present:
            block = frame[[col for _, col in present]].to_numpy(dtype=object, na_value="")
            cells[:, [j for j, _ in present]] = block
        flat = cells.ravel()
        stems[stem] = flat
        any_value |= np.frompyfunc(lambda c: bool(str(c).strip()), 1, 1)(flat).astype(bool)
    keep_rows = np.flatnonzero(any_value)
    n_columns = 2 + len(id_columns) + len(keep) + len(stems)
    if len(keep_rows) * n_columns > MAX_CELLS:
        raise InputError(_(
            "This wide file becomes {rows:,} rows × {columns:,} columns in long form "
            "(one row per patient and session), more than the {max:,} cells that are read. "
            "Remove the columns you do not need, or split the file, and upload again.").format(
            rows=len(keep_rows), columns=n_columns, max=MAX_CELLS))
    source_rows = keep_rows // k
    long = frame[[ROW, *id_columns, *keep]].rename(columns=renamed).iloc[source_rows].reset_index(drop=True)
    long.insert(1, session_name, [str(sessions[j]) for j in keep_rows % k])
    for stem, flat in stems.items():
        long[stem] = flat[keep_rows]
    return long
