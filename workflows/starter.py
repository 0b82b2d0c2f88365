"""Client-side entry into account workflows: used by the webhook gateway, tools and tests."""

from __future__ import annotations

from temporalio.client import Client

from workflows.account import (
    AccountBillingWorkflow,
    AccountWorkflowInput,
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
