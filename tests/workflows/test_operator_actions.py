"""Operator actions as validated workflow Updates: applied, audited, refused when bad."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowUpdateFailedError

from db.models import OperatorAction
from domain.operator_actions import OperatorRequest
from workflows.starter import run_operator_action

from .harness import Harness, subscription


async def act(h: Harness, account: str, action: str, **fields) -> object:
    h.accounts.add(account)
    request = OperatorRequest(action=action, actor="ops@dataface", reason="ticket 42", **fields)
    return await run_operator_action(h.client, h.task_queue, account, request)


async def active_account(h: Harness) -> tuple[str, str]:
    account, customer = h.new_account()
    h.stripe.subscriptions[customer] = subscription(customer, "active")
    await h.send(account, customer)
    await h.wait_for_entitlements(account, state="active", version=1)
    return account, customer


def audit_rows(h: Harness, account: str) -> list[OperatorAction]:
    with h.sessions() as session:
        query = select(OperatorAction).where(OperatorAction.account_id == account)
        return list(session.scalars(query.order_by(OperatorAction.id)))


async def now(h: Harness) -> datetime:
    return await h.env.get_current_time()


async def test_comp_grants_the_plan_until_its_timer_expires(harness: Harness) -> None:
    account, _ = await active_account(harness)
    until = await now(harness) + timedelta(days=30)

    await act(harness, account, "grant_comp", plan="enterprise", until=until)

    comped = harness.entitlements(account)
    assert comped is not None
    assert (comped.effective_state, comped.plan, comped.billing_state) == (
        "comped",
        "enterprise",
        "active",
    )
    [audit] = audit_rows(harness, account)
    assert (audit.action, audit.actor, audit.reason) == ("grant_comp", "ops@dataface", "ticket 42")
    assert audit.before["comp"] is None
    assert audit.after["comp"]["plan"] == "enterprise"

    await harness.skip(timedelta(days=31))
    expired = await harness.wait_for_entitlements(account, state="active", version=3)
    assert (expired.effective_state, expired.plan) == ("active", "pro")


async def test_lock_and_unlock(harness: Harness) -> None:
    account, _ = await active_account(harness)

    await act(harness, account, "lock")
    locked = harness.entitlements(account)
    assert locked is not None
    assert (locked.access, locked.effective_state, locked.message) == (
        "none",
        "locked",
        "contact_support",
    )

    await act(harness, account, "unlock")
    unlocked = harness.entitlements(account)
    assert unlocked is not None
    assert (unlocked.access, unlocked.effective_state) == ("full", "active")
    assert [a.action for a in audit_rows(harness, account)] == ["lock", "unlock"]


async def test_extending_grace_lifts_a_restriction_until_the_new_end(harness: Harness) -> None:
    account, customer = await active_account(harness)
    harness.stripe.subscriptions[customer] = subscription(customer, "past_due")
    await harness.send(account, customer, "invoice.payment_failed")
    await harness.wait_for_entitlements(account, state="past_due")
    await harness.skip(timedelta(days=8))
    await harness.wait_for_entitlements(account, state="restricted")

    new_end = await now(harness) + timedelta(days=3)
    await act(harness, account, "extend_grace", until=new_end)
    extended = harness.entitlements(account)
    assert extended is not None
    assert (extended.billing_state, extended.grace_ends_at) == ("past_due", new_end)

    await harness.skip(timedelta(days=3, minutes=1))
    await harness.wait_for_entitlements(account, state="restricted")


async def test_resync_applies_stripe_without_any_event(harness: Harness) -> None:
    account, customer = await active_account(harness)
    harness.stripe.subscriptions[customer] = subscription(customer, "active", plan="team", seats=3)

    result = await act(harness, account, "resync")

    assert result.account.lifecycle.subscription.plan == "team"  # type: ignore[attr-defined]
    record = harness.entitlements(account)
    assert record is not None and (record.plan, record.seats) == ("team", 3)


@pytest.mark.parametrize(
    ("action", "fields", "problem"),
    [
        ("grant_comp", {"plan": "enterprise"}, "end date"),
        ("explode", {}, "unknown action"),
        ("unlock", {}, "not locked"),
        ("revoke_comp", {}, "no comp"),
        ("extend_grace", {"until": datetime(2030, 1, 1, tzinfo=UTC)}, "no grace"),
    ],
)
async def test_bad_requests_are_refused_and_change_nothing(
    harness: Harness, action: str, fields: dict, problem: str
) -> None:
    account, _ = await active_account(harness)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await act(harness, account, action, **fields)
    assert problem in str(refused.value.cause)
    assert harness.entitlements(account).version == 1  # type: ignore[union-attr]
    assert audit_rows(harness, account) == []


async def test_action_on_an_account_without_a_workflow_starts_one(harness: Harness) -> None:
    account, _ = harness.new_account()
    await act(harness, account, "lock")
    locked = harness.entitlements(account)
    assert locked is not None
    assert (locked.effective_state, locked.plan) == ("locked", "free")


async def test_an_action_that_starts_a_new_run_waits_for_its_rebuild(harness: Harness) -> None:
    account, _ = await active_account(harness)
    await harness.terminate_when_idle(account, reason="cleanup from the Web UI")

    result = await act(harness, account, "lock")

    # Applied on top of the stored state (active, version 1), not on an empty account.
    assert result.account.lifecycle.state == "active"  # type: ignore[attr-defined]
    locked = harness.entitlements(account)
    assert locked is not None
    assert (locked.version, locked.billing_state, locked.effective_state) == (2, "active", "locked")
