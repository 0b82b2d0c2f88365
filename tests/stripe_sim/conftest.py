"""Fixtures for the Stripe simulator's tests: an in-process simulator, a stripe-python
client pointed at it, and a local webhook receiver that records deliveries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from stripe_sim.server import SimulatorServer
from stripe_sim.settings import FaultSettings, SimulatorSettings
from stripe_sim.store import _INDEXED_FIELDS, Store

# 2026-01-01T00:00:00Z: test clocks start here so dates in assertions are readable.
JAN_1 = 1767225600
DAY = 86400
HOUR = 3600


@pytest.fixture
def settings() -> SimulatorSettings:
    return SimulatorSettings(
        webhook_backoff_seconds=(0.01, 0.02, 0.05),
        webhook_max_attempts=4,
        webhook_timeout_seconds=5,
        realtime_tick_seconds=0.2,
        faults=FaultSettings(seed=7),
    )


@pytest.fixture
def sim(settings: SimulatorSettings) -> Iterator[SimulatorServer]:
    with SimulatorServer(settings=settings) as server:
        yield server
        with server.store.lock:
            assert_index_matches_scan(server.store)


def assert_index_matches_scan(store: Store) -> None:
    """The store's index answers what scanning every object of the kind answers: it holds
    only because indexed fields never change, which every test checks on its way out."""
    for kind, fields in _INDEXED_FIELDS.items():
        objs = store.of_kind(kind)
        for name in fields:
            for value in {obj[name] for obj in objs} | {None}:
                scanned = [obj["id"] for obj in objs if obj[name] == value]
                assert [obj["id"] for obj in store.where(kind, name, value)] == scanned


@pytest.fixture
def client(sim: SimulatorServer) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_simulator", base_addresses={"api": sim.url}, max_network_retries=0
    )


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that records what it receives. ``statuses`` is a
    queue of HTTP statuses to answer with (then 200)."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def types(self) -> list[str]:
        return [d.event["type"] for d in self.deliveries]

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [d.event for d in self.deliveries if d.event["type"] == event_type]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with rec.lock:
                status = rec.statuses.pop(0) if rec.statuses else 200
                if status == 200:
                    rec.deliveries.append(Delivery(dict(self.headers), body))
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_port}/webhook"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def endpoint(client: stripe.StripeClient, receiver: Receiver) -> Any:
    return client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["*"]})


@pytest.fixture
def catalog(client: stripe.StripeClient) -> dict[str, Any]:
    """Pro monthly ($20), Team monthly ($50), Pro yearly ($200)."""
    pro = client.v1.products.create(params={"name": "Pro"})
    team = client.v1.products.create(params={"name": "Team"})
    return {
        "pro": client.v1.prices.create(
            params={
                "product": pro.id,
                "unit_amount": 2000,
                "currency": "usd",
                "recurring": {"interval": "month"},
                "lookup_key": "pro_monthly",
            }
        ),
        "team": client.v1.prices.create(
            params={
                "product": team.id,
                "unit_amount": 5000,
                "currency": "usd",
                "recurring": {"interval": "month"},
                "lookup_key": "team_monthly",
            }
        ),
        "pro_yearly": client.v1.prices.create(
            params={
                "product": pro.id,
                "unit_amount": 20000,
                "currency": "usd",
                "recurring": {"interval": "year"},
                "lookup_key": "pro_yearly",
            }
        ),
    }


@pytest.fixture
def clock(client: stripe.StripeClient) -> Any:
    return client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN_1, "name": "test"})


def make_customer(
    client: stripe.StripeClient, clock: Any, pm: str | None = "pm_card_visa", **extra: Any
) -> Any:
    """A customer on ``clock`` (``email=None``: one without an email)."""
    params: dict[str, Any] = {"email": "ada@example.com", "test_clock": clock.id, **extra}
    params = {k: v for k, v in params.items() if v is not None}
    if pm:
        params["payment_method"] = pm
        params["invoice_settings"] = {"default_payment_method": pm}
    return client.v1.customers.create(params=params)


def advance(client: stripe.StripeClient, clock: Any, to: int) -> Any:
    """Advance like code written for Stripe does: request, then poll until ``ready``."""
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": to})
    for _ in range(1000):
        current = client.v1.test_helpers.test_clocks.retrieve(clock.id)
        if current.status == "ready":
            return current
    raise AssertionError("clock never became ready")


def events(client: stripe.StripeClient, *types: str, **filters: Any) -> list[Any]:
    """Events oldest first (the API lists newest first)."""
    params: dict[str, Any] = {"limit": 100, **filters}
    if types:
        params["types"] = list(types)
    found = list(client.v1.events.list(params=params).auto_paging_iter())
    return list(reversed(found))


def event_types(client: stripe.StripeClient, object_id: str | None = None) -> list[str]:
    """Event types oldest first, optionally only those about ``object_id`` (the object itself
    or an invoice of that subscription)."""
    result = []
    for e in events(client):
        obj = e.data.object.to_dict()
        parent = (obj.get("parent") or {}).get("subscription_details") or {}
        if object_id in (None, obj.get("id"), parent.get("subscription")):
            result.append(e.type)
    return result
