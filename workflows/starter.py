"""Client-side entry into account workflows: used by the webhook gateway, tools and tests."""

from __future__ import annotations

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
    )


async def run_operator_action(
    client: Client, task_queue: str, account_id: str, request: OperatorRequest
) -> OperatorResult:
    """Run an operator action as a workflow Update, starting the account's workflow if no run
    exists (update-with-start). A request the workflow's validator refuses raises
    `temporalio.client.WorkflowUpdateFailedError` and leaves no trace in the history."""
    start = WithStartWorkflowOperation(
        AccountBillingWorkflow.run,
        AccountWorkflowInput(account_id=account_id),
        id=workflow_id_for(account_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    result: OperatorResult = await client.execute_update_with_start_workflow(
        "operator_action", request, start_workflow_operation=start, result_type=OperatorResult
    )
    return result
