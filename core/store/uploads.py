"""Uploads: compare a validated file with the stored data set (preview), then store it in one
transaction with an optimistic lock on the data set's version."""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from core.errors import InputError
from core.i18n import N_, _
from core.intake.mapping import MEASURES, role_name
from core.intake.validation import ValidatedData
from core.store.access import BASE_COLUMNS, ROLE_COLUMNS
from core.store.engine import _now
from core.store.errors import BUSY_MESSAGE, CONFLICT_MESSAGE, UploadConflict
from core.store.schema import datasets, excluded_rows, observations, uploads
from core.store.users import Role, User, _clean_name

INSERT_CHUNK = 5_000


@dataclass(frozen=True, eq=False)
class UploadPreview:
    """What an upload would do to a stored data set, compared with its version ``base_version``.

    ``added``: the new patient-sessions (rows of ``validated.data``); ``changed``: one row per
    changed cell (``patient, session, column, old, new``); ``unchanged``: patient-sessions of the
    file equal to the stored ones; ``kept``: stored patient-sessions not in the file (left as they
    are: an upload never deletes); ``base_version`` 0 means the data set does not exist yet.
    """

    dataset: str
    added: pd.DataFrame
    changed: pd.DataFrame
    unchanged: int
    base_version: int
    validated: ValidatedData
    kept: int = 0
    changed_rows: int = 0
    instruments: tuple[tuple[str, str], ...] | None = None
    is_demo: bool = False
    #: extra columns researchers may see (``None``: keep the data set's choice; new data sets: none)
    shareable: tuple[str, ...] | None = None

    @property
    def is_new_dataset(self) -> bool:
        return self.base_version == 0


@dataclass(frozen=True)
class UploadResult:
    dataset: str
    added: int
    changed: int
    unchanged: int
    version: int
    kept: int = 0
    excluded: int = 0
    upload_id: int = 0


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


