"""The Temporal worker: the account workflow and every activity it calls."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import stripe
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.account_store import AccountStoreActivities
from activities.notifications import EMAIL_POLL_INTERVAL, NotificationActivities, OutboxSender
from activities.reconciliation import ReconciliationActivities
from activities.stripe_changes import StripeChangeActivities
from activities.stripe_sync import StripeSyncActivities
from core.config import Settings, get_settings
from core.logging import configure_logging
from core.smtp import SmtpSender
from core.stripe_client import make_stripe_client
from core.temporal import connect, make_runtime
from db.engine import make_engine, make_session_factory
from domain.catalog import Catalog, default_catalog
from workflows.account import AccountBillingWorkflow
from workflows.reconciliation import EventsReconciliationWorkflow, SubscriptionSweepWorkflow
from workflows.starter import AccountWorkflowStarter

# Production runs the workflow code without the sandbox: per activation, entering it cost a
# fifth of the worker's CPU (bench/, docs/benchmarks.md). Determinism is still checked, where
# a mistake is cheap: every workflow test runs the same code in the strict default sandbox
# (tests/workflows/harness.py), and recorded histories must replay (tests/workflows/test_replay.py).
WORKFLOW_RUNNER = UnsandboxedWorkflowRunner()

# How much lower than the worker an email sender runs (`nice`): emails can wait a little,
# entitlements should not.
EMAIL_SENDER_NICENESS = 10

# Young objects get this much room before a collection (CPython's default: 700), so that what
# one event allocates mostly dies young instead of being promoted towards full collections.
YOUNG_GENERATION_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """A worker caching 1,000 accounts' workflows tracks about 300,000 objects; a full
    collection over them stopped every account for about 200 ms, every 13 s at 50 events/s
    (docs/benchmarks.md, fix 28). What lives as long as the process (modules, classes) is
    set aside once, and young objects get more room: full collections become rare and scan
    half as much."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)


def build_email_sender(
    settings: Settings,
    *,
    stripe_client: stripe.StripeClient,
    sessions: sessionmaker[Session],
    catalog: Catalog,
    mail: SmtpSender,
    meter: MetricMeter,
    poll_interval: timedelta = EMAIL_POLL_INTERVAL,
) -> OutboxSender:
    """The sender of the queued emails, counting its deliveries on `meter`."""
    return OutboxSender(
        NotificationActivities(sessions, stripe_client, catalog, settings, mail),
        sessions,
        meter,
        poll_interval=poll_interval,
    )


@asynccontextmanager
async def sending_emails(sender: OutboxSender) -> AsyncIterator[None]:
    """Run the email sender for the duration of the block (in the process of the one-command
    local stack and of tests; deployed, it is a process of its own: `run_email_sender`)."""
    running = asyncio.create_task(sender.run())
    try:
        yield
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


def build_activities(
    client: Client,
    settings: Settings,
    *,
    stripe_client: stripe.StripeClient,
    sessions: sessionmaker[Session],
    catalog: Catalog,
    mail: SmtpSender,
) -> list[Callable[..., Any]]:
    """Every activity the worker serves, built on the given connections (tests wrap them by
    name, e.g. the seeded simulation's fault injection)."""
    stripe_sync = StripeSyncActivities(stripe_client, catalog)
    stripe_changes = StripeChangeActivities(stripe_client)
    store = AccountStoreActivities(sessions, catalog)
    notifications = NotificationActivities(sessions, stripe_client, catalog, settings, mail)
    reconciliation = ReconciliationActivities(
        AccountWorkflowStarter(client, settings.task_queue), stripe_client, sessions, catalog
    )
    return [
        stripe_sync.fetch_current_subscription,
        stripe_changes.change_subscription,
        stripe_changes.set_cancel_at_period_end,
        stripe_changes.cancel_subscription_now,
        stripe_changes.resume_paused_subscription,
        stripe_changes.pay_open_invoice,
        store.load_account_state,
        store.link_customer,
        store.write_entitlements,
        store.queue_emails,
        store.record_stripe_events,
        store.record_operator_action,
        notifications.send_email,
        reconciliation.reconcile_events_page,
        reconciliation.find_drifted_accounts,
        reconciliation.resync_account,
    ]


