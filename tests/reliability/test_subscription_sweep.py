"""The sweep finds accounts whose stored subscription differs from Stripe and resyncs them."""

from __future__ import annotations

import logging
from uuid import uuid4

import pytest
from sqlalchemy import select

from activities.reconciliation import stripe_forgot_our_customers
from db import repository
from db.models import OperatorAction
from tests.e2e.stack import Stack
from tests.reliability.conftest import new_account, set_dropping, subscribe
from workflows.reconciliation import SubscriptionSweepWorkflow, SweepInput, SweepResult


async def sweep(stack: Stack, max_resyncs: int = 500) -> SweepResult:
    result: SweepResult = await stack.env.client.execute_workflow(
        SubscriptionSweepWorkflow.run,
        SweepInput(max_resyncs=max_resyncs),
        id=f"sweep-{uuid4()}",
        task_queue=stack.settings.task_queue,
    )
    return result


async def test_sweep_resyncs_only_the_accounts_that_drifted(stack: Stack) -> None:
    in_sync, seats_changed, canceled = new_account(), new_account(), new_account()
    subscribe(stack, in_sync, "pro_monthly")
    team = subscribe(stack, seats_changed, "team_monthly_per_seat", seats=2)
    pro = subscribe(stack, canceled, "pro_monthly")
    await stack.deliveries_done()
    for account in (in_sync, seats_changed, canceled):
        await stack.wait_for_entitlements(account, billing_state="active")

    # Stripe changes while every webhook is lost: the store now disagrees with Stripe.
    set_dropping(stack, 1.0)
    [item] = team["items"]["data"]
    stack.stripe.v1.subscriptions.update(
        team["id"], params={"items": [{"id": item["id"], "quantity": 5}]}
    )
    stack.stripe.v1.subscriptions.cancel(pro["id"])
    # A Stripe customer no account is linked to: reported, left to the backfill.
    stranger = stack.stripe.v1.customers.create(params={"email": "stranger@example.com"})
    stack.attach_card(str(stranger.id))
    stack.stripe.v1.subscriptions.create(
        params={"customer": str(stranger.id), "items": [{"price": stack.price_id("pro_monthly")}]}
    )
    await stack.deliveries_done()
    assert (await stack.entitlements(seats_changed))["seats"] == 2

    result = await sweep(stack)

    assert result == SweepResult(
        subscriptions_checked=4,
        accounts_resynced=sorted([seats_changed, canceled]),
        customers_without_account=[str(stranger.id)],
        accounts_failed=[],
        accounts_left=0,
    )
    # The resync (an update) has been stored when the sweep's activity returns; the API
    # serves it once it has read the change log.
    with stack.sessions() as session:
        stored = {a: repository.read_entitlements(session, a) for a in (seats_changed, canceled)}
    assert stored[seats_changed] is not None and stored[seats_changed].seats == 5
    assert stored[canceled] is not None and stored[canceled].billing_state == "free"
    await stack.wait_for_entitlements(seats_changed, seats=5)
    await stack.wait_for_entitlements(canceled, billing_state="free")
    with stack.sessions() as session:
        audit = session.scalars(
            select(OperatorAction).where(OperatorAction.account_id == seats_changed)
        ).all()
    assert [(a.action, a.actor) for a in audit] == [("resync", "reconciliation")]
    assert "quantity" not in audit[0].reason and "seats" in audit[0].reason

    again = await sweep(stack)
    assert (again.accounts_resynced, again.accounts_left) == ([], 0)


async def test_sweep_leaves_what_exceeds_its_bound_for_the_next_run(stack: Stack) -> None:
    accounts = [new_account() for _ in range(3)]
    set_dropping(stack, 1.0)
    for account in accounts:
        subscribe(stack, account, "pro_monthly")
    await stack.deliveries_done()

    first = await sweep(stack, max_resyncs=2)
    second = await sweep(stack, max_resyncs=2)

    assert (len(first.accounts_resynced), first.accounts_left) == (2, 1)
    assert (len(second.accounts_resynced), second.accounts_left) == (1, 0)
    assert sorted(first.accounts_resynced + second.accounts_resynced) == sorted(accounts)
    for account in accounts:
        assert (await stack.entitlements(account))["billing_state"] == "active"


