"""What the API answers while something it waits on is out: Temporal without a worker,
Temporal unreachable, the database refusing connections. Always a prompt 503 with
`Retry-After` whose body says whether the request may still take effect; never a 500 or a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import httpx
import pytest
from temporalio.service import RPCError, RPCStatusCode

from api import account_workflows, edge
from api.main import create_app
from core import temporal
from core.config import Settings
from tests.api.conftest import ADMIN_TOKEN, APP_TOKEN, ClientFactory, closed_port, post_event
from tests.api.routes.test_webhooks import subscription_event

pytestmark = pytest.mark.db

APP = {"Authorization": f"Bearer {APP_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Far beyond the bounds the tests set: reaching it means the API did not bound its wait.
HANG = 10


@dataclass
class ServingHealth:
    async def check_health(self, **_: Any) -> bool:
        return True


@dataclass
class WorkerlessTemporal:
    """Temporal up, accepting updates no worker ever runs: an update never completes."""

    updates: list[str] = field(default_factory=list)
    service_client: ServingHealth = field(default_factory=ServingHealth)

    async def execute_update_with_start_workflow(self, update: str, **_: Any) -> Any:
        self.updates.append(update)
        await asyncio.Event().wait()


@dataclass
class UnreachableTemporal:
    """A server refusing connections, counting how often it was tried."""

    attempts: int = 0

    async def start_workflow(self, *_: Any, **__: Any) -> None:
        self.attempts += 1
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

    async def execute_update_with_start_workflow(self, *_: Any, **__: Any) -> Any:
        self.attempts += 1
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")


def account() -> str:
    return f"acct_{uuid4().hex[:12]}"


def assert_retry_later(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["detail"]


SELF_SERVE_UPDATES = [
    pytest.param("POST", "/resume", None, id="resume"),
    pytest.param("POST", "/cancel", None, id="cancel"),
    pytest.param("DELETE", "/plan/pending", None, id="cancel-plan-change"),
]


@pytest.mark.parametrize(("method", "path", "body"), SELF_SERVE_UPDATES)
async def test_a_self_serve_update_no_worker_runs_is_a_prompt_503_that_may_still_apply(
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    body: Any,
) -> None:
    monkeypatch.setattr(account_workflows, "UPDATE_TIMEOUT_SECONDS", 0.2)
    temporal = WorkerlessTemporal()
    async with make_client(temporal_client=temporal) as client, asyncio.timeout(HANG):
        response = await client.request(
            method, f"/v1/accounts/{account()}{path}", json=body, headers=APP
        )

    assert_retry_later(response)
    assert "may still apply" in response.json()["detail"]
    assert "check the entitlements" in response.json()["detail"]
    assert len(temporal.updates) == 1


async def test_an_operator_action_no_worker_runs_is_a_503_that_may_still_apply(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(account_workflows, "ACTION_TIMEOUT_SECONDS", 0.2)
    async with make_client(temporal_client=WorkerlessTemporal()) as client, asyncio.timeout(HANG):
        response = await client.post(
            f"/admin/accounts/{account()}/actions/lock",
            json={"actor": "ops@dataface.test", "reason": "fraud check"},
            headers=ADMIN,
        )

    assert_retry_later(response)
    assert "may still apply" in response.json()["detail"]


async def test_once_temporal_refused_a_connection_requests_answer_without_trying_again(
    make_client: ClientFactory,
) -> None:
    temporal = UnreachableTemporal()
    async with make_client(temporal_client=temporal) as client:
        first = await post_event(client, subscription_event(account_id=account()))
        second = await post_event(client, subscription_event(account_id=account()))
        update = await client.post(f"/v1/accounts/{account()}/resume", headers=APP)

    for response in (first, second, update):
        assert_retry_later(response)
    # The client's own connection retries took 6-10 s per request; the gate answers at once.
    assert temporal.attempts == 1
    assert "nothing was changed" in update.json()["detail"]


# --- the database refusing connections ---------------------------------------------------


@asynccontextmanager
async def api_without_database(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its database at a port nothing listens on; a crash would be a 500."""
    refused = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/billing"
    app = create_app(
        settings.model_copy(update={"database_url": refused}),
        temporal_client=UnreachableTemporal(),
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "/entitlements", None, id="entitlements"),
        pytest.param("POST", "/plan", {"plan": "team", "seats": 2}, id="plan"),
        pytest.param("POST", "/checkout", {"plan": "team", "seats": 2}, id="checkout"),
    ],
)
async def test_without_its_database_an_account_route_is_a_503(
    settings: Settings, method: str, path: str, body: Any
) -> None:
    async with api_without_database(settings) as client:
        response = await client.request(
            method, f"/v1/accounts/{account()}{path}", json=body, headers=APP
        )

    assert_retry_later(response)
    assert "database is unavailable" in response.json()["detail"]


