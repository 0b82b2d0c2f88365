"""Webhooks the simulator dropped are recovered by one run of the events reconciliation."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from sqlalchemy import func, select

from activities.reconciliation import EVENTS_CURSOR
from db import reconciliation
from db.models import StripeEvent, UnroutableEvent
from domain.stripe_events import HANDLED_EVENT_TYPES
from tests.conftest import wait_for
from tests.e2e.stack import Stack
from tests.reliability.conftest import new_account, set_dropping, subscribe
from workflows.reconciliation import (
    EventsReconciliationInput,
    EventsReconciliationResult,
    EventsReconciliationWorkflow,
)


async def reconcile(stack: Stack, page_size: int = 100) -> EventsReconciliationResult:
    result: EventsReconciliationResult = await stack.env.client.execute_workflow(
        EventsReconciliationWorkflow.run,
        EventsReconciliationInput(page_size=page_size),
        id=f"reconcile-{uuid4()}",
        task_queue=stack.settings.task_queue,
    )
    return result


def listed_handled_events(stack: Stack) -> list[dict[str, Any]]:
    """Every handled event the simulator lists, newest first."""
    listing = stack.stripe.v1.events.list(
        params={"types": sorted(HANDLED_EVENT_TYPES), "limit": 100}
    )
    return [e.to_dict() for e in listing.auto_paging_iter()]


def held_event_count(stack: Stack) -> int:
    with stack.sessions() as session:
        taken_in = session.scalar(select(func.count()).select_from(StripeEvent)) or 0
        unroutable = session.scalar(select(func.count()).select_from(UnroutableEvent)) or 0
    return taken_in + unroutable


async def test_dropped_webhooks_are_recovered_by_one_run(stack: Stack) -> None:
    set_dropping(stack, 1.0)
    pro, team, gone = new_account(), new_account(), new_account()
    subscribe(stack, pro, "pro_monthly")
    team_sub = subscribe(stack, team, "team_monthly_per_seat", seats=3)
    stack.stripe.v1.subscriptions.update(team_sub["id"], params={"cancel_at_period_end": True})
    gone_sub = subscribe(stack, gone, "pro_monthly")
    stack.stripe.v1.subscriptions.cancel(gone_sub["id"])
    # A customer nothing links to an account: its events can only be stored for operators.
    stranger = stack.stripe.v1.customers.create(params={"email": "stranger@example.com"})
    stack.attach_card(str(stranger.id))
    stack.stripe.v1.subscriptions.create(
        params={"customer": str(stranger.id), "items": [{"price": stack.price_id("pro_monthly")}]}
    )
    await stack.deliveries_done()
    assert (await stack.entitlements(pro))["billing_state"] == "free"  # nothing arrived
    set_dropping(stack, 0.0)

    listed = listed_handled_events(stack)
    result = await reconcile(stack, page_size=4)

    # Entitlements are Stripe's truth.
    await stack.wait_for_entitlements(pro, billing_state="active", plan="pro")
    await stack.wait_for_entitlements(team, billing_state="canceling", plan="team", seats=3)
    gone_now = await stack.entitlements(gone)
    assert (gone_now["billing_state"], gone_now["plan"]) == ("free", "free")
    stranger_events = [e for e in listed if e["data"]["object"].get("customer") == stranger.id]
    assert result == EventsReconciliationResult(
        pages=-(-len(listed) // 4),
        events_listed=len(listed),
        events_redelivered=len(listed) - len(stranger_events),
        events_unroutable=len(stranger_events),
        account_ids=sorted([pro, team, gone]),
        caught_up=True,
    )
    # The cursor is at the newest listed event.
    with stack.sessions() as session:
        cursor = reconciliation.read_cursor(session, EVENTS_CURSOR)
    assert cursor is not None and cursor.last_id == listed[0]["id"]

    # The next run lists nothing new.
    again = await reconcile(stack)
    assert (again.events_listed, again.events_redelivered, again.account_ids) == (0, 0, [])

    # Without the cursor the whole window is listed again, and every event is found held.
    await wait_for(lambda: held_event_count(stack) == len(listed), what="events recorded")
    with stack.sessions.begin() as session:
        reconciliation.delete_cursor(session, EVENTS_CURSOR)
    from_scratch = await reconcile(stack)
    assert from_scratch.events_listed == len(listed)
    assert (from_scratch.events_redelivered, from_scratch.events_unroutable) == (0, 0)


async def test_events_after_the_cursor_are_picked_up_by_the_next_run(stack: Stack) -> None:
    early = new_account()
    subscribe(stack, early, "pro_monthly")
    await stack.deliveries_done()
    await stack.wait_for_entitlements(early, billing_state="active")
    first = await reconcile(stack)
    assert first.events_listed > 0 and first.events_redelivered <= first.events_listed

    set_dropping(stack, 1.0)
    late = new_account()
    subscribe(stack, late, "team_monthly_per_seat", seats=2)
    await stack.deliveries_done()
    set_dropping(stack, 0.0)

    second = await reconcile(stack)
    await stack.wait_for_entitlements(late, billing_state="active", plan="team", seats=2)
    assert second.account_ids == [late]
    assert second.events_redelivered == second.events_listed > 0
