"""Sign-in sessions that survive a reload: a signed, expiring token the server can check and end.

After a sign-in the dashboard calls :meth:`Sessions.start_session`, which records the session and
returns a one-time *ticket* (valid for two minutes). The browser trades the ticket, together with a
random *browser key* it keeps in the dashboard origin's own storage, for the session token at the
dashboard's own ``/_alliance/session`` route (:mod:`ui.server`), which sets it as an HttpOnly,
SameSite=Strict cookie. The token is ``<session id>.<nonce>.<expiry>.<signature>`` with an
HMAC-SHA256 signature under a per-database secret (made by migration 0002). A token is good only
while its signature is right, it has not expired (12 hours after sign-in), its row has not been
ended, its user is active, and the browser presenting it proves the browser key it was issued
with (migration 0004 keeps the key's SHA-256): a cookie planted in another browser, from another
port or another site of the same host, signs nobody in. Sign-out, sign-out everywhere,
deactivation and a new password end the session at once, for every tab and every reload.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

import sqlalchemy as sa

from core.store.engine import _now
from core.store.schema import kiosk_sessions, sessions, users
from core.store.users import Role, User, _aware, _user

SESSION_LIFETIME = timedelta(hours=12)
TICKET_LIFETIME = timedelta(minutes=2)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _live_session(*, of_active_user: bool = True) -> tuple:
    """The conditions of a live session row: not ended, not expired, and (``of_active_user``, which
    needs ``users`` joined) its user active."""
    live = (sessions.c.ended_at.is_(None), sessions.c.expires_at > _now())
    return (*live, users.c.is_active.is_(True)) if of_active_user else live


class Sessions:
    """The sessions part of :class:`core.store.ClinicStore`."""

    def _sign(self, payload: str) -> str:
        return hmac.new(self._session_secret, payload.encode("ascii"), hashlib.sha256).hexdigest()

    def start_session(self, actor: User) -> tuple[int, str]:
        """Record a new session for the user who just signed in: ``(session id, one-time ticket)``."""
        ticket = secrets.token_urlsafe(32)
        now = _now()
        with self._write() as conn:
            user = self._actor(conn, actor)
            session_id = conn.execute(sessions.insert().values(
                user_id=user.id, nonce=secrets.token_urlsafe(16), ticket_hash=_sha256(ticket),
                ticket_expires_at=now + TICKET_LIFETIME, created_at=now,
                expires_at=now + SESSION_LIFETIME).returning(sessions.c.id)).scalar_one()
        return int(session_id), ticket

    def redeem_ticket(self, ticket: str, browser_key: str) -> tuple[str, int] | None:
        """Trade a one-time ticket for the signed session token and its remaining lifetime in
        seconds, binding the session to ``browser_key`` (the random key the browser keeps in the
        dashboard origin's storage); ``None`` for an unknown, used or expired ticket, an ended
        session, or a missing browser key."""
        if not ticket or len(ticket) > 100 or not _good_key(browser_key):
            return None
        now = _now()
        with self._write() as conn:
            row = conn.execute(sa.select(sessions).where(sessions.c.ticket_hash == _sha256(str(ticket)))
                               .with_for_update()).first()
            if row is None:
                return None
            conn.execute(sessions.update().where(sessions.c.id == row.id).values(ticket_hash=None))
            if row.ended_at is not None or _aware(row.ticket_expires_at) < now:
                return None
            conn.execute(sessions.update().where(sessions.c.id == row.id)
                         .values(browser_hash=_sha256(browser_key)))
            expires = _aware(row.expires_at)
        exp = int(expires.timestamp())
        payload = f"{row.id}.{row.nonce}.{exp}"
        return f"{payload}.{self._sign(payload)}", max(0, exp - int(now.timestamp()))

    def ticket_pending(self, session_id: int) -> bool:
        """Whether the session's hand-over ticket is still waiting to be traded for the cookie."""
        with self._read() as conn:
            return conn.execute(sa.select(sessions.c.id).where(
                sessions.c.id == int(session_id), sessions.c.ticket_hash.is_not(None),
                sessions.c.ended_at.is_(None), sessions.c.ticket_expires_at > _now())).first() is not None

    def _parse_token(self, token: str) -> tuple[int, str] | None:
        parts = str(token or "").split(".")
        if len(parts) != 4 or len(token) > 300:
            return None
        sid, nonce, exp, signature = parts
        if not hmac.compare_digest(self._sign(f"{sid}.{nonce}.{exp}"), signature):
            return None
        try:
            if int(exp) <= _now().timestamp():
                return None
            return int(sid), nonce
        except ValueError:
            return None

    def session_user(self, *, token: str | None = None, session_id: int | None = None,
                     browser_key: str | None = None) -> User | None:
        """The user of a live session, else ``None``: wrong signature, expired, ended, or the user
        deactivated. By its id on the server side (a tab that signed in or was restored), or by its
        signed token from a cookie, which also needs the browser key the session was bound to."""
        if token is not None:
            parsed = self._parse_token(token)
            if parsed is None or not _good_key(browser_key):
                return None
            session_id, nonce = parsed
        elif session_id is None:
            return None
        query = (sa.select(users).select_from(sessions.join(users, users.c.id == sessions.c.user_id))
                 .where(sessions.c.id == int(session_id), *_live_session(),
                        # a session in patient mode (core.store.record) signs no one in
                        ~sa.exists().where(kiosk_sessions.c.session_id == sessions.c.id)))
        if token is not None:
            query = query.where(sessions.c.nonce == nonce, sessions.c.browser_hash == _sha256(browser_key))
        with self._read() as conn:
            row = conn.execute(query).first()
        return _user(row) if row is not None else None

    def token_live(self, token: str | None) -> bool:
        """Whether a well-signed token names a live session (whichever browser presents it): what
        tells a cookie planted in another browser, or one whose browser key was cleared, from one
        that merely ended."""
        return self.token_role(token) is not None

    def token_role(self, token: str | None) -> Role | None:
        """The role of the user of the live session a well-signed token names (whichever browser
        presents it), else ``None``. It signs no one in: the dashboard uses it only to know which
        page a reload or a link asks for (``/record`` exists for therapists and supervisors) while
        the page has not yet shown the browser key the session is bound to."""
        parsed = self._parse_token(token) if token else None
        if parsed is None:
            return None
        with self._read() as conn:
            row = conn.execute(sa.select(users.c.role).select_from(
                sessions.join(users, users.c.id == sessions.c.user_id)).where(
                sessions.c.id == parsed[0], sessions.c.nonce == parsed[1], *_live_session())).first()
        return Role(row[0]) if row is not None else None

    def session_id_of(self, token: str | None) -> int | None:
        """The session id a well-signed, unexpired token names (not whether it is still live)."""
        parsed = self._parse_token(token) if token else None
        return parsed[0] if parsed else None

    def session_dataset(self, session_id: int | None) -> str | None:
        """The data set chosen last in a live session (migration 0007), else ``None``: none chosen
        yet, or the session ended or expired. A name only: whether the user may still see it is for
        the reads to say (:mod:`core.store.access`)."""
        if session_id is None:
            return None
        with self._read() as conn:
            return conn.execute(sa.select(sessions.c.dataset).where(
                sessions.c.id == int(session_id), *_live_session(of_active_user=False))).scalar()

    def set_session_dataset(self, session_id: int | None, name: str) -> None:
        """Record the data set a live session works on, so that a reload, a new tab and a patient
        link of that sign-in open on it (nothing for an ended session)."""
        if session_id is None:
            return
        with self._write() as conn:
            conn.execute(sessions.update().where(sessions.c.id == int(session_id), sessions.c.ended_at.is_(None))
                         .values(dataset=str(name)[:200]))

    def end_session(self, session_id: int | None, *, log: bool = True) -> None:
        """End a session at once (sign-out); logged as ``'sign-out'`` when it was live."""
        if session_id is None:
            return
        with self._write() as conn:
            row = conn.execute(sa.select(sessions.c.user_id, sessions.c.ended_at)
                               .where(sessions.c.id == int(session_id))).first()
            if row is None or row.ended_at is not None:
                return
            conn.execute(sessions.update().where(sessions.c.id == int(session_id))
                         .values(ended_at=_now(), ticket_hash=None))
            user_row = conn.execute(sa.select(users).where(users.c.id == row.user_id)).first()
            if log and user_row is not None:
                self._audit(conn, _user(user_row), "sign-out")


def _good_key(key) -> bool:
    """A browser key as the dashboard's script makes them: 16 to 100 URL-safe characters."""
    return isinstance(key, str) and 16 <= len(key) <= 100 and key.isascii() and \
        all(c.isalnum() or c in "-_" for c in key)
