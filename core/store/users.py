"""Users, roles and sign-in: bcrypt passwords (one policy for every account: at least 8 characters,
not one of the most common passwords), a slow-down after repeated failures counted atomically before
the password is checked (per source address and per user name, never a lockout of the right
password), the first supervisor, deactivation and password changes that end open sessions at once."""
from __future__ import annotations

import functools
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
#: Failed sign-ins from one source (client address, over all user names) within the window after
#: which that source is refused until the window has passed. Other sources are not affected.
SOURCE_SIGN_IN_LIMIT = 20
SOURCE_SIGN_IN_WINDOW = timedelta(minutes=15)
#: Failed sign-ins of one user name (from any source) before each further password check of that
#: name waits; the wait doubles with each failure up to NAME_MAX_DELAY. The count ends when the name
#: has had no attempt for NAME_SIGN_IN_WINDOW, or when a supervisor unlocks it.
NAME_FREE_ATTEMPTS = 5
NAME_SIGN_IN_WINDOW = timedelta(minutes=15)
NAME_MAX_DELAY = timedelta(seconds=60)
#: Why a sign-in was refused unchecked, as the audit log records it.
REFUSED_SOURCE = "too many failed sign-ins from this address: refused for 15 minutes"
SLOWED_NAME = "sign-in for this user name slowed down after repeated failures"


def name_delay(failures: int) -> timedelta:
    """The wait before the next password check of a user name after ``failures`` failed ones:
    none up to :data:`NAME_FREE_ATTEMPTS`, then 1 s, 2 s, 4 s … at most :data:`NAME_MAX_DELAY`.

    >>> [name_delay(n).total_seconds() for n in (4, 5, 6, 7, 12)]
    [0.0, 1.0, 2.0, 4.0, 60.0]
    """
    if failures < NAME_FREE_ATTEMPTS:
        return timedelta(0)
    return min(timedelta(seconds=2 ** min(failures - NAME_FREE_ATTEMPTS, 16)), NAME_MAX_DELAY)


@functools.lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of the list zxcvbn ships (Dropbox's password-strength
    estimator, maintained on PyPI as ``zxcvbn``; the list is ranked from Xato's corpus of 10 million
    leaked passwords), lower case."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


def is_common_password(password: str) -> bool:
    """Whether a password (ignoring case and surrounding spaces) is on the common-password list.

    >>> is_common_password("12345678"), is_common_password("Password1"), is_common_password("tres palabras raras")
    (True, True, False)
    """
    return str(password).strip().lower() in _common_passwords()


def _clean_source(source: str | None) -> str:
    """Where a sign-in comes from, as counted and logged: the client address, or ``local``."""
    text = _CONTROL.sub("", str(source or "").strip())[:100]
    return text or "local"


def _aware(value):
    from datetime import timezone

    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


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



