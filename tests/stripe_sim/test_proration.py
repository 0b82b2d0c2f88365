"""Plan changes: proration_behavior create_prorations / always_invoice / none, customer
credit from negative invoices, interval changes and pending updates."""

from __future__ import annotations

from typing import Any

import stripe

from tests.stripe_sim.conftest import DAY, HOUR, JAN_1, advance, events, make_customer

FEB_1 = JAN_1 + 31 * DAY
MAR_1 = FEB_1 + 28 * DAY
DAY_10 = JAN_1 + 10 * DAY
# 21 of January's 31 days remain on day 10.
UNUSED_PRO = -round(2000 * 21 / 31)
REMAINING_TEAM = round(5000 * 21 / 31)


def start(client: stripe.StripeClient, clock: Any, price: Any) -> tuple[Any, Any]:
    cust = make_customer(client, clock)
    sub = client.v1.subscriptions.create(
        params={"customer": cust.id, "items": [{"price": price.id}]}
    )
    advance(client, clock, DAY_10)
    return cust, sub


def change(client: stripe.StripeClient, sub: Any, price: Any, **extra: Any) -> Any:
    item = sub["items"].data[0]
    return client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "price": price.id}],
            "expand": ["latest_invoice"],
            **extra,
        },
    )


def test_upgrade_always_invoice_charges_now(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    _, sub = start(client, clock, catalog["pro"])
    sub = change(client, sub, catalog["team"], proration_behavior="always_invoice")
    assert sub["items"].data[0].price.id == catalog["team"].id
    assert sub["items"].data[0].current_period_end == FEB_1  # the cycle is unchanged
    invoice = sub.latest_invoice
    assert invoice.billing_reason == "subscription_update"
    assert invoice.status == "paid"
    amounts = sorted(line.amount for line in invoice.lines.data)
    assert amounts == [UNUSED_PRO, REMAINING_TEAM]
    assert all(line.parent.subscription_item_details.proration for line in invoice.lines.data)
    assert all(
        line.period.start == DAY_10 and line.period.end == FEB_1 for line in invoice.lines.data
    )
    assert invoice.amount_paid == UNUSED_PRO + REMAINING_TEAM
    assert invoice.status_transitions.paid_at == DAY_10


def test_downgrade_always_invoice_credits_the_customer(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust, sub = start(client, clock, catalog["team"])
    sub = change(client, sub, catalog["pro"], proration_behavior="always_invoice")
    invoice = sub.latest_invoice
    credit = -REMAINING_TEAM - UNUSED_PRO  # negative total
    assert invoice.total == credit < 0
    assert invoice.amount_due == 0
    assert invoice.status == "paid"
    assert invoice.ending_balance == credit
    assert client.v1.customers.retrieve(cust.id).balance == credit
    balance_event = events(client, "customer.updated")[-1]
    assert balance_event.data.previous_attributes.balance == 0
    # The credit is spent by the next invoices.
    advance(client, clock, FEB_1 + 2 * HOUR)
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert renewal.total == 2000
    assert renewal.starting_balance == credit
    assert renewal.amount_due == max(0, 2000 + credit)
    assert client.v1.customers.retrieve(cust.id).balance == min(0, credit + 2000)


def test_create_prorations_wait_for_the_next_invoice(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust, sub = start(client, clock, catalog["pro"])
    before = len(client.v1.invoices.list().data)
    sub = change(client, sub, catalog["team"])  # create_prorations is the default
    assert len(client.v1.invoices.list().data) == before
    pending = client.v1.invoice_items.list(params={"customer": cust.id, "pending": True})
    assert sorted(ii.amount for ii in pending.data) == [UNUSED_PRO, REMAINING_TEAM]
    assert all(ii.proration for ii in pending.data)
    advance(client, clock, FEB_1 + 2 * HOUR)
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert renewal.billing_reason == "subscription_cycle"
    assert sorted(line.amount for line in renewal.lines.data) == [UNUSED_PRO, REMAINING_TEAM, 5000]
    prorations = [line for line in renewal.lines.data if line.parent.type == "invoice_item_details"]
    assert len(prorations) == 2
    assert all(line.parent.invoice_item_details.proration for line in prorations)
    assert renewal.amount_paid == UNUSED_PRO + REMAINING_TEAM + 5000
    assert client.v1.invoice_items.list(params={"customer": cust.id, "pending": True}).data == []


def test_proration_none(client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]) -> None:
    cust, sub = start(client, clock, catalog["pro"])
    sub = change(client, sub, catalog["team"], proration_behavior="none")
    assert sub["items"].data[0].price.id == catalog["team"].id
    assert client.v1.invoice_items.list(params={"customer": cust.id}).data == []
    advance(client, clock, FEB_1 + 2 * HOUR)
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert renewal.amount_paid == 5000


def test_quantity_change(client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]) -> None:
    _, sub = start(client, clock, catalog["pro"])
    item = sub["items"].data[0]
    sub = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "quantity": 3}],
            "proration_behavior": "always_invoice",
            "expand": ["latest_invoice"],
        },
    )
    assert sub["items"].data[0].quantity == 3
    assert sub.latest_invoice.amount_paid == round(6000 * 21 / 31) - round(2000 * 21 / 31)


def test_interval_change_restarts_the_cycle(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    _, sub = start(client, clock, catalog["pro"])
    sub = change(client, sub, catalog["pro_yearly"])
    item = sub["items"].data[0]
    assert item.current_period_start == DAY_10
    assert item.current_period_end == DAY_10 + 365 * DAY
    assert sub.billing_cycle_anchor == DAY_10
    invoice = sub.latest_invoice
    assert invoice.billing_reason == "subscription_update"
    assert sorted(line.amount for line in invoice.lines.data) == [UNUSED_PRO, 20000]
    assert invoice.status == "paid"


def test_pending_if_incomplete_keeps_the_subscription_unchanged(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust, sub = start(client, clock, catalog["pro"])
    failing = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": cust.id}
    )
    client.v1.customers.update(
        cust.id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    sub = change(
        client,
        sub,
        catalog["team"],
        proration_behavior="always_invoice",
        payment_behavior="pending_if_incomplete",
    )
    assert sub.status == "active"
    assert sub["items"].data[0].price.id == catalog["pro"].id
    assert sub.pending_update.expires_at == DAY_10 + 23 * HOUR
    assert sub.pending_update.subscription_items[0].price.id == catalog["team"].id
    assert sub.latest_invoice.status == "open"
    # Paying the invoice applies the update.
    client.v1.invoices.pay(sub.latest_invoice.id, params={"payment_method": "pm_card_visa"})
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.pending_update is None
    assert sub["items"].data[0].price.id == catalog["team"].id
    assert events(client, "customer.subscription.pending_update_applied")


def test_pending_update_expires(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust, sub = start(client, clock, catalog["pro"])
    failing = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": cust.id}
    )
    client.v1.subscriptions.update(sub.id, params={"default_payment_method": failing.id})
    sub = change(
        client,
        sub,
        catalog["team"],
        proration_behavior="always_invoice",
        payment_behavior="pending_if_incomplete",
    )
    advance(client, clock, DAY_10 + DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.pending_update is None
    assert sub["items"].data[0].price.id == catalog["pro"].id
    assert sub.status == "active"
    assert (
        events(client, "customer.subscription.pending_update_expired")[0].created
        == DAY_10 + 23 * HOUR
    )
