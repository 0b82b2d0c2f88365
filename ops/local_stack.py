"""Everything on one machine for development: Temporal dev server + UI, the Stripe simulator
(unless a real Stripe key is set), migrations, the worker, the reconciliation schedules and the
API, in one command.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import uvicorn
from temporalio.client import Client

from api.main import create_app
from api.routes.console import PREFIX as CONSOLE_PREFIX
from core.config import Settings
from core.stripe_client import make_stripe_client
from core.temporal import client_metric_meter, connect, installed_binary
from db.engine import make_engine, make_session_factory, migrate
from domain.catalog import default_catalog
from ops.catalog_sync import apply_catalog_changes, plan_catalog_changes
from ops.mail_sink import MailSink
from ops.schedules import ensure_schedules
from ops.webhook_endpoint import ensure_webhook_endpoint
from worker import build_email_sender, build_worker, sending_emails, worker_connections
from workflows.account import SEARCH_ATTRIBUTES

log = logging.getLogger("dataface_billing.local")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
LOCAL_EMAIL_POLL_INTERVAL = timedelta(milliseconds=100)
_SEARCH_ATTRIBUTE_TYPES = {"KEYWORD": "Keyword", "DATETIME": "Datetime"}


@dataclass(frozen=True)
class LocalPorts:
    api: int = 8000
    temporal: int = 7233
    temporal_ui: int = 8233
    stripe_simulator: int = 12111


# How the dev server runs here, in the benchmark (bench/stack.py) and in the fault tests.
DEV_SERVER_TUNING = (
    # WAL is about 2.5x the default SQLite throughput for the dev server.
    "--sqlite-pragma",
    "journal_mode=wal",
    "--sqlite-pragma",
    "synchronous=normal",
    # One partition per task queue: the default four exist to spread a busy queue over
    # matching hosts, and on one dev server they only forward tasks and polls between
    # partitions (about a tenth of its CPU per event at 40 events/s; docs/benchmarks.md).
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
)


def search_attribute_flags() -> list[str]:
    """The account workflow's search attributes, registered as the dev server starts."""
    flags = []
    for key in SEARCH_ATTRIBUTES:
        kind = _SEARCH_ATTRIBUTE_TYPES[key.indexed_value_type.name]
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags


def start_temporal_dev_server(data_dir: Path, ports: LocalPorts) -> subprocess.Popen[bytes]:
    command = [
        str(installed_binary("temporal")),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(ports.temporal),
        "--ui-port",
        str(ports.temporal_ui),
        "--db-filename",
        str(data_dir / "temporal.db"),
        *DEV_SERVER_TUNING,
        "--log-level",
        "warn",
    ]
    command += search_attribute_flags()
    log_file = (data_dir / "temporal.log").open("ab")
    return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)


@contextmanager
def stop_signals_end_serving_only() -> Iterator[None]:
    """uvicorn stops the API on Ctrl-C (SIGINT) or SIGTERM, then raises the signal again for
    the handler before its own. Here that handler does nothing, so the stack then shuts down
    in order (the worker, the simulator, the mail sink, Temporal) instead of being cancelled
    half-way by asyncio's handler (the worker left talking to a stopped Temporal, forever) or
    killed by the default one (Temporal left running). The handlers are restored after: a
    second Ctrl-C interrupts the shutdown."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class AnnouncingServer(uvicorn.Server):
    """The API server, printing `announcement` once it listens: the last part of the stack
    to come up, so everything the announcement names answers by then."""

    def __init__(self, config: uvicorn.Config, announcement: str) -> None:
        super().__init__(config)
        self.announcement = announcement

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self.announcement, flush=True)


def startup_summary(settings: Settings, ports: LocalPorts, data_dir: Path) -> str:
    """What a developer needs once the stack is up, in one block: where each part answers,
    the credentials in use, where the emails go, and what to try first."""
    api = f"http://127.0.0.1:{ports.api}"
    stripe = (
        "real Stripe (STRIPE_SECRET_KEY)"
        if settings.stripe_secret_key
        else f"{settings.stripe_simulator_url}  (simulator; any sk_test_ key, state in "
        f"{stripe_state_file(data_dir)})"
    )
    rows = [
        ("API", f"{api}  (OpenAPI docs: {api}/docs)"),
        ("support console", f"{api}{CONSOLE_PREFIX}  (sign in with the admin token and a name)"),
        ("Temporal Web UI", f"http://127.0.0.1:{ports.temporal_ui}"),
        ("Stripe", stripe),
        ("app token", f"{settings.app_api_token}  (APP_API_TOKEN)"),
        ("admin token", f"{settings.admin_api_token}  (ADMIN_API_TOKEN)"),
        ("webhook secret", f"{settings.stripe_webhook_secret}  (STRIPE_WEBHOOK_SECRET)"),
        ("emails", f"{data_dir / 'mail'}/*.eml"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(
        [
            "",
            "Dataface Billing is up.",
            *(f"  {name.ljust(width)}  {value}" for name, value in rows),
            "Try it: docs/walkthrough.md, or",
            f"  curl -s -H 'Authorization: Bearer {settings.app_api_token}' "
            f"{api}/v1/accounts/acct_demo/entitlements",
            "",
        ]
    )


def stripe_state_file(data_dir: Path) -> Path:
    """Where the local Stripe keeps its customers, subscriptions and invoices."""
    return data_dir / "stripe_sim.pickle"


def prepare_data_dir(data_dir: Path, *, reset_stripe: bool) -> None:
    """Create `data_dir`; with `reset_stripe`, the local Stripe starts empty this time."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if reset_stripe:
        stripe_state_file(data_dir).unlink(missing_ok=True)


