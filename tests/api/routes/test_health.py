from __future__ import annotations

import httpx
import pytest

from core.config import Settings
from tests.api.conftest import ClientFactory, RecordingTemporal, closed_port

pytestmark = pytest.mark.db


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok"}}


async def test_not_ready_without_the_database(
    make_client: ClientFactory, settings: Settings
) -> None:
    unreachable = settings.model_copy(
        update={"database_url": f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/none"}
    )

    async with make_client(temporal_client=RecordingTemporal(), settings=unreachable) as client:
        ready = await client.get("/readyz")
        alive = await client.get("/healthz")

    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "checks": {"database": "unreachable"}}
    assert alive.status_code == 200
