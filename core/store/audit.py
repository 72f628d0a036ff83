"""The audit log: sign-ins (and failed ones), uploads, patient views and exports."""
from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from core.i18n import N_
from core.store.engine import _now
from core.store.schema import audit_log
from core.store.users import Role, User, _clean_name


class AuditLog:
    """The audit part of :class:`core.store.ClinicStore`."""

    def _audit(self, conn, user: User | None, action: str, detail: str = "", username: str | None = None) -> None:
        conn.execute(audit_log.insert().values(
            at=_now(), user_id=user.id if user else None,
            username=(user.username if user else username)[:200] if (user or username) else None,
            role=user.role.value if user else None, action=action[:100], detail=str(detail)[:4000]))

    def log(self, actor: User, action: str, detail: str = "") -> None:
        """Record an action of a signed-in user (e.g. ``'patient view'``, ``'export'``)."""
        action = _clean_name(action, "action", 100)
        with self._write() as conn:
            self._audit(conn, self._actor(conn, actor), action, detail)

    def audit_log(self, actor: User, limit: int = 1000) -> pd.DataFrame:
        """The newest ``limit`` entries, newest first: at (UTC), username, role, action, detail."""
        with self._read() as conn:
            self._require(self._actor(conn, actor), N_("read the audit log"), Role.SUPERVISOR)
            rows = conn.execute(sa.select(audit_log.c.at, audit_log.c.username, audit_log.c.role,
                                          audit_log.c.action, audit_log.c.detail)
                                .order_by(audit_log.c.id.desc()).limit(int(limit))).all()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=["at", "username", "role", "action", "detail"])
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        for col in ("username", "role", "action", "detail"):
            frame[col] = frame[col].fillna("").astype(str)
        return frame

