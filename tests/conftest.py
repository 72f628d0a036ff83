"""Fixtures shared by the database tests."""
from __future__ import annotations

import pytest

from tests.pg_support import fresh_database, postgres_admin_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """The URL of an empty clinic database: a SQLite file, then a fresh database on the PostgreSQL
    test server (skipped when ``ALLIANCE_TEST_POSTGRES_URL`` is not set; scripts/test.sh sets it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'clinic.db'}"
    else:
        with fresh_database(postgres_admin_url()) as url:
            yield url