async def test_an_account_linked_to_another_customer_is_reported_not_resynced(
    stack: Stack,
) -> None:
    account = new_account()
    with stack.sessions.begin() as session:
        repository.link_customer(session, account, "cus_linked_elsewhere")
    set_dropping(stack, 1.0)
    subscribe(stack, account, "pro_monthly")
    await stack.deliveries_done()

    result = await sweep(stack)

    assert (result.accounts_failed, result.accounts_resynced) == ([account], [])
    assert (await stack.entitlements(account))["billing_state"] == "free"


async def test_an_account_on_a_negotiated_price_has_not_drifted(stack: Stack) -> None:
    """The sweep reads a negotiated price's plan from its product, as the account does."""
    account = new_account()
    customer = stack.new_customer(account)
    stack.attach_card(customer)
    deal = stack.negotiated_price("pro_monthly", 20_000, f"deal_{account}")
    stack.stripe.v1.subscriptions.create(
        params={
            "customer": customer,
            "items": [{"price": deal}],
            "metadata": {"account_id": account},
        }
    )
    await stack.deliveries_done()
    await stack.wait_for_entitlements(account, billing_state="active", plan="pro")

    result = await sweep(stack)

    assert account not in result.accounts_resynced
    assert result.accounts_failed == []


def forget_in_stripe(stack: Stack, subscription: dict[str, object]) -> None:
    """Stripe no longer lists the subscription, as after a restored sandbox or another key."""
    with stack.sim.store.lock:
        stack.sim.store.remove(str(subscription["id"]))


async def test_a_sweep_that_finds_many_customers_missing_in_stripe_changes_nothing(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    accounts = [new_account() for _ in range(4)]
    subscriptions = [subscribe(stack, account, "pro_monthly") for account in accounts]
    await stack.deliveries_done()
    for account in accounts:
        await stack.wait_for_entitlements(account, billing_state="active")
    for subscription in subscriptions[:3]:
        forget_in_stripe(stack, subscription)

    with caplog.at_level(logging.ERROR):
        result = await sweep(stack)

    assert result.accounts_resynced == []
    assert result.customers_missing_in_stripe == 3
    assert result.stopped_because is not None
    assert "3 of the 4 customers" in result.stopped_because
    assert "STRIPE_SECRET_KEY" in result.stopped_because
    assert [r for r in caplog.records if "sweep stopped" in r.getMessage()]
    for account in accounts:
        assert (await stack.entitlements(account))["billing_state"] == "active"
    with stack.sessions() as session:
        assert session.scalars(select(OperatorAction)).all() == []


async def test_a_few_customers_missing_in_stripe_are_resynced(stack: Stack) -> None:
    accounts = [new_account() for _ in range(3)]
    subscriptions = [subscribe(stack, account, "pro_monthly") for account in accounts]
    await stack.deliveries_done()
    for account in accounts:
        await stack.wait_for_entitlements(account, billing_state="active")
    forget_in_stripe(stack, subscriptions[0])

    result = await sweep(stack)

    assert (result.accounts_resynced, result.stopped_because) == ([accounts[0]], None)
    assert result.customers_missing_in_stripe == 1


@pytest.mark.parametrize(
    ("missing", "known", "stops"),
    [(0, 0, False), (2, 2, False), (3, 3, True), (3, 30, False), (4, 30, True), (10, 100, False)],
)
def test_the_sweep_stops_when_more_than_a_tenth_and_at_least_three_are_missing(
    missing: int, known: int, stops: bool
) -> None:
    assert stripe_forgot_our_customers(missing, known) is stops