# --------------------------------------------------------------------------- tables and diffs
def _upload_frame(validated: ValidatedData) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The validated data as stored: ``patient`` text, ``session`` float, role columns, extra
    columns as text (missing: ``""``), ``row``. Returns ``(frame, role columns, extra columns)``."""
    data = validated.data
    if data is None or len(data) == 0:
        raise InputError(_("There are no rows to store."))
    for col in ("patient", "session"):
        if col not in data.columns:
            raise InputError(_("The data have no '{column}' column.").format(column=col))
    if not any(m in data.columns for m in MEASURES):
        raise InputError(_("The data have neither alliance nor symptoms."))
    roles = [c for c in ROLE_COLUMNS if c in data.columns]
    extras = [str(c) for c in data.columns if c not in BASE_COLUMNS]
    frame = pd.DataFrame({"patient": data["patient"].astype(str).to_numpy(dtype=object)})
    session = pd.to_numeric(data["session"], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(session).all():
        raise InputError(_("Every row needs a session number."))
    frame["session"] = session
    if "therapist" in roles:
        frame["therapist"] = data["therapist"].astype(str).to_numpy(dtype=object)
    for m in MEASURES:
        if m in roles:
            frame[m] = pd.to_numeric(data[m], errors="coerce").to_numpy(dtype=float)
    frame["row"] = (pd.to_numeric(data["row"], errors="coerce").to_numpy(dtype=float)
                    if "row" in data.columns else np.full(len(data), np.nan))
    for col in extras:
        values = data[col].astype(object)
        frame[col] = values.where(values.notna(), "").astype(str).to_numpy(dtype=object)
    if frame.duplicated(["patient", "session"]).any():
        first = frame.loc[frame.duplicated(["patient", "session"])].iloc[0]
        raise InputError(_("Patient {patient}, session {session:g} occurs twice; each patient-session can be "
                           "stored once.").format(patient=first["patient"], session=first["session"]))
    return frame, roles, extras


@dataclass
class _Diff:
    added: np.ndarray           # positions in the upload frame
    changed_long: pd.DataFrame  # patient, session, column, old, new
    updates: list[dict]         # one per changed patient-session: the new stored values
    unchanged: int
    kept: int


def _diff(stored: pd.DataFrame, new: pd.DataFrame, roles: list[str], extras: list[str],
          session_display: pd.Series) -> _Diff:
    """Compare an upload with the stored rows on (patient, session)."""
    empty = pd.DataFrame({"patient": pd.Series(dtype=object), "session": pd.Series(dtype=object),
                          "column": pd.Series(dtype=object), "old": pd.Series(dtype=object),
                          "new": pd.Series(dtype=object)})
    if stored.empty:
        return _Diff(np.arange(len(new)), empty, [], 0, 0)
    stored_key = pd.MultiIndex.from_arrays([stored["patient"].to_numpy(dtype=object),
                                            stored["session"].to_numpy(dtype=float)])
    new_key = pd.MultiIndex.from_arrays([new["patient"].to_numpy(dtype=object),
                                         new["session"].to_numpy(dtype=float)])
    pos = stored_key.get_indexer(new_key)
    matched = np.flatnonzero(pos >= 0)
    old = stored.iloc[pos[matched]].reset_index(drop=True)
    cur = new.iloc[matched].reset_index(drop=True)
    any_change = np.zeros(len(matched), dtype=bool)
    pieces = []

    def record(column: str, mask: np.ndarray, old_values, new_values) -> None:
        if not mask.any():
            return
        idx = np.flatnonzero(mask)
        pieces.append(pd.DataFrame({
            "patient": cur["patient"].to_numpy(dtype=object)[idx],
            "session": session_display.to_numpy(dtype=object)[matched[idx]],
            "column": column,
            "old": pd.Series(old_values, dtype=object).to_numpy()[idx],
            "new": pd.Series(new_values, dtype=object).to_numpy()[idx],
        }))

    for col in roles:
        if col == "therapist":
            a = old[col].where(old[col].notna(), "").astype(str).to_numpy(dtype=object)
            b = cur[col].to_numpy(dtype=object)
            mask = a != b
        else:
            a = old[col].to_numpy(dtype=float)
            b = cur[col].to_numpy(dtype=float)
            mask = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        any_change |= mask
        record(col, mask, a, b)
    old_extra = old["extra"].tolist()
    for col in extras:
        a = np.array([d.get(col, "") for d in old_extra], dtype=object)
        b = cur[col].to_numpy(dtype=object)
        mask = a != b
        any_change |= mask
        record(col, mask, a, b)
    idx = np.flatnonzero(any_change)
    ids = old["id"].to_numpy()[idx]
    source_rows = cur["row"].to_numpy(dtype=float)[idx]
    role_values = {col: cur[col].to_numpy(dtype=object if col == "therapist" else float)[idx] for col in roles}
    extra_values = {col: cur[col].to_numpy(dtype=object)[idx] for col in extras}
    updates = []
    for j, i in enumerate(idx):
        values = {"id": int(ids[j]),
                  "source_row": None if np.isnan(source_rows[j]) else int(source_rows[j])}
        for col, array in role_values.items():
            values[col] = array[j] if col == "therapist" else _num(array[j])
        extra = dict(old_extra[i])
        extra.update({col: extra_values[col][j] for col in extras})
        values["extra"] = json.dumps(extra, ensure_ascii=False) if extra else "{}"
        updates.append(values)
    changed_long = pd.concat(pieces, ignore_index=True) if pieces else empty
    if len(changed_long):
        order = {c: k for k, c in enumerate([*roles, *extras])}
        changed_long = (changed_long.assign(_o=changed_long["column"].map(order))
                        .sort_values(["patient", "session", "_o"], kind="stable")
                        .drop(columns="_o").reset_index(drop=True))
    return _Diff(added=np.flatnonzero(pos < 0), changed_long=changed_long, updates=updates,
                 unchanged=int(len(matched) - any_change.sum()), kept=int(len(stored) - len(matched)))


def _test_pause() -> None:
    """Test hook: ``ALLIANCE_TEST_PAUSE_IN_UPLOAD=seconds`` sleeps inside the upload transaction,
    after part of the rows are written (``ALLIANCE_TEST_PAUSE_MARKER``: a file created then)."""
    seconds = os.environ.get("ALLIANCE_TEST_PAUSE_IN_UPLOAD")
    if not seconds:
        return
    marker = os.environ.get("ALLIANCE_TEST_PAUSE_MARKER")
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(float(seconds))


class Uploads:
    """The upload part of :class:`core.store.ClinicStore` (supervisors only)."""

    def _stored(self, conn, dataset_id: int) -> pd.DataFrame:
        o = observations
        rows = conn.execute(sa.select(o.c.id, o.c.patient, o.c.session, o.c.therapist, o.c.alliance,
                                      o.c.symptoms, o.c.extra).where(o.c.dataset_id == dataset_id)).all()
        cols = list(zip(*rows)) if rows else [()] * 7
        return pd.DataFrame({
            "id": np.array(cols[0], dtype=np.int64),
            "patient": pd.Series(cols[1], dtype=object),
            "session": np.array(cols[2], dtype=float),
            "therapist": pd.Series(cols[3], dtype=object),
            "alliance": np.array([np.nan if v is None else v for v in cols[4]], dtype=float),
            "symptoms": np.array([np.nan if v is None else v for v in cols[5]], dtype=float),
            "extra": pd.Series([{} if t == "{}" else json.loads(t) for t in cols[6]], dtype=object),
        })

    @staticmethod
    def _check_columns(ds, roles: list[str]) -> None:
        stored = json.loads(ds.columns)
        if sorted(stored) != sorted(roles):
            def words(cols):
                return ", ".join(role_name(c) for c in cols) if cols else _("no therapist or measure")
            raise InputError(_("The data set '{name}' has {stored}; these data have {new}. Map the same columns, "
                               "or store the data under a new name.").format(name=ds.name, stored=words(stored),
                                                                             new=words(roles)))

    def preview_upload(self, actor: User, dataset: str, validated: ValidatedData, *,
                       instruments: tuple[tuple[str, str], ...] | None = None,
                       shareable: list[str] | tuple[str, ...] | None = None) -> UploadPreview:
        """What storing ``validated`` as (or into) the data set ``dataset`` would add, change and leave
        alone (supervisors only). Nothing is written. ``shareable``: the extra columns researchers
        may see (numbers only; ``None`` keeps the data set's choice, a new data set shares none)."""
        name = _clean_name(dataset, "name for the data set")
        new, roles, extras = _upload_frame(validated)
        if shareable is not None:
            shareable = tuple(dict.fromkeys(str(c) for c in shareable))
            unknown = [c for c in shareable if c not in extras]
            if unknown:
                offer = ", ".join(extras) if extras else _("none")
                raise InputError(_("The column '{column}' cannot be shared: it is not one of the data's other "
                                   "columns (those are: {columns}).").format(column=unknown[0], columns=offer))
        with self._read() as conn:
            self._require(self._actor(conn, actor), N_("store data for the clinic"), Role.SUPERVISOR)
            ds = conn.execute(sa.select(datasets).where(datasets.c.name == name)).first()
            if ds is not None:
                self._check_columns(ds, roles)
                stored = self._stored(conn, ds.id)
            else:
                stored = self._stored(conn, -1)
        diff = _diff(stored, new, roles, extras, validated.data["session"])
        added = validated.data.iloc[diff.added].reset_index(drop=True)
        return UploadPreview(dataset=name, added=added, changed=diff.changed_long, unchanged=diff.unchanged,
                             base_version=int(ds.version) if ds is not None else 0, validated=validated,
                             kept=diff.kept, changed_rows=len(diff.updates),
                             instruments=tuple(tuple(x) for x in instruments) if instruments is not None else None,
                             shareable=shareable)

    def apply_upload(self, actor: User, preview: UploadPreview) -> UploadResult:
        """Store a previewed upload in ONE transaction: new patient-sessions inserted, changed ones
        updated, every other stored row left alone (nothing is deleted), the rows left out of this
        upload kept with their reasons, the upload recorded and logged. Refused with
        :class:`UploadConflict` (nothing written) when the data set changed since the preview."""
        name = _clean_name(preview.dataset, "name for the data set")
        new, roles, extras = _upload_frame(preview.validated)
        with self._write(BUSY_MESSAGE, UploadConflict) as conn:
            user = self._actor(conn, actor)
            self._require(user, N_("store data for the clinic"), Role.SUPERVISOR)
            result = self._store(conn, user, name, preview.validated, new, roles, extras,
                                 preview.base_version, preview.instruments, is_demo=False,
                                 shareable=preview.shareable)
        return result

    _OBSERVATION_COLUMNS = ("dataset_id", "patient", "session", "therapist", "alliance", "symptoms", "extra",
                            "source_row", "upload_id")

    def _insert_observations(self, conn, records: list[tuple]) -> None:
        """Insert rows fast, in the connection's transaction: COPY on PostgreSQL, executemany on SQLite."""
        names = ", ".join(self._OBSERVATION_COLUMNS)
        if self.is_postgres:
            cursor = conn.connection.dbapi_connection.cursor()
            with cursor.copy(f"COPY observations ({names}) FROM STDIN") as copy:
                for record in records:
                    copy.write_row(record)
            cursor.close()
        else:
            marks = ", ".join("?" * len(self._OBSERVATION_COLUMNS))
            conn.exec_driver_sql(f"INSERT INTO observations ({names}) VALUES ({marks})", records)

    def _store(self, conn, user: User | None, name: str, validated: ValidatedData, new: pd.DataFrame,
               roles: list[str], extras: list[str], base_version: int,
               instruments: tuple | None, is_demo: bool, shareable: tuple[str, ...] | None = None) -> UploadResult:
        ds = conn.execute(sa.select(datasets).where(datasets.c.name == name).with_for_update()).first()
        now = _now()
        if base_version == 0:
            if ds is not None:
                raise UploadConflict(_(CONFLICT_MESSAGE))
            try:
                with conn.begin_nested():  # a savepoint: a lost race must not abort the transaction
                    dataset_id = conn.execute(datasets.insert().values(
                        name=name, version=1, is_demo=is_demo, instruments=json.dumps(instruments or []),
                        columns=json.dumps(roles), extra_columns=json.dumps(extras), created_at=now,
                        updated_at=now).returning(datasets.c.id)).scalar_one()
            except sa_exc.IntegrityError:
                raise UploadConflict(_(CONFLICT_MESSAGE)) from None
            version, stored_extras = 1, []
            stored = self._stored(conn, -1)
        else:
            if ds is None or int(ds.version) != int(base_version):
                raise UploadConflict(_(CONFLICT_MESSAGE))
            self._check_columns(ds, roles)
            bumped = conn.execute(datasets.update().where(datasets.c.id == ds.id,
                                                          datasets.c.version == base_version)
                                  .values(version=base_version + 1, updated_at=now))
            if bumped.rowcount != 1:
                raise UploadConflict(_(CONFLICT_MESSAGE))
            dataset_id, version = ds.id, base_version + 1
            stored_extras = json.loads(ds.extra_columns)
            stored = self._stored(conn, dataset_id)
        diff = _diff(stored, new, roles, extras, validated.data["session"])
        excluded = validated.excluded
        upload_id = conn.execute(uploads.insert().values(
            dataset_id=dataset_id, user_id=user.id if user else None,
            username=user.username if user else "demo set-up", at=now, source=str(validated.source)[:500],
            n_rows_read=int(validated.n_rows_read or len(validated.data)), added=len(diff.added),
            changed=len(diff.updates), unchanged=diff.unchanged, kept=diff.kept, excluded=len(excluded),
            version=version, mapping=json.dumps(validated.mapping.as_dict()),
            notes=json.dumps(list(validated.notes), ensure_ascii=False),
            ranges=json.dumps({k: list(v) for k, v in (validated.ranges or {}).items()}),
        ).returning(uploads.c.id)).scalar_one()

        added = new.iloc[diff.added]
        n = len(added)
        nothing = [None] * n
        if extras:
            extra_cols = [added[c].to_numpy(dtype=object) for c in extras]
            extra_json = [json.dumps(dict(zip(extras, values)), ensure_ascii=False) for values in zip(*extra_cols)]
        else:
            extra_json = ["{}"] * n
        records = list(zip(
            [dataset_id] * n, added["patient"].to_numpy(dtype=object).tolist(),
            added["session"].to_numpy(dtype=float).tolist(),
            added["therapist"].to_numpy(dtype=object).tolist() if "therapist" in roles else nothing,
            *[[_num(x) for x in added[m].to_numpy(dtype=float)] if m in roles else nothing for m in MEASURES],
            extra_json, [None if math.isnan(x) else int(x) for x in added["row"].to_numpy(dtype=float)],
            [upload_id] * n))
        chunks = [records[k:k + INSERT_CHUNK] for k in range(0, len(records), INSERT_CHUNK)]
        for k, chunk in enumerate(chunks):
            self._insert_observations(conn, chunk)
            if k == max(0, len(chunks) // 2 - 1):
                _test_pause()
        if diff.updates:
            set_cols = [*roles, "extra", "source_row"]
            mark = "%s" if self.is_postgres else "?"
            statement = (f"UPDATE observations SET {', '.join(f'{c} = {mark}' for c in set_cols)}, "
                         f"upload_id = {mark} WHERE id = {mark}")
            params = [tuple(u[c] for c in set_cols) + (upload_id, u["id"]) for u in diff.updates]
            for k in range(0, len(params), INSERT_CHUNK):
                conn.exec_driver_sql(statement, params[k:k + INSERT_CHUNK])
        if not chunks:
            _test_pause()
        merged_extras = list(stored_extras) + [c for c in extras if c not in stored_extras]
        dataset_values = {"extra_columns": json.dumps(merged_extras)}
        if instruments is not None:
            dataset_values["instruments"] = json.dumps([list(x) for x in instruments])
        if shareable is not None:
            dataset_values["shareable_columns"] = json.dumps(list(shareable), ensure_ascii=False)
        conn.execute(datasets.update().where(datasets.c.id == dataset_id).values(**dataset_values))
        if len(excluded):
            conn.execute(excluded_rows.insert(), [
                {"upload_id": upload_id, "row": int(r), "reason": str(t)}
                for r, t in zip(excluded["row"], excluded["reason"])])
        result = UploadResult(dataset=name, added=len(diff.added), changed=len(diff.updates),
                              unchanged=diff.unchanged, version=version, kept=diff.kept,
                              excluded=len(excluded), upload_id=int(upload_id))
        self._audit(conn, user, "upload",
                    f"{name}: {result.added} added, {result.changed} changed, {result.unchanged} unchanged, "
                    f"{result.kept} not in the file kept, {result.excluded} rows left out "
                    f"(file {validated.source}; version {version})"
                    + (f"; shared with researchers: {', '.join(shareable) or 'no other column'}"
                       if shareable is not None else ""),
                    username=None if user else "demo set-up")
        return result

    def delete_dataset(self, actor: User, dataset: str) -> None:
        """Remove a data set with its rows, uploads and rows left out (supervisors only), e.g. the
        demo clinic once the clinic's own data are in. Logged."""
        with self._write() as conn:
            user = self._actor(conn, actor)
            self._require(user, N_("delete data sets"), Role.SUPERVISOR)
            ds = self._visible_dataset(conn, user, dataset)
            conn.execute(datasets.delete().where(datasets.c.id == ds.id))
            self._audit(conn, user, "data set deleted", ds.name)

