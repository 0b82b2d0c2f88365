"""The feed's fixtures: the app in-process (long polls) and on a real port (streams)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from core.config import Settings
from db import feed, repository
from domain.catalog import default_catalog
from domain.entitlements import Entitlements, free_entitlements
from tests.feed.live_api import LiveApi, NoTemporal

APP_TOKEN = "feed-app-token"
AUTH = {"Authorization": f"Bearer {APP_TOKEN}"}


def new_account() -> str:
    return f"acct_{uuid4().hex[:12]}"


def paid(plan: str = "pro", seats: int = 1) -> Entitlements:
    return replace(
        free_entitlements(default_catalog()),
        billing_state="active",
        effective_state="active",
        plan=plan,
        interval="month",
        seats=seats,
        message=None,
        period_ends_at=datetime(2027, 1, 31, tzinfo=UTC),
    )


def write_change(
    sessions: sessionmaker[Session], account_id: str, version: int, plan: str = "pro"
) -> None:
    """One applied entitlement write, as the account workflow's activity makes it."""
    with sessions.begin() as session:
        assert repository.write_entitlements(
            session, account_id, version, paid(plan, seats=version), {}, "test", []
        )


def newest_cursor(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return feed.newest_cursor(session)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(_env_file=None, database_url=database_url, app_api_token=APP_TOKEN)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, temporal_client=NoTemporal())  # type: ignore[arg-type]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client


@pytest.fixture
def live_api(settings: Settings) -> Iterator[LiveApi]:
    with LiveApi(settings) as live:
        yield live
