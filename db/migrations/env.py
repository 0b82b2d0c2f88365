"""Alembic environment: runs on the connection `db.engine.migrate` hands over, or on the
configured DATABASE_URL when invoked as `alembic -c db/alembic.ini ...`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from core.config import get_settings
from db.engine import make_engine
from db.models import Base

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL, e.g. for a DBA to review."""
    context.configure(
        url=get_settings().database_url,
        target_metadata=Base.metadata,
        render_as_batch=True,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given: Connection | None = config.attributes.get("connection")
    if given is not None:
        run_migrations(given)
        return
    engine = make_engine(get_settings().database_url)
    try:
        with engine.begin() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
