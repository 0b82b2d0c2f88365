"""Database fixtures, as a pytest plugin: a migrated test database for the whole session.

`TEST_DATABASE_URL` picks the server: a PostgreSQL URL gets a fresh `dfb_test_<random>` database
created beside it (and dropped afterwards), so runs never see each other's rows; without it, a
SQLite file in a temporary folder. Tests share the database: they use fresh account ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, make_session_factory, migrate


@contextmanager
def fresh_database(tmp_dir: Path) -> Iterator[str]:
    """The URL of a new, empty database, removed on exit."""
    server_url = os.environ.get("TEST_DATABASE_URL")
    if not server_url:
        yield f"sqlite:///{tmp_dir / f'billing-{uuid4().hex[:8]}.db'}"
        return
    server = make_url(server_url)
    if server.get_backend_name() != "postgresql":
        raise pytest.UsageError(f"TEST_DATABASE_URL must be PostgreSQL, got {server_url!r}")
    name = f"dfb_test_{uuid4().hex[:12]}"
    # CREATE/DROP DATABASE cannot run inside a transaction.
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                # FORCE: a leaked connection must not keep the database alive.
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        migrate(url)
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[tuple[str, sessionmaker[Session]]]:
    """A database of the test's own, for tests that look at every account in it."""
    with fresh_database(tmp_path) as url:
        migrate(url)
        engine = make_engine(url)
        try:
            yield url, make_session_factory(engine)
        finally:
            engine.dispose()
