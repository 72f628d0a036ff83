"""Wide to long: one row per patient and session from one row per patient."""
from __future__ import annotations

import pandas as pd

from core.errors import InputError
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
            raise InputError(f"The file has no column '{col}'.")
    measure_cols = {c for sessions in layout.columns.values() for c in sessions.values()}
    missing = sorted(c for c in measure_cols if c not in frame.columns)
    if missing:
        raise InputError(f"The file has no column '{missing[0]}'.")
    keep = [c for c in frame.columns if c not in measure_cols and c not in id_columns and c != ROW]
    # A kept column named like the session or a measure stem is renamed, not overwritten.
    taken = {session_name, *layout.columns, *id_columns, ROW}
    renamed = {c: f"{c} (file)" for c in keep if c in taken}
    sessions = sorted({s for sessions in layout.columns.values() for s in sessions})
    if not sessions:
        raise InputError("Choose the repeated columns that hold the scores of each session.")
    parts = []
    for s in sessions:
        part = frame[[ROW, *id_columns, *keep]].rename(columns=renamed)
        part.insert(1, session_name, str(s))
        any_value = pd.Series(False, index=frame.index)
        for stem, by_session in layout.columns.items():
            col = by_session.get(s)
            values = frame[col] if col else pd.Series("", index=frame.index)
            part[stem] = values.values
            any_value |= values.astype(str).str.strip().ne("")
        parts.append(part.loc[any_value])
    long = pd.concat(parts, ignore_index=True)
    long["_order"] = long[session_name].astype(int)
    long = long.sort_values([ROW, "_order"], kind="stable").drop(columns="_order")
    return long.reset_index(drop=True)