async def test_without_its_database_the_webhook_customer_lookup_is_a_503_saying_why(
    settings: Settings,
) -> None:
    async with api_without_database(settings) as client:
        # No account in the metadata: the gateway must look the customer up.
        response = await post_event(client, subscription_event())

    assert_retry_later(response)
    assert "database is unavailable" in response.json()["detail"]


@dataclass
class RecoveringHealth:
    """Temporal's health check: unreachable for the first `failures` probes, then serving."""

    failures: int
    probes: int = 0
    serving: asyncio.Event = field(default_factory=asyncio.Event)

    async def check_health(self, **_: Any) -> bool:
        self.probes += 1
        if self.probes <= self.failures:
            raise RuntimeError("Failed client connect")
        self.serving.set()
        return True


@dataclass
class RecoveringTemporal:
    service_client: RecoveringHealth


async def test_the_gate_reopens_once_a_probe_reaches_temporal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(edge, "PROBE_EVERY_SECONDS", 0)
    health = RecoveringHealth(failures=2)
    gate = edge.TemporalGate(RecoveringTemporal(health))  # type: ignore[arg-type]

    gate.observe(RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b""))
    assert gate.is_closed
    async with asyncio.timeout(HANG):
        await health.serving.wait()

    # The probe ended in the step that found Temporal serving.
    assert not gate.is_closed
    assert health.probes == 3


async def test_an_update_no_worker_runs_does_not_close_the_gate(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(account_workflows, "UPDATE_TIMEOUT_SECONDS", 0.05)
    temporal = WorkerlessTemporal()
    async with make_client(temporal_client=temporal) as client:
        for _ in range(2):
            response = await client.post(f"/v1/accounts/{account()}/resume", headers=APP)
            assert "may still apply" in response.json()["detail"]

    # Temporal answered (no worker did): each request was sent, none refused at the gate.
    assert len(temporal.updates) == 2


@dataclass
class SilentHealth:
    """A server that no longer answers: the health check times out."""

    probed: asyncio.Event = field(default_factory=asyncio.Event)

    async def check_health(self, **_: Any) -> bool:
        self.probed.set()
        raise RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b"")


@dataclass
class SilentTemporal:
    """A server that went away after the client connected: calls wait, then time out."""

    attempts: int = 0
    service_client: SilentHealth = field(default_factory=SilentHealth)

    async def start_workflow(self, *_: Any, **__: Any) -> None:
        self.attempts += 1
        await asyncio.Event().wait()


async def test_a_signal_timing_out_on_a_silent_server_closes_the_gate(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(account_workflows, "SIGNAL_TIMEOUT_SECONDS", 0.05)
    temporal = SilentTemporal()
    async with make_client(temporal_client=temporal) as client, asyncio.timeout(HANG):
        first = await post_event(client, subscription_event(account_id=account()))
        await temporal.service_client.probed.wait()
        second = await post_event(client, subscription_event(account_id=account()))

    assert_retry_later(first)
    assert_retry_later(second)
    # The second was answered by the gate: the probe found the server silent.
    assert temporal.attempts == 1


async def test_the_apis_temporal_client_retries_an_unreachable_server_briefly(
    settings: Settings,
) -> None:
    """The SDK retries an unreachable server for 10 s by default: the first request after
    Temporal went down took 6-10 s to get its 503 (the gate answers the rest at once)."""
    unreachable = settings.model_copy(update={"temporal_address": f"127.0.0.1:{closed_port()}"})
    app = create_app(unreachable)
    async with app.router.lifespan_context(app):
        retry = app.state.temporal_client.service_client.config.retry_config

    assert retry == temporal.ANSWERING_RETRY
    assert retry.max_elapsed_time_millis is not None
    assert retry.max_elapsed_time_millis <= 2_000
