"""Subscriptions and their first invoice: object shape at the pinned API version, statuses,
errors, cancel and resume."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.stripe_sim.conftest import DAY, HOUR, JAN_1, advance, event_types, make_customer


def subscribe(client: stripe.StripeClient, cust: Any, price: Any, **extra: Any) -> Any:
    return client.v1.subscriptions.create(
        params={
            "customer": cust.id,
            "items": [{"price": price.id}],
            "expand": ["latest_invoice"],
            **extra,
        }
    )


def test_first_invoice_paid_at_once(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"], metadata={"account_id": "acc_1"})
    assert sub.id.startswith("sub_") and sub.object == "subscription"
    assert sub.status == "active"
    item = sub["items"].data[0]
    assert item.id.startswith("si_")
    assert item.price.id == catalog["pro"].id
    assert item.plan.id == catalog["pro"].id and item.plan.interval == "month"
    # basil+: periods live on the items
    assert item.current_period_start == JAN_1
    assert item.current_period_end == JAN_1 + 31 * DAY
    assert "current_period_end" not in sub
    invoice = sub.latest_invoice
    assert invoice.status == "paid"
    assert invoice.billing_reason == "subscription_create"
    assert invoice.amount_due == invoice.amount_paid == 2000
    assert invoice.amount_remaining == 0
    assert invoice.attempt_count == 1
    assert invoice.parent.subscription_details.subscription == sub.id
    assert invoice.parent.subscription_details.metadata.to_dict() == {"account_id": "acc_1"}
    assert invoice.status_transitions.paid_at == JAN_1
    assert invoice.lines.data[0].parent.subscription_item_details.proration is False
    assert invoice.lines.data[0].period.end == JAN_1 + 31 * DAY
    assert event_types(client, sub.id) == [
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]


def test_no_payment_method_is_refused(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm=None)
    with pytest.raises(stripe.InvalidRequestError) as info:
        subscribe(client, cust, catalog["pro"])
    assert "no attached payment source or default payment method" in str(info.value)
    assert client.v1.subscriptions.list(params={"status": "all"}).data == []


def test_default_incomplete_waits_for_payment(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm=None)
    sub = subscribe(
        client,
        cust,
        catalog["pro"],
        payment_behavior="default_incomplete",
        expand=["latest_invoice.payments"],
    )
    assert sub.status == "incomplete"
    assert sub.latest_invoice.status == "open"
    assert sub.latest_invoice.confirmation_secret is None
    invoice = client.v1.invoices.pay(
        sub.latest_invoice.id, params={"payment_method": "pm_card_visa"}
    )
    assert invoice.status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_subscription_default_payment_method_is_charged(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm="pm_card_chargeCustomerFail")
    good = client.v1.payment_methods.attach("pm_card_mastercard", params={"customer": cust.id})
    sub = subscribe(client, cust, catalog["pro"], default_payment_method=good.id)
    assert sub.status == "active"
    assert sub.default_payment_method == good.id


def test_authentication_required_then_incomplete_expired(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm="pm_card_authenticationRequired")
    sub = subscribe(client, cust, catalog["pro"])
    assert sub.status == "incomplete"
    invoice = sub.latest_invoice
    assert invoice.status == "open"
    assert invoice.hosted_invoice_url
    intent = client.v1.payment_intents.retrieve(invoice.payments.data[0].payment.payment_intent)
    assert intent.status == "requires_action"
    assert "invoice.payment_action_required" in event_types(client, sub.id)
    advance(client, clock, JAN_1 + 22 * HOUR)
    assert client.v1.subscriptions.retrieve(sub.id).status == "incomplete"
    advance(client, clock, JAN_1 + 24 * HOUR)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "incomplete_expired"
    assert sub.ended_at == JAN_1 + 23 * HOUR
    assert client.v1.invoices.retrieve(invoice.id).status == "void"
    updated = [
        e
        for e in client.v1.events.list(params={"type": "customer.subscription.updated"}).data
        if e.data.object.id == sub.id
    ]
    assert updated[0].data.object.status == "incomplete_expired"
    assert updated[0].data.previous_attributes.status == "incomplete"
    assert updated[0].created == JAN_1 + 23 * HOUR


def test_failed_first_payment_stays_incomplete(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm="pm_card_chargeCustomerFail")
    sub = subscribe(client, cust, catalog["pro"])
    assert sub.status == "incomplete"
    assert sub.latest_invoice.next_payment_attempt is None
    types = event_types(client, sub.id)
    assert types[0] == "customer.subscription.created"
    assert "invoice.payment_failed" in types


def test_error_if_incomplete_returns_402(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm="pm_card_chargeCustomerFail")
    with pytest.raises(stripe.CardError) as info:
        subscribe(client, cust, catalog["pro"], payment_behavior="error_if_incomplete")
    assert info.value.error.decline_code == "generic_decline"
    assert client.v1.subscriptions.list(params={"status": "all"}).data == []


def test_list_filters(client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]) -> None:
    a = make_customer(client, clock)
    b = make_customer(client, clock)
    sa = subscribe(client, a, catalog["pro"])
    sb = subscribe(client, b, catalog["team"])
    client.v1.subscriptions.cancel(sb.id)
    assert [s.id for s in client.v1.subscriptions.list().data] == [sa.id]
    assert {s.id for s in client.v1.subscriptions.list(params={"status": "all"}).data} == {
        sa.id,
        sb.id,
    }
    assert [s.id for s in client.v1.subscriptions.list(params={"status": "canceled"}).data] == [
        sb.id
    ]
    assert [s.id for s in client.v1.subscriptions.list(params={"customer": a.id}).data] == [sa.id]
    found = client.v1.subscriptions.search(params={"query": "status:'canceled'"})
    assert [s.id for s in found.data] == [sb.id]


def test_cancel_now(client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    canceled = client.v1.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled"
    assert canceled.canceled_at == canceled.ended_at == JAN_1
    assert event_types(client, sub.id)[-1] == "customer.subscription.deleted"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})


def test_cancel_at_period_end(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    advance(client, clock, JAN_1 + 10 * DAY)
    sub = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    period_end = sub["items"].data[0].current_period_end
    assert sub.cancel_at_period_end is True
    assert sub.cancel_at == period_end
    assert sub.canceled_at == JAN_1 + 10 * DAY
    assert sub.status == "active"
    advance(client, clock, period_end + DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled"
    assert sub.ended_at == period_end
    deleted = client.v1.events.list(params={"type": "customer.subscription.deleted"}).data
    assert deleted[0].created == period_end
    # no renewal invoice was made
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1


def test_cancel_at_period_end_can_be_undone(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    sub = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": False})
    assert sub.cancel_at is None and sub.canceled_at is None
    advance(client, clock, JAN_1 + 32 * DAY)
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_cancel_at_timestamp(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"], cancel_at=JAN_1 + 5 * DAY)
    assert sub.cancel_at == JAN_1 + 5 * DAY
    advance(client, clock, JAN_1 + 6 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled" and sub.ended_at == JAN_1 + 5 * DAY


def test_update_metadata_sends_previous_attributes(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"], metadata={"a": "1"})
    client.v1.subscriptions.update(sub.id, params={"metadata": {"a": "2"}})
    event = client.v1.events.list(params={"type": "customer.subscription.updated"}).data[0]
    assert event.data.object.metadata.a == "2"
    assert event.data.previous_attributes.metadata.a == "1"


def test_incomplete_subscription_rejects_item_changes(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm="pm_card_chargeCustomerFail")
    sub = subscribe(client, cust, catalog["pro"])
    item = sub["items"].data[0]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(
            sub.id, params={"items": [{"id": item.id, "price": catalog["team"].id}]}
        )
