"""One account that cannot be resynced must not hold the sweep: it is listed as failed once
its budget is spent, and the sweep goes on to the next account (and the schedule to the next
run, which its skipped overlaps would otherwise stop)."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.reconciliation import DriftedAccount, ResyncInput, SweepFindings
from workflows.reconciliation import SubscriptionSweepWorkflow, SweepInput, SweepResult

STUCK, FINE = "acct_stuck", "acct_fine"


@activity.defn(name="find_drifted_accounts")
async def find_drifted_accounts() -> SweepFindings:
    return SweepFindings(
        subscriptions_checked=2,
        drifted=[
            DriftedAccount(STUCK, "cus_stuck", "seats differ"),
            DriftedAccount(FINE, "cus_fine", "seats differ"),
        ],
    )


@activity.defn(name="resync_account")
async def resync_account(request: ResyncInput) -> None:
    if request.account_id == STUCK:
        raise ConnectionError("the account's update never answers")


async def test_an_account_that_never_answers_is_listed_as_failed_and_the_sweep_goes_on(
    workflow_env: WorkflowEnvironment,
) -> None:
    task_queue = f"sweep-{uuid4()}"
    async with Worker(
        workflow_env.client,
        task_queue=task_queue,
        workflows=[SubscriptionSweepWorkflow],
        activities=[find_drifted_accounts, resync_account],
    ):
        # Seconds here; without the budget the sweep never ends.
        result = await asyncio.wait_for(
            workflow_env.client.execute_workflow(
                SubscriptionSweepWorkflow.run,
                SweepInput(),
                id=f"sweep-{uuid4()}",
                task_queue=task_queue,
                result_type=SweepResult,
            ),
            timeout=30,
        )

    assert result.accounts_failed == [STUCK]
    assert result.accounts_resynced == [FINE]
