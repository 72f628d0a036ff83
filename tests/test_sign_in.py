"""Sign-in under attack, on SQLite and PostgreSQL: concurrent guesses (threads and processes) are
counted before any password is checked; one password policy for every account; demo accounts only
in the demo database; sessions that a sign-out, a deactivation or a new password end at once."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.errors import InputError
from core.store import ClinicStore, Role
from core.store import sessions as sessions_module
from core.store.users import FAILED_SIGN_IN_LIMIT, GLOBAL_SIGN_IN_LIMIT

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"


@pytest.fixture
def store(db_url):
    s = ClinicStore(db_url, bcrypt_rounds=6)
    s.init_clinic()
    s.create_user(None, "boss", PASSWORD, Role.SUPERVISOR)
    yield s
    s.close()


def outcomes(store: ClinicStore, name: str) -> dict[str, int]:
    """How each sign-in attempt of ``name`` ended, from the audit log."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT action, detail FROM audit_log WHERE username = :u"), {"u": name}).all()
    counts: dict[str, int] = {}
    for action, detail in rows:
        key = "ok" if action == "sign-in" else detail if action == "sign-in failed" else None
        if key:
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_fifty_concurrent_guesses_check_at_most_the_limit(store):
    """49 wrong guesses and the right password at once, from 50 threads: at most 10 passwords are
    checked (the count is taken atomically before the check); the rest are refused unchecked."""
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
    # At most the limit of wrong passwords is checked. A right password checked early gives its count
    # back (a sign-in that succeeds is not a failure), so one more guess may be checked after it.
    assert seen.get("wrong password", 0) <= FAILED_SIGN_IN_LIMIT, seen
    assert seen.get("wrong password", 0) + seen.get("ok", 0) <= FAILED_SIGN_IN_LIMIT + seen.get("ok", 0), seen
    assert seen.get("too many failed attempts: refused for 15 minutes", 0) >= 50 - FAILED_SIGN_IN_LIMIT - 1
    assert store.authenticate("boss", PASSWORD) is None            # locked now, even the right password


CHILD = textwrap.dedent("""
    import sys
    from core.store import ClinicStore
    url, n = sys.argv[1], int(sys.argv[2])
    store = ClinicStore(url, bcrypt_rounds=6)
    for k in range(n):
        store.authenticate("boss", "wrong guess %d" % k)
""")


def test_concurrent_guesses_from_several_processes_check_at_most_the_limit(store, tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, store.url, "8"], cwd=ROOT) for _ in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    seen = outcomes(store, "boss")
    assert sum(seen.values()) == 32, seen
    assert seen.get("wrong password", 0) <= FAILED_SIGN_IN_LIMIT, seen


def test_a_right_password_gives_its_count_back_and_the_window_ends(store):
    for _ in range(FAILED_SIGN_IN_LIMIT + 5):
        assert store.authenticate("boss", PASSWORD) is not None     # right ones never lock anyone out
    for _ in range(FAILED_SIGN_IN_LIMIT):
        assert store.authenticate("boss", "wrong") is None
    assert store.authenticate("boss", PASSWORD) is None
    with store.engine.begin() as conn:                              # 16 minutes later
        conn.execute(sa.text("UPDATE sign_in_throttle SET window_start = :t"),
                     {"t": sessions_module._now() - timedelta(minutes=16)})
    assert store.authenticate("boss", PASSWORD) is not None


def test_a_global_limit_stops_guessing_across_many_names(store):
    for k in range(GLOBAL_SIGN_IN_LIMIT):
        assert store.authenticate(f"nobody{k}", "guess") is None
    assert store.authenticate("boss", PASSWORD) is None              # every name waits now
    assert "too many failed sign-ins on this server" in "".join(outcomes(store, "boss"))


def test_one_password_policy_for_every_account(db_url, tmp_path):
    demo = ClinicStore(db_url, bcrypt_rounds=4)
    assert demo.seed_demo() is True and demo.is_demo_database
    sup = demo.authenticate("demo-supervisor", "demo")
    for weak in ("", "   ", "demo", "short"):
        with pytest.raises(InputError, match="at least 8"):
            demo.set_password(sup, "demo-researcher", weak)
        with pytest.raises(InputError, match="at least 8"):
            demo.create_user(sup, "someone", weak, Role.RESEARCHER)
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
    token, seconds = store.redeem_ticket(ticket)
    assert 11 * 3600 < seconds <= 12 * 3600 and not store.ticket_pending(sid)
    assert store.redeem_ticket(ticket) is None                       # one-time
    assert store.session_user(token=token).username == "carla"
    assert store.session_user(session_id=sid).username == "carla"
    sid_, nonce, exp, sig = token.split(".")
    for forged in (f"{sid_}.{nonce}.{int(exp) + 3600}.{sig}", f"{int(sid_) + 1}.{nonce}.{exp}.{sig}",
                   token[:-1] + ("0" if token[-1] != "0" else "1"), "", "a.b.c.d"):
        assert store.session_user(token=forged) is None
    store.deactivate(boss, "carla")                                  # deactivation ends it at once
    assert store.session_user(token=token) is None and store.session_user(session_id=sid) is None
    store.reactivate(boss, "carla")
    assert store.session_user(token=token) is None                   # and it stays ended
    sid2, ticket2 = store.start_session(store.authenticate("carla", PASSWORD))
    token2, _ = store.redeem_ticket(ticket2)
    store.set_password(boss, "carla", "a new long password")         # a new password ends it too
    assert store.session_user(token=token2) is None
    sid3, ticket3 = store.start_session(boss)
    token3, _ = store.redeem_ticket(ticket3)
    store.end_session(sid3)                                          # sign-out
    assert store.session_user(token=token3) is None
    assert "sign-out" in set(store.audit_log(boss)["action"])


def test_expired_tickets_and_sessions_are_refused(store, monkeypatch):
    boss = store.authenticate("boss", PASSWORD)
    sid, ticket = store.start_session(boss)
    real_now = sessions_module._now
    monkeypatch.setattr(sessions_module, "_now", lambda: real_now() + timedelta(minutes=3))
    assert store.redeem_ticket(ticket) is None                       # a ticket lives two minutes
    monkeypatch.setattr(sessions_module, "_now", real_now)
    sid, ticket = store.start_session(boss)
    token, _ = store.redeem_ticket(ticket)
    monkeypatch.setattr(sessions_module, "_now", lambda: real_now() + timedelta(hours=12, minutes=1))
    assert store.session_user(token=token) is None and store.session_user(session_id=sid) is None
    time.sleep(0)
