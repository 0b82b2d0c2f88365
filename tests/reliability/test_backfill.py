"""`dataface-billing backfill`: existing Stripe customers are brought under account workflows."""

from __future__ import annotations

import io

import pytest
from temporalio.client import WorkflowExecutionStatus

from db import repository
from ops import backfill
from ops.backfill import BackfillSummary, run_backfill
from tests.e2e.stack import Stack
from tests.reliability.conftest import new_account, set_dropping, subscribe
from workflows.account import workflow_id_for


async def run(stack: Stack, *, restart: bool = False) -> tuple[BackfillSummary, str]:
    progress = io.StringIO()
    summary = await run_backfill(
        stack.stripe,
        stack.sessions,
        stack.env.client,
        stack.settings.task_queue,
        restart=restart,
        progress=progress,
    )
    return summary, progress.getvalue()


async def test_backfill_starts_every_named_account_once_and_resumes(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Customers from before the service existed: no webhook ever reached it.
    set_dropping(stack, 1.0)
    paying = [new_account() for _ in range(2)]
    for account in paying:
        subscribe(stack, account, "team_monthly_per_seat", seats=2)
    never_paid = new_account()
    stack.new_customer(never_paid)
    anonymous = [
        stack.stripe.v1.customers.create(params={"email": f"anon{i}@example.com"}) for i in (1, 2)
    ]
    stack.attach_card(str(anonymous[0].id))
    # An account already linked to another customer cannot take this one.
    taken = new_account()
    with stack.sessions.begin() as session:
        repository.link_customer(session, taken, "cus_linked_elsewhere")
    stack.new_customer(taken)
    # A customer the database already links, without metadata.
    linked_before = new_account()
    quiet = stack.stripe.v1.customers.create(params={"email": "quiet@example.com"})
    with stack.sessions.begin() as session:
        repository.link_customer(session, linked_before, str(quiet.id))
    await stack.deliveries_done()
    set_dropping(stack, 0.0)

    monkeypatch.setattr(backfill, "PAGE_SIZE", 3)
    summary, progress = await run(stack)

    assert (summary.customers, summary.accounts_started, summary.skipped_without_account) == (
        7,
        4,
        2,
    )
    assert len(summary.errors) == 1 and "cus_linked_elsewhere" in summary.errors[0]
    assert len(progress.splitlines()) == 3  # one line per page of three
    for account in paying:
        entitlements = await stack.entitlements(account)
        assert (entitlements["billing_state"], entitlements["seats"]) == ("active", 2)
    for account in (*paying, never_paid, linked_before):
        described = await stack.env.client.get_workflow_handle(workflow_id_for(account)).describe()
        assert described.status == WorkflowExecutionStatus.RUNNING
    assert (await stack.entitlements(never_paid))["billing_state"] == "free"

    # The next run starts after the last customer done: nothing new.
    again, _ = await run(stack)
    assert again == BackfillSummary()

    # --restart walks everyone again; starting an account twice changes nothing.
    restarted, _ = await run(stack, restart=True)
    assert (restarted.customers, restarted.accounts_started) == (7, 4)
    for account in paying:
        assert (await stack.entitlements(account))["seats"] == 2
