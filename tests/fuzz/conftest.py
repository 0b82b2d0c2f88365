"""The app in-process for fuzzing: the test database, a local Stripe simulator for the routes
that call Stripe, and Temporal replaced by a fake that records what would have been started.

Hypothesis runs many examples per test, so the app is built once per module; `state_of`
fingerprints everything a request could change (every table's rows, the fake's calls), so a
test can prove a refused request changed nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.service import RPCError, RPCStatusCode

from api.main import create_app
from core.config import Settings
from core.stripe_client import make_stripe_client
from db.engine import make_engine, make_session_factory, migrate
from db.models import Base
from domain.catalog import default_catalog
from ops.catalog_sync import apply_catalog_changes, plan_catalog_changes
from stripe_sim.server import SimulatorServer
from tests.api.conftest import ADMIN_TOKEN, APP_TOKEN, WEBHOOK_SECRET, RecordingTemporal
from tests.fixtures_db import fresh_database

APP_HEADERS = {"Authorization": f"Bearer {APP_TOKEN}"}
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MAX_BODY_BYTES = 16 * 1024


class _UnreachableWorkflow:
    async def describe(self, **_: Any) -> Any:
        raise RPCError("no Temporal in fuzz tests", RPCStatusCode.UNAVAILABLE, b"")


@dataclass
class FuzzTemporal(RecordingTemporal):
    """Signals are recorded and accepted; updates (plan changes, operator actions) and the
    admin's live view find Temporal unavailable, which the API must answer without a 500."""

    updates: list[dict[str, Any]] = field(default_factory=list)

    async def execute_update_with_start_workflow(self, update: str, **options: Any) -> Any:
        self.updates.append({"update": update, **options})
        raise RPCError("no Temporal in fuzz tests", RPCStatusCode.UNAVAILABLE, b"")

    def get_workflow_handle(self, workflow_id: str) -> _UnreachableWorkflow:
        return _UnreachableWorkflow()


@dataclass
class FuzzApp:
    client: TestClient
    temporal: FuzzTemporal
    sessions: sessionmaker[Session]
    settings: Settings

    def state(self) -> tuple[Any, ...]:
        """Row counts of every table and the fake's calls: equal before and after a request
        means the request changed nothing."""
        with self.sessions() as session:
            counts = tuple(
                session.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables
            )
        return counts, len(self.temporal.calls), len(self.temporal.updates)


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as sim:
        yield sim


@pytest.fixture(scope="module")
def fuzz_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database per module: what one module's examples write never steers another's."""
    with fresh_database(tmp_path_factory.mktemp("fuzz-db")) as url:
        migrate(url)
        yield url


@pytest.fixture(scope="module")
def fuzz_settings(fuzz_database: str, simulator: SimulatorServer) -> Settings:
    settings = Settings(
        _env_file=None,
        database_url=fuzz_database,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_simulator_url=simulator.url,
        app_api_token=APP_TOKEN,
        admin_api_token=ADMIN_TOKEN,
        task_queue="billing-fuzz",
        webhook_max_body_bytes=MAX_BODY_BYTES,
    )
    stripe_client = make_stripe_client(settings)
    catalog = default_catalog()
    apply_catalog_changes(stripe_client, catalog, plan_catalog_changes(stripe_client, catalog))
    return settings


@pytest.fixture(scope="module")
def fuzz_app(fuzz_settings: Settings) -> Iterator[FuzzApp]:
    temporal = FuzzTemporal()
    app: FastAPI = create_app(fuzz_settings, temporal_client=temporal)  # type: ignore[arg-type]
    engine = make_engine(fuzz_settings.database_url)
    # raise_server_exceptions=False: a crash must show up as the 500 a client would get.
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield FuzzApp(client, temporal, make_session_factory(engine), fuzz_settings)
    finally:
        engine.dispose()
