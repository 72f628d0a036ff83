"""Sign-in under attack, on SQLite and PostgreSQL: concurrent guesses (threads and processes) are
counted before any password is checked; failures slow down their source and their user name but
never lock the name's owner out (issue 25); one password policy for every account, common passwords
refused; demo accounts only in the demo database; sessions bound to the browser that signed in,
which a sign-out, sign-out everywhere, a deactivation or a new password end at once."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import math

import sqlalchemy as sa

from core.errors import InputError
from core.store import AccessDenied, ClinicStore, Role
from core.store import sessions as sessions_module
from core.store import users as users_module
from core.store.users import NAME_FREE_ATTEMPTS, NAME_MAX_DELAY, SLOWED_NAME, SOURCE_SIGN_IN_LIMIT

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"
KEY = "browser-key-of-the-test-0123456789"


class Clock:
    """A clock the sign-in throttle reads (``core.store.users._now``), moved by hand."""

    def __init__(self, monkeypatch):
        self.now = users_module._now()
        monkeypatch.setattr(users_module, "_now", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def store(db_url):
    s = ClinicStore(db_url, bcrypt_rounds=6)
    s.init_clinic()
    s.create_user(None, "boss", PASSWORD, Role.SUPERVISOR)
    yield s
    s.close()


def outcomes(store: ClinicStore, name: str) -> dict[str, int]:
    """How each sign-in attempt of ``name`` ended, from the audit log (the source left out)."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT action, detail FROM audit_log WHERE username = :u"), {"u": name}).all()
    counts: dict[str, int] = {}
    for action, detail in rows:
        key = "ok" if action == "sign-in" else detail.rsplit(" (from ", 1)[0] if action == "sign-in failed" else None
        if key:
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_fifty_concurrent_guesses_check_at_most_the_free_attempts(store, monkeypatch):
    """49 wrong guesses and the right password at once, from 50 threads, the clock standing still:
    at most NAME_FREE_ATTEMPTS passwords are checked (each attempt is counted in the same transaction,
    before the check, under the name's row lock); the rest are refused unchecked, the right one too."""
    Clock(monkeypatch)
    barrier = threading.Barrier(50)
    results = []

    def attempt(password):
        barrier.wait()
        results.append(store.authenticate("boss", password))

    threads = [threading.Thread(target=attempt, args=("wrong guess %d" % i,)) for i in range(49)]
    threads.append(threading.Thread(target=attempt, args=(PASSWORD,)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = outcomes(store, "boss")
    assert len(results) == 50 and sum(seen.values()) == 50, seen
    # A right password checked early gives its count back, so one more guess may be checked after it.
    assert seen.get("wrong password", 0) + seen.get("ok", 0) <= NAME_FREE_ATTEMPTS + seen.get("ok", 0), seen
    refused = seen.get(SLOWED_NAME, 0) + seen.get(users_module.REFUSED_SOURCE, 0)
    assert refused >= 50 - NAME_FREE_ATTEMPTS - 1, seen
    assert seen.get(users_module.REFUSED_SOURCE, 0) <= 50 - SOURCE_SIGN_IN_LIMIT, seen


CHILD = textwrap.dedent("""
    import sys
    from core.store import ClinicStore
    url, n, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    store = ClinicStore(url, bcrypt_rounds=6)
    for k in range(n):
        store.authenticate("boss", "wrong guess %d" % k, source=source)
""")


def test_concurrent_guesses_from_several_processes_check_at_most_the_free_attempts_and_delays(store, tmp_path):
    """4 processes × 8 guesses from 4 addresses (real time): after the free attempts, the k-th further
    check waits 2^k − 1 s in all, so within T seconds at most log2(T + 1) more are checked."""
    started = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, store.url, "8", f"10.0.0.{i}"], cwd=ROOT)
             for i in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    elapsed = time.monotonic() - started
    seen = outcomes(store, "boss")
    assert sum(seen.values()) == 32, seen
    assert seen.get("wrong password", 0) <= NAME_FREE_ATTEMPTS + math.floor(math.log2(elapsed + 1)), (seen, elapsed)
    assert seen.get(SLOWED_NAME, 0) >= 32 - NAME_FREE_ATTEMPTS - math.floor(math.log2(elapsed + 1)), seen


