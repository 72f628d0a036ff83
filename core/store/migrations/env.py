"""Alembic environment, configured in code by :func:`core.store.engine.alembic_config`.

The store passes an open connection, already inside a write transaction, as
``config.attributes["connection"]``; the migrations then run in that transaction (PostgreSQL and
SQLite both have transactional DDL), so a migration interrupted half-way leaves nothing behind.
Without a connection, the URL comes from the ``sqlalchemy.url`` option or ``ALLIANCE_DATABASE_URL``.
"""
from __future__ import annotations

from alembic import context

from core.store.engine import open_engine
from core.store.schema import metadata

config = context.config


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    import os

    engine = open_engine(config.get_main_option("sqlalchemy.url") or os.environ.get("ALLIANCE_DATABASE_URL"))
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(alliance_write=True)
            with conn.begin():
                _configure(conn)
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
