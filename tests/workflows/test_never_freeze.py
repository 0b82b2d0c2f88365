"""An account never stops following Stripe: no wait cycle, no email, no refused call and no
conflicting event can hold its workflow, and every failure shows as its sync error."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateStage
from temporalio.testing import ActivityEnvironment

from activities.account_store import AccountStoreActivities, WriteEntitlementsInput
from core.workflow_ids import workflow_id_for
from db import outbox
from domain.catalog import default_catalog
from domain.lifecycle import BillingState, Lifecycle
from domain.plan_changes import ChangeKind, PlanChange, purchase_for
from tests.conftest import wait_for
from workflows.account import (
    BILLING_SYNC_ERROR,
    AccountBillingWorkflow,
    CancelRequest,
    UpdatedAccount,
)

from .harness import Harness, subscription

# Far longer than any of these steps takes here; the old code never answered at all.
ANSWER_WITHIN_SECONDS = 20


async def _run_id(h: Harness, account: str) -> str:
    return (await h.handle(account).describe()).run_id or ""


async def _next_run(h: Harness, account: str, previous_run: str) -> None:
    async def moved_on() -> bool:
        return await _run_id(h, account) != previous_run

    await wait_for(moved_on, what=f"{account} to continue as new")


async def test_an_update_whose_webhook_reaches_continue_as_new_first_still_returns(
    harness: Harness,
) -> None:
    """Defect 1: the update waited for the main loop's sync while the main loop, at its
    continue-as-new limit, waited for the update: neither ever moved again."""
    account, customer = harness.new_account()
    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    await harness.start(account, continue_as_new_after_events=2)
    await harness.wait_until_handled(account, await harness.send(account, customer))
    first_run = await _run_id(harness, account)

    async def webhook_before_the_answer() -> None:
        # Stripe's webhook for the change lands, and is handled, before Stripe answers.
        event = await harness.send(account, customer, "customer.subscription.updated")
        await harness.wait_until_handled(account, event)

    harness.stripe.before_change_answers = webhook_before_the_answer
    update = harness.handle(account).execute_update(
        "cancel_subscription", CancelRequest(at_period_end=True), result_type=UpdatedAccount
    )
    state = await asyncio.wait_for(update, ANSWER_WITHIN_SECONDS)

    assert state.lifecycle.state == "canceling"
    await _next_run(harness, account, first_run)
    harness.stripe.subscriptions[customer] = subscription(customer, "canceled")
    await harness.send(account, customer, "customer.subscription.deleted")
    await harness.wait_for_entitlements(account, state="free")


async def test_continue_as_new_does_not_wait_for_an_email_smtp_cannot_take(
    harness: Harness,
) -> None:
    """Defect 2: with SMTP down, continue-as-new waited up to three days for the email, and
    Stripe's next change was not applied meanwhile."""
    harness.smtp.stop()
    account, customer = harness.new_account()
    harness.stripe.subscriptions[customer] = subscription(customer, "active", cancel=True)
    await harness.start(account, continue_as_new_after_events=1)
    await harness.send(account, customer, "checkout.session.completed")
    await harness.wait_for_entitlements(account, state="canceling")
    run = await _email_retrying(harness, account)

    # Stripe's next change, while the account is at its limit and SMTP is still down.
    harness.stripe.subscriptions[customer] = subscription(customer, "canceled")
    await harness.send(account, customer, "customer.subscription.deleted")
    await harness.wait_for_entitlements(account, state="free")
    await _next_run(harness, account, run)

    # The emails went with the new runs, and go out once each when SMTP is back (on their
    # next attempt, within seconds of real time: time is not skipped, as the time-skipping
    # server can lose its time lock to a run that closed while a signal came in).
    harness.smtp.start()
    expected = {"cancellation_scheduled", "subscription_ended"}
    await wait_for(lambda: _sent_kinds(harness, account) >= expected, within=60, what="the emails")
    assert len(harness.emails_to(customer)) == len(expected)


