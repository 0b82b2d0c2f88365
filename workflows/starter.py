"""Client-side entry into account workflows: used by the webhook gateway, tools and tests."""

from __future__ import annotations

from typing import TypeVar

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from domain.operator_actions import OperatorRequest
from workflows.account import (
    AccountBillingWorkflow,
    AccountWorkflowInput,
    OperatorResult,
    StripeEventSignal,
    workflow_id_for,
)

T = TypeVar("T")


def _summary(account_id: str) -> str:
    return f"Billing of account {account_id}"


async def signal_stripe_event(
    client: Client, task_queue: str, account_id: str, event: StripeEventSignal
) -> None:
    """Signal-with-start: durably accepted by Temporal once this returns.

    On the id of a closed run (completed, or terminated by an operator) this starts a new run,
    which rebuilds the account from the database and Stripe.
    """
    await client.start_workflow(
        AccountBillingWorkflow.run,
        AccountWorkflowInput(account_id=account_id),
        id=workflow_id_for(account_id),
        task_queue=task_queue,
        start_signal="stripe_event",
        start_signal_args=[event],
        static_summary=_summary(account_id),
    )


async def update_account(
    client: Client,
    task_queue: str,
    account_id: str,
    update: str,
    argument: object,
    result_type: type[T],
    *,
    update_id: str | None = None,
) -> T:
    """Run a workflow Update on the account, starting its workflow if no run exists
    (update-with-start). A request the workflow's validator refuses raises
    `temporalio.client.WorkflowUpdateFailedError` and leaves no trace in the history.
    The same `update_id` sent again (a retry after a timeout) gets the first answer instead
    of running twice, within the workflow's current run."""
    start = WithStartWorkflowOperation(
        AccountBillingWorkflow.run,
        AccountWorkflowInput(account_id=account_id),
        id=workflow_id_for(account_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=_summary(account_id),
    )
    args = [] if argument is None else [argument]
    result: T = await client.execute_update_with_start_workflow(
        update, args=args, start_workflow_operation=start, result_type=result_type, id=update_id
    )
    return result


async def run_operator_action(
    client: Client,
    task_queue: str,
    account_id: str,
    request: OperatorRequest,
    *,
    update_id: str | None = None,
) -> OperatorResult:
    return await update_account(
        client,
        task_queue,
        account_id,
        "operator_action",
        request,
        OperatorResult,
        update_id=update_id,
    )


class AccountWorkflowStarter:
    """`signal_stripe_event` and `run_operator_action` bound to one client and task queue:
    what the reconciliation activities are given to reach the account workflows."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    async def signal_stripe_event(self, account_id: str, event: StripeEventSignal) -> None:
        await signal_stripe_event(self._client, self._task_queue, account_id, event)

    async def run_operator_action(
        self, account_id: str, request: OperatorRequest, *, update_id: str | None = None
    ) -> OperatorResult:
        return await run_operator_action(
            self._client, self._task_queue, account_id, request, update_id=update_id
        )
