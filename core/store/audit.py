"""The audit log: sign-ins (and failed ones), uploads, patient views and exports.

Text in an entry (user name, action, detail) is stored escaped, so that every entry is one line
whatever a user typed: a backslash is written ``\\\\``, a line feed ``\\n``, a carriage return
``\\r``, a tab ``\\t``, and every other control character (and the Unicode line and paragraph
separators) as ``\\xHH`` or ``\\uHHHH`` (:func:`escape_text`). A failed sign-in with the user name
``eve\\n2026-01-01,boss,supervisor,export`` is stored, shown and exported as
``eve\\n2026-01-01,boss,supervisor,export`` on one line, never as a second entry.
"""
from __future__ import annotations

import re

import pandas as pd
import sqlalchemy as sa

from core.i18n import N_
from core.store.engine import _now
from core.store.schema import audit_log
from core.store.users import Role, User, _clean_name

_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_one(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_text(text, limit: int | None = None) -> str:
    """``text`` with backslashes and control characters escaped (one line, readable), cut to at
    most ``limit`` characters without cutting an escape in two.

    >>> escape_text("eve\\n2026-01-01,boss,export")
    'eve\\\\n2026-01-01,boss,export'
    >>> print(escape_text("a\\\\b\\tc\\x00\\u2028"))
    a\\\\b\\tc\\x00\\u2028
    """
    text = str(text)
    out = _UNSAFE.sub(lambda m: _escape_one(m.group()), text)
    if limit is None or len(out) <= limit:
        return out
    pieces, n = [], 0
    for char in text:
        piece = _escape_one(char) if _UNSAFE.match(char) else char
        if n + len(piece) > limit:
            break
        pieces.append(piece)
        n += len(piece)
    return "".join(pieces)


def one_line(text: str) -> str:
    """Control characters of an entry stored before text was escaped, escaped for showing and
    exporting (backslashes left as they are; entries stored since hold none)."""
    return _CONTROL.sub(lambda m: _escape_one(m.group()), text) if _CONTROL.search(text) else text


class AuditLog:
    """The audit part of :class:`core.store.ClinicStore`."""

    def _audit(self, conn, user: User | None, action: str, detail: str = "", username: str | None = None) -> None:
        name = user.username if user else username
        conn.execute(audit_log.insert().values(
            at=_now(), user_id=user.id if user else None,
            username=escape_text(name, 200) if name else None,
            role=user.role.value if user else None, action=escape_text(action, 100),
            detail=escape_text(detail, 4000)))

    def log(self, actor: User, action: str, detail: str = "") -> None:
        """Record an action of a signed-in user (e.g. ``'patient view'``, ``'export'``)."""
        action = _clean_name(action, "action", 100)
        with self._write() as conn:
            self._audit(conn, self._actor(conn, actor), action, detail)

    def audit_log(self, actor: User, limit: int = 1000) -> pd.DataFrame:
        """The newest ``limit`` entries, newest first: at (UTC), username, role, action, detail
        (each text on one line: see the module's docstring)."""
        with self._read() as conn:
            self._require(self._actor(conn, actor), N_("read the audit log"), Role.SUPERVISOR)
            rows = conn.execute(sa.select(audit_log.c.at, audit_log.c.username, audit_log.c.role,
                                          audit_log.c.action, audit_log.c.detail)
                                .order_by(audit_log.c.id.desc()).limit(int(limit))).all()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=["at", "username", "role", "action", "detail"])
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        for col in ("username", "role", "action", "detail"):
            frame[col] = frame[col].fillna("").astype(str).map(one_line)
        return frame