async def _email_retrying(h: Harness, account: str) -> str:
    """The current run, once its email has failed an attempt and waits for the next: the
    email continue-as-new used to wait for (now the outbox's to retry)."""

    async def retrying() -> str | None:
        with h.sessions() as session:
            records = outbox.deliveries_for_account(session, account)
        if not any(r.status == "pending" and r.last_error for r in records):
            return None
        return (await h.handle(account).describe()).run_id

    return await wait_for(retrying, what=f"{account}'s email to wait for a retry")


def _sent_kinds(h: Harness, account: str) -> set[str]:
    with h.sessions() as session:
        records = outbox.deliveries_for_account(session, account)
    return {r.kind for r in records if r.status == "sent"}


async def test_an_event_naming_a_customer_of_another_account_is_reported_not_fatal(
    harness: Harness,
) -> None:
    """Defect 5: `CustomerConflict` escaped the run, so every later event failed a new run."""
    owner, customer = await harness.subscribe()
    named, _ = harness.new_account()

    # Metadata names `named`, while the customer is linked to `owner`.
    state = await harness.wait_until_handled(named, await harness.send(named, customer))
    assert state.customer_id is None
    assert state.sync_error_kind == "CustomerConflict"

    later = await harness.send(named, None, "invoice.updated")
    await harness.wait_until_handled(named, later)
    description = await harness.handle(named).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert description.typed_search_attributes.get(BILLING_SYNC_ERROR) == "CustomerConflict"
    assert harness.entitlements(owner).billing_state == "active"  # type: ignore[union-attr]


async def test_stripe_out_past_the_step_budget_is_reported_and_retried_on_its_own(
    harness: Harness,
) -> None:
    account, customer = await harness.subscribe()

    harness.stripe.unreachable_for = 10**6
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")
    event = await harness.send(account, customer, "invoice.payment_failed")
    await harness.skip(timedelta(minutes=15))
    state = await harness.wait_until_handled(account, event)
    assert state.sync_error_kind == "ConnectionError"  # the last attempt's error
    assert state.lifecycle.state == "active"

    # Stripe is back; no new event comes: the account's own retry applies the truth.
    harness.stripe.unreachable_for = 0
    await harness.skip(timedelta(hours=2))
    await harness.wait_for_entitlements(account, state="past_due", version=2)
    state = await harness.state(account)
    assert state.sync_error is None and state.retry_at is None


async def test_a_failed_write_waits_for_its_retry_instead_of_spinning(harness: Harness) -> None:
    """The events a failed write put back (and every other wake-up) retried the step at once:
    a database down for a day cost a whole step budget every few minutes (the simulation's
    inconclusive seeds). It backs off, doubling up to an hour, and follows Stripe when the
    database is back."""
    account, customer = await harness.subscribe()
    harness.writes.database_down = True
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")
    await harness.send(account, customer, "invoice.payment_failed")
    await harness.skip(timedelta(hours=12))

    # Steps at about 0, 11, 23, 37, 55, 81, 123 min, then every 70 min: 15 in 12 hours
    # (the step budget is 10 minutes). Retried at every wake-up, it was 86.
    assert harness.writes.local_attempts <= 20
    assert (await harness.state(account)).sync_error_kind == "ConnectionError"

    harness.writes.database_down = False
    await harness.skip(timedelta(hours=1))
    await harness.wait_for_entitlements(account, state="past_due")
    assert (await harness.state(account)).sync_error is None


async def test_a_long_outage_continues_as_new_instead_of_growing_one_history(
    harness: Harness,
) -> None:
    """Failed steps add history without a Stripe event to count, and the time-skipping server
    (like a server whose limits are high) never suggests continuing as new: one run grew to
    ~4,000 events, too many to replay inside a workflow task (seed 3735 of the simulation)."""
    limit = 40
    account, customer = harness.new_account()
    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    await harness.start(account, continue_as_new_past_history_length=limit)
    await harness.wait_until_handled(account, await harness.send(account, customer))
    first_run = await _run_id(harness, account)

    harness.writes.database_down = True
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")
    await harness.send(account, customer, "invoice.payment_failed")
    await harness.skip(timedelta(hours=12))
    await _next_run(harness, account, first_run)

    # The run closed at the first workflow task past its limit.
    history = await harness.client.get_workflow_handle(
        workflow_id_for(account), run_id=first_run
    ).fetch_history()
    assert limit <= len(history.events) <= limit + 15
    # The failure and the event it could not store went with the new run.
    assert (await harness.state(account)).sync_error_kind == "ConnectionError"
    harness.writes.database_down = False
    await harness.skip(timedelta(hours=2))
    await harness.wait_for_entitlements(account, state="past_due")


