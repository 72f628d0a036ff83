"""PostgreSQL for the storage tests: a fresh database per test on the server named by
``ALLIANCE_TEST_POSTGRES_URL`` (``scripts/test.sh`` starts a throwaway server and sets it).

Without the variable the PostgreSQL tests are skipped, except under CI (``CI`` set), where they
fail: CI must not pass without having run them against a real server.
"""
from __future__ import annotations

import contextlib
import os
import uuid

import pytest
import sqlalchemy as sa

ENV = "ALLIANCE_TEST_POSTGRES_URL"


def postgres_admin_url() -> str:
    """The server's URL, or skip (locally) / fail (under CI) when there is none."""
    url = os.environ.get(ENV, "").strip()
    if url:
        return url
    message = (f"{ENV} is not set: no PostgreSQL server for the storage tests "
               "(bash scripts/test.sh starts one)")
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run them", pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def fresh_database(admin_url: str):
    """Create an empty database on the server, yield its URL, drop it afterwards."""
    from core.store import normalise_url

    base = sa.engine.make_url(normalise_url(admin_url))
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = "alliance_t_" + uuid.uuid4().hex[:16]
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
