"""The Stripe customer a first checkout creates carries the email and name the app gives;
without them, the email typed into Checkout ends up on it, as Stripe does. Against the
simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
import stripe
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from core.stripe_client import make_stripe_client
from db import repository
from domain.catalog import default_catalog
from ops.catalog_sync import apply_catalog_changes, plan_catalog_changes
from stripe_sim.server import SimulatorServer
from tests.api.conftest import APP_TOKEN, ClientFactory, RecordingTemporal

pytestmark = pytest.mark.db

AUTH = {"Authorization": f"Bearer {APP_TOKEN}"}


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as sim:
        yield sim


@pytest.fixture
def simulated_settings(settings: Settings, simulator: SimulatorServer) -> Settings:
    """The app's settings, aimed at the simulator, whose catalog is published."""
    simulated = settings.model_copy(update={"stripe_simulator_url": simulator.url})
    client = make_stripe_client(simulated)
    apply_catalog_changes(
        client, default_catalog(), plan_catalog_changes(client, default_catalog())
    )
    return simulated


@pytest.fixture
def stripe_client(simulated_settings: Settings) -> stripe.StripeClient:
    return make_stripe_client(simulated_settings)


@pytest.fixture
async def client(
    make_client: ClientFactory, simulated_settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(
        temporal_client=RecordingTemporal(), settings=simulated_settings
    ) as client:
        yield client


def checkout_url(account_id: str) -> str:
    return f"/v1/accounts/{account_id}/checkout"


def customer_of(
    stripe_client: stripe.StripeClient, sessions: sessionmaker[Session], account_id: str
) -> Any:
    with sessions() as session:
        customer_id = repository.customer_for_account(session, account_id)
    assert customer_id is not None
    return stripe_client.v1.customers.retrieve(customer_id)


async def test_the_customer_is_created_with_the_email_and_name_given(
    client: httpx.AsyncClient,
    stripe_client: stripe.StripeClient,
    session_factory: sessionmaker[Session],
) -> None:
    account = f"acct_{uuid4().hex[:12]}"
    body = {"plan": "pro", "email": "ada@example.com", "name": "Ada Lovelace"}

    response = await client.post(checkout_url(account), json=body, headers=AUTH)

    assert response.status_code == 201, response.text
    customer = customer_of(stripe_client, session_factory, account)
    assert (customer.email, customer.name) == ("ada@example.com", "Ada Lovelace")
    assert customer.metadata["account_id"] == account


async def test_without_an_email_the_one_typed_into_checkout_is_set_on_the_customer(
    client: httpx.AsyncClient,
    stripe_client: stripe.StripeClient,
    session_factory: sessionmaker[Session],
) -> None:
    account = f"acct_{uuid4().hex[:12]}"

    response = await client.post(checkout_url(account), json={"plan": "pro"}, headers=AUTH)

    assert response.status_code == 201, response.text
    assert customer_of(stripe_client, session_factory, account).email is None
    async with httpx.AsyncClient() as browser:
        paid = await browser.post(
            response.json()["url"],
            data={"payment_method": "pm_card_visa", "email": "typed@example.com"},
        )
    assert paid.status_code == 303
    assert customer_of(stripe_client, session_factory, account).email == "typed@example.com"


@pytest.mark.parametrize(
    "contact",
    [
        {"email": "not-an-address"},
        {"email": "two@at@example.com"},
        {"email": "spaced out@example.com"},
        {"email": f"{'a' * 250}@example.com"},
        {"name": ""},
        {"name": "x" * 257},
        {"name": "Ada\r\nBcc: everyone@example.com"},
    ],
)
async def test_a_malformed_contact_is_refused_before_stripe_is_asked(
    client: httpx.AsyncClient,
    session_factory: sessionmaker[Session],
    contact: dict[str, str],
) -> None:
    account = f"acct_{uuid4().hex[:12]}"

    response = await client.post(
        checkout_url(account), json={"plan": "pro", **contact}, headers=AUTH
    )

    assert response.status_code == 422
    [field] = contact
    assert any(error["loc"][-1] == field for error in response.json()["detail"])
    with session_factory() as session:
        assert repository.customer_for_account(session, account) is None
