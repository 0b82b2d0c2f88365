"""Runs the real account workflow and real database activities, with Stripe replaced by a dict.

Stripe is swapped by registering an activity under the same name, the way the Temporal samples
do; end-to-end tests against the Stripe simulator live elsewhere.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast
from uuid import uuid4

import stripe
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.account_store import AccountStoreActivities, WriteEntitlementsInput
from activities.notifications import NotificationActivities, OutboxSender
from activities.stripe_changes import CancellationInput, ChangeOutcome, ChangeSubscriptionInput
from activities.stripe_sync import FetchSubscriptionInput, SubscriptionFetch
from core.config import Settings
from core.smtp import SmtpSender
from core.temporal import client_metric_meter
from db import outbox, repository
from domain.catalog import default_catalog
from domain.lifecycle import SubscriptionSnapshot
from tests.conftest import wait_for
from tests.smtp_server import SmtpRecorder
from worker import sending_emails
from workflows.account import (
    AccountBillingWorkflow,
    AccountState,
    AccountWorkflowInput,
    StripeEventSignal,
    workflow_id_for,
)
from workflows.starter import signal_stripe_event

_event_ids = itertools.count(1)
# How soon the harness's email sender tries a failed email again (and looks for due ones).
EMAIL_RETRY = timedelta(milliseconds=50)


def subscription(
    customer_id: str,
    status: str = "active",
    *,
    plan: str = "pro",
    interval: str = "month",
    seats: int = 1,
    cancel: bool = False,
) -> SubscriptionSnapshot:
    period_end = datetime(2027, 1, 1, tzinfo=UTC)
    return SubscriptionSnapshot(
        subscription_id=f"sub_{customer_id}",
        customer_id=customer_id,
        status=status,
        plan=plan,
        interval=interval,
        seats=seats,
        current_period_end=period_end,
        trial_end=period_end if status == "trialing" else None,
        cancel_at=period_end if cancel else None,
    )


@dataclass
class FakeStripe:
    """Each customer's current subscription, as Stripe would answer a fetch right now."""

    subscriptions: dict[str, SubscriptionSnapshot | None] = field(default_factory=dict)
    broken_customers: set[str] = field(default_factory=set)
    # Live plan subscriptions beside the deciding one (made in the Dashboard), by customer.
    other_live_plans: dict[str, list[str]] = field(default_factory=dict)
    # The next this many fetches fail as if Stripe were unreachable.
    unreachable_for: int = 0
    fetches: int = 0
    # Runs after Stripe made a change and before it answers: a webhook racing the answer.
    before_change_answers: Callable[[], Awaitable[None]] | None = None

    async def raw_request_async(self, method: str, path: str, **params: Any) -> Any:
        """Enough of a StripeClient for the email activity: every customer has an address."""
        customer_id = path.removeprefix("/v1/customers/")
        assert (method, path) == ("get", f"/v1/customers/{customer_id}"), (method, path)
        return SimpleNamespace(data={"id": customer_id, "email": f"{customer_id}@example.com"})

    def _customer_of(self, subscription_id: str) -> str:
        [customer_id] = [
            customer_id
            for customer_id, sub in self.subscriptions.items()
            if sub is not None and sub.subscription_id == subscription_id
        ]
        return customer_id

    @activity.defn(name="set_cancel_at_period_end")
    async def set_cancel_at_period_end(self, request: CancellationInput) -> None:
        customer_id = self._customer_of(request.subscription_id)
        sub = self.subscriptions[customer_id]
        assert sub is not None
        cancel_at = sub.current_period_end if request.at_period_end else None
        self.subscriptions[customer_id] = replace(sub, cancel_at=cancel_at)
        if self.before_change_answers is not None:
            await self.before_change_answers()

    @activity.defn(name="change_subscription")
    def change_subscription(self, request: ChangeSubscriptionInput) -> ChangeOutcome:
        customer_id = self._customer_of(request.subscription_id)
        sub = self.subscriptions[customer_id]
        assert sub is not None
        purchase = request.purchase
        self.subscriptions[customer_id] = replace(
            sub, plan=purchase.plan, interval=purchase.interval, seats=purchase.seats
        )
        return ChangeOutcome(applied=True)

    @activity.defn(name="fetch_current_subscription")
    def fetch_current_subscription(self, request: FetchSubscriptionInput) -> SubscriptionFetch:
        self.fetches += 1
        if self.unreachable_for > 0:
            self.unreachable_for -= 1
            raise ConnectionError("Stripe is unreachable")
        if request.customer_id in self.broken_customers:
            raise ApplicationError(
                "price is not in the catalog", type="CatalogError", non_retryable=True
            )
        sub = self.subscriptions.get(request.customer_id)
        interval = sub.interval if sub else None
        catalog = default_catalog()
        return SubscriptionFetch(
            subscription=sub,
            grace_days=catalog.grace_days_for(interval),
            dunning=catalog.dunning_for(interval),
            other_live_plan_subscriptions=self.other_live_plans.get(request.customer_id, []),
        )