def test_an_attacker_slows_a_name_down_but_never_locks_its_owner_out(store, monkeypatch):
    """Guesses from one address slow the name down (1, 2, 4 … at most 60 s between checks) and, after
    20 failures, stop that address only; the owner from another address waits at most a minute, and
    right passwords never slow anyone (before: 10 failures locked the name, right password
    included, for 15 minutes)."""
    clock = Clock(monkeypatch)
    for _ in range(NAME_FREE_ATTEMPTS + 3):
        assert store.authenticate("boss", PASSWORD, source="10.0.0.9") is not None   # right: never slowed
    for k in range(40):                                               # the attacker, as fast as she can
        assert store.authenticate("boss", "guess %d" % k, source="203.0.113.5") is None
        clock.advance(2)
    seen = outcomes(store, "boss")
    assert seen[users_module.REFUSED_SOURCE] == 40 - SOURCE_SIGN_IN_LIMIT         # her address is stopped
    assert seen["wrong password"] < SOURCE_SIGN_IN_LIMIT and seen[SLOWED_NAME] > 0
    owner = store.check_sign_in("boss", PASSWORD, source="10.0.0.9")
    assert owner.user is not None or 0 < owner.wait_seconds <= NAME_MAX_DELAY.total_seconds()
    clock.advance(NAME_MAX_DELAY.total_seconds() + 1)
    assert store.authenticate("boss", PASSWORD, source="10.0.0.9") is not None    # at most a minute later
    assert store.check_sign_in("boss", PASSWORD, source="203.0.113.5").source_refused  # hers still refused
    clock.advance(15 * 60 + 1)
    assert store.authenticate("boss", PASSWORD, source="203.0.113.5") is not None  # the window has passed


def test_a_slowed_name_waits_then_a_supervisor_unlocks_it(store, monkeypatch):
    clock = Clock(monkeypatch)
    boss = store.authenticate("boss", PASSWORD)
    store.create_user(boss, "carla", PASSWORD, Role.THERAPIST, therapist_code="T03")
    for _ in range(NAME_FREE_ATTEMPTS + 2):
        store.authenticate("carla", "wrong", source="198.51.100.7")
        clock.advance(0.1)
    outcome = store.check_sign_in("carla", PASSWORD, source="192.0.2.1")
    assert outcome.user is None and 0 < outcome.wait_seconds <= NAME_MAX_DELAY.total_seconds()
    slowed = store.slowed_names(boss)
    assert [name for name, _failed, _wait in slowed] == ["carla"] and slowed[0][1] >= NAME_FREE_ATTEMPTS
    rita = store.create_user(boss, "rita", PASSWORD, Role.RESEARCHER)
    with pytest.raises(AccessDenied, match="supervisor"):
        store.unlock(rita, "carla")
    store.unlock(boss, "carla")
    assert store.slowed_names(boss) == []
    assert store.authenticate("carla", PASSWORD, source="192.0.2.1") is not None
    log = store.audit_log(boss)
    assert ((log["action"] == "sign-in unlocked") & (log["detail"] == "carla")).any()
    assert log["detail"].str.contains("from 198.51.100.7").any()                 # where the failures came from


def test_a_source_limit_stops_that_address_across_many_names(store, monkeypatch):
    Clock(monkeypatch)
    for k in range(SOURCE_SIGN_IN_LIMIT):
        assert store.authenticate(f"nobody{k}", "guess", source="203.0.113.8") is None
    assert store.check_sign_in("boss", PASSWORD, source="203.0.113.8").source_refused
    assert store.authenticate("boss", PASSWORD, source="192.0.2.44") is not None  # every other address signs in


