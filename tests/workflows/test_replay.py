"""Replay guards determinism: recorded histories must replay on today's workflow code.

`histories/` holds histories recorded from earlier versions of the workflow; a change that
breaks their replay breaks every running account. A fresh history from a full lifecycle is
replayed as well.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from core.payloads import DATA_CONVERTER
from domain.catalog import default_catalog
from domain.operator_actions import OperatorRequest
from domain.plan_changes import ChangeKind, PlanChange, purchase_for
from workflows.account import (
    AccountBillingWorkflow,
    CancelRequest,
    KeepPlanRequest,
    ResumeRequest,
)

from .harness import running_harness, subscription

HISTORIES = Path(__file__).parent / "histories"


def _replayer() -> Replayer:
    return Replayer(workflows=[AccountBillingWorkflow], data_converter=DATA_CONVERTER)


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await _replayer().replay_workflow(history)


async def test_full_lifecycle_history_replays(
    workflow_env: WorkflowEnvironment, session_factory: sessionmaker[Session]
) -> None:
    async with running_harness(workflow_env, session_factory) as h:
        account, customer = h.new_account()
        for status in ("incomplete", "active", "past_due"):
            h.stripe.subscriptions[customer] = subscription(customer, status)
            await h.send(account, customer)
            await h.wait_for_entitlements(account, state=status)
        await h.skip(timedelta(days=8))
        await h.wait_for_entitlements(account, state="restricted")
        h.stripe.subscriptions[customer] = subscription(customer, "canceled")
        await h.send(account, customer, "customer.subscription.deleted")
        await h.wait_for_entitlements(account, state="free")
        history = await h.handle(account).fetch_history()

    await _replayer().replay_workflow(history)
    if os.environ.get("RECORD_HISTORIES"):  # run once per released workflow version
        (HISTORIES / f"full_lifecycle_{date.today():%Y%m%d}.json").write_text(history.to_json())


async def test_customer_changes_history_replays(
    workflow_env: WorkflowEnvironment, session_factory: sessionmaker[Session]
) -> None:
    """Every update, so that a recorded history holds each one's arguments and answer (the
    first recording holds `cancel_plan_change` and `resume_subscription` without one)."""
    async with running_harness(workflow_env, session_factory) as h:
        account, _ = await h.subscribe(plan="team", seats=3)
        handle = h.handle(account)
        downgrade = PlanChange(
            ChangeKind.DOWNGRADE, purchase_for(default_catalog(), "pro", "month", 1)
        )
        await handle.execute_update(AccountBillingWorkflow.change_plan, downgrade)
        await handle.execute_update(AccountBillingWorkflow.cancel_plan_change, KeepPlanRequest())
        await handle.execute_update(
            AccountBillingWorkflow.cancel_subscription, CancelRequest(at_period_end=True)
        )
        await handle.execute_update(AccountBillingWorkflow.resume_subscription, ResumeRequest())
        resync = OperatorRequest(action="resync", actor="ops@dataface", reason="replay test")
        await handle.execute_update(AccountBillingWorkflow.operator_action, resync)
        history = await handle.fetch_history()

    await _replayer().replay_workflow(history)
    if os.environ.get("RECORD_HISTORIES"):
        (HISTORIES / f"customer_changes_{date.today():%Y%m%d}.json").write_text(history.to_json())