@dataclass
class EntitlementWrites:
    """The real entitlement write, which a test can fail as if the database were down."""

    store: AccountStoreActivities
    database_down: bool = False
    # Each step of the account begins with one local attempt (then the regular activity).
    local_attempts: int = 0
    # While set, a write waits until it is released (`open`): a test holds a handler there.
    held: threading.Event | None = None
    waiting: threading.Event = field(default_factory=threading.Event)

    @activity.defn(name="write_entitlements")
    def write_entitlements(self, request: WriteEntitlementsInput) -> bool:
        if activity.info().is_local:
            self.local_attempts += 1
        if self.held is not None:
            self.waiting.set()
            self.held.wait(timeout=30)
        if self.database_down:
            raise ConnectionError("the database is down")
        return self.store.write_entitlements(request)


@dataclass
class Harness:
    env: WorkflowEnvironment
    task_queue: str
    stripe: FakeStripe
    sessions: sessionmaker[Session]
    smtp: SmtpRecorder
    writes: EntitlementWrites
    accounts: set[str] = field(default_factory=set)

    @property
    def client(self) -> Client:
        return self.env.client

    def new_account(self) -> tuple[str, str]:
        suffix = uuid4().hex[:10]
        return f"acct_{suffix}", f"cus_{suffix}"

    async def subscribe(self, status: str = "active", **kwargs: Any) -> tuple[str, str]:
        """A new account whose checkout completed on a subscription in `status`."""
        account_id, customer_id = self.new_account()
        self.stripe.subscriptions[customer_id] = subscription(customer_id, status, **kwargs)
        await self.send(account_id, customer_id, "checkout.session.completed")
        await self.wait_for_entitlements(account_id, state=status, version=1)
        return account_id, customer_id

    async def send(
        self,
        account_id: str,
        customer_id: str | None,
        event_type: str = "customer.subscription.updated",
        event_id: str | None = None,
    ) -> str:
        event_id = event_id or f"evt_{next(_event_ids)}_{uuid4().hex[:6]}"
        event = StripeEventSignal(
            event_id=event_id, event_type=event_type, created=1, customer_id=customer_id
        )
        self.accounts.add(account_id)
        await signal_stripe_event(self.client, self.task_queue, account_id, event)
        return event_id

    async def start(self, account_id: str, **input: Any) -> WorkflowHandle:
        self.accounts.add(account_id)
        return await self.client.start_workflow(
            AccountBillingWorkflow.run,
            AccountWorkflowInput(account_id=account_id, **input),
            id=workflow_id_for(account_id),
            task_queue=self.task_queue,
        )

    async def terminate_when_idle(self, account_id: str, reason: str) -> None:
        """Terminate once no activity or workflow task is in flight: the time-skipping test
        server holds time still while one of a terminated run is outstanding."""

        async def idle() -> bool:
            raw = (await self.handle(account_id).describe()).raw_description
            return not raw.pending_activities and not raw.HasField("pending_workflow_task")

        await wait_for(idle, what=f"{account_id} to have no activity in flight")
        await self.handle(account_id).terminate(reason=reason)

    async def terminate_all(self) -> None:
        """Stop this test's workflows: the time-skipping server shared by all tests cannot
        skip time while workflows whose worker is gone still have timers to fire."""
        for account_id in self.accounts:
            with contextlib.suppress(RPCError):  # already closed
                await self.handle(account_id).terminate(reason="test finished")

    def handle(self, account_id: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(workflow_id_for(account_id))

    async def state(self, account_id: str) -> AccountState:
        return await self.handle(account_id).query(AccountBillingWorkflow.state)

    def entitlements(self, account_id: str) -> repository.EntitlementRecord | None:
        with self.sessions() as session:
            return repository.read_entitlements(session, account_id)

    async def wait_for_entitlements(
        self, account_id: str, *, state: str, version: int | None = None
    ) -> repository.EntitlementRecord:
        def probe() -> repository.EntitlementRecord | None:
            record = self.entitlements(account_id)
            if record is None or record.billing_state != state:
                return None
            if version is not None and record.version != version:
                return None
            return record

        return await wait_for(probe, what=f"{account_id} in state {state} (version {version})")

    async def scheduled_activities(self, account_id: str) -> list[str]:
        """Types of the regular activities the account's history scheduled, in order (local
        activities are markers, not scheduled tasks)."""
        history = await self.handle(account_id).fetch_history()
        return [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]

    async def state_if_answered(self, account_id: str) -> AccountState | None:
        """The state, or None when the query was missed (a run just continued as new can miss
        one): for probes that ask again."""
        try:
            return await self.handle(account_id).query(
                AccountBillingWorkflow.state, rpc_timeout=timedelta(seconds=2)
            )
        except RPCError:
            return None

    async def wait_until_handled(self, account_id: str, event_id: str) -> AccountState:
        """`event_id` and, since signals are handled in order, every earlier event is done."""

        async def probe() -> AccountState | None:
            state = await self.state_if_answered(account_id)
            return state if state is not None and event_id in state.seen_event_ids else None

        return await wait_for(probe, what=f"{account_id} to handle {event_id}")

    async def skip(self, duration: timedelta) -> None:
        await self.env.sleep(duration)

    def emails_to(self, customer_id: str) -> list[str]:
        """Subjects of the emails the SMTP server received for the customer, in order."""
        address = f"{customer_id}@example.com"
        return [m.message["Subject"] for m in self.smtp.messages if address in m.rcpt_tos]

    def email_kinds(self, account_id: str) -> list[str]:
        """Kinds of the emails sent for the account, in the order the outbox recorded them."""
        with self.sessions() as session:
            deliveries = outbox.deliveries_for_account(session, account_id)
        return [
            d.kind for d in sorted(deliveries, key=lambda d: d.created_at) if d.status == "sent"
        ]


def quick_email_sender(
    emails: NotificationActivities, sessions: sessionmaker[Session], client: Client
) -> OutboxSender:
    """The email sender for tests: its retries run in real time while the test server skips
    the workflows' time, so they are kept short."""
    return OutboxSender(
        emails,
        sessions,
        client_metric_meter(client),
        poll_interval=EMAIL_RETRY,
        first_retry=EMAIL_RETRY,
        max_retry=EMAIL_RETRY * 4,
    )


@asynccontextmanager
async def running_harness(
    env: WorkflowEnvironment, sessions: sessionmaker[Session]
) -> AsyncIterator[Harness]:
    fake = FakeStripe()
    task_queue = f"billing-test-{uuid4()}"
    smtp = SmtpRecorder()
    settings = Settings(_env_file=None, smtp_port=smtp.port, task_queue=task_queue)
    mail = SmtpSender(settings)
    emails = NotificationActivities(
        sessions, cast(stripe.StripeClient, fake), default_catalog(), settings, mail
    )
    sender = quick_email_sender(emails, sessions, env.client)
    store = AccountStoreActivities(sessions, default_catalog())
    writes = EntitlementWrites(store)
    with smtp, ThreadPoolExecutor(max_workers=8) as executor:
        # The default, strict sandbox (production runs without it, see worker.py): a
        # non-deterministic call in workflow code fails these tests before it ships.
        async with (
            Worker(
                env.client,
                task_queue=task_queue,
                workflows=[AccountBillingWorkflow],
                activities=[
                    fake.fetch_current_subscription,
                    fake.set_cancel_at_period_end,
                    fake.change_subscription,
                    store.load_account_state,
                    store.link_customer,
                    writes.write_entitlements,
                    store.queue_emails,
                    store.record_stripe_events,
                    store.record_operator_action,
                    emails.send_email,
                ],
                activity_executor=executor,
            ),
            sending_emails(sender),
        ):
            harness = Harness(
                env=env,
                task_queue=task_queue,
                stripe=fake,
                sessions=sessions,
                smtp=smtp,
                writes=writes,
            )
            try:
                yield harness
            finally:
                await harness.terminate_all()
                await mail.close()
