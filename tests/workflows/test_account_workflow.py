"""The account workflow end to end: signals in, entitlement rows out, time skipped."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.common import TypedSearchAttributes

from db import repository
from db.models import StripeEvent
from tests.conftest import wait_for
from workflows.account import (
    BILLING_PLAN,
    BILLING_STATE,
    GRACE_ENDS_AT,
    StripeEventSignal,
)
from workflows.starter import signal_stripe_events

from .harness import Harness, subscription


async def test_checkout_links_the_customer_and_grants_the_plan(harness: Harness) -> None:
    account, customer = await harness.subscribe(plan="team", seats=4)

    record = harness.entitlements(account)
    assert record is not None
    assert (record.plan, record.access, record.seats, record.limits["members"]) == (
        "team",
        "full",
        4,
        4,
    )
    with harness.sessions() as session:
        assert repository.customer_for_account(session, account) == customer
        assert repository.account_for_customer(session, customer) == account


@pytest.mark.parametrize(
    ("status", "cancel", "expected_state", "expected_access"),
    [
        ("trialing", False, "trialing", "full"),
        ("active", True, "canceling", "full"),
        ("past_due", False, "past_due", "full"),
        ("paused", False, "paused", "read_only"),
        ("canceled", False, "free", "full"),
        ("unpaid", False, "past_due", "full"),
    ],
)
async def test_stripe_changes_move_an_active_account(
    harness: Harness, status: str, cancel: bool, expected_state: str, expected_access: str
) -> None:
    account, customer = await harness.subscribe()
    harness.stripe.subscriptions[customer] = subscription(customer, status, cancel=cancel)

    await harness.send(account, customer)

    record = await harness.wait_for_entitlements(account, state=expected_state, version=2)
    assert record.access == expected_access
    assert record.plan == ("free" if expected_state == "free" else "pro")


async def test_first_payment_incomplete_keeps_the_free_plan(harness: Harness) -> None:
    account, customer = await harness.subscribe("incomplete")
    record = harness.entitlements(account)
    assert record is not None
    assert (record.plan, record.message) == ("free", "finish_payment")

    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    await harness.send(account, customer, "invoice.paid")
    assert (await harness.wait_for_entitlements(account, state="active")).plan == "pro"


async def test_grace_expires_into_restricted_on_a_durable_timer(harness: Harness) -> None:
    account, customer = await harness.subscribe()
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")
    await harness.send(account, customer, "invoice.payment_failed")
    past_due = await harness.wait_for_entitlements(account, state="past_due")
    assert past_due.grace_ends_at is not None

    await harness.skip(timedelta(days=7, minutes=1))

    restricted = await harness.wait_for_entitlements(account, state="restricted")
    assert (restricted.access, restricted.message) == ("read_only", "restricted")
    assert restricted.grace_ends_at == past_due.grace_ends_at


async def test_annual_plans_get_fourteen_days_of_grace(harness: Harness) -> None:
    account, customer = await harness.subscribe(interval="year")
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due", interval="year")
    await harness.send(account, customer, "invoice.payment_failed")
    await harness.wait_for_entitlements(account, state="past_due")

    await harness.skip(timedelta(days=8))
    marker = await harness.send(account, customer, "invoice.updated")
    await harness.wait_until_handled(account, marker)
    assert (await harness.state(account)).lifecycle.state == "past_due"

    await harness.skip(timedelta(days=7))
    await harness.wait_for_entitlements(account, state="restricted")


async def test_payment_recovered_in_grace_cancels_the_restriction(harness: Harness) -> None:
    account, customer = await harness.subscribe()
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")
    await harness.send(account, customer, "invoice.payment_failed")
    await harness.wait_for_entitlements(account, state="past_due", version=2)

    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    await harness.send(account, customer, "invoice.paid")
    recovered = await harness.wait_for_entitlements(account, state="active", version=3)
    assert recovered.grace_ends_at is None

    await harness.skip(timedelta(days=10))
    marker = await harness.send(account, customer, "invoice.upcoming")
    await harness.wait_until_handled(account, marker)
    assert harness.entitlements(account).version == 3  # type: ignore[union-attr]


async def test_recovery_after_restriction_restores_full_access(harness: Harness) -> None:
    account, customer = await harness.subscribe()
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")
    await harness.send(account, customer, "invoice.payment_failed")
    await harness.wait_for_entitlements(account, state="past_due")
    await harness.skip(timedelta(days=8))
    await harness.wait_for_entitlements(account, state="restricted")

    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    await harness.send(account, customer, "invoice.paid")

    record = await harness.wait_for_entitlements(account, state="active")
    assert (record.access, record.grace_ends_at) == ("full", None)


async def test_duplicate_deliveries_are_handled_once(harness: Harness) -> None:
    account, customer = await harness.subscribe()
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")

    event_id = await harness.send(account, customer, "invoice.payment_failed")
    for _ in range(2):
        await harness.send(account, customer, "invoice.payment_failed", event_id=event_id)
    marker = await harness.send(account, customer, "invoice.updated")
    state = await harness.wait_until_handled(account, marker)

    assert state.seen_event_ids.count(event_id) == 1
    with harness.sessions() as session:
        rows = session.scalar(
            select(func.count()).select_from(StripeEvent).where(StripeEvent.event_id == event_id)
        )
    assert rows == 1
    assert harness.entitlements(account).version == 2  # type: ignore[union-attr]


async def test_a_batch_of_events_starts_the_account_and_each_is_handled_once(
    harness: Harness,
) -> None:
    account, customer = harness.new_account()
    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    harness.accounts.add(account)
    batch = [
        StripeEventSignal(f"evt_batch_{n}_{account}", kind, 1, customer)
        for n, kind in enumerate(
            ["customer.subscription.created", "invoice.paid", "customer.subscription.updated"]
        )
    ]

    # The reconciliation replays a page's events per account in one signal-with-start; the
    # second delivery of the same events changes nothing.
    await signal_stripe_events(harness.client, harness.task_queue, account, batch)
    await signal_stripe_events(harness.client, harness.task_queue, account, batch[1:])
    marker = await harness.send(account, customer, "invoice.updated")
    state = await harness.wait_until_handled(account, marker)

    assert harness.entitlements(account).billing_state == "active"  # type: ignore[union-attr]
    assert all(state.seen_event_ids.count(e.event_id) == 1 for e in batch)
    with harness.sessions() as session:
        recorded = session.scalars(
            select(StripeEvent.event_id).where(
                StripeEvent.event_id.in_([e.event_id for e in batch])
            )
        ).all()
    assert sorted(recorded) == sorted(e.event_id for e in batch)


async def test_a_late_stale_event_cannot_move_the_account_backwards(harness: Harness) -> None:
    account, customer = harness.new_account()
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")
    # The failure is delivered before the (older) creation event.
    await harness.send(account, customer, "invoice.payment_failed")
    await harness.wait_for_entitlements(account, state="past_due")
    marker = await harness.send(account, customer, "customer.subscription.created")
    await harness.wait_until_handled(account, marker)

    assert harness.entitlements(account).billing_state == "past_due"  # type: ignore[union-attr]


STREAM = [
    ("customer.subscription.created", "incomplete"),
    ("invoice.payment_failed", "incomplete"),
    ("invoice.paid", "active"),
    ("customer.subscription.updated", "active"),
    ("invoice.payment_failed", "past_due"),
    ("customer.subscription.updated", "past_due"),
    ("invoice.paid", "active"),
    ("customer.subscription.updated", "active+cancel"),
]


async def _deliver(h: Harness, account: str, customer: str, order: list[int]) -> None:
    """Stripe moves through STREAM; each event is delivered per `order` after all happened."""
    ids = [f"evt_{account}_{i}" for i in range(len(STREAM))]
    status = STREAM[-1][1]
    h.stripe.subscriptions[customer] = subscription(
        customer, status.removesuffix("+cancel"), cancel=status.endswith("+cancel")
    )
    for index in order:
        await h.send(account, customer, STREAM[index][0], event_id=ids[index])
    marker = await h.send(account, customer, "invoice.updated")
    await h.wait_until_handled(account, marker)


async def test_in_order_tripled_and_shuffled_streams_end_in_the_same_entitlements(
    harness: Harness,
) -> None:
    in_order = list(range(len(STREAM)))
    tripled = [i for i in in_order for _ in range(3)]
    shuffled = tripled.copy()
    random.Random(7).shuffle(shuffled)

    documents = []
    for order in (in_order, tripled, shuffled):
        account, customer = harness.new_account()
        await _deliver(harness, account, customer, order)
        record = harness.entitlements(account)
        assert record is not None
        documents.append(
            (record.billing_state, record.plan, record.access, record.cancel_at, record.features)
        )
        events = (await harness.state(account)).seen_event_ids
        assert len(events) == len(set(events)) == len(STREAM) + 1

    assert documents[0] == documents[1] == documents[2]
    assert documents[0][0] == "canceling"


async def test_continue_as_new_carries_state_and_the_dedupe_window(harness: Harness) -> None:
    account, customer = harness.new_account()
    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    handle = await harness.start(account, continue_as_new_after_events=2)
    first_run = handle.result_run_id
    sent = [await harness.send(account, customer, "invoice.paid") for _ in range(5)]
    await harness.wait_until_handled(account, sent[-1])

    # The run continues as new; the email still in flight goes with it.
    async def next_run() -> WorkflowExecutionDescription | None:
        description = await harness.handle(account).describe()
        return description if description.run_id != first_run else None

    description = await wait_for(next_run, what="continue-as-new")
    assert description.status == WorkflowExecutionStatus.RUNNING

    fetches = harness.stripe.fetches
    await harness.send(account, customer, "invoice.paid", event_id=sent[0])
    marker = await harness.send(account, customer, "invoice.updated")
    state = await harness.wait_until_handled(account, marker)
    assert set(sent) <= set(state.seen_event_ids)
    assert harness.stripe.fetches == fetches + 1  # the marker only; the repeat was dropped
    assert state.lifecycle.state == "active"
    assert harness.entitlements(account).version == 1  # type: ignore[union-attr]


async def test_terminated_workflow_is_rebuilt_from_database_and_stripe(harness: Harness) -> None:
    account, customer = await harness.subscribe()
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")
    failure = await harness.send(account, customer, "invoice.payment_failed")
    before = await harness.wait_for_entitlements(account, state="past_due", version=2)
    await harness.wait_until_handled(account, failure)
    await harness.skip(timedelta(days=2))

    await harness.terminate_when_idle(account, reason="operator test")
    marker = await harness.send(account, customer, "invoice.updated")
    state = await harness.wait_until_handled(account, marker)

    # The grace period that started before the terminate keeps its end.
    assert state.lifecycle.grace_ends_at == before.grace_ends_at
    assert state.customer_id == customer
    assert state.entitlement_version == 2

    await harness.skip(timedelta(days=6))
    await harness.wait_for_entitlements(account, state="restricted", version=3)


async def test_search_attributes_follow_every_transition(harness: Harness) -> None:
    account, customer = await harness.subscribe(plan="team", seats=2)
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due", plan="team")
    await harness.send(account, customer, "invoice.payment_failed")
    await harness.wait_for_entitlements(account, state="past_due")

    # Upserted by the workflow task after the entitlement write: wait for it.
    async def upserted() -> TypedSearchAttributes | None:
        attributes = (await harness.handle(account).describe()).typed_search_attributes
        return attributes if attributes.get(BILLING_STATE) == "past_due" else None

    attributes = await wait_for(upserted, what="BillingState search attribute")
    assert attributes.get(BILLING_PLAN) == "team"
    assert attributes.get(GRACE_ENDS_AT) is not None


async def test_bad_stripe_data_is_reported_and_changes_nothing(harness: Harness) -> None:
    account, customer = await harness.subscribe()
    harness.stripe.broken_customers.add(customer)
    marker = await harness.send(account, customer)
    state = await harness.wait_until_handled(account, marker)

    assert state.sync_error is not None
    assert harness.entitlements(account).version == 1  # type: ignore[union-attr]

    harness.stripe.broken_customers.clear()
    harness.stripe.subscriptions[customer] = subscription(customer, "active", plan="team")
    marker = await harness.send(account, customer)
    state = await harness.wait_until_handled(account, marker)
    assert state.sync_error is None
    assert harness.entitlements(account).plan == "team"  # type: ignore[union-attr]


async def test_each_event_costs_the_server_no_activity_task(harness: Harness) -> None:
    account, customer = await harness.subscribe()
    harness.stripe.subscriptions[customer] = subscription(customer, "active", seats=4)
    await harness.wait_until_handled(account, await harness.send(account, customer))

    scheduled = await harness.scheduled_activities(account)
    # The fetch and the database steps ran as local activities; only emails are tasks.
    assert set(scheduled) <= {"send_email"}
    assert harness.entitlements(account).seats == 4  # type: ignore[union-attr]


async def test_a_failed_local_step_is_retried_as_an_activity_operators_can_see(
    harness: Harness,
) -> None:
    account, customer = await harness.subscribe()
    harness.stripe.unreachable_for = 1
    harness.stripe.subscriptions[customer] = subscription(customer, "active", plan="team")
    await harness.wait_until_handled(account, await harness.send(account, customer))

    scheduled = await harness.scheduled_activities(account)
    assert "fetch_current_subscription" in scheduled
    assert harness.entitlements(account).plan == "team"  # type: ignore[union-attr]


async def test_the_web_ui_shows_a_summary_of_the_account(harness: Harness) -> None:
    account, customer = await harness.subscribe(plan="team", seats=3)
    marker = await harness.send(account, customer, "invoice.updated")
    await harness.wait_until_handled(account, marker)

    # (The start's static summary needs a full Temporal server; the test server drops it.)
    details = await harness.handle(account).query("__temporal_workflow_metadata")
    assert details.current_details == f"**active** · team (month, 3 seats) · customer {customer}"
