"""Billing cycle anchors on create (a prorated or free first period, then full periods from
the anchor; after a trial, the period up to the anchor prorated), billing_cycle_anchor=now on
update, and cancel_at inside a paid period (a credit for the time after it)."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from stripe_sim.request_schema import NOT_IMPLEMENTED
from tests.stripe_sim.conftest import DAY, HOUR, JAN_1, advance, events, make_customer

DAY_10 = JAN_1 + 10 * DAY  # 11 Jan 2026
DAY_20 = JAN_1 + 20 * DAY  # 21 Jan 2026
FEB_1 = JAN_1 + 31 * DAY
FEB_10 = FEB_1 + 9 * DAY
FEB_11 = FEB_1 + 10 * DAY
FEB_28 = FEB_1 + 27 * DAY
MAR_1 = FEB_1 + 28 * DAY
MAR_31 = MAR_1 + 30 * DAY
APR_30 = MAR_31 + 30 * DAY
JUL_1_2025 = JAN_1 - 184 * DAY
JUL_1 = JAN_1 + 181 * DAY


def create(client: stripe.StripeClient, cust: Any, price: Any, **extra: Any) -> Any:
    return client.v1.subscriptions.create(
        params={
            "customer": cust.id,
            "items": [{"price": price.id}],
            "expand": ["latest_invoice"],
            **extra,
        }
    )


def refusal(call: Any) -> Any:
    with pytest.raises(stripe.InvalidRequestError) as info:
        call()
    return info.value


def only_line(invoice: Any) -> Any:
    (line,) = invoice.lines.data
    return line


def renewal(client: stripe.StripeClient, sub_id: str) -> tuple[Any, Any]:
    """The subscription and its latest invoice."""
    sub = client.v1.subscriptions.retrieve(sub_id, params={"expand": ["latest_invoice"]})
    return sub, sub.latest_invoice


# billing cycle anchor ------------------------------------------------------------------------
def test_monthly_anchor_prorates_the_first_period_then_renews_on_the_anchor(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    advance(client, clock, DAY_10)
    sub = create(client, cust, catalog["pro"], billing_cycle_anchor=FEB_1)
    assert sub.status == "active"
    assert sub.billing_cycle_anchor == FEB_1
    assert sub.billing_cycle_anchor_config is None
    item = sub["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (DAY_10, FEB_1)
    invoice = sub.latest_invoice
    assert invoice.billing_reason == "subscription_create" and invoice.status == "paid"
    line = only_line(invoice)
    # 21 of the 31 days of the period Jan 1 - Feb 1 the first period is cut from.
    assert line.amount == invoice.amount_paid == round(2000 * 21 / 31) == 1355
    assert line.parent.subscription_item_details.proration is True
    assert line.description == "Remaining time on Pro after 11 Jan 2026"
    assert (line.period.start, line.period.end) == (DAY_10, FEB_1)

    advance(client, clock, FEB_1 + 2 * HOUR)
    sub, invoice = renewal(client, sub.id)
    assert (sub["items"].data[0].current_period_start, sub["items"].data[0].current_period_end) == (
        FEB_1,
        MAR_1,
    )
    assert invoice.billing_reason == "subscription_cycle"
    assert invoice.total == invoice.amount_paid == 2000
    assert only_line(invoice).parent.subscription_item_details.proration is False


def test_yearly_anchor_config_month_and_day(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = create(
        client,
        cust,
        catalog["pro_yearly"],
        billing_cycle_anchor_config={"month": 7, "day_of_month": 1},
    )
    # The time of day is the creation time's (midnight here).
    assert sub.billing_cycle_anchor == JUL_1
    assert sub.billing_cycle_anchor_config.to_dict() == {
        "day_of_month": 1,
        "hour": None,
        "minute": None,
        "month": 7,
        "second": None,
    }
    assert sub["items"].data[0].current_period_end == JUL_1
    # 181 of the 365 days from 1 Jul 2025 to 1 Jul 2026.
    assert JUL_1 - JUL_1_2025 == 365 * DAY
    assert sub.latest_invoice.total == round(20000 * 181 / 365) == 9918


def test_anchor_config_day_31_from_february_renews_on_each_months_last_day(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    advance(client, clock, FEB_10)
    sub = create(
        client, cust, catalog["pro"], billing_cycle_anchor_config={"day_of_month": 31, "hour": 0}
    )
    # February has no 31st: the anchor is March 31, the first period ends on February 28.
    assert sub.billing_cycle_anchor == MAR_31
    assert sub["items"].data[0].current_period_end == FEB_28
    # 18 of the 28 days from 31 Jan to 28 Feb.
    assert sub.latest_invoice.total == round(2000 * 18 / 28) == 1286
    advance(client, clock, FEB_28 + 2 * HOUR)
    sub, invoice = renewal(client, sub.id)
    item = sub["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (FEB_28, MAR_31)
    assert invoice.total == 2000
    advance(client, clock, MAR_31 + 2 * HOUR)
    sub, invoice = renewal(client, sub.id)
    item = sub["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (MAR_31, APR_30)
    assert invoice.total == 2000


def test_anchor_without_proration_makes_the_first_period_free(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    advance(client, clock, DAY_10)
    sub = create(
        client, cust, catalog["pro"], billing_cycle_anchor=FEB_1, proration_behavior="none"
    )
    assert sub.status == "active"
    assert sub.latest_invoice is None
    assert client.v1.invoices.list(params={"subscription": sub.id}).data == []
    created = events(client, "customer.subscription.created")[-1]
    assert created.data.object.status == "active"
    advance(client, clock, FEB_1 + 2 * HOUR)
    _, invoice = renewal(client, sub.id)
    assert invoice.total == invoice.amount_paid == 2000
    assert (invoice.period_start, invoice.period_end) == (DAY_10, FEB_1)


@pytest.mark.parametrize(
    ("subscribed", "trial_end", "first_period", "full_period"),
    [
        # Stripe's example: a 7-day trial from the 15th, billed on the 1st: a prorated invoice
        # on the 22nd for the 22nd to the 1st.
        (JAN_1 + 14 * DAY, JAN_1 + 21 * DAY, (JAN_1 + 21 * DAY, FEB_1), (JAN_1, FEB_1)),
        # From the 28th the trial ends after the anchor: prorated until the next month's 1st.
        (JAN_1 + 27 * DAY, FEB_1 + 3 * DAY, (FEB_1 + 3 * DAY, MAR_1), (FEB_1, MAR_1)),
    ],
)
def test_trial_with_anchor_prorates_the_period_after_the_trial(
    client: stripe.StripeClient,
    clock: Any,
    catalog: dict[str, Any],
    subscribed: int,
    trial_end: int,
    first_period: tuple[int, int],
    full_period: tuple[int, int],
) -> None:
    cust = make_customer(client, clock)
    advance(client, clock, subscribed)
    sub = create(client, cust, catalog["pro"], billing_cycle_anchor=FEB_1, trial_end=trial_end)
    assert sub.status == "trialing" and sub.billing_cycle_anchor == FEB_1
    assert sub["items"].data[0].current_period_end == trial_end
    assert sub.latest_invoice.total == 0
    advance(client, clock, trial_end + 2 * HOUR)
    sub, invoice = renewal(client, sub.id)
    assert sub.status == "active" and sub.billing_cycle_anchor == FEB_1
    item = sub["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == first_period
    line = only_line(invoice)
    remaining, length = first_period[1] - first_period[0], full_period[1] - full_period[0]
    assert line.amount == invoice.amount_paid == round(2000 * remaining / length)
    assert (line.period.start, line.period.end) == first_period
    assert line.parent.subscription_item_details.proration is True
    advance(client, clock, first_period[1] + 2 * HOUR)
    sub, invoice = renewal(client, sub.id)
    assert sub["items"].data[0].current_period_start == first_period[1]
    assert invoice.total == 2000


def test_anchor_validation(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)

    def refused(**extra: Any) -> Any:
        return refusal(lambda: create(client, cust, catalog["pro"], **extra))

    past = refused(billing_cycle_anchor=JAN_1 - DAY)
    assert past.param == "billing_cycle_anchor" and "future" in past.user_message
    # The next natural billing date of a monthly price from Jan 1 is Feb 1.
    too_far = refused(billing_cycle_anchor=FEB_1 + 1)
    assert too_far.param == "billing_cycle_anchor"
    assert f"next natural billing date ({FEB_1})" in too_far.user_message
    assert create(
        client, cust, catalog["pro"], billing_cycle_anchor=FEB_1
    ).billing_cycle_anchor == (FEB_1)
    both = refused(billing_cycle_anchor=FEB_1, billing_cycle_anchor_config={"day_of_month": 1})
    assert "only specify one of" in both.user_message
    day = refused(billing_cycle_anchor_config={"day_of_month": 32})
    assert day.param == "billing_cycle_anchor_config[day_of_month]"
    free_after_trial = refused(
        billing_cycle_anchor=FEB_1, trial_period_days=7, proration_behavior="none"
    )
    assert (free_after_trial.code, free_after_trial.param) == (
        NOT_IMPLEMENTED,
        "proration_behavior",
    )
    # One subscription was created: the refusals left nothing behind.
    assert len(client.v1.subscriptions.list(params={"customer": cust.id}).data) == 1


# cancel_at inside a paid period --------------------------------------------------------------
def start_then_cancel_at(
    client: stripe.StripeClient, clock: Any, price: Any, **extra: Any
) -> tuple[Any, Any]:
    """Subscribed on Jan 1 (paid to Feb 1), cancel_at set on Jan 11 to Jan 21."""
    cust = make_customer(client, clock)
    sub = create(client, cust, price)
    advance(client, clock, DAY_10)
    sub = client.v1.subscriptions.update(
        sub.id, params={"cancel_at": DAY_20, "expand": ["latest_invoice"], **extra}
    )
    assert sub.cancel_at == DAY_20 and sub.cancel_at_period_end is False
    return cust, sub


# 11 of January's 31 days are after the 21st.
CREDIT = -round(2000 * 11 / 31)


def assert_ends_at_cancel_at(client: stripe.StripeClient, clock: Any, sub_id: str) -> None:
    advance(client, clock, DAY_20 + HOUR)
    sub = client.v1.subscriptions.retrieve(sub_id)
    assert sub.status == "canceled" and sub.ended_at == DAY_20
    deleted = events(client, "customer.subscription.deleted")
    assert [(e.data.object.id, e.created) for e in deleted] == [(sub_id, DAY_20)]


def test_cancel_at_with_create_prorations_leaves_a_pending_credit(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    _, sub = start_then_cancel_at(client, clock, catalog["pro"])
    assert sub.latest_invoice.billing_reason == "subscription_create"  # nothing invoiced now
    (created,) = events(client, "invoiceitem.created")
    credit = client.v1.invoice_items.retrieve(created.data.object.id)
    assert credit.amount == CREDIT == -710
    assert credit.proration is True and credit.invoice is None
    assert credit.description == "Unused time on Pro after 21 Jan 2026"
    assert (credit.period.start, credit.period.end) == (DAY_20, FEB_1)
    assert_ends_at_cancel_at(client, clock, sub.id)


def test_cancel_at_with_always_invoice_credits_the_customer_now(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust, sub = start_then_cancel_at(
        client, clock, catalog["pro"], proration_behavior="always_invoice"
    )
    invoice = sub.latest_invoice
    assert invoice.billing_reason == "subscription_update"
    assert invoice.total == CREDIT and invoice.amount_due == 0
    assert client.v1.customers.retrieve(cust.id).balance == CREDIT
    assert_ends_at_cancel_at(client, clock, sub.id)


def test_cancel_at_without_proration_credits_nothing_and_can_be_unset(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust, sub = start_then_cancel_at(client, clock, catalog["pro"], proration_behavior="none")
    assert sub.latest_invoice.billing_reason == "subscription_create"
    assert events(client, "invoiceitem.created") == []
    sub = client.v1.subscriptions.update(sub.id, params={"cancel_at": ""})
    assert sub.cancel_at is None
    advance(client, clock, FEB_1 + 2 * HOUR)
    sub, invoice = renewal(client, sub.id)
    assert sub.status == "active" and invoice.total == 2000
    assert client.v1.customers.retrieve(cust.id).balance == 0


def test_changing_cancel_at_after_a_credit_is_refused(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    _, sub = start_then_cancel_at(client, clock, catalog["pro"])
    for params in ({"cancel_at": ""}, {"cancel_at_period_end": True}):
        error = refusal(lambda p=params: client.v1.subscriptions.update(sub.id, params=p))
        assert error.code == NOT_IMPLEMENTED
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at == DAY_20


def test_cancel_at_after_the_period_is_refused(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = create(client, cust, catalog["pro"])
    error = refusal(
        lambda: client.v1.subscriptions.update(sub.id, params={"cancel_at": FEB_1 + DAY})
    )
    assert (error.code, error.param) == (NOT_IMPLEMENTED, "cancel_at")
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at is None


def test_created_with_cancel_at_in_the_first_period_is_charged_up_to_it(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    cancel_at = JAN_1 + 5 * DAY
    sub = create(client, cust, catalog["pro"], cancel_at=cancel_at)
    # Stripe resets the anchor to cancel_at: one prorated period, Dec 6 - Jan 6 cut at Jan 1.
    assert sub.billing_cycle_anchor == cancel_at
    assert sub["items"].data[0].current_period_end == cancel_at
    assert sub.cancel_at_period_end is False
    assert sub.latest_invoice.total == round(2000 * 5 / 31) == 323
    advance(client, clock, cancel_at + HOUR)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled" and sub.ended_at == cancel_at
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1


# billing_cycle_anchor[type]=now on update ----------------------------------------------------


@pytest.mark.parametrize(
    ("proration", "credit"), [("create_prorations", -round(2000 * 21 / 31)), ("none", 0)]
)
def test_reset_billing_cycle_now_invoices_a_full_period_at_once(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any], proration: str, credit: int
) -> None:
    cust = make_customer(client, clock)
    sub = create(client, cust, catalog["pro"])
    advance(client, clock, DAY_10)
    sub = client.v1.subscriptions.update(
        sub.id,
        params={
            "billing_cycle_anchor": {"type": "now"},
            "proration_behavior": proration,
            "expand": ["latest_invoice"],
        },
    )
    assert sub.billing_cycle_anchor == DAY_10
    item = sub["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (DAY_10, FEB_11)
    invoice = sub.latest_invoice
    assert invoice.billing_reason == "subscription_update" and invoice.status == "paid"
    # The unused time of the old period (unless proration_behavior=none), then the new one.
    amounts = [line.amount for line in invoice.lines.data]
    assert amounts == ([credit] if credit else []) + [2000]
    assert invoice.amount_paid == 2000 + credit
    advance(client, clock, FEB_11 + 2 * HOUR)
    _, renewed = renewal(client, sub.id)
    assert (renewed.period_start, renewed.period_end) == (DAY_10, FEB_11)
    assert renewed.total == 2000


def test_reset_billing_cycle_now_is_refused_where_not_modelled(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    trialing = create(client, cust, catalog["pro"], trial_period_days=7)
    error = refusal(
        lambda: client.v1.subscriptions.update(
            trialing.id, params={"billing_cycle_anchor": {"type": "now"}}
        )
    )
    assert (error.code, error.param) == (NOT_IMPLEMENTED, "billing_cycle_anchor[type]")
    active = create(client, cust, catalog["pro"])
    item = active["items"].data[0]
    error = refusal(
        lambda: client.v1.subscriptions.update(
            active.id,
            params={
                "billing_cycle_anchor": {"type": "now"},
                "items": [{"id": item.id, "price": catalog["team"].id}],
            },
        )
    )
    assert (error.code, error.param) == (NOT_IMPLEMENTED, "items")
    unchanged = client.v1.subscriptions.update(
        active.id, params={"billing_cycle_anchor": {"type": "unchanged"}}
    )
    assert unchanged.billing_cycle_anchor == JAN_1


def test_cancel_at_with_an_item_change_is_refused(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = create(client, cust, catalog["pro"])
    item = sub["items"].data[0]
    error = refusal(
        lambda: client.v1.subscriptions.update(
            sub.id,
            params={"cancel_at": DAY_20, "items": [{"id": item.id, "price": catalog["team"].id}]},
        )
    )
    assert (error.code, error.param) == (NOT_IMPLEMENTED, "cancel_at")
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.cancel_at is None and sub["items"].data[0].price.id == catalog["pro"].id


def test_a_change_in_a_shortened_first_period_is_prorated_against_the_full_period(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    advance(client, clock, DAY_10)
    sub = create(client, cust, catalog["pro"], billing_cycle_anchor=FEB_1)
    advance(client, clock, DAY_20)
    item = sub["items"].data[0]
    sub = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "price": catalog["team"].id}],
            "proration_behavior": "always_invoice",
            "expand": ["latest_invoice"],
        },
    )
    # 11 of the 31 days of Jan 1 - Feb 1, the period the first one (Jan 11 - Feb 1) is cut from.
    amounts = sorted(line.amount for line in sub.latest_invoice.lines.data)
    assert amounts == [-round(2000 * 11 / 31), round(5000 * 11 / 31)] == [-710, 1774]


def test_anchor_config_is_for_monthly_and_yearly_prices_only(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    weekly = client.v1.prices.create(
        params={
            "product": catalog["pro"].product,
            "unit_amount": 500,
            "currency": "usd",
            "recurring": {"interval": "week"},
        }
    )
    cust = make_customer(client, clock)
    error = refusal(
        lambda: create(client, cust, weekly, billing_cycle_anchor_config={"day_of_month": 5})
    )
    assert error.param == "billing_cycle_anchor_config" and error.code != NOT_IMPLEMENTED
    # A timestamp anchor works for any interval: here a week from Jan 1 at most.
    sub = create(client, cust, weekly, billing_cycle_anchor=JAN_1 + 3 * DAY)
    assert sub.latest_invoice.total == round(500 * 3 / 7) == 214
