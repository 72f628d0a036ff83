"""The demo accounts and the demo clinic, seeded into a database without users."""
from __future__ import annotations

import sqlalchemy as sa

from core.demo import demo_dataset
from core.store.schema import datasets, users
from core.store.uploads import _upload_frame
from core.store.users import Role

#: Name of the stored demo clinic (seeded by :meth:`DemoSeed.seed_demo`).
DEMO_DATASET = "Demo clinic"
DEMO_PASSWORD = "demo"


class DemoSeed:
    """The demo part of :class:`core.store.ClinicStore`."""

    DEMO_USERS = (
        ("demo-supervisor", "Demo supervisor", Role.SUPERVISOR, None),
        ("demo-therapist-ana", "Demo therapist Ana (T01)", Role.THERAPIST, "T01 Ana"),
        ("demo-therapist-bruno", "Demo therapist Bruno (T02)", Role.THERAPIST, "T02 Bruno"),
        ("demo-researcher", "Demo researcher", Role.RESEARCHER, None),
    )

    def seed_demo(self) -> bool:
        """On a database without users: the demo users (password ``demo``, ``is_demo``) and the demo
        clinic as the data set ``'Demo clinic'``. Returns whether it seeded; safe to call at every
        start and from several processes at once."""
        with self._read() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one():
                return False
        demo = demo_dataset()
        new, roles, extras = _upload_frame(demo.validated)
        hashed = [self._hash(DEMO_PASSWORD, True) for _ in self.DEMO_USERS]
        with self._write() as conn:
            self._lock_setup(conn)
            if conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one():
                return False
            for (username, display, role, code), h in zip(self.DEMO_USERS, hashed):
                self._insert_user(conn, username, h, role, display, code, True, None)
            self._audit(conn, None, "demo set-up", "demo users and the demo clinic created",
                        username="demo set-up")
            if conn.execute(sa.select(datasets.c.id).where(datasets.c.name == DEMO_DATASET)).first() is None:
                self._store(conn, None, DEMO_DATASET, demo.validated, new, roles, extras, 0,
                            demo.instruments, is_demo=True)
        return True
