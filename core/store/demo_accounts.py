"""The demo accounts and the demo clinic, seeded only into the demo database.

The demo database is the one the dashboard opens when no clinic database is configured
(:func:`core.store.engine.dashboard_url`): no ``ALLIANCE_DATABASE_URL`` and no ``clinic.db`` made by
``python -m core store init``. A database made by ``store init`` (kind ``clinic``) or one that
already has users is never seeded, so the public demo passwords never reach a clinic's database.
"""
from __future__ import annotations

import sqlalchemy as sa

from core.demo import demo_dataset
from core.i18n import N_, _
from core.store.schema import datasets, settings, users
from core.store.uploads import _upload_frame
from core.store.users import Role

#: Name of the stored demo clinic (seeded by :meth:`DemoSeed.seed_demo`).
DEMO_DATASET = N_("Demo clinic")
DEMO_PASSWORD = "demo"


class DemoSeed:
    """The demo part of :class:`core.store.ClinicStore`."""

    DEMO_USERS = (
        ("demo-supervisor", "Demo supervisor", Role.SUPERVISOR, None),
        ("demo-therapist-ana", "Demo therapist Ana (T01)", Role.THERAPIST, "T01 Ana"),
        ("demo-therapist-bruno", "Demo therapist Bruno (T02)", Role.THERAPIST, "T02 Bruno"),
        ("demo-researcher", "Demo researcher", Role.RESEARCHER, None),
    )

    def _seedable(self, conn) -> bool:
        kind = conn.execute(sa.select(settings.c.value).where(settings.c.key == "database_kind")).scalar()
        return kind != "clinic" and not conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one()

    def seed_demo(self) -> bool:
        """Make this the demo database: on a database without users that ``store init`` did not
        make, the demo users (password ``demo``, ``is_demo``) and the demo clinic as the data set
        ``'Demo clinic'``, and the kind ``demo``. Returns whether it seeded; safe to call at every
        start and from several processes at once. Only the dashboard calls it, and only on the demo
        database (:func:`core.store.engine.dashboard_url`)."""
        with self._read() as conn:
            if not self._seedable(conn):
                return False
        demo = demo_dataset()
        new, roles, extras = _upload_frame(demo.validated)
        hashed = [self._bcrypt(DEMO_PASSWORD) for _ in self.DEMO_USERS]
        with self._write() as conn:
            self._lock_setup(conn)
            if not self._seedable(conn):
                return False
            self._set_kind(conn, "demo")
            for (username, display, role, code), h in zip(self.DEMO_USERS, hashed):
                self._insert_user(conn, username, h, role, display, code, True, None)
            self._audit(conn, None, "demo set-up", "demo users and the demo clinic created",
                        username="demo set-up")
            if conn.execute(sa.select(datasets.c.id).where(datasets.c.name == DEMO_DATASET)).first() is None:
                self._store(conn, None, DEMO_DATASET, demo.validated, new, roles, extras, 0,
                            demo.instruments, is_demo=True)
        return True

    def init_clinic(self) -> bool:
        """``store init``: mark this database as a clinic's (never seeded with demo accounts).
        Returns whether it was new. Refused (:class:`core.errors.InputError`) on the demo database."""
        from core.errors import InputError

        with self._write() as conn:
            self._lock_setup(conn)
            kind = conn.execute(sa.select(settings.c.value).where(settings.c.key == "database_kind")).scalar()
            if kind == "demo":
                raise InputError(_("This is the demo database (its demo accounts have public passwords); point "
                                   "ALLIANCE_DATA_DIR or ALLIANCE_DATABASE_URL at a new place for the clinic's "
                                   "database."))
            if kind == "clinic":
                return False
            self._set_kind(conn, "clinic")
            return True