async def test_a_second_live_plan_subscription_is_shown_to_operators(harness: Harness) -> None:
    account, customer = harness.new_account()
    harness.stripe.subscriptions[customer] = subscription(customer, "active")
    harness.stripe.other_live_plans[customer] = ["sub_made_in_the_dashboard"]
    state = await harness.wait_until_handled(account, await harness.send(account, customer))

    assert state.lifecycle.state == "active"
    assert state.sync_error_kind == "TwoLivePlans"
    assert "sub_made_in_the_dashboard" in (state.sync_error or "")

    harness.stripe.other_live_plans.clear()
    state = await harness.wait_until_handled(account, await harness.send(account, customer))
    assert state.sync_error is None and state.sync_error_kind is None


async def test_a_version_written_by_a_lost_workflow_task_is_written_after_not_dropped(
    harness: Harness,
) -> None:
    """Found by the simulation (seed 903): a workflow task wrote version 2 and was lost (a
    worker crash) before it completed; redone from newer Stripe data it wrote version 2
    again, which the store ignored, and the app kept the old answer for good."""
    account, customer = await harness.subscribe()
    lost_write = WriteEntitlementsInput(
        account_id=account,
        version=2,
        lifecycle=Lifecycle(state=BillingState.PAST_DUE, subscription=subscription(customer)),
        cause="a workflow task that was lost",
    )
    store = AccountStoreActivities(harness.sessions, default_catalog())
    ActivityEnvironment().run(store.write_entitlements, lost_write)

    harness.stripe.subscriptions[customer] = subscription(customer, "active", plan="team")
    await harness.send(account, customer)
    record = await harness.wait_for_entitlements(account, state="active", version=3)
    assert record.plan == "team"


async def test_two_upgrades_at_once_while_a_downgrade_is_scheduled_both_answer(
    harness: Harness,
) -> None:
    """The simulation, seed 2964: each upgrade cancels the scheduled downgrade first. The
    second saw it still scheduled, waited for the lock, then cancelled nothing: an
    InvalidTransition in a handler fails the workflow task on every retry, and the account
    froze (no event applied again, neither update answered)."""
    account, customer = await harness.subscribe(plan="team", seats=3)
    handle = harness.handle(account)
    catalog = default_catalog()
    downgrade = PlanChange(ChangeKind.DOWNGRADE, purchase_for(catalog, "pro", "month", 1))
    await handle.execute_update(AccountBillingWorkflow.change_plan, downgrade)

    harness.writes.held = threading.Event()
    first = await handle.start_update(
        AccountBillingWorkflow.change_plan,
        PlanChange(ChangeKind.UPGRADE, purchase_for(catalog, "team", "month", 4)),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
    )
    # The first upgrade holds the lock, writing the downgrade's cancellation.
    await wait_for(harness.writes.waiting.is_set, what="the downgrade's cancellation to write")
    second = await handle.start_update(
        AccountBillingWorkflow.change_plan,
        PlanChange(ChangeKind.UPGRADE, purchase_for(catalog, "team", "month", 5)),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
    )
    held, harness.writes.held = harness.writes.held, None
    held.set()

    answers = await asyncio.wait_for(
        asyncio.gather(first.result(), second.result()), ANSWER_WITHIN_SECONDS
    )
    assert [answer.applied for answer in answers] == [True, True]
    state = await harness.state(account)
    assert state.lifecycle.pending_change is None
    assert state.lifecycle.subscription is not None
    # The two Stripe changes race each other; the account follows whichever Stripe kept.
    assert state.lifecycle.subscription == harness.stripe.subscriptions[customer]
