"""Route tests: the app on the test database (tests/api/conftest.py), and for the routes that
ask the account workflow something, `FakeAccountWorkflows` in place of `AccountWorkflows`
through FastAPI's dependency overrides: it records each call and answers, refuses or is
unavailable as a test says. What the real `AccountWorkflows` sends to Temporal is tested in
tests/api/test_account_workflows.py; the routes against the real workflow in tests/admin/
and tests/e2e/."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy.orm import Session, sessionmaker

from api.account_workflows import (
    ActionApplied,
    LiveWorkflow,
    PlanChanged,
    SyncErrorAccount,
    WorkflowSnapshot,
)
from api.deps import get_account_workflows
from api.edge import NOT_APPLIED, TemporalUnavailable
from api.main import create_app
from core.config import Settings
from core.stripe_client import make_stripe_client
from db import repository
from domain.catalog import default_catalog
from domain.entitlements import entitlements_for
from domain.lifecycle import Lifecycle
from domain.operator_actions import OperatorRequest
from domain.plan_changes import PlanChange
from ops.catalog_sync import apply_catalog_changes, plan_catalog_changes
from stripe_sim.server import SimulatorServer
from tests.api.conftest import RecordingTemporal
from workflows.account import StripeEventSignal

# A running workflow that knows another customer (cus_other) than the database and whose last
# Stripe sync failed: both warnings operators are shown.
DISAGREEING_LIVE_VIEW = LiveWorkflow(
    "running",
    WorkflowSnapshot(
        billing_state="active",
        plan="pro",
        entitlement_version=1,
        customer_id="cus_other",
        sync_error="Stripe refused: no such price",
    ),
)


@dataclass(frozen=True)
class Call:
    method: str
    account_id: str
    argument: Any = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeAccountWorkflows:
    """`AccountWorkflows` as a route sees it. `failure`, when set, is raised by every update
    (a `WorkflowUpdateFailedError` the workflow's refusal, a `TemporalUnavailable` an
    outage); `signals_unavailable` makes Stripe events go unconfirmed."""

    calls: list[Call] = field(default_factory=list)
    failure: BaseException | None = None
    signals_unavailable: bool = False
    plan_changed: PlanChanged = field(
        default_factory=lambda: PlanChanged(kind="upgrade", applied=True, open_invoice_url=None)
    )
    # What an operator action leaves, and what the live view shows.
    after_action: WorkflowSnapshot = field(
        default_factory=lambda: WorkflowSnapshot(
            billing_state="active",
            plan="pro",
            entitlement_version=2,
            customer_id=None,
            sync_error=None,
        )
    )
    live: LiveWorkflow = field(default_factory=lambda: LiveWorkflow(status="not_found"))
    # What the list of accounts with a sync error shows (None: Temporal did not answer).
    sync_errors: list[SyncErrorAccount] | None = field(default_factory=list)

    def _update(self, method: str, account_id: str, argument: Any = None, **options: Any) -> None:
        self.calls.append(Call(method, account_id, argument, options))
        if self.failure is not None:
            raise self.failure

    async def change_plan(self, account_id: str, change: PlanChange) -> PlanChanged:
        self._update("change_plan", account_id, change)
        return self.plan_changed

    async def cancel_plan_change(self, account_id: str) -> None:
        self._update("cancel_plan_change", account_id)

    async def cancel_subscription(self, account_id: str) -> None:
        self._update("cancel_subscription", account_id)

    async def resume_subscription(self, account_id: str) -> None:
        self._update("resume_subscription", account_id)

    async def operator_action(
        self, account_id: str, request: OperatorRequest, *, idempotency_key: str | None
    ) -> ActionApplied:
        self._update("operator_action", account_id, request, idempotency_key=idempotency_key)
        return ActionApplied(request.action, LiveWorkflow("running", self.after_action))

    async def live_view(self, account_id: str) -> LiveWorkflow:
        self.calls.append(Call("live_view", account_id))
        return self.live

    async def with_sync_error(self, limit: int) -> list[SyncErrorAccount] | None:
        self.calls.append(Call("with_sync_error", "", limit))
        return self.sync_errors

    async def send_stripe_event(
        self,
        account_id: str,
        event: StripeEventSignal,
        *,
        if_unconfirmed: str,
        if_not_sent: str = NOT_APPLIED,
    ) -> None:
        self.calls.append(Call("send_stripe_event", account_id, event))
        if self.signals_unavailable:
            raise TemporalUnavailable(if_unconfirmed)

    def called(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]


@pytest.fixture
def workflows() -> FakeAccountWorkflows:
    return FakeAccountWorkflows()


@asynccontextmanager
async def api_with(
    settings: Settings, workflows: FakeAccountWorkflows
) -> AsyncIterator[httpx.AsyncClient]:
    """The app, started, its account workflows replaced by `workflows`."""
    app = create_app(settings, temporal_client=RecordingTemporal())  # type: ignore[arg-type]
    app.dependency_overrides[get_account_workflows] = lambda: workflows
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
    ):
        yield api


def seed_account(
    sessions: sessionmaker[Session],
    account_id: str,
    lifecycle: Lifecycle,
    *,
    customer_id: str | None = None,
    version: int = 1,
) -> None:
    """The rows the account workflow would have written for `lifecycle`, without running it."""
    with sessions.begin() as session:
        if customer_id is not None:
            repository.link_customer(session, account_id, customer_id)
        repository.write_entitlements(
            session,
            account_id,
            version,
            entitlements_for(lifecycle, default_catalog()),
            repository.LIFECYCLE_JSON.dump_python(lifecycle, mode="json"),
            "seeded",
            [],
        )


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as sim:
        yield sim


@pytest.fixture
def simulated_settings(settings: Settings, simulator: SimulatorServer) -> Settings:
    """The app's settings, aimed at the simulator, whose catalog is published."""
    simulated = settings.model_copy(update={"stripe_simulator_url": simulator.url})
    client = make_stripe_client(simulated)
    apply_catalog_changes(
        client, default_catalog(), plan_catalog_changes(client, default_catalog())
    )
    return simulated


@pytest.fixture
def stripe_client(simulated_settings: Settings) -> stripe.StripeClient:
    return make_stripe_client(simulated_settings)