@dataclass(frozen=True)
class SignInOutcome:
    """How a sign-in ended: the user, or why not (a refused source, or seconds to wait)."""

    user: User | None
    source_refused: bool = False
    wait_seconds: float = 0.0


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
    "name for the mapping": (N_("Give a name for the mapping."),
                             N_("The name for the mapping must be at most {limit} characters, without line "
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
        if is_common_password(password):
            raise InputError(_("This password is one of the {n:,} most common passwords, the first an attacker "
                               "tries; choose another (for example three or four unrelated words).").format(
                n=len(_common_passwords())))
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
        t = sign_in_throttle
        now = _now()
        stale = t.c.window_start < now - window
        statement = self._upsert(t, key=key, window_start=now, attempts=1).on_conflict_do_update(
            index_elements=[t.c.key],
            set_={"attempts": sa.case((stale, 1), else_=t.c.attempts + 1),
                  "window_start": sa.case((stale, now), else_=t.c.window_start)},
        ).returning(t.c.attempts)
        return conn.execute(statement).scalar_one() <= limit

    def _upsert(self, table, **values):
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return (pg_insert if self.is_postgres else sqlite_insert)(table).values(**values)

    def _pass_name_gate(self, conn, key: str) -> float:
        """Count one attempt on a user name and return 0, or refuse it uncounted and return the
        seconds until the name's next password check. The name's row is locked for the rest of the
        transaction (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` holds the only
        writer), so concurrent guesses are counted one after the other, never from a stale read."""
        t = sign_in_throttle
        now = _now()
        conn.execute(self._upsert(t, key=key, window_start=now, attempts=0, next_at=None)
                     .on_conflict_do_nothing(index_elements=[t.c.key]))
        row = conn.execute(sa.select(t.c.window_start, t.c.attempts, t.c.next_at)
                           .where(t.c.key == key).with_for_update()).one()
        fresh = _aware(row.window_start) >= now - NAME_SIGN_IN_WINDOW
        attempts = row.attempts if fresh else 0
        next_at = _aware(row.next_at) if fresh and row.next_at is not None else None
        if next_at is not None and now < next_at:
            return max((next_at - now).total_seconds(), 0.001)
        attempts += 1
        wait = name_delay(attempts)
        conn.execute(t.update().where(t.c.key == key).values(
            attempts=attempts, window_start=now, next_at=now + wait if wait else None))
        return 0.0

    @staticmethod
    def _release_attempt(conn, key: str) -> None:
        """A right password gives its counted attempt back."""
        t = sign_in_throttle
        conn.execute(t.update().where(t.c.key == key, t.c.attempts > 0).values(attempts=t.c.attempts - 1))

    def authenticate(self, username: str, password: str, source: str | None = None) -> User | None:
        """The active user with this user name and password (bcrypt), else ``None``
        (:meth:`check_sign_in` says why)."""
        return self.check_sign_in(username, password, source).user

    def check_sign_in(self, username: str, password: str, source: str | None = None) -> "SignInOutcome":
        """Check a sign-in and say how it ended; every attempt is in the audit log, with its source.

        ``source`` is where the attempt comes from: the browser's address (the dashboard), or
        ``None`` for this machine (the command line). Each attempt is first counted, in the same
        transaction and before the password is checked, against

        - its **source**: after :data:`SOURCE_SIGN_IN_LIMIT` failures from one address within
          :data:`SOURCE_SIGN_IN_WINDOW`, that address is refused unchecked until the window has passed
          (other addresses are not affected);
        - its **user name** (from any source): after :data:`NAME_FREE_ATTEMPTS` failures, each further
          password check of that name waits for a growing delay (1 s, 2 s, 4 s … at most
          :data:`NAME_MAX_DELAY`) after the previous one; an attempt within the delay is refused unchecked.

        So an attacker can slow guessing on a name but never lock its owner out for long, and a
        source that keeps failing stops only itself. A right password gives its counts back. A
        supervisor ends a name's slow-down at once with :meth:`unlock`."""
        name = str(username or "").strip().lower()[:200]
        # A name with a control character is no one's (_clean_name refuses them), and PostgreSQL's text cannot
        # hold NUL: it is counted and looked up escaped (the audit log escapes what it stores itself).
        key = name.encode("unicode_escape").decode("ascii")[:200] if _CONTROL.search(name) else name
        where = _clean_source(source)
        wait = 0.0
        with self._write() as conn:
            within_source = self._reserve_attempt(conn, "source:" + where, SOURCE_SIGN_IN_LIMIT,
                                                  SOURCE_SIGN_IN_WINDOW)
            if within_source:
                wait = self._pass_name_gate(conn, "user:" + key)
            row = conn.execute(sa.select(users).where(users.c.username == key)).first() if key else None
        refused = not within_source or wait > 0
        if not refused and row is not None and row.password_hash:
            ok = self._check_password(password, row.password_hash)
        else:  # the same bcrypt work whether or not the name exists
            if self._dummy_hash is None:
                self._dummy_hash = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=self.bcrypt_rounds))
            self._check_password(password, self._dummy_hash)
            ok = False
        user = _user(row) if row is not None else None
        if not within_source:
            why = REFUSED_SOURCE
        elif wait > 0:
            why = SLOWED_NAME
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
                self._audit(conn, None, "sign-in failed", f"{why} (from {where})", username=name or "(empty)")
                return SignInOutcome(None, source_refused=not within_source, wait_seconds=wait)
            self._release_attempt(conn, "source:" + where)
            self._release_attempt(conn, "user:" + key)
            self._audit(conn, user, "sign-in", f"password (from {where})")
        return SignInOutcome(user)

    def slowed_names(self, actor: User) -> list[tuple[str, int, float]]:
        """The user names whose sign-in is slowed down now, with their failed attempts and the seconds
        until their next password check (supervisors only)."""
        now = _now()
        t = sign_in_throttle
        with self._read() as conn:
            self._require(self._actor(conn, actor), N_("see the users"), Role.SUPERVISOR)
            rows = conn.execute(sa.select(t.c.key, t.c.attempts, t.c.next_at).where(
                t.c.key.like("user:%"), t.c.attempts >= NAME_FREE_ATTEMPTS,
                t.c.window_start >= now - NAME_SIGN_IN_WINDOW).order_by(t.c.key)).all()
        return [(r.key[len("user:"):], int(r.attempts),
                 max((_aware(r.next_at) - now).total_seconds(), 0.0) if r.next_at is not None else 0.0)
                for r in rows]

    def unlock(self, actor: User, username: str) -> None:
        """End the sign-in slow-down of a user name at once (supervisors only; audited)."""
        name = str(username or "").strip().lower()[:200]
        with self._write() as conn:
            user = self._actor(conn, actor)
            self._require(user, N_("unlock users"), Role.SUPERVISOR)
            conn.execute(sign_in_throttle.delete().where(sign_in_throttle.c.key == "user:" + name))
            self._audit(conn, user, "sign-in unlocked", name)

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
    def _end_user_sessions(conn, user_id: int, keep: int | None = None) -> None:
        """End every open session of a user (but ``keep``, when given)."""
        where = [sessions.c.user_id == user_id, sessions.c.ended_at.is_(None)]
        if keep is not None:
            where.append(sessions.c.id != int(keep))
        conn.execute(sessions.update().where(*where).values(ended_at=_now(), ticket_hash=None))

    def _target(self, conn, username: str):
        row = conn.execute(sa.select(users).where(users.c.username == str(username or "").strip().lower())).first()
        if row is None:
            raise InputError(_("There is no user named '{name}'.").format(name=username))
        return row

    def set_password(self, actor: User, username: str, password: str | None, *,
                     keep_session: int | None = None) -> None:
        """A new password (supervisors for anyone; every user for themself). It ends the user's open
        sessions: all of them when a supervisor sets another user's password, all but
        ``keep_session`` (the session that made the change) when a user sets her own."""
        with self._write() as conn:
            user = self._actor(conn, actor)
            target = self._target(conn, username)
            if target.id != user.id:
                self._require(user, N_("change another user's password"), Role.SUPERVISOR)
            hashed = self._hash(password)
            conn.execute(users.update().where(users.c.id == target.id).values(password_hash=hashed))
            # whoever knew the old password is signed out (the one changing her own stays signed in)
            self._end_user_sessions(conn, target.id, keep=keep_session if target.id == user.id else None)
            self._audit(conn, user, "password changed", target.username)

    def change_own_password(self, actor: User, current: str, new: str, *, keep_session: int | None = None,
                            source: str | None = None) -> bool:
        """A user's new password, given her current one (checked like a sign-in: counted against the
        name's slow-down first). ``False`` when the current password is not right or the check must
        wait; her other sessions end (:meth:`set_password`)."""
        self._hash(new)  # the policy first: a refused new password costs no attempt
        name = actor.username
        with self._write() as conn:
            wait = self._pass_name_gate(conn, "user:" + name)
            row = conn.execute(sa.select(users.c.password_hash).where(users.c.id == actor.id)).first()
        ok = wait == 0 and row is not None and bool(row.password_hash) and \
            self._check_password(current, row.password_hash)
        if not ok:
            with self._write() as conn:
                self._audit(conn, None, "password change failed",
                            f"{'wrong current password' if wait == 0 else SLOWED_NAME} (from {_clean_source(source)})",
                            username=name)
            return False
        with self._write() as conn:
            self._release_attempt(conn, "user:" + name)
        self.set_password(actor, name, new, keep_session=keep_session)
        return True

    def end_sessions(self, actor: User) -> None:
        """Sign out everywhere: end every open session of ``actor`` (this browser's too); audited."""
        with self._write() as conn:
            user = self._actor(conn, actor)
            self._end_user_sessions(conn, user.id)
            self._audit(conn, user, "signed out everywhere")

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
