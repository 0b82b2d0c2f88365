"""Stripe's delivery habits, injected by the simulator: every event three times, bursts
shuffled, deliveries held back until after later events. Each run ends with every account
equal to Stripe, every email sent once and every event taken in."""

from __future__ import annotations

import time

from stripe_sim.webhooks import DeliveryRecord
from tests.e2e.stack import Stack
from tests.faults.checks import listed_events
from tests.faults.conftest import assert_stack_converged, change_price, new_account, subscribe

DAY = 86_400
HOUR = 3_600


def accepted(records: list[DeliveryRecord]) -> list[DeliveryRecord]:
    return [r for r in records if r.status is not None and 200 <= r.status < 300]


def creation_rank(stack: Stack) -> dict[str, int]:
    """Event id -> its place in the order Stripe created the events."""
    return {event["id"]: rank for rank, event in enumerate(reversed(listed_events(stack.stripe)))}


def overtaken(stack: Stack) -> int:
    """How many accepted deliveries came after a delivery of a newer event."""
    rank = creation_rank(stack)
    newest_so_far = -1
    late = 0
    for record in accepted(stack.sim.deliveries):
        if record.event_id not in rank:
            continue
        if rank[record.event_id] < newest_so_far:
            late += 1
        newest_so_far = max(newest_so_far, rank[record.event_id])
    return late


def point_two_more_endpoints_at_the_gateway(stack: Stack) -> None:
    """Three endpoints on one URL and secret: every event is delivered three times, each
    copy on its own schedule (as when an endpoint was registered twice by mistake)."""
    [endpoint] = stack.stripe.v1.webhook_endpoints.list().data
    for _ in range(2):
        extra = stack.stripe.v1.webhook_endpoints.create(
            params={"url": str(endpoint.url), "enabled_events": ["*"]}
        )
        # Stripe gives each endpoint its own secret; the gateway knows one.
        with stack.sim.store.lock:
            stack.sim.store.objects[str(extra.id)]["secret"] = stack.settings.stripe_webhook_secret


async def test_every_event_delivered_three_times(stack: Stack) -> None:
    point_two_more_endpoints_at_the_gateway(stack)
    accounts: dict[str, str] = {}

    pro = new_account()
    accounts[pro], _ = subscribe(stack, pro, "pro_monthly")
    team = new_account()
    accounts[team], team_sub = subscribe(stack, team, "team_monthly_per_seat", seats=2)
    change_price(stack, team_sub, "team_monthly_per_seat", seats=5)
    leaving = new_account()
    accounts[leaving], leaving_sub = subscribe(stack, leaving, "pro_monthly")
    stack.stripe.v1.subscriptions.update(leaving_sub["id"], params={"cancel_at_period_end": True})
    gone = new_account()
    accounts[gone], gone_sub = subscribe(stack, gone, "team_monthly_per_seat")
    stack.stripe.v1.subscriptions.cancel(gone_sub["id"])
    await stack.deliveries_done()

    copies: dict[str, int] = {}
    for record in accepted(stack.sim.deliveries):
        copies[record.event_id] = copies.get(record.event_id, 0) + 1
    assert copies and set(copies.values()) == {3}, "every event was accepted three times"
    await assert_stack_converged(stack, accounts)
    assert len(stack.emails_to(pro)) == 1, "one welcome email for three copies of each event"


async def test_shuffled_bursts_with_duplicates(stack: Stack) -> None:
    faults = stack.sim.settings.faults
    faults.reorder_window, faults.reorder_hold_seconds, faults.duplicate_rate = 8, 0.3, 0.5
    stack.sim.reseed_faults()
    start = int(time.time())
    clock = stack.new_clock(start)
    accounts: dict[str, str] = {}
    for plan in ("pro_monthly", "team_monthly_per_seat", "pro_monthly", "team_monthly_per_seat"):
        account = new_account()
        accounts[account], _ = subscribe(stack, account, plan, seats=2, clock=clock)
    failing = list(accounts.values())[:2]
    for customer in failing:
        stack.attach_card(customer, "pm_card_chargeCustomerFail")
    # The renewal fails for two customers (past_due) and is paid by the other two.
    await stack.advance_clock(clock, start + 31 * DAY + 2 * HOUR)
    await assert_stack_converged(stack, accounts)
    for customer in failing:
        stack.attach_card(customer, "pm_card_visa")
    # Stripe's next retry pays: recovered.
    await stack.advance_clock(clock, start + 33 * DAY)

    assert overtaken(stack) > 0, "the simulator shuffled the bursts"
    await assert_stack_converged(stack, accounts)


async def test_deliveries_delayed_past_later_events(stack: Stack) -> None:
    faults = stack.sim.settings.faults
    accounts: dict[str, str] = {}
    subscriptions = {}
    # The subscriptions' creation events are held back a second...
    faults.delay_seconds = 1.0
    for plan, seats in (("pro_monthly", 1), ("team_monthly_per_seat", 3), ("pro_monthly", 1)):
        account = new_account()
        accounts[account], subscriptions[account] = subscribe(stack, account, plan, seats=seats)
    # ...while what happens next is delivered at once, and arrives first.
    faults.delay_seconds = 0.0
    first, second, third = subscriptions
    stack.stripe.v1.subscriptions.update(
        subscriptions[first]["id"], params={"cancel_at_period_end": True}
    )
    change_price(stack, subscriptions[second], "team_monthly_per_seat", seats=6)
    stack.stripe.v1.subscriptions.cancel(subscriptions[third]["id"])
    await stack.deliveries_done()

    assert overtaken(stack) > 0, "older events arrived after newer ones"
    await assert_stack_converged(stack, accounts)
