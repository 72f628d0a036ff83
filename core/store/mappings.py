"""Saved column mappings of the clinic database: the Upload page maps next month's spreadsheet of
the same shape in one click. Only supervisors read and write them (one row per name, migration
0004); a signed-out visitor's saved mappings stay in her browser session (the page keeps them)."""
from __future__ import annotations

import json

import sqlalchemy as sa

from core.intake.mapping import SavedMapping, saved_mapping_from_record, saved_mapping_record
from core.i18n import N_
from core.store.engine import _now
from core.store.schema import saved_mappings
from core.store.users import Role, User, _clean_name


class SavedMappings:
    """The saved-mappings part of :class:`core.store.ClinicStore`."""

    def saved_mappings(self, actor: User) -> list[SavedMapping]:
        """Every saved mapping, oldest saved first (supervisors only)."""
        with self._read() as conn:
            self._require(self._actor(conn, actor), N_("use saved mappings"), Role.SUPERVISOR)
            rows = conn.execute(sa.select(saved_mappings).order_by(saved_mappings.c.saved_at,
                                                                    saved_mappings.c.id)).all()
        return [saved_mapping_from_record({
            "name": r.name, "headers": json.loads(r.headers), "mapping": json.loads(r.mapping),
            "wide_measures": json.loads(r.wide_measures) if r.wide_measures else None,
            "ranges": json.loads(r.ranges) if r.ranges else None}) for r in rows]

    def save_mapping(self, actor: User, saved: SavedMapping) -> None:
        """Add or replace (by name) a saved mapping (supervisors only; audited)."""
        name = _clean_name(saved.name, "name for the mapping")
        record = saved_mapping_record(saved)
        values = dict(headers=json.dumps(record["headers"], ensure_ascii=False),
                      mapping=json.dumps(record["mapping"], ensure_ascii=False),
                      wide_measures=json.dumps(record["wide_measures"], ensure_ascii=False)
                      if record["wide_measures"] else None,
                      ranges=json.dumps(record["ranges"]) if record["ranges"] else None)
        with self._write() as conn:
            user = self._actor(conn, actor)
            self._require(user, N_("save mappings"), Role.SUPERVISOR)
            conn.execute(saved_mappings.delete().where(saved_mappings.c.name == name))
            conn.execute(saved_mappings.insert().values(name=name, saved_by=user.username, saved_at=_now(),
                                                        **values))
            self._audit(conn, user, "mapping saved", name)
