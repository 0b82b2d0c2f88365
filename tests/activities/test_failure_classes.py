"""Every activity failure has a class: transient errors are retried, everything else is final.

The Stripe activities run here against the simulator, with the catalog published to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy.exc
import stripe
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.failures import classify_failures
from activities.stripe_changes import ChangeSubscriptionInput, StripeChangeActivities
from activities.stripe_sync import FetchSubscriptionInput, StripeSyncActivities
from domain.catalog import default_catalog
from domain.lifecycle import Purchase
from ops.catalog_sync import apply_catalog_changes, plan_catalog_changes
from stripe_sim.server import SimulatorServer

TEAM = Purchase(plan="team", interval="month", seats=3, lookup_key="team_monthly_per_seat")


@pytest.fixture
def client() -> Iterator[stripe.StripeClient]:
    with SimulatorServer() as sim:
        client = stripe.StripeClient(
            "sk_test_simulator", base_addresses={"api": sim.url}, max_network_retries=0
        )
        catalog = default_catalog()
        apply_catalog_changes(client, catalog, plan_catalog_changes(client, catalog))
        yield client


def _price(client: stripe.StripeClient, lookup_key: str) -> str:
    [price] = client.v1.prices.list(params={"lookup_keys": [lookup_key]}).data
    return price.id


def _subscribe(client: stripe.StripeClient, *prices: str) -> Any:
    customer = client.v1.customers.create(
        params={
            "email": "ada@example.com",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    return client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": p} for p in prices]}
    )


def _final(err: BaseException) -> ApplicationError:
    assert isinstance(err, ApplicationError), f"{type(err).__name__} would be retried: {err}"
    assert err.non_retryable
    return err


@pytest.mark.parametrize(
    "error",
    [
        stripe.APIConnectionError("connection reset"),
        stripe.RateLimitError("slow down", http_status=429),
        stripe.APIError("internal", http_status=500),
        stripe.InvalidRequestError("lock_timeout", None, http_status=409),
        sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed")),
        ConnectionRefusedError("SMTP down"),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient_failures_are_raised_as_they_are_for_temporal_to_retry(error: Exception) -> None:
    @classify_failures
    def call() -> None:
        raise error

    with pytest.raises(type(error)) as raised:
        call()
    assert raised.value is error


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ValueError("not enough values to unpack"), "ValueError"),
        (KeyError("items"), "KeyError"),
        (stripe.InvalidRequestError("No such price", "price", http_status=400), "InvalidRequest"),
        (stripe.CardError("declined", None, "card_declined", http_status=402), "CardError"),
        (stripe.AuthenticationError("Invalid API Key", http_status=401), "AuthenticationError"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
async def test_every_other_failure_is_final_and_named(error: Exception, kind: str) -> None:
    @classify_failures
    async def call() -> None:
        raise error

    with pytest.raises(ApplicationError) as raised:
        await call()
    assert _final(raised.value).type.startswith(kind)  # type: ignore[union-attr]


def test_a_plan_change_on_a_subscription_with_an_add_on_is_refused_not_retried(
    client: stripe.StripeClient,
) -> None:
    """Defect 3: a second item (an add-on added in the Dashboard) raised a plain ValueError,
    which Temporal retried forever."""
    add_on = client.v1.prices.create(
        params={
            "product_data": {"name": "Extra storage"},
            "unit_amount": 500,
            "currency": "usd",
            "recurring": {"interval": "month"},
        }
    )
    subscription = _subscribe(client, _price(client, "pro_monthly"), add_on.id)
    change = ChangeSubscriptionInput(subscription.id, TEAM, "always_invoice", "key-add-on")

    with pytest.raises(BaseException) as raised:
        ActivityEnvironment().run(StripeChangeActivities(client).change_subscription, change)
    assert _final(raised.value).type == "UnsupportedSubscription"


def test_a_plan_change_to_a_lookup_key_without_an_active_price_is_refused_not_retried(
    client: stripe.StripeClient,
) -> None:
    subscription = _subscribe(client, _price(client, "pro_monthly"))
    client.v1.prices.update(_price(client, "team_monthly_per_seat"), params={"active": False})
    change = ChangeSubscriptionInput(subscription.id, TEAM, "always_invoice", "key-no-price")

    with pytest.raises(BaseException) as raised:
        ActivityEnvironment().run(StripeChangeActivities(client).change_subscription, change)
    assert _final(raised.value).type == "PriceNotFound"


async def test_a_customer_stripe_does_not_know_is_an_anomaly_not_a_cancellation(
    client: stripe.StripeClient,
) -> None:
    """Defect 10: a customer Stripe answers resource_missing for read as "no subscription",
    and the account was moved to free."""
    fetch = StripeSyncActivities(client, default_catalog()).fetch_current_subscription

    with pytest.raises(BaseException) as raised:
        await ActivityEnvironment().run(fetch, FetchSubscriptionInput("cus_unknown_to_stripe"))
    assert _final(raised.value).type == "CustomerMissing"


async def test_a_deleted_customer_is_an_anomaly_not_a_cancellation(
    client: stripe.StripeClient,
) -> None:
    subscription = _subscribe(client, _price(client, "pro_monthly"))
    client.v1.customers.delete(subscription.customer)
    fetch = StripeSyncActivities(client, default_catalog()).fetch_current_subscription

    with pytest.raises(BaseException) as raised:
        await ActivityEnvironment().run(fetch, FetchSubscriptionInput(subscription.customer))
    assert _final(raised.value).type == "CustomerMissing"


async def test_a_customer_without_a_subscription_reads_as_free(
    client: stripe.StripeClient,
) -> None:
    customer = client.v1.customers.create(params={"email": "ada@example.com"})
    fetch = StripeSyncActivities(client, default_catalog()).fetch_current_subscription

    fetched = await ActivityEnvironment().run(fetch, FetchSubscriptionInput(customer.id))
    assert fetched.subscription is None
