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


@pytest.fixture
def store(db_url):
    """An empty clinic database on ``db_url`` (fast password hashing); a module may define its own."""
    from core.store import ClinicStore

    s = ClinicStore(db_url, bcrypt_rounds=4)
    yield s
    s.close()


@pytest.fixture
def fresh_clinic(tmp_path, monkeypatch):
    """A dashboard test's own world: a fresh data folder (so a fresh demo database), no clinic database
    URL from the environment, and Streamlit's caches empty before and after. Test modules that render
    pages use it for every test (``pytestmark = pytest.mark.usefixtures("fresh_clinic")``)."""
    import streamlit as st

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ALLIANCE_DATABASE_URL", raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield tmp_path
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def downloads(monkeypatch):
    """Every download button's label, file name and bytes, by key (a deferred file is built)."""
    import ui.auth

    seen = {}
    original = ui.auth.download

    def record(label, data, file_name, mime, key, what=None, **kwargs):
        seen[key] = (label, file_name, data() if callable(data) else data)
        return original(label, data, file_name, mime, key, what, **kwargs)

    monkeypatch.setattr(ui.auth, "download", record)
    return seen