def test_one_password_policy_for_every_account(db_url, tmp_path):
    demo = ClinicStore(db_url, bcrypt_rounds=4)
    assert demo.seed_demo() is True and demo.is_demo_database
    sup = demo.authenticate("demo-supervisor", "demo")
    for weak in ("", "   ", "demo", "short"):
        with pytest.raises(InputError, match="at least 8"):
            demo.set_password(sup, "demo-researcher", weak)
        with pytest.raises(InputError, match="at least 8"):
            demo.create_user(sup, "someone", weak, Role.RESEARCHER)
    for common in ("12345678", "password", "Password1", " qwertyuiop ", "iloveyou"):  # zxcvbn's list
        with pytest.raises(InputError, match="most common passwords"):
            demo.set_password(sup, "demo-researcher", common)
        with pytest.raises(InputError, match="most common passwords"):
            demo.create_user(sup, "someone", common, Role.RESEARCHER)
    demo.set_password(sup, "demo-researcher", "three unrelated words")
    with pytest.raises(TypeError):                                   # no way to make a demo account by hand
        demo.create_user(sup, "another", PASSWORD, Role.RESEARCHER, is_demo=True)
    demo.close()


def test_demo_accounts_only_in_the_demo_database(db_url, tmp_path, monkeypatch):
    clinic = ClinicStore(db_url, bcrypt_rounds=4)
    assert clinic.init_clinic() is True and clinic.init_clinic() is False
    assert clinic.seed_demo() is False                               # store init: never seeded
    assert clinic.demo_users() == [] and clinic.authenticate("demo-supervisor", "demo") is None
    clinic.close()
    demo = ClinicStore(f"sqlite:///{tmp_path / 'demo.db'}", bcrypt_rounds=4)
    demo.seed_demo()
    with pytest.raises(InputError, match="demo database"):
        demo.init_clinic()
    demo.close()


def test_the_dashboard_opens_the_demo_database_only_when_no_clinic_database_is_configured(tmp_path, monkeypatch):
    from core.store import dashboard_url, default_url, demo_url
    from ui.server import open_store

    monkeypatch.delenv("ALLIANCE_DATABASE_URL", raising=False)
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path))
    assert dashboard_url() == demo_url() and open_store(dashboard_url()).demo_users()
    ClinicStore(default_url(), bcrypt_rounds=4).init_clinic()        # python -m core store init
    assert dashboard_url() == default_url()
    assert open_store(dashboard_url()).demo_users() == []
    monkeypatch.setenv("ALLIANCE_DATABASE_URL", f"sqlite:///{tmp_path / 'server.db'}")
    assert dashboard_url() == f"sqlite:///{tmp_path / 'server.db'}"
    assert open_store(dashboard_url()).demo_users() == []             # a configured database: no demo


def test_sessions_survive_until_ended_and_end_at_once(store):
    boss = store.authenticate("boss", PASSWORD)
    store.create_user(boss, "carla", PASSWORD, Role.THERAPIST, therapist_code="T03")
    carla = store.authenticate("carla", PASSWORD)
    sid, ticket = store.start_session(carla)
    assert store.ticket_pending(sid)
    assert store.redeem_ticket(ticket, "") is None and store.ticket_pending(sid)  # no browser key: refused
    token, seconds = store.redeem_ticket(ticket, KEY)
    assert 11 * 3600 < seconds <= 12 * 3600 and not store.ticket_pending(sid)
    assert store.redeem_ticket(ticket, KEY) is None                  # one-time
    assert store.session_user(token=token, browser_key=KEY).username == "carla"
    assert store.session_user(session_id=sid).username == "carla"
    sid_, nonce, exp, sig = token.split(".")
    for forged in (f"{sid_}.{nonce}.{int(exp) + 3600}.{sig}", f"{int(sid_) + 1}.{nonce}.{exp}.{sig}",
                   token[:-1] + ("0" if token[-1] != "0" else "1"), "", "a.b.c.d"):
        assert store.session_user(token=forged, browser_key=KEY) is None
    store.deactivate(boss, "carla")                                  # deactivation ends it at once
    assert store.session_user(token=token, browser_key=KEY) is None and store.session_user(session_id=sid) is None
    store.reactivate(boss, "carla")
    assert store.session_user(token=token, browser_key=KEY) is None  # and it stays ended
    sid2, ticket2 = store.start_session(store.authenticate("carla", PASSWORD))
    token2, _ = store.redeem_ticket(ticket2, KEY)
    store.set_password(boss, "carla", "a new long password")         # a new password ends it too
    assert store.session_user(token=token2, browser_key=KEY) is None
    sid3, ticket3 = store.start_session(boss)
    token3, _ = store.redeem_ticket(ticket3, KEY)
    store.end_session(sid3)                                          # sign-out
    assert store.session_user(token=token3, browser_key=KEY) is None
    assert "sign-out" in set(store.audit_log(boss)["action"])


