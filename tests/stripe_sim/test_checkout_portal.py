"""Checkout Sessions (subscription mode) with the hosted page, and the billing portal."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from stripe_sim.server import SimulatorServer
from tests.stripe_sim.conftest import JAN_1, events, make_customer


def create_session(client: stripe.StripeClient, catalog: dict[str, Any], **extra: Any) -> Any:
    return client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": catalog["pro"].id, "quantity": 1}],
            "customer_email": "new@example.com",
            "client_reference_id": "acc_42",
            "subscription_data": {"metadata": {"account_id": "acc_42"}},
            "metadata": {"source": "pricing_page"},
            "success_url": "https://app.example/billing/done?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://app.example/billing",
            **extra,
        }
    )


def test_subscribe_through_checkout(
    client: stripe.StripeClient, catalog: dict[str, Any], sim: SimulatorServer
) -> None:
    session = create_session(client, catalog)
    assert session.id.startswith("cs_test_")
    assert session.status == "open" and session.payment_status == "unpaid"
    assert session.url.startswith(sim.url)
    page = httpx.get(session.url)
    assert page.status_code == 200 and "Subscribe" in page.text
    done = httpx.post(session.url, data={"payment_method": "pm_card_visa", "name": "Ada"})
    assert done.status_code == 303
    assert done.headers["location"] == f"https://app.example/billing/done?session={session.id}"
    session = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["subscription"]})
    assert session.status == "complete" and session.payment_status == "paid"
    assert session.customer_details.email == "new@example.com"
    sub = session.subscription
    assert sub.status == "active"
    assert sub.metadata.account_id == "acc_42"
    assert sub.customer == session.customer
    assert sub.default_payment_method
    completed = events(client, "checkout.session.completed")
    assert len(completed) == 1
    obj = completed[0].data.object
    assert obj.subscription == sub.id and obj.customer == session.customer
    assert obj.client_reference_id == "acc_42"
    assert obj.metadata.source == "pricing_page"
    created = events(client, "customer.subscription.created")[0]
    assert created.data.object.metadata.account_id == "acc_42"
    assert client.v1.customers.retrieve(session.customer).email == "new@example.com"
    line_items = client.v1.checkout.sessions.line_items.list(session.id)
    assert line_items.data[0].price.id == catalog["pro"].id
    # A completed session cannot be paid again.
    assert httpx.post(session.url, data={"payment_method": "pm_card_visa"}).status_code == 400


def test_checkout_with_declined_card_stays_open(
    client: stripe.StripeClient, catalog: dict[str, Any]
) -> None:
    session = create_session(client, catalog)
    refused = httpx.post(session.url, data={"payment_method": "pm_card_chargeDeclined"})
    assert refused.status_code == 402
    assert "Your card was declined." in refused.text
    failing = httpx.post(session.url, data={"payment_method": "pm_card_chargeCustomerFail"})
    assert failing.status_code == 402
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert client.v1.subscriptions.list(params={"status": "all"}).data == []
    assert httpx.post(session.url, data={"payment_method": "pm_card_visa"}).status_code == 303


def test_checkout_3ds_card_authenticates_on_the_page(
    client: stripe.StripeClient, catalog: dict[str, Any]
) -> None:
    session = create_session(client, catalog)
    done = httpx.post(session.url, data={"payment_method": "pm_card_authenticationRequired"})
    assert done.status_code == 303
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert client.v1.subscriptions.retrieve(session.subscription).status == "active"


def test_checkout_trial_for_existing_customer(
    client: stripe.StripeClient, catalog: dict[str, Any], clock: Any
) -> None:
    cust = make_customer(client, clock, pm=None)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": cust.id,
            "line_items": [{"price": catalog["pro"].id, "quantity": 1}],
            "subscription_data": {"trial_period_days": 14},
            "success_url": "https://app.example/ok",
        }
    )
    assert httpx.post(session.url, data={"payment_method": "pm_card_visa"}).status_code == 303
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.payment_status == "no_payment_required"
    sub = client.v1.subscriptions.retrieve(session.subscription)
    assert sub.status == "trialing" and sub.trial_start == JAN_1


def checkout_for(client: stripe.StripeClient, customer: Any, price: Any) -> Any:
    return client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://app.example/ok",
        }
    )


def test_checkout_sets_the_email_typed_in_on_a_customer_without_one(
    client: stripe.StripeClient, catalog: dict[str, Any], clock: Any
) -> None:
    customer = make_customer(client, clock, pm=None, email=None)
    session = checkout_for(client, customer, catalog["pro"])
    page = httpx.get(session.url)
    assert 'name="email"' in page.text  # asked for

    done = httpx.post(
        session.url, data={"payment_method": "pm_card_visa", "email": "typed@example.com"}
    )

    assert done.status_code == 303
    assert client.v1.customers.retrieve(customer.id).email == "typed@example.com"
    [updated] = events(client, "customer.updated")
    assert updated.data.object.email == "typed@example.com"
    assert updated.data.previous_attributes.email is None
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.customer_details.email == "typed@example.com"


def test_checkout_keeps_the_email_a_customer_has(
    client: stripe.StripeClient, catalog: dict[str, Any], clock: Any
) -> None:
    customer = make_customer(client, clock, pm=None)
    session = checkout_for(client, customer, catalog["pro"])
    page = httpx.get(session.url)
    # Shown, not editable.
    assert "ada@example.com" in page.text and 'name="email"' not in page.text

    done = httpx.post(
        session.url, data={"payment_method": "pm_card_visa", "email": "other@example.com"}
    )

    assert done.status_code == 303
    assert client.v1.customers.retrieve(customer.id).email == "ada@example.com"
    assert events(client, "customer.updated") == []
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.customer_details.email == "ada@example.com"


def test_checkout_validation(client: stripe.StripeClient, catalog: dict[str, Any]) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "success_url": "https://x",
                "line_items": [{"price": "price_missing", "quantity": 1}],
            }
        )
    assert info.value.param == "line_items[0][price]"
    session = create_session(client, catalog)
    expired = client.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired"
    assert events(client, "checkout.session.expired")


def test_hosted_invoice_page_pays_with_a_test_card(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm="pm_card_authenticationRequired")
    sub = client.v1.subscriptions.create(
        params={
            "customer": cust.id,
            "items": [{"price": catalog["pro"].id}],
            "expand": ["latest_invoice"],
        }
    )
    assert sub.status == "incomplete"
    url = sub.latest_invoice.hosted_invoice_url
    assert "Pay" in httpx.get(url).text
    declined = httpx.post(url, data={"payment_method": "pm_card_chargeDeclined"})
    assert declined.status_code == 402
    # the card on file needs 3DS, which the customer completes on the page
    assert httpx.post(url, data={"payment_method": "default"}).status_code == 303
    assert client.v1.invoices.retrieve(sub.latest_invoice.id).status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_billing_portal(client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]) -> None:
    cust = make_customer(client, clock)
    sub = client.v1.subscriptions.create(
        params={"customer": cust.id, "items": [{"price": catalog["pro"].id}]}
    )
    session = client.v1.billing_portal.sessions.create(
        params={"customer": cust.id, "return_url": "https://app.example/billing"}
    )
    assert session.id.startswith("bps_") and session.object == "billing_portal.session"
    page = httpx.get(session.url)
    assert page.status_code == 200 and "Change plan" in page.text
    moved = httpx.post(
        session.url,
        data={"action": "change_plan", "subscription": sub.id, "price": catalog["team"].id},
    )
    assert moved.status_code == 303
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub["items"].data[0].price.id == catalog["team"].id
    httpx.post(session.url, data={"action": "update_card", "payment_method": "pm_card_mastercard"})
    cust = client.v1.customers.retrieve(
        cust.id, params={"expand": ["invoice_settings.default_payment_method"]}
    )
    assert cust.invoice_settings.default_payment_method.card.brand == "mastercard"
    refused = httpx.post(
        session.url, data={"action": "update_card", "payment_method": "pm_card_chargeDeclined"}
    )
    assert refused.status_code == 402
    httpx.post(session.url, data={"action": "cancel", "subscription": sub.id})
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.cancel_at_period_end is True and sub.status == "active"
    httpx.post(session.url, data={"action": "renew", "subscription": sub.id})
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is False


def test_portal_after_checkout_names_the_plan_and_shows_the_card(
    client: stripe.StripeClient, catalog: dict[str, Any]
) -> None:
    """Checkout sets the card as the subscription's default only; the portal still shows it,
    and names the product rather than its id."""
    session = create_session(client, catalog)
    httpx.post(session.url, data={"payment_method": "pm_card_mastercard"})
    cust = client.v1.checkout.sessions.retrieve(session.id).customer
    assert client.v1.customers.retrieve(cust).invoice_settings.default_payment_method is None
    portal = client.v1.billing_portal.sessions.create(params={"customer": cust})
    page = httpx.get(portal.url).text
    assert "<h2>Pro — $20.00 / month</h2>" in page
    assert "mastercard •••• 4444" in page
    assert "None on file" not in page
