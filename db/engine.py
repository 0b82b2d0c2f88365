"""Engines, sessions and migrations for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# The most connections one process's pool opens at once.
MAX_POOLED_CONNECTIONS = 15


def make_engine(url: str, *, pre_ping: bool = True, kept_connections: int = 5) -> Engine:
    """`pre_ping=False` saves a round trip per checkout; the caller must then retry what fails
    on a connection the server dropped (restart, idle timeout). `kept_connections` stay open
    between uses; the others (up to `MAX_POOLED_CONNECTIONS`) are closed when returned, so a
    steady concurrency above it opens a connection per use."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return create_engine(
        url,
        # Pre-ping: connections dropped by the server (restart, idle timeout) are replaced, not
        # handed out.
        pool_pre_ping=pre_ping,
        pool_size=kept_connections,
        max_overflow=MAX_POOLED_CONNECTIONS - kept_connections,
        pool_recycle=1800,
    )


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # FastAPI's threadpool and the worker's activity threads share connections from the pool.
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets the API read while the worker writes; SQLite leaves foreign keys off by default.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # Rows stay readable after commit: callers return what they just wrote.
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    ini = resources.files("db").joinpath("alembic.ini")
    return Config(str(ini))


def migrate(url_or_engine: str | Engine) -> None:
    """Bring the schema to the newest revision (`alembic upgrade head`)."""
    if isinstance(url_or_engine, str):
        engine = make_engine(url_or_engine)
        try:
            _upgrade(engine)
        finally:
            engine.dispose()
    else:
        _upgrade(url_or_engine)


def _upgrade(engine: Engine) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        # env.py runs on this connection instead of opening its own from a URL.
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
