"""Users, roles and sign-in: bcrypt passwords (one policy for every account), a lockout after
repeated failures counted atomically before the password is checked, a global limit over all user
names, the first supervisor, deactivation that ends open sessions at once."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

import bcrypt
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from core.errors import InputError
from core.i18n import LANGUAGES, N_, _
from core.store.engine import _now
from core.store.errors import AccessDenied
from core.store.schema import sessions, sign_in_throttle, users

MIN_PASSWORD_LENGTH = 8
#: Failed sign-ins of one user name within the window after which sign-in is refused for a while.
FAILED_SIGN_IN_LIMIT = 10
FAILED_SIGN_IN_WINDOW = timedelta(minutes=15)
#: Failed sign-ins over all user names within the window after which every sign-in is refused for
#: the rest of it (password spraying: one guess for each of many names).
GLOBAL_SIGN_IN_LIMIT = 100
GLOBAL_SIGN_IN_WINDOW = timedelta(minutes=5)


class Role(str, Enum):
    SUPERVISOR = "supervisor"
    THERAPIST = "therapist"
    RESEARCHER = "researcher"


_ROLE_LABELS = {"supervisor": N_("supervisor"), "therapist": N_("therapist"), "researcher": N_("researcher")}


def role_label(role: Role | str) -> str:
    """A role in words, in the current language (the stored value is always the English one)."""
    value = role.value if isinstance(role, Role) else str(role)
    return _(_ROLE_LABELS[value]) if value in _ROLE_LABELS else value


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: Role
    therapist_code: str | None
    is_demo: bool
    email: str | None = None
    is_active: bool = True



def _user(row) -> User:
    return User(id=row.id, username=row.username, display_name=row.display_name, role=Role(row.role),
                therapist_code=row.therapist_code, is_demo=bool(row.is_demo), email=row.email,
                is_active=bool(row.is_active))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


#: What :func:`_clean_name` says when a name is empty or too long, by the kind of name.
_NAME_MESSAGES = {
    "user name": (N_("Give a user name."),
                  N_("The user name must be at most {limit} characters, without line breaks or tabs.")),
    "e-mail address": (N_("Give an e-mail address."),
                       N_("The e-mail address must be at most {limit} characters, without line breaks or tabs.")),
    "display name": (N_("Give a display name."),
                     N_("The display name must be at most {limit} characters, without line breaks or tabs.")),
    "name for the data set": (N_("Give a name for the data set."),
                              N_("The name for the data set must be at most {limit} characters, without line "
                                 "breaks or tabs.")),
    "action": (N_("Give an action."),
               N_("The action must be at most {limit} characters, without line breaks or tabs.")),
}


def _clean_name(text, what: str, limit: int = 200) -> str:
    text = str(text or "").strip()
    empty, too_long = _NAME_MESSAGES[what]
    if not text:
        raise InputError(_(empty))
    if len(text) > limit or _CONTROL.search(text):
        raise InputError(_(too_long).format(limit=limit))
    return text



class UserAccounts:
    """The users part of :class:`core.store.ClinicStore`: who may sign in, with which role."""

    def _actor(self, conn, actor: User | None) -> User:
        """The acting user as stored now (role, therapist code, active)."""
        if actor is None:
            raise AccessDenied(_("Sign in first."))
        row = conn.execute(sa.select(users).where(users.c.id == actor.id)).first()
        if row is None or not row.is_active or row.username != actor.username:
            raise AccessDenied(_("This account is not active any more; sign in again."))
        return _user(row)

    @staticmethod
    def _require(user: User, what: str, *roles: Role) -> None:
        """Refuse unless ``user`` has one of ``roles``; ``what`` (marked with ``N_``) is the action."""
        if user.role not in roles:
            who = _(" or ").join(role_label(r) for r in roles)
            raise AccessDenied(_("Only a {role} can {action}.").format(role=who, action=_(what)))

    def _hash(self, password: str | None) -> str | None:
        """The bcrypt hash of a password a person chose: the same policy for every account, demo
        accounts too (only the demo set-up writes the demo password, without this function)."""
        if password is None:
            return None
        password = str(password)
        if len(password.encode("utf-8")) > 72:
            raise InputError(_("A password can be at most 72 bytes long (about 72 letters); choose a shorter one."))
        if len(password) < MIN_PASSWORD_LENGTH or not password.strip():
            raise InputError(_("Choose a password of at least {n} characters.").format(n=MIN_PASSWORD_LENGTH))
        return self._bcrypt(password)

    def _bcrypt(self, password: str) -> str:
        return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=self.bcrypt_rounds)).decode("ascii")

    @staticmethod
    def _check_password(password: str | None, hashed: str | bytes) -> bool:
        try:
            return bcrypt.checkpw(str(password or "").encode("utf-8"),
                                  hashed.encode("ascii") if isinstance(hashed, str) else hashed)
        except ValueError:  # longer than 72 bytes, or not a bcrypt hash
            return False

    def _insert_user(self, conn, username, password_hash, role: Role, display_name, therapist_code,
                     is_demo: bool, email) -> User:
        clash = (users.c.username == username) | (users.c.email == username)
        if email:
            clash = clash | (users.c.username == email) | (users.c.email == email)
        if conn.execute(sa.select(users.c.id).where(clash)).first():
            raise InputError(_("A user named '{name}' (or with that e-mail) already exists.").format(name=username))
        uid = conn.execute(users.insert().values(
            username=username, email=email, display_name=display_name, role=role.value,
            therapist_code=therapist_code, password_hash=password_hash, is_active=True,
            is_demo=bool(is_demo), created_at=_now()).returning(users.c.id)).scalar_one()
        return User(id=uid, username=username, display_name=display_name, role=role,
                    therapist_code=therapist_code, is_demo=bool(is_demo), email=email, is_active=True)

    def create_user(self, actor: User | None, username: str, password: str | None, role: Role | str,
                    display_name: str | None = None, therapist_code: str | None = None,
                    email: str | None = None) -> User:
        """Add a user (supervisors only; ``actor=None`` only while the database has no user: the
        first user, a supervisor). ``password=None``: no local password (single sign-on only).
        Therapists need the therapist code used in the data's therapist column."""
        try:
            role = Role(role)
        except ValueError:
            raise InputError(_("Unknown role '{role}'; choose supervisor, therapist or researcher.").format(role=role)) from None
        username = _clean_name(username, "user name").lower()
        email = _clean_name(email, "e-mail address", 320).lower() if email else None
        display_name = _clean_name(display_name or username, "display name")
        code = str(therapist_code or "").strip() or None
        if role is Role.THERAPIST and not code:
            raise InputError(_("A therapist needs a therapist code: the therapist's name or code exactly as in "
                               "the data's therapist column (for example 'T01 Ana')."))
        if role is not Role.THERAPIST:
            code = None
        if code and (len(code) > 200 or _CONTROL.search(code)):
            raise InputError(_("The therapist code must be at most 200 characters, without line breaks or tabs."))
        hashed = self._hash(password)
        try:
            with self._write() as conn:
                if actor is None:
                    self._lock_setup(conn)
                    if conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one():
                        raise AccessDenied(_("Sign in as a supervisor to add users."))
                    if role is not Role.SUPERVISOR:
                        raise InputError(_("The first user must be a supervisor."))
                    user = None
                else:
                    user = self._actor(conn, actor)
                    self._require(user, N_("add users"), Role.SUPERVISOR)
                created = self._insert_user(conn, username, hashed, role, display_name, code, False, email)
                self._audit(conn, user or created, "user created",
                            f"{created.username} ({role.value}{', ' + code if code else ''})")
        except sa_exc.IntegrityError:
            raise InputError(_("A user named '{name}' (or with that e-mail) already exists.").format(name=username)) from None
        return created

    def _reserve_attempt(self, conn, key: str, limit: int, window) -> bool:
        """Count one attempt for ``key`` in ONE statement (an upsert that starts a new window when
        the old one has passed) and say whether it is within ``limit``. Attempts are counted before
        the password is checked, so concurrent guesses cannot all pass a count read beforehand."""
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        t = sign_in_throttle
        now = _now()
        stale = t.c.window_start < now - window
        insert = (pg_insert if self.is_postgres else sqlite_insert)(t).values(key=key, window_start=now, attempts=1)
        statement = insert.on_conflict_do_update(
            index_elements=[t.c.key],
            set_={"attempts": sa.case((stale, 1), else_=t.c.attempts + 1),
                  "window_start": sa.case((stale, now), else_=t.c.window_start)},
        ).returning(t.c.attempts)
        return conn.execute(statement).scalar_one() <= limit

    @staticmethod
    def _release_attempt(conn, key: str) -> None:
        """A right password gives its counted attempt back."""
        t = sign_in_throttle
        conn.execute(t.update().where(t.c.key == key, t.c.attempts > 0).values(attempts=t.c.attempts - 1))

    def authenticate(self, username: str, password: str) -> User | None:
        """The active user with this user name and password (bcrypt), else ``None``. Every attempt
        is in the audit log. Each attempt is first counted (one atomic statement, committed before
        the password is checked) against 10 per user name in 15 minutes and 100 over all names in
        5 minutes; past either limit sign-in is refused without checking the password until the
        window has passed. A right password gives its count back."""
        name = str(username or "").strip().lower()[:200]
        with self._write() as conn:
            within_all = self._reserve_attempt(conn, "all", GLOBAL_SIGN_IN_LIMIT, GLOBAL_SIGN_IN_WINDOW)
            within_name = self._reserve_attempt(conn, "user:" + name, FAILED_SIGN_IN_LIMIT, FAILED_SIGN_IN_WINDOW)
            row = conn.execute(sa.select(users).where(users.c.username == name)).first() if name else None
        refused = not (within_all and within_name)
        if not refused and row is not None and row.password_hash:
            ok = self._check_password(password, row.password_hash)
        else:  # the same bcrypt work whether or not the name exists
            if self._dummy_hash is None:
                self._dummy_hash = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=self.bcrypt_rounds))
            self._check_password(password, self._dummy_hash)
            ok = False
        user = _user(row) if row is not None else None
        if not within_name:
            why = "too many failed attempts: refused for 15 minutes"
        elif not within_all:
            why = "too many failed sign-ins on this server: refused for 5 minutes"
        elif user is None:
            why = "unknown user name"
        elif not user.is_active:
            why = "account deactivated"
        elif not row.password_hash:
            why = "no password (single sign-on only)"
        elif not ok:
            why = "wrong password"
        else:
            why = ""
        with self._write() as conn:
            if why:
                self._audit(conn, None, "sign-in failed", why, username=name or "(empty)")
                return None
            self._release_attempt(conn, "all")
            self._release_attempt(conn, "user:" + name)
            self._audit(conn, user, "sign-in", "password")
        return user

    def user_for_identity(self, email_or_username: str) -> User | None:
        """The active user whose user name or e-mail is the identity of an OpenID Connect sign-in
        (``st.login``), else ``None``; logs the sign-in (or the failed one)."""
        ident = str(email_or_username or "").strip().lower()[:320]
        if not ident:
            return None
        with self._write() as conn:
            row = conn.execute(sa.select(users).where(
                (users.c.username == ident) | (users.c.email == ident)).order_by(users.c.id)).first()
            if row is None or not row.is_active:
                self._audit(conn, None, "sign-in failed",
                            "single sign-on: " + ("not registered" if row is None else "account deactivated"),
                            username=ident[:200])
                return None
            user = _user(row)
            self._audit(conn, user, "sign-in", "single sign-on")
        return user

    def users(self, actor: User) -> list[User]:
        """Every user, deactivated ones too (supervisors only)."""
        with self._read() as conn:
            self._require(self._actor(conn, actor), N_("see the users"), Role.SUPERVISOR)
            rows = conn.execute(sa.select(users).order_by(users.c.username)).all()
        return [_user(r) for r in rows]

    def demo_users(self) -> list[User]:
        """The active demo accounts of the demo database, for the sign-in page (their password is
        ``demo``); none in any other database."""
        if not self.is_demo_database:
            return []
        with self._read() as conn:
            rows = conn.execute(sa.select(users).where(users.c.is_demo.is_(True), users.c.is_active.is_(True))
                                .order_by(users.c.id)).all()
        return [_user(r) for r in rows]

    @staticmethod
    def _end_user_sessions(conn, user_id: int) -> None:
        conn.execute(sessions.update().where(sessions.c.user_id == user_id, sessions.c.ended_at.is_(None))
                     .values(ended_at=_now(), ticket_hash=None))

    def _target(self, conn, username: str):
        row = conn.execute(sa.select(users).where(users.c.username == str(username or "").strip().lower())).first()
        if row is None:
            raise InputError(_("There is no user named '{name}'.").format(name=username))
        return row

    def set_password(self, actor: User, username: str, password: str | None) -> None:
        """A new password (supervisors for anyone; every user for themself)."""
        with self._write() as conn:
            user = self._actor(conn, actor)
            target = self._target(conn, username)
            if target.id != user.id:
                self._require(user, N_("change another user's password"), Role.SUPERVISOR)
            hashed = self._hash(password)
            conn.execute(users.update().where(users.c.id == target.id).values(password_hash=hashed))
            if target.id != user.id:  # whoever knew the old password is signed out
                self._end_user_sessions(conn, target.id)
            self._audit(conn, user, "password changed", target.username)

    def deactivate(self, actor: User, username: str) -> None:
        """The user can no longer sign in, and their open sessions stop working (supervisors only).
        The last active supervisor cannot be deactivated."""
        with self._write() as conn:
            user = self._actor(conn, actor)
            self._require(user, N_("deactivate users"), Role.SUPERVISOR)
            target = self._target(conn, username)
            if target.role == Role.SUPERVISOR.value and target.is_active:
                others = conn.execute(sa.select(sa.func.count()).select_from(users).where(
                    users.c.role == Role.SUPERVISOR.value, users.c.is_active.is_(True),
                    users.c.id != target.id)).scalar_one()
                if not others:
                    raise InputError(_("This is the last active supervisor; add another supervisor first."))
            conn.execute(users.update().where(users.c.id == target.id).values(is_active=False))
            self._end_user_sessions(conn, target.id)
            self._audit(conn, user, "user deactivated", target.username)

    def reactivate(self, actor: User, username: str) -> None:
        with self._write() as conn:
            user = self._actor(conn, actor)
            self._require(user, N_("reactivate users"), Role.SUPERVISOR)
            target = self._target(conn, username)
            conn.execute(users.update().where(users.c.id == target.id).values(is_active=True))
            self._audit(conn, user, "user reactivated", target.username)


    def language_of(self, user: User) -> str | None:
        """The interface language ``user`` chose (a code of :data:`core.i18n.LANGUAGES`, e.g. ``"es"``),
        or ``None`` when she never chose one (or the account is gone)."""
        with self._read() as conn:
            code = conn.execute(sa.select(users.c.language).where(users.c.id == user.id)).scalar()
        return code if code in LANGUAGES else None

    def set_language(self, actor: User, language: str | None) -> None:
        """Store the interface language ``actor`` chose for herself (``None`` forgets it: the
        dashboard then follows the browser's language). Not an audited action."""
        if language is not None and language not in LANGUAGES:
            raise InputError(_("The interface language must be one of {codes}.").format(
                codes=", ".join(LANGUAGES)))
        with self._write() as conn:
            user = self._actor(conn, actor)
            conn.execute(users.update().where(users.c.id == user.id).values(language=language))
