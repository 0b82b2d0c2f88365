"""Subscription schedules, through stripe-python: phases on a test clock, end behaviours,
release, cancel, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from stripe_sim.server import SimulatorServer
from tests.stripe_sim.conftest import DAY, HOUR, JAN_1, advance, events, make_customer

FEB_1 = JAN_1 + 31 * DAY
MAR_1 = FEB_1 + 28 * DAY
APR_1 = MAR_1 + 31 * DAY


def subscribe(client: stripe.StripeClient, cust: Any, price: Any) -> Any:
    return client.v1.subscriptions.create(
        params={"customer": cust.id, "items": [{"price": price.id}]}
    )


def schedule_from(client: stripe.StripeClient, sub: Any) -> Any:
    return client.v1.subscription_schedules.create(params={"from_subscription": sub.id})


def invoice_totals(client: stripe.StripeClient, sub_id: str) -> list[tuple[int, str, str]]:
    invoices = reversed(client.v1.invoices.list(params={"subscription": sub_id}).data)
    return [(inv.total, inv.billing_reason, inv.status) for inv in invoices]


def schedule_event_types(client: stripe.StripeClient, sched_id: str) -> list[str]:
    return [
        e.type
        for e in events(client)
        if e.type.startswith("subscription_schedule.") and e.data.object.id == sched_id
    ]


def test_from_subscription_then_a_dearer_phase_is_billed_from_the_period_end(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    sched = schedule_from(client, sub)
    assert sched.id.startswith("sub_sched_")
    assert (sched.status, sched.subscription, sched.end_behavior) == ("active", sub.id, "release")
    assert sched.customer == cust.id
    assert sched.test_clock == clock.id
    assert [(p.start_date, p.end_date) for p in sched.phases] == [(JAN_1, FEB_1)]
    assert [(i.price, i.quantity) for i in sched.phases[0]["items"]] == [(catalog["pro"].id, 1)]
    assert (sched.current_phase.start_date, sched.current_phase.end_date) == (JAN_1, FEB_1)
    assert client.v1.subscriptions.retrieve(sub.id).schedule == sched.id

    pro, team = catalog["pro"].id, catalog["team"].id
    updated = client.v1.subscription_schedules.update(
        sched.id,
        params={
            "phases": [
                {"items": [{"price": pro, "quantity": 1}], "start_date": JAN_1, "end_date": FEB_1},
                {"items": [{"price": team, "quantity": 2}], "duration": {"interval": "month"}},
            ]
        },
    )
    assert [(p.start_date, p.end_date) for p in updated.phases] == [
        (JAN_1, FEB_1),
        (FEB_1, MAR_1),
    ]
    # Nothing changes before the phase ends.
    assert invoice_totals(client, sub.id) == [(2000, "subscription_create", "paid")]

    advance(client, clock, FEB_1 + 2 * HOUR)
    assert invoice_totals(client, sub.id) == [
        (2000, "subscription_create", "paid"),
        (10000, "subscription_cycle", "paid"),  # 2 × Team, no proration at the boundary
    ]
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert [(i.price.id, i.quantity) for i in sub["items"].data] == [(team, 2)]
    assert sub.schedule == sched.id
    sched = client.v1.subscription_schedules.retrieve(sched.id)
    assert (sched.current_phase.start_date, sched.current_phase.end_date) == (FEB_1, MAR_1)
    # The items changed before the renewal invoice was made.
    at_feb_1 = [e for e in events(client) if e.created == FEB_1]
    item_change = next(e for e in at_feb_1 if e.type == "customer.subscription.updated")
    assert "items" in item_change.data.previous_attributes
    assert at_feb_1.index(item_change) < [e.type for e in at_feb_1].index("invoice.created")

    advance(client, clock, MAR_1 + 2 * HOUR)
    sched = client.v1.subscription_schedules.retrieve(sched.id)
    assert (sched.status, sched.completed_at, sched.current_phase) == ("completed", MAR_1, None)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.schedule) == ("active", None)  # released: it goes on by itself
    assert invoice_totals(client, sub.id)[-1] == (10000, "subscription_cycle", "paid")
    assert schedule_event_types(client, sched.id) == [
        "subscription_schedule.created",
        "subscription_schedule.updated",  # the new phases
        "subscription_schedule.updated",  # the second phase began
        "subscription_schedule.expiring",  # 7 days before the end
        "subscription_schedule.completed",
    ]
    expiring = events(client, "subscription_schedule.expiring")[0]
    assert expiring.created == MAR_1 - 7 * DAY


def test_schedule_starting_later_creates_the_subscription_at_its_start(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    start = JAN_1 + 10 * DAY
    sched = client.v1.subscription_schedules.create(
        params={
            "customer": cust.id,
            "start_date": start,
            "phases": [{"items": [{"price": catalog["pro"].id}], "metadata": {"plan": "pro"}}],
        }
    )
    assert (sched.status, sched.subscription, sched.current_phase) == ("not_started", None, None)
    assert [(p.start_date, p.end_date) for p in sched.phases] == [(start, start + 31 * DAY)]
    scheduled = client.v1.subscription_schedules.list(params={"scheduled": True}).data
    assert [s.id for s in scheduled] == [sched.id]
    assert client.v1.subscriptions.list(params={"customer": cust.id}).data == []

    advance(client, clock, start + HOUR)
    sched = client.v1.subscription_schedules.retrieve(sched.id)
    assert sched.status == "active"
    sub = client.v1.subscriptions.retrieve(sched.subscription)
    assert (sub.status, sub.start_date, sub.schedule) == ("active", start, sched.id)
    assert sub.metadata.to_dict() == {"plan": "pro"}
    assert invoice_totals(client, sub.id) == [(2000, "subscription_create", "paid")]
    assert client.v1.subscription_schedules.list(params={"scheduled": True}).data == []
    created = events(client, "customer.subscription.created")[0]
    assert (created.created, created.data.object.schedule) == (start, sched.id)


def test_end_behavior_cancel_ends_the_subscription_with_the_last_phase(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sched = client.v1.subscription_schedules.create(
        params={
            "customer": cust.id,
            "start_date": "now",
            "end_behavior": "cancel",
            "phases": [
                {"items": [{"price": catalog["pro"].id}], "duration": {"interval": "month"}},
                {"items": [{"price": catalog["team"].id}], "end_date": MAR_1},
            ],
        }
    )
    # Starting now: the subscription exists at once, billed as a subscription create.
    assert sched.status == "active"
    sub = client.v1.subscriptions.retrieve(sched.subscription)
    assert (sub.status, sub.schedule) == ("active", sched.id)
    assert invoice_totals(client, sub.id) == [(2000, "subscription_create", "paid")]

    advance(client, clock, FEB_1 + 2 * HOUR)
    advance(client, clock, MAR_1 + 2 * HOUR)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("canceled", MAR_1)
    sched = client.v1.subscription_schedules.retrieve(sched.id)
    assert (sched.status, sched.completed_at) == ("completed", MAR_1)
    assert invoice_totals(client, sub.id) == [
        (2000, "subscription_create", "paid"),
        (5000, "subscription_cycle", "paid"),
    ]
    assert schedule_event_types(client, sched.id)[-1] == "subscription_schedule.completed"
    assert len(events(client, "customer.subscription.deleted")) == 1


def test_release_leaves_the_subscription_running_on_its_own(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    sched = schedule_from(client, sub)
    released = client.v1.subscription_schedules.release(sched.id)
    assert (released.status, released.released_at) == ("released", JAN_1)
    assert (released.subscription, released.released_subscription) == (None, sub.id)
    assert released.current_phase is None
    assert client.v1.subscriptions.retrieve(sub.id).schedule is None
    assert schedule_event_types(client, sched.id) == [
        "subscription_schedule.created",
        "subscription_schedule.released",
    ]
    advance(client, clock, FEB_1 + 2 * HOUR)
    assert invoice_totals(client, sub.id)[-1] == (2000, "subscription_cycle", "paid")
    assert client.v1.subscription_schedules.retrieve(sched.id).status == "released"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscription_schedules.release(sched.id)
    assert "`released` status" in refused.value.user_message


@pytest.mark.parametrize(
    ("params", "credit"),
    [({}, -1032), ({"prorate": False}, None)],  # 16 of January's 31 days unused: 2000 × 16/31
    ids=["prorated", "not-prorated"],
)
def test_cancel_ends_schedule_and_subscription(
    client: stripe.StripeClient,
    clock: Any,
    catalog: dict[str, Any],
    params: dict[str, Any],
    credit: int | None,
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    sched = schedule_from(client, sub)
    advance(client, clock, JAN_1 + 15 * DAY)
    canceled = client.v1.subscription_schedules.cancel(sched.id, params=params)
    assert (canceled.status, canceled.canceled_at) == ("canceled", JAN_1 + 15 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("canceled", JAN_1 + 15 * DAY)
    totals = invoice_totals(client, sub.id)
    if credit is None:
        assert totals == [(2000, "subscription_create", "paid")]
        assert client.v1.customers.retrieve(cust.id).balance == 0
    else:
        assert totals[-1] == (credit, "subscription_update", "paid")
        assert client.v1.customers.retrieve(cust.id).balance == credit
    assert schedule_event_types(client, sched.id)[-1] == "subscription_schedule.canceled"


def test_subscription_canceled_directly_cancels_its_schedule(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    sched = schedule_from(client, sub)
    client.v1.subscriptions.cancel(sub.id)
    sched = client.v1.subscription_schedules.retrieve(sched.id)
    assert (sched.status, sched.canceled_at) == ("canceled", JAN_1)
    assert schedule_event_types(client, sched.id)[-1] == "subscription_schedule.canceled"


def test_schedule_is_aborted_when_failed_payments_cancel_its_subscription(
    sim: SimulatorServer, client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    sim.settings.retry_schedule_days = (2,)
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    sched = schedule_from(client, sub)
    client.v1.subscription_schedules.update(
        sched.id, params={"phases": [{"items": [{"price": catalog["pro"].id}], "end_date": MAR_1}]}
    )
    failing = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": cust.id}
    )
    client.v1.subscriptions.update(sub.id, params={"default_payment_method": failing.id})
    advance(client, clock, FEB_1 + 5 * DAY)
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    sched = client.v1.subscription_schedules.retrieve(sched.id)
    assert sched.status == "canceled"
    assert schedule_event_types(client, sched.id)[-1] == "subscription_schedule.aborted"


def test_scheduled_subscription_refuses_what_the_schedule_manages(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    sched = schedule_from(client, sub)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert refused.value.user_message == (
        f"The subscription is managed by the subscription schedule `{sched.id}`, and updating "
        "any cancelation behavior directly is not allowed. Please update the schedule instead."
    )
    with pytest.raises(stripe.InvalidRequestError) as refused:
        item = sub["items"].data[0].id
        client.v1.subscriptions.update(
            sub.id, params={"items": [{"id": item, "price": catalog["team"].id}]}
        )
    assert refused.value.code == "parameter_not_implemented_by_simulator"
    # What the schedule does not manage still updates.
    updated = client.v1.subscriptions.update(sub.id, params={"metadata": {"a": "b"}})
    assert updated.metadata.to_dict() == {"a": "b"}


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"phases": [{"items": [{"price": "PRO"}]}]}, "customer", "parameter_missing"),
        ({"customer": "CUST", "phases": []}, "phases", "parameter_missing"),
        (
            {"customer": "CUST", "phases": [{"duration": {"interval": "month"}}]},
            "phases[0][items]",
            "parameter_missing",
        ),
        (
            {
                "customer": "CUST",
                "phases": [
                    {
                        "items": [{"price": "PRO"}],
                        "duration": {"interval": "month"},
                        "end_date": MAR_1,
                    }
                ],
            },
            "phases[0][duration]",
            None,
        ),
        (
            {"customer": "CUST", "phases": [{"items": [{"price": "PRO"}], "end_date": JAN_1}]},
            "phases[0][end_date]",
            None,
        ),
        (
            {"customer": "CUST", "phases": [{"items": [{"price": "PRO"}]}] * 11},
            "phases",
            None,
        ),
        (
            {"customer": "CUST", "phases": [{"items": [{"price": "price_nope"}]}]},
            "phases[0][items][0][price]",
            "resource_missing",
        ),
        (
            {
                "customer": "CUST",
                "start_date": JAN_1 - DAY,
                "phases": [{"items": [{"price": "PRO"}]}],
            },
            "start_date",
            "parameter_not_implemented_by_simulator",
        ),
        (
            {
                "customer": "CUST",
                "phases": [{"items": [{"price": "PRO"}]}, {"items": [{"price": "YEARLY"}]}],
            },
            "phases",
            "parameter_not_implemented_by_simulator",
        ),
        (
            {"customer": "CUST", "phases": [{"items": [{"price": "PRO"}], "trial": True}]},
            "phases[0][trial]",
            "parameter_not_implemented_by_simulator",
        ),
        (
            {"customer": "CUST", "end_behavior": "none", "phases": [{"items": [{"price": "PRO"}]}]},
            "end_behavior",
            "parameter_not_implemented_by_simulator",
        ),
    ],
    ids=[
        "no-customer",
        "no-phases",
        "no-items",
        "duration-and-end-date",
        "end-before-start",
        "eleven-phases",
        "unknown-price",
        "backdated",
        "interval-change",
        "trial",
        "end-behavior-none",
    ],
)
def test_create_validation(
    client: stripe.StripeClient,
    clock: Any,
    catalog: dict[str, Any],
    params: dict[str, Any],
    param: str,
    code: str | None,
) -> None:
    cust = make_customer(client, clock)
    names = {
        "CUST": cust.id,
        "PRO": catalog["pro"].id,
        "YEARLY": catalog["pro_yearly"].id,
    }

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return names.get(value, value) if isinstance(value, str) else value

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscription_schedules.create(params=resolve(params))
    assert refused.value.param == param
    if code is not None:
        assert refused.value.code == code
    assert client.v1.subscription_schedules.list().data == []
    assert client.v1.subscriptions.list(params={"customer": cust.id}).data == []


def test_from_subscription_takes_no_phases_and_once_only(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscription_schedules.create(
            params={
                "from_subscription": sub.id,
                "phases": [{"items": [{"price": catalog["team"].id}]}],
            }
        )
    assert refused.value.param == "phases"
    schedule_from(client, sub)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        schedule_from(client, sub)
    assert refused.value.param == "from_subscription"
    assert len(client.v1.subscription_schedules.list(params={"customer": cust.id}).data) == 1


def test_changing_the_current_phase_bills_it_as_a_subscription_update(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"])
    sched = schedule_from(client, sub)
    advance(client, clock, JAN_1 + 15 * DAY)
    client.v1.subscription_schedules.update(
        sched.id,
        params={
            "proration_behavior": "always_invoice",
            "phases": [{"items": [{"price": catalog["pro"].id, "quantity": 2}], "end_date": FEB_1}],
        },
    )
    # 16 of January's 31 days left: 2 × Pro for them (2065) less 1 × Pro's unused time (1032).
    assert invoice_totals(client, sub.id)[-1] == (1033, "subscription_update", "paid")
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert [i.quantity for i in sub["items"].data] == [2]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscription_schedules.update(
            sched.id,
            params={"phases": [{"items": [{"price": catalog["pro"].id}], "start_date": FEB_1}]},
        )
    assert refused.value.code == "parameter_not_implemented_by_simulator"


def test_a_schedule_not_started_is_updated_then_canceled_without_billing(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock)
    sched = client.v1.subscription_schedules.create(
        params={
            "customer": cust.id,
            "start_date": FEB_1,
            "phases": [{"items": [{"price": catalog["pro"].id}]}],
        }
    )
    updated = client.v1.subscription_schedules.update(
        sched.id,
        params={
            "end_behavior": "cancel",
            "metadata": {"source": "sales"},
            "phases": [
                {"items": [{"price": catalog["team"].id, "quantity": 3}], "start_date": MAR_1}
            ],
        },
    )
    assert (updated.status, updated.end_behavior) == ("not_started", "cancel")
    assert [(p.start_date, p.end_date) for p in updated.phases] == [(MAR_1, APR_1)]
    updated_event = events(client, "subscription_schedule.updated")[-1]
    assert set(updated_event.data.previous_attributes.to_dict()) == {
        "end_behavior",
        "metadata",
        "phases",
    }
    canceled = client.v1.subscription_schedules.cancel(sched.id)
    assert (canceled.status, canceled.canceled_at, canceled.subscription) == (
        "canceled",
        JAN_1,
        None,
    )
    advance(client, clock, MAR_1 + DAY)
    assert client.v1.subscriptions.list(params={"customer": cust.id}).data == []
    assert client.v1.invoices.list(params={"customer": cust.id}).data == []
    ended = client.v1.subscription_schedules.list(params={"canceled_at": {"gte": JAN_1}}).data
    assert [s.id for s in ended] == [sched.id]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscription_schedules.update(sched.id, params={"metadata": {"a": "b"}})
    assert "`canceled` status" in refused.value.user_message
