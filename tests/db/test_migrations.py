from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from db.engine import alembic_config, make_engine, migrate
from tests.fixtures_db import fresh_database

pytestmark = pytest.mark.db

TABLES = {"accounts", "entitlements", "entitlement_changes", "stripe_events", "unroutable_events"}


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_upgrade_creates_schema_on_a_fresh_database(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as url:
        engine = make_engine(url)
        try:
            assert not set(inspect(engine).get_table_names()) & TABLES

            migrate(engine)
            migrate(url)  # a second run finds nothing to do

            inspector = inspect(engine)
            assert set(inspector.get_table_names()) >= TABLES
            assert {c["name"] for c in inspector.get_columns("entitlements")} >= {
                "version",
                "features",
                "limits",
                "lifecycle",
                "open_invoice_url",
            }
            with engine.connect() as connection:
                current = MigrationContext.configure(connection).get_current_revision()
            assert current == head_revision()
        finally:
            engine.dispose()


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as url:
        engine = make_engine(url)
        try:
            migrate(engine)
            config = alembic_config()
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.downgrade(config, "base")
            assert not set(inspect(engine).get_table_names()) & TABLES

            migrate(engine)
            assert set(inspect(engine).get_table_names()) >= TABLES
        finally:
            engine.dispose()


def test_sqlite_parent_folder_is_created(tmp_path: Path) -> None:
    database = tmp_path / "not" / "yet" / "billing.db"
    migrate(f"sqlite:///{database}")
    assert database.exists()