async def connect_when_up(settings: Settings, server: subprocess.Popen[bytes]) -> Client:
    for _ in range(300):
        if server.poll() is not None:
            raise RuntimeError("the Temporal dev server exited; see .data/temporal.log")
        try:
            return await connect(settings)
        except RuntimeError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"Temporal did not come up at {settings.temporal_address}")


def start_stripe_simulator(
    settings: Settings, ports: LocalPorts, data_dir: Path, stack: ExitStack
) -> Settings:
    """Run the simulator on its state in `data_dir` (kept across restarts, like Temporal's and
    the database's) and point a webhook endpoint at our gateway, signing with the configured
    `STRIPE_WEBHOOK_SECRET`; returns the settings that reach the simulator."""
    from stripe_sim.server import SimulatorServer

    simulator = stack.enter_context(
        SimulatorServer(port=ports.stripe_simulator, state_path=stripe_state_file(data_dir))
    )
    settings = settings.model_copy(update={"stripe_simulator_url": simulator.url})
    client = make_stripe_client(settings)
    # What production's deploy steps do, `catalog apply` and `webhook-endpoint ensure`, which
    # find what the last start made.
    apply_catalog_changes(
        client, default_catalog(), plan_catalog_changes(client, default_catalog())
    )
    endpoint = ensure_webhook_endpoint(client, f"http://127.0.0.1:{ports.api}/webhooks/stripe")
    # Stripe draws each endpoint's secret; locally the documented one is used instead, so a
    # hand-signed webhook (README) and the gateway agree without copying a secret around.
    httpx.post(
        f"{simulator.url}/_sim/webhook_endpoints/{endpoint.endpoint_id}/secret",
        json={"secret": settings.stripe_webhook_secret},
    ).raise_for_status()
    return settings


async def run_local_stack(settings: Settings, data_dir: Path, ports: LocalPorts) -> None:
    settings = settings.model_copy(update={"temporal_address": f"127.0.0.1:{ports.temporal}"})
    with ExitStack() as stack:
        server = start_temporal_dev_server(data_dir, ports)
        stack.callback(server.wait, 30)
        stack.callback(server.terminate)
        client = await connect_when_up(settings, server)

        migrate(settings.database_url)
        stack.enter_context(
            MailSink(data_dir / "mail", host=settings.smtp_host, port=settings.smtp_port)
        )
        if not settings.stripe_secret_key:
            settings = start_stripe_simulator(settings, ports, data_dir, stack)

        executor = stack.enter_context(
            ThreadPoolExecutor(max_workers=settings.worker_max_concurrent_activities)
        )
        sessions = make_session_factory(make_engine(settings.database_url))
        catalog = default_catalog()
        async with worker_connections(settings) as connections:
            email_sender = build_email_sender(
                settings,
                stripe_client=connections.stripe,
                sessions=sessions,
                catalog=catalog,
                mail=connections.mail,
                meter=client_metric_meter(client),
                # One process on a developer's machine: looking often costs next to nothing,
                # and an email is in .data/mail a moment after the step that queued it.
                poll_interval=LOCAL_EMAIL_POLL_INTERVAL,
            )
            worker = build_worker(
                client,
                settings,
                stripe_client=connections.stripe,
                sessions=sessions,
                catalog=catalog,
                executor=executor,
                mail=connections.mail,
            )
            await ensure_schedules(client, settings)
            log.info("reconciliation schedules set (Schedules tab of the Web UI)")
            api = AnnouncingServer(
                uvicorn.Config(
                    create_app(settings, temporal_client=client),
                    host="127.0.0.1",
                    port=ports.api,
                    # Its lines go through the handler `configure_logging` set up. No access
                    # log: the gateway logs each webhook with its account, and the access
                    # logger is uvicorn's, shared with the simulator's server in this process,
                    # which would log every Stripe call of the worker too.
                    log_config=None,
                    access_log=False,
                ),
                announcement=startup_summary(settings, ports, data_dir),
            )
            # The worker polls until the API stops (Ctrl-C).
            async with worker, sending_emails(email_sender):
                with stop_signals_end_serving_only():
                    await api.serve()
