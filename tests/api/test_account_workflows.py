"""`AccountWorkflows`: what each method sends to Temporal (the workflow's update, by reference,
with its argument, as update-with-start on the account's workflow id), and what it raises
when Temporal refuses, is out of reach or is known to be down. Against a recording stand-in
for the client; the same calls against the real workflow run in tests/admin and tests/e2e.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio.client import (
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.account_workflows import (
    AccountWorkflows,
    ActionApplied,
    LiveWorkflow,
    PlanChanged,
    WorkflowSnapshot,
)
from api.edge import MAY_STILL_APPLY, NOT_APPLIED, TemporalGate, TemporalUnavailable
from domain.catalog import default_catalog
from domain.lifecycle import BillingState, Lifecycle
from domain.operator_actions import OperatorRequest
from domain.plan_changes import ChangeKind, PlanChange, purchase_for
from tests.api.routes.conftest import FakeAccountWorkflows
from tests.workflows.harness import subscription
from workflows.account import (
    AccountBillingWorkflow,
    AccountState,
    CancelRequest,
    KeepPlanRequest,
    OperatorResult,
    PlanChangeResult,
    ResumeRequest,
    StripeEventSignal,
    workflow_id_for,
)

TASK_QUEUE = "account-workflows-tests"
ACCOUNT = "acct_facade"


@dataclass
class Sent:
    update: Any
    args: list[Any]
    workflow_id: str
    task_queue: str
    conflict_policy: WorkflowIDConflictPolicy
    update_id: str | None


@dataclass
class Description:
    status: WorkflowExecutionStatus | None


@dataclass
class Handle:
    status: WorkflowExecutionStatus | None = WorkflowExecutionStatus.RUNNING
    failure: BaseException | None = None
    state: AccountState = field(default_factory=AccountState)

    async def describe(self, **_: Any) -> Description:
        if self.failure is not None:
            raise self.failure
        return Description(self.status)

    async def query(self, query: Any, **_: Any) -> AccountState:
        assert query is AccountBillingWorkflow.state
        return self.state


@dataclass
class RecordingClient:
    """Stands in for `temporalio.client.Client`: records update-with-start and
    signal-with-start calls and answers `result`, or raises `failure`."""

    result: Any = None
    failure: BaseException | None = None
    sent: list[Sent] = field(default_factory=list)
    signals: list[dict[str, Any]] = field(default_factory=list)
    handle: Handle = field(default_factory=Handle)

    async def execute_update_with_start_workflow(
        self,
        update: Any,
        *,
        args: list[Any],
        start_workflow_operation: WithStartWorkflowOperation[Any, Any],
        id: str | None,
    ) -> Any:
        start = start_workflow_operation._start_workflow_input
        self.sent.append(
            Sent(update, args, start.id, start.task_queue, start.id_conflict_policy, id)
        )
        if self.failure is not None:
            raise self.failure
        return self.result

    async def start_workflow(self, workflow: Any, arg: Any, **options: Any) -> None:
        if self.failure is not None:
            raise self.failure
        self.signals.append({"workflow": workflow, "arg": arg, **options})

    def get_workflow_handle(self, workflow_id: str) -> Handle:
        assert workflow_id == workflow_id_for(ACCOUNT)
        return self.handle


Facade = Callable[[RecordingClient], AccountWorkflows]


@pytest.fixture
async def facade() -> AsyncIterator[Facade]:
    """`facade(client)`: AccountWorkflows on `client`, its gate's probe stopped after the test."""
    gates: list[TemporalGate] = []

    def make(client: RecordingClient) -> AccountWorkflows:
        gates.append(TemporalGate(client))  # type: ignore[arg-type]
        return AccountWorkflows(client, TASK_QUEUE, gates[-1])  # type: ignore[arg-type]

    yield make
    for gate in gates:
        await gate.close()


def paying_state(customer: str = "cus_facade") -> AccountState:
    lifecycle = Lifecycle(state=BillingState.ACTIVE, subscription=subscription(customer))
    return AccountState(customer_id=customer, lifecycle=lifecycle, entitlement_version=3)


def assert_update_with_start(sent: Sent, update: Any, args: list[Any]) -> None:
    assert sent.update is update
    assert sent.args == args
    assert (sent.workflow_id, sent.task_queue) == (workflow_id_for(ACCOUNT), TASK_QUEUE)
    assert sent.conflict_policy is WorkflowIDConflictPolicy.USE_EXISTING


async def test_change_plan_sends_the_change_and_answers_its_outcome(facade: Facade) -> None:
    change = PlanChange(ChangeKind.UPGRADE, purchase_for(default_catalog(), "team", "month", 2))
    client = RecordingClient(
        result=PlanChangeResult(
            kind="upgrade",
            applied=True,
            account=paying_state().summary(),
            open_invoice_url="https://i",
        )
    )

    outcome = await facade(client).change_plan(ACCOUNT, change)

    assert outcome == PlanChanged(kind="upgrade", applied=True, open_invoice_url="https://i")
    [sent] = client.sent
    assert_update_with_start(sent, AccountBillingWorkflow.change_plan, [change])
    assert sent.update_id is None


