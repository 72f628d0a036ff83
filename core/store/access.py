"""THE access rule for clinic data: which rows, columns and IDs each role sees (in the queries,
not in the pages), and the reads that apply it."""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa

from core.i18n import N_, _
from core.intake.dataset import Dataset
from core.intake.mapping import ColumnMapping
from core.intake.validation import STUDY, ValidatedData, parse_numbers
from core.store.errors import NoSuchDataset, NoSuchPatient, StoreBusy, StoreUnwritable
from core.store.schema import datasets, excluded_rows, fitted_models, observations, uploads
from core.store.users import Role, User

#: Columns with a role besides patient and session; every other column of the data is "extra".
ROLE_COLUMNS = ("therapist", "alliance", "symptoms")
BASE_COLUMNS = ("patient", "therapist", "session", "alliance", "symptoms", "row")
#: A shareable text column reaches researchers only if each of its values is shared by this many patients.
MIN_PATIENTS_PER_LEVEL = 5


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    version: int
    is_demo: bool
    instruments: tuple[tuple[str, str], ...]
    columns: tuple[str, ...]          # role columns present: therapist, alliance, symptoms
    extra_columns: tuple[str, ...]    # other columns the user may see (researchers: the shareable ones)
    updated_at: datetime
    shareable_columns: tuple[str, ...] = ()  # extra columns researchers may see (marked at upload)



#: ``fitted_models.kind`` of the early-warning signal's expected course.
SIGNAL_MODEL = "signal_model"
#: ``fitted_models.kind`` of :meth:`DataAccess.kept_result`'s results.
KEPT_RESULT = "result"