def build_worker(
    client: Client,
    settings: Settings,
    *,
    stripe_client: stripe.StripeClient,
    sessions: sessionmaker[Session],
    catalog: Catalog,
    executor: ThreadPoolExecutor,
    mail: SmtpSender,
) -> Worker:
    activities = build_activities(
        client,
        settings,
        stripe_client=stripe_client,
        sessions=sessions,
        catalog=catalog,
        mail=mail,
    )
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[AccountBillingWorkflow, EventsReconciliationWorkflow, SubscriptionSweepWorkflow],
        activities=activities,
        workflow_runner=WORKFLOW_RUNNER,
        activity_executor=executor,
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
        max_cached_workflows=settings.worker_max_cached_workflows,
    )


@dataclass(frozen=True)
class WorkerConnections:
    stripe: stripe.StripeClient
    mail: SmtpSender


@asynccontextmanager
async def worker_connections(settings: Settings) -> AsyncIterator[WorkerConnections]:
    """The clients whose connections outlive one activity: Stripe's (aiohttp for the async
    reads) and the SMTP sender's; both closed on the way out."""
    stripe_async_http = stripe.AIOHTTPClient()
    mail = SmtpSender(settings)
    try:
        yield WorkerConnections(make_stripe_client(settings, stripe_async_http), mail)
    finally:
        await mail.close()
        await stripe_async_http.close_async()


async def run_worker(settings: Settings) -> None:
    """A worker process's whole life (`worker.py`, `cli.py worker`)."""
    tune_garbage_collector()
    client = await connect(settings, runtime=metrics_runtime(settings))
    sessions = make_session_factory(make_engine(settings.database_url))
    async with worker_connections(settings) as connections:
        with ThreadPoolExecutor(max_workers=settings.worker_max_concurrent_activities) as executor:
            worker = build_worker(
                client,
                settings,
                stripe_client=connections.stripe,
                sessions=sessions,
                catalog=default_catalog(),
                executor=executor,
                mail=connections.mail,
            )
            logging.getLogger(__name__).info("worker polling task queue %s", settings.task_queue)
            await worker.run()


async def run_email_sender(settings: Settings) -> None:
    """An email sender process's whole life (`cli.py email-sender`): it sends what the
    workers queued, beside them rather than in them, so that a worker's CPU goes to the
    accounts' entitlements first (docs/benchmarks.md, session 15). Several may run: they
    claim different emails."""
    # On a shared machine the accounts come first: the sender takes the CPU the worker and
    # Temporal leave, and its emails wait while they are busy (docs/benchmarks.md).
    os.nice(EMAIL_SENDER_NICENESS)
    runtime = metrics_runtime(settings) or Runtime.default()
    sessions = make_session_factory(make_engine(settings.database_url))
    async with worker_connections(settings) as connections:
        sender = build_email_sender(
            settings,
            stripe_client=connections.stripe,
            sessions=sessions,
            catalog=default_catalog(),
            mail=connections.mail,
            meter=runtime.metric_meter,
        )
        logging.getLogger(__name__).info("email sender polling the outbox")
        await sender.run()


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime serving Prometheus metrics on METRICS_HOST:METRICS_PORT: a worker's
    SDK metrics (task slots, poll and schedule-to-start latencies, failures), an email
    sender's deliveries (through the runtime's metric meter); None: the process's shared
    runtime, without metrics."""
    if settings.metrics_port is None:
        return None
    # A socket address: an IPv6 host goes in brackets.
    host = settings.metrics_host
    bind_host = f"[{host}]" if host.version == 6 else str(host)
    return make_runtime(PrometheusConfig(bind_address=f"{bind_host}:{settings.metrics_port}"))


if __name__ == "__main__":
    configure_logging(get_settings())
    asyncio.run(run_worker(get_settings()))