@pytest.mark.parametrize(
    ("method", "update", "args"),
    [
        ("cancel_plan_change", AccountBillingWorkflow.cancel_plan_change, [KeepPlanRequest()]),
        (
            "cancel_subscription",
            AccountBillingWorkflow.cancel_subscription,
            [CancelRequest(at_period_end=True)],
        ),
        ("resume_subscription", AccountBillingWorkflow.resume_subscription, [ResumeRequest()]),
    ],
)
async def test_each_self_serve_update_is_sent_by_reference(
    method: str, update: Any, args: list[Any], facade: Facade
) -> None:
    client = RecordingClient(result=paying_state().summary())

    assert await getattr(facade(client), method)(ACCOUNT) is None

    [sent] = client.sent
    assert_update_with_start(sent, update, args)


async def test_an_operator_action_carries_its_idempotency_key_as_the_update_id(
    facade: Facade,
) -> None:
    request = OperatorRequest(action="lock", actor="ops@dataface.test", reason="fraud check")
    client = RecordingClient(result=OperatorResult(action="lock", account=paying_state().summary()))
    workflows = facade(client)

    keyed = await workflows.operator_action(ACCOUNT, request, idempotency_key="ticket-42")
    await workflows.operator_action(ACCOUNT, request, idempotency_key=None)

    assert keyed == ActionApplied(
        "lock",
        LiveWorkflow(
            "running",
            WorkflowSnapshot(
                billing_state="active",
                plan="pro",
                entitlement_version=3,
                customer_id="cus_facade",
                sync_error=None,
            ),
        ),
    )
    first, second = client.sent
    assert_update_with_start(first, AccountBillingWorkflow.operator_action, [request])
    assert (first.update_id, second.update_id) == ("admin-lock-ticket-42", None)


async def test_a_refusal_passes_through_untouched(facade: Facade) -> None:
    refusal = WorkflowUpdateFailedError(ApplicationError("no plan change is scheduled"))
    client = RecordingClient(failure=refusal)

    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await facade(client).cancel_plan_change(ACCOUNT)

    assert raised.value is refusal


async def test_an_unreachable_server_may_still_apply_and_then_the_gate_answers_at_once(
    facade: Facade,
) -> None:
    client = RecordingClient(failure=RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b""))
    workflows = facade(client)

    with pytest.raises(TemporalUnavailable) as first:
        await workflows.resume_subscription(ACCOUNT)
    with pytest.raises(TemporalUnavailable) as second:
        await workflows.resume_subscription(ACCOUNT)

    # The first may have reached the server; the second was never sent.
    assert (first.value.reason, second.value.reason) == (MAY_STILL_APPLY, NOT_APPLIED)
    assert len(client.sent) == 1


async def test_a_stripe_event_is_signalled_with_start_and_says_what_its_caller_asks(
    facade: Facade,
) -> None:
    event = StripeEventSignal(
        event_id="evt_1", event_type="invoice.paid", created=1, customer_id="cus_1"
    )
    client = RecordingClient()
    workflows = facade(client)

    await workflows.send_stripe_event(ACCOUNT, event, if_unconfirmed="the webhook's own words")

    [signal] = client.signals
    assert signal["workflow"] is AccountBillingWorkflow.run
    assert (signal["id"], signal["task_queue"]) == (workflow_id_for(ACCOUNT), TASK_QUEUE)
    assert (signal["start_signal"], signal["start_signal_args"]) == ("stripe_event", [event])

    client.failure = TimeoutError()
    with pytest.raises(TemporalUnavailable) as raised:
        await workflows.send_stripe_event(ACCOUNT, event, if_unconfirmed="the webhook's own words")
    assert raised.value.reason == "the webhook's own words"


@pytest.mark.parametrize(
    ("handle", "expected"),
    [
        pytest.param(
            Handle(state=paying_state("cus_live")),
            LiveWorkflow(
                "running",
                WorkflowSnapshot(
                    billing_state="active",
                    plan="pro",
                    entitlement_version=3,
                    customer_id="cus_live",
                    sync_error=None,
                ),
            ),
            id="running",
        ),
        pytest.param(
            Handle(status=WorkflowExecutionStatus.TERMINATED),
            LiveWorkflow("terminated"),
            id="terminated",
        ),
        pytest.param(
            Handle(failure=RPCError("no such workflow", RPCStatusCode.NOT_FOUND, b"")),
            LiveWorkflow("not_found"),
            id="never-started",
        ),
        pytest.param(
            Handle(failure=RuntimeError("Failed client connect")),
            LiveWorkflow("unavailable", error="Failed client connect"),
            id="unreachable",
        ),
    ],
)
async def test_the_live_view_says_what_temporal_knows_and_never_raises(
    handle: Handle, expected: LiveWorkflow, facade: Facade
) -> None:
    client = RecordingClient(handle=handle)

    assert await facade(client).live_view(ACCOUNT) == expected


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if inspect.iscoroutinefunction(member) and not name.startswith("_")
    }


def test_the_routes_fake_has_the_real_methods_with_the_same_signatures() -> None:
    """The route tests' stand-in cannot drift from what it stands in for."""
    assert public_methods(FakeAccountWorkflows) == public_methods(AccountWorkflows)
