"""Client-side entry into account workflows: used by the API, the reconciliation, tools and
tests. Updates are called by reference (`AccountBillingWorkflow.operator_action`), so a
changed signature is a type error here rather than a failure at run time."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar, cast

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.workflow import UpdateMethodMultiParam

from domain.operator_actions import OperatorRequest
from workflows.account import (
    AccountBillingWorkflow,
    AccountWorkflowInput,
    OperatorResult,
    StripeEventSignal,
    workflow_id_for,
)

A = TypeVar("A")
R = TypeVar("R")


def _summary(account_id: str) -> str:
    return f"Billing of account {account_id}"


async def signal_stripe_event(
    client: Client, task_queue: str, account_id: str, event: StripeEventSignal
) -> None:
    """Signal-with-start: durably accepted by Temporal once this returns.

    On the id of a closed run (completed, or terminated by an operator) this starts a new run,
    which rebuilds the account from the database and Stripe.
    """
    await _signal_with_start(client, task_queue, account_id, "stripe_event", event)


async def signal_stripe_events(
    client: Client, task_queue: str, account_id: str, events: list[StripeEventSignal]
) -> None:
    """`signal_stripe_event` for several events of one account, in one signal-with-start."""
    await _signal_with_start(client, task_queue, account_id, "stripe_events", events)


async def _signal_with_start(
    client: Client, task_queue: str, account_id: str, signal: str, argument: object
) -> None:
    await client.start_workflow(
        AccountBillingWorkflow.run,
        AccountWorkflowInput(account_id=account_id),
        id=workflow_id_for(account_id),
        task_queue=task_queue,
        start_signal=signal,
        start_signal_args=[argument],
        static_summary=_summary(account_id),
    )


def start_if_missing(
    account_id: str, task_queue: str
) -> WithStartWorkflowOperation[AccountBillingWorkflow, None]:
    """The start half of an update-with-start: the account's running workflow takes the
    Update, or a new run is started for it (which rebuilds the account from the database and
    Stripe). A request the workflow's validator refuses raises
    `temporalio.client.WorkflowUpdateFailedError` and leaves no trace in the history; the
    same update id sent again (a retry after a timeout) gets the first answer instead of
    running twice, within the workflow's current run. One operation per call: it holds the
    started workflow's handle."""
    return WithStartWorkflowOperation(
        AccountBillingWorkflow.run,
        AccountWorkflowInput(account_id=account_id),
        id=workflow_id_for(account_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=_summary(account_id),
    )


async def update_with_start(
    client: Client,
    task_queue: str,
    account_id: str,
    update: UpdateMethodMultiParam[[AccountBillingWorkflow, A], Awaitable[R]],
    argument: A,
    *,
    update_id: str | None = None,
) -> R:
    """Runs `update` (an `AccountBillingWorkflow` method) on the account, starting its
    workflow if no run exists; the answer is what the update returns."""
    answer = await client.execute_update_with_start_workflow(
        update,
        args=[argument],
        start_workflow_operation=start_if_missing(account_id, task_queue),
        id=update_id,
    )
    # The SDK types a method decorated `@workflow.update(name=...)` as returning its
    # coroutine, so the client's own overloads type the answer as one; `update`'s type says
    # what it is.
    return cast(R, answer)


async def run_operator_action(
    client: Client,
    task_queue: str,
    account_id: str,
    request: OperatorRequest,
    *,
    update_id: str | None = None,
) -> OperatorResult:
    return await update_with_start(
        client,
        task_queue,
        account_id,
        AccountBillingWorkflow.operator_action,
        request,
        update_id=update_id,
    )


class AccountWorkflowStarter:
    """`signal_stripe_events` and `run_operator_action` bound to one client and task queue:
    what the reconciliation activities are given to reach the account workflows."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    async def signal_stripe_events(self, account_id: str, events: list[StripeEventSignal]) -> None:
        await signal_stripe_events(self._client, self._task_queue, account_id, events)

    async def run_operator_action(
        self, account_id: str, request: OperatorRequest, *, update_id: str | None = None
    ) -> OperatorResult:
        return await run_operator_action(
            self._client, self._task_queue, account_id, request, update_id=update_id
        )
