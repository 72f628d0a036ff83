"""Each user's interface language, kept in the clinic database (issue 18), on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from core.errors import InputError
from core.store import AccessDenied, ClinicStore, Role

PASSWORD = "correct horse battery"


def test_a_user_s_language_is_stored_changed_and_forgotten(store):
    sup = store.create_user(None, "ana", PASSWORD, Role.SUPERVISOR)
    ther = store.create_user(sup, "t01", PASSWORD, Role.THERAPIST, therapist_code="T01")
    assert store.language_of(sup) is None and store.language_of(ther) is None  # never chosen
    store.set_language(ther, "es")
    assert store.language_of(ther) == "es" and store.language_of(sup) is None  # her own only
    store.set_language(ther, "en")
    assert store.language_of(ther) == "en"
    store.set_language(ther, None)
    assert store.language_of(ther) is None
    with pytest.raises(InputError):
        store.set_language(ther, "xx")
    assert store.language_of(ther) is None


def test_a_deactivated_user_cannot_store_a_language(store):
    sup = store.create_user(None, "ana", PASSWORD, Role.SUPERVISOR)
    ther = store.create_user(sup, "t01", PASSWORD, Role.THERAPIST, therapist_code="T01")
    store.deactivate(sup, "t01")
    with pytest.raises(AccessDenied):
        store.set_language(ther, "es")


def test_migration_0003_adds_a_nullable_language_to_existing_users(tmp_path):
    """A database made at revision 0002 (users already in it) upgrades to a NULL language."""
    from alembic import command

    from core.store.engine import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0002")
        conn.execute(sa.text("INSERT INTO users (username, display_name, role, is_active, is_demo, created_at) "
                             "VALUES ('old', 'Old', 'supervisor', 1, 0, CURRENT_TIMESTAMP)"))
    engine.dispose()
    store = ClinicStore(url, bcrypt_rounds=4)
    try:
        columns = {c["name"]: c for c in sa.inspect(store.engine).get_columns("users")}
        assert columns["language"]["nullable"]
        old = store.user_for_identity("old")
        assert old is not None and store.language_of(old) is None
        store.set_language(old, "es")
        assert store.language_of(old) == "es"
    finally:
        store.close()
