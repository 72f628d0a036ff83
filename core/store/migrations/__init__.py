"""Alembic migrations of the clinic database (:mod:`core.store`).

:class:`core.store.clinic.ClinicStore` runs ``upgrade head`` whenever it opens a database, so nobody runs
Alembic by hand. Alembic is configured in code (no ``alembic.ini``); to add a migration::

    .venv/bin/python -c "from core.store import alembic_config; from alembic import command; \
command.revision(alembic_config(), 'what changes', rev_id='0002')"

then write its ``upgrade()`` with ``op.*`` calls and change :data:`core.store.schema.metadata` to match
(``tests/test_storage.py`` checks that the migrated schema and the metadata agree).
"""