class DataAccess:
    """The reading part of :class:`core.store.ClinicStore`: data sets as each role may see them."""

    @staticmethod
    def _row_filter(user: User):
        """THE access rule for observation rows, as a SQL condition."""
        if user.role is Role.SUPERVISOR or user.role is Role.RESEARCHER:
            return sa.true()
        if user.role is Role.THERAPIST and user.therapist_code:
            return observations.c.therapist == user.therapist_code
        return sa.false()

    def _visible_dataset(self, conn, user: User, name: str):
        row = conn.execute(sa.select(datasets).where(datasets.c.name == str(name))).first()
        if row is not None and user.role is Role.THERAPIST:
            mine = conn.execute(sa.select(observations.c.id).where(
                observations.c.dataset_id == row.id, self._row_filter(user)).limit(1)).first()
            row = row if mine else None
        if row is None:
            raise NoSuchDataset(_("There is no data set named '{name}' among those you can see.").format(name=name))
        return row

    def _pseudonym(self, kind: str, value: str) -> str:
        digest = hmac.new(self._secret, f"{kind}\x1f{value}".encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{kind}-{digest[:12]}"

    def _pseudonymise(self, values: pd.Series, kind: str) -> pd.Series:
        mapping = {v: self._pseudonym(kind, v) for v in pd.unique(values.dropna())}
        return values.map(mapping)

    def dataset_names(self, actor: User) -> list[str]:
        """The data sets the user may see, oldest first (therapists: those with their patients)."""
        with self._read() as conn:
            user = self._actor(conn, actor)
            query = sa.select(datasets.c.name).order_by(datasets.c.id)
            if user.role is not Role.SUPERVISOR and user.role is not Role.RESEARCHER:
                query = query.where(sa.exists(sa.select(observations.c.id).where(
                    observations.c.dataset_id == datasets.c.id, self._row_filter(user))))
            return [r.name for r in conn.execute(query)]

    def dataset_info(self, actor: User, name: str) -> DatasetInfo:
        with self._read() as conn:
            user = self._actor(conn, actor)
            row = self._visible_dataset(conn, user, name)
        extras = tuple(json.loads(row.extra_columns))
        shareable = tuple(c for c in json.loads(row.shareable_columns or "[]") if c in extras)
        if user.role is Role.RESEARCHER:
            extras = tuple(c for c in extras if c in shareable or c == STUDY)
        return DatasetInfo(name=row.name, version=int(row.version), is_demo=bool(row.is_demo),
                           instruments=tuple(tuple(x) for x in json.loads(row.instruments)),
                           columns=tuple(json.loads(row.columns)),
                           extra_columns=extras, shareable_columns=shareable,
                           updated_at=row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=timezone.utc))

    def dataset_version(self, actor: User, name: str) -> int:
        """The data set's version: 1 after its first upload, +1 with each upload."""
        return self.dataset_info(actor, name).version

    def _frame(self, conn, user: User, ds, patient: str | None = None) -> pd.DataFrame:
        """The observation rows the user may see, as a table (real IDs; see :meth:`_present`)."""
        o = observations
        query = (sa.select(o.c.patient, o.c.session, o.c.therapist, o.c.alliance, o.c.symptoms,
                           o.c.source_row, o.c.extra)
                 .where(o.c.dataset_id == ds.id, self._row_filter(user)))
        if patient is not None:
            query = query.where(o.c.patient == patient)
        rows = conn.execute(query).all()
        roles = json.loads(ds.columns)
        extras = json.loads(ds.extra_columns)
        cols = list(zip(*rows)) if rows else [()] * 7
        frame = pd.DataFrame({"patient": pd.Series(cols[0], dtype=object).astype(str)})
        if "therapist" in roles:
            frame["therapist"] = pd.Series(cols[2], dtype=object).fillna("").astype(str)
        session = np.array(cols[1], dtype=float)
        frame["session"] = session.astype(np.int64) if (len(session) == 0 or (session % 1 == 0).all()) else session
        for k, m in ((3, "alliance"), (4, "symptoms")):
            if m in roles:
                frame[m] = np.array([np.nan if v is None else v for v in cols[k]], dtype=float)
        frame["row"] = np.array([0 if v is None else v for v in cols[5]], dtype=np.int64)
        if extras:
            parsed = [json.loads(t) for t in cols[6]]
            for col in extras:
                frame[col] = pd.Series([d.get(col, "") for d in parsed], dtype=object).astype(str)
        return frame

    def _present(self, user: User, frame: pd.DataFrame, ds) -> pd.DataFrame:
        """The role's view of rows. Researchers get an allow-list, never a block-list: pseudonymised
        patient, therapist and study labels, the session, the measures, and only the extra columns a
        supervisor marked as shareable for this data set, each only if every value is a number or
        a category shared by at least 5 patients (never free text); no spreadsheet row numbers."""
        if user.role is Role.RESEARCHER:
            shareable = set(json.loads(ds.shareable_columns or "[]"))
            out = pd.DataFrame({"patient": self._pseudonymise(frame["patient"], "P")})
            if "therapist" in frame.columns:
                out["therapist"] = self._pseudonymise(frame["therapist"], "T")
            for col in ("session", "alliance", "symptoms"):
                if col in frame.columns:
                    out[col] = frame[col].to_numpy()
            if STUDY in frame.columns:
                out[STUDY] = self._pseudonymise(frame[STUDY].astype(str), "S")
            for col in [c for c in frame.columns if c in shareable and c not in BASE_COLUMNS and c != STUDY]:
                text = frame[col].astype(str)
                values, missing, non_numeric = parse_numbers(text)
                if missing.all():
                    continue
                if not non_numeric.any():
                    out[col] = values.to_numpy(dtype=float)
                    continue
                patients = frame["patient"][~missing].groupby(text[~missing]).nunique()
                if (patients >= MIN_PATIENTS_PER_LEVEL).all():  # categories, not free text
                    out[col] = text.where(~missing, "").to_numpy(dtype=object)
            frame = out
        return frame.sort_values(["patient", "session"], kind="stable").reset_index(drop=True)

    def load(self, actor: User, dataset: str) -> ValidatedData:
        """The data set as the user may see it (see the module docstring for the rule)."""
        with self._read() as conn:
            user = self._actor(conn, actor)
            ds = self._visible_dataset(conn, user, dataset)
            data = self._present(user, self._frame(conn, user, ds), ds)
            last = conn.execute(sa.select(uploads).where(uploads.c.dataset_id == ds.id)
                                .order_by(uploads.c.id.desc()).limit(1)).first()
            excluded = pd.DataFrame({"row": pd.Series(dtype=np.int64), "reason": pd.Series(dtype=object)})
            if user.role is Role.SUPERVISOR and last is not None:
                rows = conn.execute(sa.select(excluded_rows.c.row, excluded_rows.c.reason)
                                    .where(excluded_rows.c.upload_id == last.id)
                                    .order_by(excluded_rows.c.row, excluded_rows.c.id)).all()
                if rows:
                    excluded = pd.DataFrame({"row": np.array([r.row for r in rows], dtype=np.int64),
                                             "reason": pd.Series([r.reason for r in rows], dtype=object)})
        mapping = ColumnMapping(**json.loads(last.mapping)) if last is not None else ColumnMapping()
        ranges = {k: tuple(v) for k, v in json.loads(last.ranges).items()} if last is not None else {}
        if user.role is Role.SUPERVISOR:
            notes = tuple(json.loads(last.notes)) if last is not None else ()
            source = last.source if last is not None else ds.name
            n_read = int(last.n_rows_read) if last is not None else len(data)
        else:
            notes, source, n_read = (), ds.name, len(data)
        return ValidatedData(data=data, excluded=excluded, notes=notes, mapping=mapping, source=source,
                             n_rows_read=n_read, ranges=ranges)

    def load_dataset(self, actor: User, dataset: str) -> Dataset:
        """:meth:`load` as a :class:`core.intake.dataset.Dataset` (name, demo flag, instruments)."""
        info = self.dataset_info(actor, dataset)
        return Dataset(name=info.name, validated=self.load(actor, dataset), is_demo=info.is_demo,
                       instruments=info.instruments)

    def patient_ids(self, actor: User, dataset: str) -> list[str]:
        """The patient IDs the user may see (researchers: pseudonyms), sorted."""
        with self._read() as conn:
            user = self._actor(conn, actor)
            ds = self._visible_dataset(conn, user, dataset)
            ids = [r[0] for r in conn.execute(sa.select(observations.c.patient).distinct().where(
                observations.c.dataset_id == ds.id, self._row_filter(user)))]
        if user.role is Role.RESEARCHER:
            ids = [self._pseudonym("P", p) for p in ids]
        return sorted(ids)

    def datasets_with_patient(self, actor: User, patient: str) -> list[str]:
        """The data sets, oldest first, in which the user may see the patient ``patient`` (researchers
        give the pseudonym): where a patient link that missed the active data set may lead. Nothing
        the user may not see is named, and nothing tells an invisible patient from a missing one."""
        patient = str(patient)
        with self._read() as conn:
            user = self._actor(conn, actor)
            o = observations
            if user.role is Role.RESEARCHER:
                if not patient.startswith("P-"):
                    return []
                rows = conn.execute(sa.select(datasets.c.id, datasets.c.name, o.c.patient).distinct()
                                    .select_from(o.join(datasets, datasets.c.id == o.c.dataset_id))
                                    .order_by(datasets.c.id)).all()
                found = [r.name for r in rows if self._pseudonym("P", r.patient) == patient]
            else:
                found = [r.name for r in conn.execute(
                    sa.select(datasets.c.id, datasets.c.name).select_from(o.join(datasets, datasets.c.id == o.c.dataset_id))
                    .where(o.c.patient == patient, self._row_filter(user)).distinct().order_by(datasets.c.id))]
        return list(dict.fromkeys(found))

    def patient_sessions(self, actor: User, dataset: str, patient: str, *, log_view: bool = True) -> pd.DataFrame:
        """One patient's rows as the user may see them (researchers give the pseudonym), logged as a
        ``'patient view'``. :class:`NoSuchPatient` when the user may not see that patient, with the
        same message whether or not the patient exists."""
        patient = str(patient)
        with self._read() as conn:
            user = self._actor(conn, actor)
            ds = self._visible_dataset(conn, user, dataset)
            real = patient
            if user.role is Role.RESEARCHER:
                ids = [r[0] for r in conn.execute(sa.select(observations.c.patient).distinct()
                                                  .where(observations.c.dataset_id == ds.id))]
                real = next((p for p in ids if self._pseudonym("P", p) == patient), None)
            frame = self._frame(conn, user, ds, patient=real) if real is not None else None
        if frame is None or frame.empty:
            raise NoSuchPatient(_("There is no patient '{patient}' among the patients you can see in '{dataset}'.").format(
                patient=patient, dataset=dataset))
        if log_view:
            self.log(actor, "patient view", f"{ds.name}: {patient}")
        return self._present(user, frame, ds)

    def uploads(self, actor: User, dataset: str) -> pd.DataFrame:
        """The uploads of a data set, newest first (supervisors only)."""
        with self._read() as conn:
            user = self._actor(conn, actor)
            self._require(user, N_("see the uploads"), Role.SUPERVISOR)
            ds = self._visible_dataset(conn, user, dataset)
            rows = conn.execute(sa.select(uploads.c.at, uploads.c.username, uploads.c.source, uploads.c.added,
                                          uploads.c.changed, uploads.c.unchanged, uploads.c.kept,
                                          uploads.c.excluded, uploads.c.version)
                                .where(uploads.c.dataset_id == ds.id).order_by(uploads.c.id.desc())).all()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=["at", "username", "source", "added", "changed",
                                                                "unchanged", "kept", "excluded", "version"])
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        return frame


    def clinic_signal_model(self, actor: User, dataset: str, intake: str | None = None, *, settings=None):
        """The early-warning signal's expected course fitted on *every* patient of the data set,
        whoever asks (so a therapist's expected courses are the clinic's, not her caseload's), and
        returned without any row: only the model's coefficients, variances, bounds and counts
        (:class:`core.clinical.signal.SignalModel`). Anyone who may see the data set may ask.
        ``intake``: an extra column with each patient's intake score; ``settings``: the signal's
        settings (direction, reliable change, rule; :class:`core.clinical.signal.SignalSettings`).

        Fitted once per data set version and settings (issue 28): the model is kept in
        ``fitted_models`` as JSON (:mod:`core.clinical.signal_json`), so that every replica and every
        restart reads it instead of refitting (seconds on a million rows). A new version of the
        data set (an upload, a recorded session) is fitted afresh."""
        from dataclasses import replace

        from core.clinical.signal import SignalSettings, fit_signal_model
        from core.clinical.signal_json import model_from_json, model_to_json, settings_key

        settings = replace(settings, intake=intake) if settings is not None else SignalSettings(intake=intake)
        key = settings_key(settings)
        o, f = observations, fitted_models
        with self._read() as conn:
            user = self._actor(conn, actor)
            ds = self._visible_dataset(conn, user, dataset)
            stored = conn.execute(sa.select(f.c.payload).where(
                f.c.dataset_id == ds.id, f.c.version == ds.version, f.c.kind == SIGNAL_MODEL, f.c.key == key)
                .order_by(f.c.id.desc()).limit(1)).scalar()
            model = model_from_json(stored) if stored is not None else None
            if model is not None:
                return model
            rows = conn.execute(sa.select(o.c.patient, o.c.session, o.c.symptoms, o.c.extra)
                                .where(o.c.dataset_id == ds.id)).all()
        frame = pd.DataFrame({"patient": [str(r.patient) for r in rows],
                              "session": np.array([r.session for r in rows], dtype=float),
                              "symptoms": np.array([np.nan if r.symptoms is None else r.symptoms for r in rows],
                                                   dtype=float)})
        if intake is not None:
            frame[intake] = pd.Series([json.loads(r.extra).get(intake, "") if r.extra else "" for r in rows],
                                      dtype=object)
        model = fit_signal_model(frame, settings)
        self._keep_fitted(ds.id, ds.version, SIGNAL_MODEL, key, model_to_json(model))
        return model

    def kept_result(self, actor: User, dataset: str, version: int, name: str, compute) -> str:
        """A small result of the rows ``actor`` sees of version ``version`` of a data set (JSON text:
        a model's few numbers, never rows), computed by ``compute()`` once and kept in
        ``fitted_models`` (issue 28: the therapist share and the early-alliance result take a second
        each on a million rows; every replica and restart then reads them). Kept per version and per
        view of the rows: a therapist's (her patients), a researcher's (the shareable columns) and a
        supervisor's are different rows, so each has its own. ``compute`` must use the rows
        :meth:`load_dataset` gives this user at ``version``; when the data set has moved on to
        another version, the result is computed and not kept."""
        with self._read() as conn:
            user = self._actor(conn, actor)
            ds = self._visible_dataset(conn, user, dataset)
            view = user.role.value + (f":{user.therapist_code}" if user.role is Role.THERAPIST else "")
            key = f"{name}|{view}"
            f = fitted_models
            stored = conn.execute(sa.select(f.c.payload).where(
                f.c.dataset_id == ds.id, f.c.version == version, f.c.kind == KEPT_RESULT, f.c.key == key)
                .order_by(f.c.id.desc()).limit(1)).scalar() if ds.version == version else None
        if stored is not None:
            return stored
        payload = compute()
        if ds.version == version:
            self._keep_fitted(ds.id, version, KEPT_RESULT, key, payload)
        return payload

    def _keep_fitted(self, dataset_id: int, version: int, kind: str, key: str, payload: str) -> None:
        """Store a fitted result of a data set version; the older versions' results of that data set go.
        Best effort: a database that cannot be written (read-only, busy) only means a refit next time."""
        f = fitted_models
        try:
            with self._write() as conn:
                conn.execute(f.delete().where(f.c.dataset_id == dataset_id, f.c.version < version))
                current = conn.execute(sa.select(datasets.c.version).where(datasets.c.id == dataset_id)).scalar()
                if current == version:  # not if the data set changed while the model was fitted
                    conn.execute(f.insert().values(dataset_id=dataset_id, version=version, kind=kind, key=key,
                                                   payload=payload, created_at=datetime.now(timezone.utc)))
        except (StoreBusy, StoreUnwritable):
            pass
