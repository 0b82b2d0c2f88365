"""The app against the migrated test database, with Temporal replaced by a recording fake."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from api.main import create_app
from core.config import Settings
from tests.signing import stripe_signature

WEBHOOK_SECRET = "whsec_test_secret"
APP_TOKEN = "app-token-for-tests"
ADMIN_TOKEN = "admin-token-for-tests"
TASK_QUEUE = "billing-api-tests"


@dataclass
class RecordingTemporal:
    """Stands in for `temporalio.client.Client`: records signal-with-start calls, or fails."""

    failure: BaseException | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def start_workflow(self, workflow: Any, arg: Any, **options: Any) -> None:
        if self.failure is not None:
            raise self.failure
        self.calls.append({"workflow": workflow, "arg": arg, **options})


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    return stripe_signature(payload, secret, timestamp)


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        stripe_webhook_secret=WEBHOOK_SECRET,
        app_api_token=APP_TOKEN,
        admin_api_token=ADMIN_TOKEN,
        task_queue=TASK_QUEUE,
        temporal_address=f"127.0.0.1:{closed_port()}",
        webhook_max_body_bytes=64 * 1024,
    )


@pytest.fixture
def temporal() -> RecordingTemporal:
    return RecordingTemporal()


ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_client(settings: Settings) -> ClientFactory:
    """`async with make_client(temporal_client=..., settings=...) as client:` a running app."""

    @asynccontextmanager
    async def running(
        temporal_client: Any = None, settings: Settings = settings
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings, temporal_client=temporal_client)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            ) as client,
        ):
            yield client

    return running


@pytest.fixture
async def client(
    make_client: ClientFactory, temporal: RecordingTemporal
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(temporal_client=temporal) as client:
        yield client


async def post_event(
    client: httpx.AsyncClient, event: dict[str, Any], *, timestamp: int | None = None
) -> httpx.Response:
    payload = json.dumps(event).encode()
    return await client.post(
        "/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": sign(payload, timestamp=timestamp)},
    )
