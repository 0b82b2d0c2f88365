"""The bench's peer (`bench/peer.py`): a signed event writes the subscription's plan and seats
in the request; a bad signature writes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from bench.peer import create_app
from core.config import Settings
from core.stripe_client import make_stripe_client
from db import repository
from domain.catalog import default_catalog
from ops.catalog_sync import apply_catalog_changes, plan_catalog_changes
from stripe_sim.server import SimulatorServer
from tests.signing import stripe_signature

SECRET = "whsec_peer_test"


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as sim:
        yield sim


@pytest.fixture
def settings(simulator: SimulatorServer, database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        stripe_simulator_url=simulator.url,
        stripe_webhook_secret=SECRET,
    )


@pytest.fixture
def peer(settings: Settings) -> Iterator[TestClient]:
    stripe = make_stripe_client(settings)
    catalog = default_catalog()
    apply_catalog_changes(stripe, catalog, plan_catalog_changes(stripe, catalog))
    with TestClient(create_app(settings)) as client:
        yield client


def subscribed_account(settings: Settings, seats: int) -> tuple[str, str, str]:
    """An account id, its customer and its per-seat subscription in the simulator."""
    stripe = make_stripe_client(settings)
    [price] = stripe.v1.prices.list(params={"lookup_keys": ["team_monthly_per_seat"]}).data
    account_id = f"peer-{uuid4().hex[:8]}"
    metadata = {"account_id": account_id}
    customer = stripe.v1.customers.create(params={"metadata": metadata})
    subscription = stripe.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id, "quantity": seats}],
            "trial_period_days": 30,
            "metadata": metadata,
        }
    )
    return account_id, customer.id, subscription.id


def event_body(account_id: str, customer_id: str, subscription_id: str) -> bytes:
    event = {
        "id": f"evt_{uuid4().hex}",
        "object": "event",
        "type": "customer.subscription.updated",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": subscription_id,
                "object": "subscription",
                "customer": customer_id,
                "metadata": {"account_id": account_id},
            }
        },
    }
    return json.dumps(event).encode()


def test_a_signed_event_writes_the_subscriptions_plan_and_seats(
    peer: TestClient, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    account_id, customer_id, subscription_id = subscribed_account(settings, seats=3)
    body = event_body(account_id, customer_id, subscription_id)

    for expected_version in (1, 2):
        answer = peer.post(
            "/webhooks/stripe",
            content=body,
            headers={"stripe-signature": stripe_signature(body, SECRET)},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == expected_version

    with session_factory() as session:
        stored = repository.read_entitlements(session, account_id)
        customer = repository.customer_for_account(session, account_id)
    assert stored is not None
    assert (stored.plan, stored.seats, stored.billing_state) == ("team", 3, "trialing")
    assert stored.version == 2
    assert customer == customer_id


def test_a_bad_signature_is_refused_and_writes_nothing(
    peer: TestClient, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    account_id, customer_id, subscription_id = subscribed_account(settings, seats=2)
    body = event_body(account_id, customer_id, subscription_id)

    answer = peer.post(
        "/webhooks/stripe",
        content=body,
        headers={"stripe-signature": stripe_signature(body, "whsec_someone_else")},
    )

    assert answer.status_code == 400
    with session_factory() as session:
        assert repository.read_entitlements(session, account_id) is None
