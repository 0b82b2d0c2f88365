"""The account workflows as the API calls them: one typed method per Update, each bounded.

Routes take `AccountWorkflowsDep` and call, say, `workflows.resume_subscription(account_id)`.
How each Update is called (its argument, its result) is known here and nowhere else in the
API, so a change to the workflow's messages is adapted in this one module. Each call is
update-with-start (signal-with-start for Stripe events): an account without a running
workflow gets a run, which rebuilds the account from the database and Stripe.

What a failure answers is `create_app`'s: the workflow refusing an Update raises
`WorkflowUpdateFailedError` (a 409 with its reason); Temporal not taking a call, or not
confirming it within its bound, raises `TemporalUnavailable` (a 503 with `Retry-After` that
says whether the call may still take effect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.edge import MAY_STILL_APPLY, NOT_APPLIED, TemporalGate, temporal_call
from domain.catalog import FREE_PLAN
from domain.operator_actions import OperatorRequest
from domain.plan_changes import PlanChange
from workflows.account import (
    AccountBillingWorkflow,
    CancelRequest,
    KeepPlanRequest,
    ResumeRequest,
    StripeEventSignal,
    UpdatedAccount,
    workflow_id_for,
)
from workflows.account.visibility import ACCOUNT_ID, BILLING_SYNC_ERROR
from workflows.starter import signal_stripe_event, update_with_start

logger = logging.getLogger(__name__)

# A customer waits on the page: beyond this the app hears 503 (the change may still apply, as
# Temporal keeps an update it accepted until a worker runs it).
UPDATE_TIMEOUT_SECONDS = 15
# A resync waits for a Stripe fetch; beyond this the operator gets a 503 (the action may still
# complete: `show` the account before repeating it).
ACTION_TIMEOUT_SECONDS = 30
# Stripe abandons slow deliveries; answering 503 ourselves makes its retry explicit.
SIGNAL_TIMEOUT_SECONDS = 10
# The live view is optional: never hold a read up for long waiting on it.
LIVE_VIEW_TIMEOUT = timedelta(seconds=2)


@dataclass(frozen=True)
class PlanChanged:
    kind: str
    # False for a downgrade: it is scheduled for the end of the period.
    applied: bool
    # An upgrade whose prorated charge awaits the customer (3-D Secure, a declined card).
    open_invoice_url: str | None


@dataclass(frozen=True)
class WorkflowSnapshot:
    """What operators are shown of a running account workflow."""

    billing_state: str
    plan: str
    entitlement_version: int
    customer_id: str | None
    sync_error: str | None

    @classmethod
    def of(cls, account: UpdatedAccount) -> WorkflowSnapshot:
        subscription = account.lifecycle.subscription
        return cls(
            billing_state=str(account.lifecycle.state),
            plan=subscription.plan if subscription is not None else FREE_PLAN,
            entitlement_version=account.entitlement_version,
            customer_id=account.customer_id,
            sync_error=account.sync_error,
        )


@dataclass(frozen=True)
class LiveWorkflow:
    """Temporal's view of an account's workflow: `status` is its execution status in lower
    case (running, terminated, ...), `not_found` when no run was ever started, `unavailable`
    when Temporal did not answer (`error` says why); `snapshot` only while running."""

    status: str
    snapshot: WorkflowSnapshot | None = None
    error: str | None = None


@dataclass(frozen=True)
class ActionApplied:
    action: str
    # The workflow as the action left it.
    workflow: LiveWorkflow


SYNC_ERROR_QUERY = f'{BILLING_SYNC_ERROR.name} IS NOT NULL AND ExecutionStatus = "Running"'


@dataclass(frozen=True)
class SyncErrorAccount:
    account_id: str
    # The error's class, as the search attribute holds it (`CatalogError`, ...).
    kind: str


class AccountWorkflows:
    """The Temporal client, the task queue and the API's `TemporalGate`, behind one method per
    thing the API asks of an account's workflow."""

    def __init__(self, client: Client, task_queue: str, gate: TemporalGate) -> None:
        self._client = client
        self._task_queue = task_queue
        self._gate = gate

    # --- self-serve (the Dataface app, for a customer) -----------------------------------

    async def change_plan(self, account_id: str, change: PlanChange) -> PlanChanged:
        """Upgrade now or downgrade at the end of the period."""
        async with self._self_serve():
            result = await update_with_start(
                self._client,
                self._task_queue,
                account_id,
                AccountBillingWorkflow.change_plan,
                change,
            )
        return PlanChanged(result.kind, result.applied, result.open_invoice_url)

    async def cancel_plan_change(self, account_id: str) -> None:
        """Call off a scheduled downgrade."""
        async with self._self_serve():
            await update_with_start(
                self._client,
                self._task_queue,
                account_id,
                AccountBillingWorkflow.cancel_plan_change,
                KeepPlanRequest(),
            )

    async def cancel_subscription(self, account_id: str) -> None:
        """Cancel at the end of the paid period, the only cancellation that is self-serve."""
        async with self._self_serve():
            await update_with_start(
                self._client,
                self._task_queue,
                account_id,
                AccountBillingWorkflow.cancel_subscription,
                CancelRequest(at_period_end=True),
            )

    async def resume_subscription(self, account_id: str) -> None:
        """Undo a cancellation before the period ends, or resume a paused subscription."""
        async with self._self_serve():
            await update_with_start(
                self._client,
                self._task_queue,
                account_id,
                AccountBillingWorkflow.resume_subscription,
                ResumeRequest(),
            )

    # --- operators -----------------------------------------------------------------------

    async def operator_action(
        self, account_id: str, request: OperatorRequest, *, idempotency_key: str | None
    ) -> ActionApplied:
        """Apply an operator action; it returns once its entitlement write and audit row are
        done. The same `idempotency_key` sent again gets the first answer instead of applying
        the action twice (within the workflow's current run)."""
        update_id = f"admin-{request.action}-{idempotency_key}" if idempotency_key else None
        async with temporal_call(
            self._gate, ACTION_TIMEOUT_SECONDS, if_unconfirmed=MAY_STILL_APPLY
        ):
            result = await update_with_start(
                self._client,
                self._task_queue,
                account_id,
                AccountBillingWorkflow.operator_action,
                request,
                update_id=update_id,
            )
        return ActionApplied(
            result.action, LiveWorkflow("running", WorkflowSnapshot.of(result.account))
        )

    async def live_view(self, account_id: str) -> LiveWorkflow:
        """The workflow as Temporal sees it right now, or why there is none. Never raises:
        it is informative only, and never holds a read up for long."""
        handle = self._client.get_workflow_handle(workflow_id_for(account_id))
        try:
            async with asyncio.timeout(2 * LIVE_VIEW_TIMEOUT.total_seconds()):
                description = await handle.describe(rpc_timeout=LIVE_VIEW_TIMEOUT)
                execution_status = description.status
                if execution_status is not WorkflowExecutionStatus.RUNNING:
                    name = execution_status.name.lower() if execution_status else "unknown"
                    return LiveWorkflow(status=name)
                state = await handle.query(
                    AccountBillingWorkflow.state, rpc_timeout=LIVE_VIEW_TIMEOUT
                )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return LiveWorkflow(status="not_found")
            return _no_view(account_id, err)
        except Exception as err:  # informative only: the database answer stands on its own
            return _no_view(account_id, err)
        return LiveWorkflow(status="running", snapshot=WorkflowSnapshot.of(state.summary()))

    async def with_sync_error(self, limit: int) -> list[SyncErrorAccount] | None:
        """Running accounts showing a sync error (`BillingSyncError`, the Web UI's list of
        accounts that need an operator), up to `limit`; None when Temporal does not answer in
        time (the console says so rather than showing none)."""
        found: list[SyncErrorAccount] = []
        try:
            async with asyncio.timeout(2 * LIVE_VIEW_TIMEOUT.total_seconds()):
                async for execution in self._client.list_workflows(
                    SYNC_ERROR_QUERY, limit=limit, rpc_timeout=LIVE_VIEW_TIMEOUT
                ):
                    attributes = execution.typed_search_attributes
                    account_id = attributes.get(ACCOUNT_ID)
                    if account_id is not None:
                        found.append(
                            SyncErrorAccount(account_id, attributes.get(BILLING_SYNC_ERROR) or "")
                        )
        except Exception as err:  # informative only, as the live view
            logger.info("no list of accounts with a sync error: %r", err)
            return None
        return found

    # --- Stripe events -------------------------------------------------------------------

    async def send_stripe_event(
        self,
        account_id: str,
        event: StripeEventSignal,
        *,
        if_unconfirmed: str,
        if_not_sent: str = NOT_APPLIED,
    ) -> None:
        """Signal-with-start: once this returns Temporal has durably accepted the event. The
        caller says what its 503 tells: not confirmed (`if_unconfirmed`, it may still be
        delivered) or refused at the gate (`if_not_sent`)."""
        async with temporal_call(
            self._gate,
            SIGNAL_TIMEOUT_SECONDS,
            if_unconfirmed=if_unconfirmed,
            if_not_sent=if_not_sent,
        ):
            await signal_stripe_event(self._client, self._task_queue, account_id, event)

    def _self_serve(self) -> contextlib.AbstractAsyncContextManager[None]:
        return temporal_call(self._gate, UPDATE_TIMEOUT_SECONDS, if_unconfirmed=MAY_STILL_APPLY)


def _no_view(account_id: str, err: BaseException) -> LiveWorkflow:
    logger.info("no live workflow view for %s: %r", account_id, err)
    return LiveWorkflow(status="unavailable", error=str(err) or type(err).__name__)
