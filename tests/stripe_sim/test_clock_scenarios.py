"""Conformance scenarios driven by test clocks, read back only through the API and
``/v1/events``."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from stripe_sim.server import SimulatorServer
from tests.stripe_sim.conftest import DAY, HOUR, JAN_1, advance, event_types, events, make_customer

FEB_1 = JAN_1 + 31 * DAY
MAR_1 = FEB_1 + 28 * DAY


def subscribe(client: stripe.StripeClient, cust: Any, price: Any, **extra: Any) -> Any:
    return client.v1.subscriptions.create(
        params={"customer": cust.id, "items": [{"price": price.id}], **extra}
    )


def test_renewal_is_drafted_then_finalized_and_paid(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    advance(client, clock, FEB_1 + 30 * 60)
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    renewal = invoices[0]
    assert renewal.billing_reason == "subscription_cycle"
    assert renewal.status == "draft"
    assert renewal.automatically_finalizes_at == FEB_1 + HOUR
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.latest_invoice == renewal.id
    assert sub["items"].data[0].current_period_start == FEB_1
    assert sub["items"].data[0].current_period_end == MAR_1
    advance(client, clock, FEB_1 + 2 * HOUR)
    renewal = client.v1.invoices.retrieve(renewal.id)
    assert renewal.status == "paid"
    assert renewal.status_transitions.finalized_at == FEB_1 + HOUR
    assert renewal.status_transitions.paid_at == FEB_1 + HOUR
    assert renewal.amount_paid == 2000
    assert renewal.lines.data[0].period.start == FEB_1
    created = events(client, "invoice.created")[-1]
    paid = events(client, "invoice.paid")[-1]
    assert created.created == FEB_1 and paid.created == FEB_1 + HOUR
    assert created.request.id is None  # automatic, not from an API request


def test_months_keep_the_anchor_day(client: stripe.StripeClient, catalog: dict[str, Any]) -> None:
    jan_31 = JAN_1 + 30 * DAY
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": jan_31})
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    assert sub["items"].data[0].current_period_end == MAR_1 - DAY  # Feb 28
    advance(client, clock, MAR_1)
    advance(client, clock, MAR_1 + 31 * DAY)
    item = client.v1.subscriptions.retrieve(sub.id)["items"].data[0]
    assert item.current_period_start == MAR_1 + 30 * DAY  # Mar 31
    assert item.current_period_end == MAR_1 + 60 * DAY  # Apr 30


def test_failed_renewal_retries_then_cancels(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    failing = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": cust.id}
    )
    client.v1.customers.update(
        cust.id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    advance(client, clock, FEB_1 + 2 * HOUR)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.status == "open"
    assert invoice.attempt_count == 1
    first_failure = FEB_1 + HOUR
    assert invoice.next_payment_attempt == first_failure + 1 * DAY
    # Walk through the whole Smart Retries schedule (8 tries within 2 weeks).
    advance(client, clock, first_failure + 10 * DAY)
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert invoice.attempt_count == 6
    advance(client, clock, first_failure + 15 * DAY)
    invoice = client.v1.invoices.retrieve(invoice.id)
    assert invoice.attempt_count == 8
    assert invoice.next_payment_attempt is None
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled"
    assert sub.ended_at == first_failure + 14 * DAY
    assert sub.cancellation_details.reason == "payment_failed"
    failed = [e for e in events(client, "invoice.payment_failed") if e.data.object.id == invoice.id]
    assert len(failed) == 8
    assert [e.data.object.attempt_count for e in failed] == list(range(1, 9))
    types = event_types(client, sub.id)
    assert types[-1] == "customer.subscription.deleted"
    status_changes = [
        e.data.object.status
        for e in events(client, "customer.subscription.updated")
        if "status" in e.data.previous_attributes
    ]
    assert status_changes == ["past_due"]


@pytest.mark.parametrize(("action", "status"), [("unpaid", "unpaid"), ("past_due", "past_due")])
def test_retries_exhausted_settings(
    sim: SimulatorServer,
    client: stripe.StripeClient,
    clock: Any,
    catalog: dict[str, Any],
    action: str,
    status: str,
) -> None:
    sim.settings.retries_exhausted_action = action  # type: ignore[assignment]
    sim.settings.retry_schedule_days = (2,)
    cust = make_customer(client, clock, pm="pm_card_visa")
    sub = subscribe(client, cust, catalog["pro"])
    failing = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": cust.id}
    )
    client.v1.subscriptions.update(sub.id, params={"default_payment_method": failing.id})
    advance(client, clock, FEB_1 + 5 * DAY)
    assert client.v1.subscriptions.retrieve(sub.id).status == status


def test_failed_renewal_then_card_updated_then_paid(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm="pm_card_visa")
    sub = subscribe(
        client, cust, catalog["pro"], default_payment_method="pm_card_chargeCustomerFail"
    )
    # the sub's own default (failing card) is charged, not the customer's visa
    assert sub.status == "incomplete"
    good = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cust.id})
    client.v1.subscriptions.update(sub.id, params={"default_payment_method": good.id})
    client.v1.invoices.pay(sub.latest_invoice)
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    bad = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": cust.id}
    )
    client.v1.subscriptions.update(sub.id, params={"default_payment_method": bad.id})
    advance(client, clock, FEB_1 + 2 * HOUR)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    with pytest.raises(stripe.CardError):
        client.v1.invoices.pay(sub.latest_invoice)
    # The customer updates the card; the next Smart Retry charges it.
    client.v1.subscriptions.update(sub.id, params={"default_payment_method": good.id})
    advance(client, clock, FEB_1 + 3 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active"
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.status == "paid"
    assert invoice.status_transitions.paid_at == FEB_1 + HOUR + DAY
    last = [
        e
        for e in events(client, "customer.subscription.updated")
        if "status" in e.data.previous_attributes
    ][-1]
    assert last.data.previous_attributes.status == "past_due"
    assert last.data.object.status == "active"


def test_trial_with_payment_method(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"], trial_period_days=14, expand=["latest_invoice"])
    assert sub.status == "trialing"
    assert sub.trial_start == JAN_1 and sub.trial_end == JAN_1 + 14 * DAY
    assert sub.latest_invoice.amount_due == 0 and sub.latest_invoice.status == "paid"
    assert sub["items"].data[0].current_period_end == JAN_1 + 14 * DAY
    advance(client, clock, JAN_1 + 12 * DAY)
    will_end = events(client, "customer.subscription.trial_will_end")
    assert [e.created for e in will_end] == [JAN_1 + 11 * DAY]
    advance(client, clock, JAN_1 + 14 * DAY + 2 * HOUR)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active"
    assert sub["items"].data[0].current_period_start == JAN_1 + 14 * DAY
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.billing_reason == "subscription_cycle"
    assert invoice.status == "paid" and invoice.amount_paid == 2000


def test_trial_without_payment_method_pauses(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm=None)
    sub = subscribe(
        client,
        cust,
        catalog["pro"],
        trial_period_days=7,
        trial_settings={"end_behavior": {"missing_payment_method": "pause"}},
    )
    assert sub.status == "trialing"
    advance(client, clock, JAN_1 + 8 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "paused"
    assert [e.created for e in events(client, "customer.subscription.trial_will_end")] == [
        JAN_1 + 4 * DAY
    ]
    assert events(client, "customer.subscription.paused")[0].created == JAN_1 + 7 * DAY
    # A paused subscription does not renew or invoice.
    advance(client, clock, JAN_1 + 40 * DAY)
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1
    client.v1.payment_methods.attach("pm_card_visa", params={"customer": cust.id})
    pm = client.v1.customers.payment_methods.list(cust.id).data[0]
    client.v1.customers.update(
        cust.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
    sub = client.v1.subscriptions.resume(sub.id, params={"billing_cycle_anchor": {"type": "now"}})
    assert sub.status == "active"
    assert sub["items"].data[0].current_period_start == JAN_1 + 40 * DAY
    assert client.v1.invoices.retrieve(sub.latest_invoice).status == "paid"
    assert events(client, "customer.subscription.resumed")


def test_trial_without_payment_method_cancels(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm=None)
    sub = subscribe(
        client,
        cust,
        catalog["pro"],
        trial_period_days=7,
        trial_settings={"end_behavior": {"missing_payment_method": "cancel"}},
    )
    advance(client, clock, JAN_1 + 8 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled" and sub.ended_at == JAN_1 + 7 * DAY
    assert events(client, "customer.subscription.deleted")


def test_trial_without_payment_method_invoices_and_goes_past_due(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm=None)
    sub = subscribe(client, cust, catalog["pro"], trial_period_days=7)
    advance(client, clock, JAN_1 + 8 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    assert client.v1.invoices.retrieve(sub.latest_invoice).status == "open"


def test_short_trial_sends_trial_will_end_at_once(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    subscribe(client, cust, catalog["pro"], trial_end=JAN_1 + DAY)
    assert [e.created for e in events(client, "customer.subscription.trial_will_end")] == [JAN_1]


def test_end_trial_now(client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"], trial_period_days=30)
    sub = client.v1.subscriptions.update(sub.id, params={"trial_end": "now"})
    assert sub.status == "active"
    assert client.v1.invoices.retrieve(sub.latest_invoice).status == "paid"


def test_advance_limit(client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]) -> None:
    cust = make_customer(client, clock)
    subscribe(client, cust, catalog["pro"])
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.test_helpers.test_clocks.advance(
            clock.id, params={"frozen_time": JAN_1 + 70 * DAY}
        )
    assert info.value.param == "frozen_time"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": JAN_1})
    advance(client, clock, JAN_1 + 59 * DAY)  # Mar 1 = two months: allowed


def test_advance_response_and_clock_events(client: stripe.StripeClient, clock: Any) -> None:
    response = client.v1.test_helpers.test_clocks.advance(
        clock.id, params={"frozen_time": JAN_1 + DAY}
    )
    assert response.status == "advancing"
    assert response.status_details.advancing.target_frozen_time == JAN_1 + DAY
    ready = client.v1.test_helpers.test_clocks.retrieve(clock.id)
    assert ready.status == "ready" and ready.frozen_time == JAN_1 + DAY
    clock_events = events(
        client, "test_helpers.test_clock.advancing", "test_helpers.test_clock.ready"
    )
    assert [(e.type, e.created) for e in clock_events] == [
        ("test_helpers.test_clock.advancing", JAN_1),
        ("test_helpers.test_clock.ready", JAN_1 + DAY),
    ]
    assert [c.id for c in client.v1.test_helpers.test_clocks.list().data] == [clock.id]


def test_deleting_clock_deletes_its_customers(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    assert client.v1.test_helpers.test_clocks.delete(clock.id).deleted is True
    assert client.v1.customers.retrieve(cust.id).deleted is True
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.test_helpers.test_clocks.retrieve(clock.id)


def test_advancing_a_clock_runs_only_its_own_objects(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    other = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN_1})
    mine = subscribe(client, make_customer(client, clock), catalog["pro"])
    theirs = subscribe(client, make_customer(client, other), catalog["pro"])

    def reasons(sub: Any) -> list[str]:
        listed = client.v1.invoices.list(params={"subscription": sub.id}).data
        return [inv.billing_reason for inv in listed]

    advance(client, clock, FEB_1 + 2 * HOUR)
    assert reasons(mine) == ["subscription_cycle", "subscription_create"]
    assert reasons(theirs) == ["subscription_create"]
    advance(client, other, FEB_1 + 2 * HOUR)
    assert reasons(theirs) == ["subscription_cycle", "subscription_create"]


def test_customers_without_clock_live_on_real_time(client: stripe.StripeClient) -> None:
    year_2001 = 1_000_000_000
    old_clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": year_2001})
    on_clock = make_customer(client, old_clock)
    real = client.v1.customers.create(params={"email": "r@example.com"})
    assert on_clock.created == year_2001
    assert real.created > year_2001  # the wall clock, not a test clock


def test_advancing_a_month_is_fast(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    import time

    for _ in range(5):
        subscribe(client, make_customer(client, clock), catalog["pro"])
    started = time.perf_counter()
    advance(client, clock, FEB_1 + 2 * HOUR)
    assert time.perf_counter() - started < 1.0