def test_a_cookie_counts_only_in_the_browser_it_was_issued_to(store):
    """A token is bound to the browser key sent with its ticket: the same cookie planted in another
    browser (whose key differs, or which has none) signs nobody in, though the session is live."""
    boss = store.authenticate("boss", PASSWORD)
    sid, ticket = store.start_session(boss)
    token, _ = store.redeem_ticket(ticket, KEY)
    assert store.session_user(token=token, browser_key=KEY).username == "boss"
    for other in ("another-browser-key-0123456789", None, "", KEY[:-1], KEY + "x", "ü" * 20):
        assert store.session_user(token=token, browser_key=other) is None, other
    assert store.token_live(token)                                  # live: so the refusal is worth a note
    store.end_session(sid)
    assert not store.token_live(token)


def test_a_password_change_ends_the_other_sessions_and_sign_out_everywhere_ends_all(store):
    boss = store.authenticate("boss", PASSWORD)
    here, _ = store.start_session(boss)
    elsewhere, ticket = store.start_session(boss)
    token, _ = store.redeem_ticket(ticket, KEY)
    assert not store.change_own_password(boss, "not my password", "a brand new passphrase", keep_session=here)
    assert store.session_user(session_id=elsewhere) is not None      # a wrong current password changes nothing
    with pytest.raises(InputError, match="most common"):
        store.change_own_password(boss, PASSWORD, "12345678", keep_session=here)
    assert store.change_own_password(boss, PASSWORD, "a brand new passphrase", keep_session=here)
    assert store.session_user(session_id=here).username == "boss"    # the one that changed it stays
    assert store.session_user(session_id=elsewhere) is None           # every other one ended
    assert store.session_user(token=token, browser_key=KEY) is None
    assert store.authenticate("boss", PASSWORD) is None and store.authenticate("boss", "a brand new passphrase")
    second, _ = store.start_session(boss)
    store.set_password(boss, "boss", "yet another passphrase", keep_session=second)  # the Users page, for herself
    assert store.session_user(session_id=here) is None and store.session_user(session_id=second) is not None
    store.end_sessions(boss)                                          # sign out everywhere
    assert store.session_user(session_id=second) is None
    actions = set(store.audit_log(store.authenticate("boss", "yet another passphrase"))["action"])
    assert {"password changed", "password change failed", "signed out everywhere"} <= actions


def test_expired_tickets_and_sessions_are_refused(store, monkeypatch):
    boss = store.authenticate("boss", PASSWORD)
    sid, ticket = store.start_session(boss)
    real_now = sessions_module._now
    monkeypatch.setattr(sessions_module, "_now", lambda: real_now() + timedelta(minutes=3))
    assert store.redeem_ticket(ticket, KEY) is None                  # a ticket lives two minutes
    monkeypatch.setattr(sessions_module, "_now", real_now)
    sid, ticket = store.start_session(boss)
    token, _ = store.redeem_ticket(ticket, KEY)
    monkeypatch.setattr(sessions_module, "_now", lambda: real_now() + timedelta(hours=12, minutes=1))
    assert store.session_user(token=token, browser_key=KEY) is None and store.session_user(session_id=sid) is None


def test_a_name_with_a_nul_or_line_break_is_an_unknown_name_not_an_error(store):
    """PostgreSQL's text cannot hold NUL: a typed name with one (or any control character) is counted
    and logged escaped, and is simply no one's name."""
    for typed in ("boss\x00", "bo\nss", "\x00"):
        outcome = store.check_sign_in(typed, PASSWORD, source="203.0.113.9")
        assert outcome.user is None and not outcome.source_refused
    boss = store.authenticate("boss", PASSWORD)
    failed = store.audit_log(boss)
    failed = failed[failed["action"] == "sign-in failed"]
    assert len(failed) == 3 and failed["username"].str.contains("\\x00", regex=False).sum() == 2
