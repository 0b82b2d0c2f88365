"""The service as separate processes, for faults that need real processes: the Temporal dev
server (from the wheel, on a database file, so it can be stopped and started again) and the
worker (`python -m worker`, configured by environment variables, so it can be SIGKILLed).

The Stripe simulator, the SMTP recorder and the API stay in this process; the worker reaches
Stripe through a `TcpProxy`, so a test can hold its Stripe calls in flight.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import stripe
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from core.payloads import DATA_CONVERTER
from core.stripe_client import make_stripe_client
from core.temporal import installed_binary, register_search_attributes
from domain.catalog import default_catalog
from ops.catalog_sync import apply_catalog_changes, plan_catalog_changes
from ops.local_stack import DEV_SERVER_TUNING
from stripe_sim.server import SimulatorServer
from stripe_sim.settings import SimulatorSettings
from tests.child_process import ChildProcess
from tests.conftest import wait_for
from tests.e2e.stack import APP_TOKEN, ApiServer
from tests.faults.checks import Accounts, assert_converged, wall_clock
from tests.faults.tcp_proxy import TcpProxy
from tests.smtp_server import SmtpRecorder, free_port
from worker import build_email_sender, sending_emails, worker_connections
from workflows.account import SEARCH_ATTRIBUTES

WORKER_READY_LINE = "worker polling task queue"
CHECKOUT = Path(__file__).resolve().parents[2]


class DevServer:
    """`temporal server start-dev` on a fixed port and database file: stop it, start it
    again, and it comes back with every workflow it had."""

    def __init__(self, database_file: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._database_file = database_file
        self.env: WorkflowEnvironment | None = None

    @property
    def client(self) -> Client:
        assert self.env is not None, "the dev server is stopped"
        return self.env.client

    async def start(self) -> None:
        self.env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(installed_binary("temporal")),
            data_converter=DATA_CONVERTER,
            port=self.port,
            dev_server_database_filename=str(self._database_file),
            dev_server_extra_args=list(DEV_SERVER_TUNING),
        )
        await register_search_attributes(self.env.client, SEARCH_ATTRIBUTES, "default")

    async def stop(self) -> None:
        if self.env is not None:
            await self.env.shutdown()
            self.env = None


class WorkerProcess(ChildProcess):
    """The production worker in its own process; its output goes to `log_file`."""

    label = "the worker"

    def __init__(self, settings: Settings, log_file: Path) -> None:
        self._environment = _worker_environment(settings)
        self._log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    async def start(self) -> None:
        self._spawn()

        def polling() -> bool:
            assert self._process is not None
            if self._process.poll() is not None:
                raise AssertionError(f"the worker exited: {self.log()[-3000:]}")
            return WORKER_READY_LINE in self.log()[self._log_offset :]

        await wait_for(polling, within=30, what="the worker process to poll")

    def _spawn(self) -> None:
        assert self._process is None, "already running"
        self._log_offset = self._log_file.stat().st_size if self._log_file.exists() else 0
        with self._log_file.open("ab") as log:
            # cwd: the temporary folder, so a developer's `.env` cannot leak in.
            self._process = subprocess.Popen(
                [sys.executable, "-m", "worker"],
                env=self._environment,
                cwd=self._log_file.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        return self._log_file.read_text(errors="replace") if self._log_file.exists() else ""


def service_environment() -> dict[str, str]:
    """The environment for a process of the service: this one's without any of the service's
    settings (the caller sets those), importing this checkout's code (not whatever the venv's
    editable install points at: a worktree's tests would run another tree's worker), output
    unbuffered."""
    ours = {name.upper() for name in Settings.model_fields}
    environment = {k: v for k, v in os.environ.items() if k.upper() not in ours}
    environment["PYTHONPATH"] = str(CHECKOUT)
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def _worker_environment(settings: Settings) -> dict[str, str]:
    """The worker's settings on `service_environment`."""
    environment = service_environment()
    environment.update(
        DATABASE_URL=settings.database_url,
        TEMPORAL_ADDRESS=settings.temporal_address,
        TASK_QUEUE=settings.task_queue,
        STRIPE_SIMULATOR_URL=settings.stripe_simulator_url,
        SMTP_HOST=settings.smtp_host,
        SMTP_PORT=str(settings.smtp_port),
    )
    return environment


@dataclass
class ProcessStack:
    temporal: DevServer
    worker: WorkerProcess
    sim: SimulatorServer
    # The worker's way to Stripe.
    stripe_proxy: TcpProxy
    stripe: stripe.StripeClient
    smtp: SmtpRecorder
    api: httpx.AsyncClient
    settings: Settings
    sessions: sessionmaker[Session]

    async def deliveries_done(self, within: float = 60) -> None:
        await asyncio.to_thread(self.sim.wait_idle, within)

    async def entitlements(self, account_id: str) -> httpx.Response:
        return await self.api.get(
            f"/v1/accounts/{account_id}/entitlements",
            headers={"Authorization": f"Bearer {APP_TOKEN}"},
        )

    async def assert_converged(self, accounts: Accounts, within: float = 90) -> None:
        await self.deliveries_done()

        await assert_converged(
            self.sessions,
            self.stripe,
            lambda: self.smtp.messages,
            accounts,
            wall_clock,
            within=within,
        )


@asynccontextmanager
async def running_processes(
    tmp_path: Path,
    database_url: str,
    sessions: sessionmaker[Session],
    simulator: SimulatorSettings,
) -> AsyncIterator[ProcessStack]:
    async with AsyncExitStack() as stack:
        sim = stack.enter_context(SimulatorServer(settings=simulator))
        smtp = stack.enter_context(SmtpRecorder())
        stripe_proxy = stack.enter_context(TcpProxy(target_port=sim.port))
        temporal = DevServer(tmp_path / "temporal.db")
        await temporal.start()
        stack.push_async_callback(temporal.stop)

        settings = Settings(
            _env_file=None,
            database_url=database_url,
            temporal_address=temporal.address,
            task_queue="billing-faults",
            smtp_port=smtp.port,
            stripe_simulator_url=sim.url,
            app_api_token=APP_TOKEN,
        )
        stripe_client = make_stripe_client(settings)
        catalog = default_catalog()
        apply_catalog_changes(stripe_client, catalog, plan_catalog_changes(stripe_client, catalog))

        api_server = ApiServer(temporal.address, "default")
        endpoint = stripe_client.v1.webhook_endpoints.create(
            params={"url": f"{api_server.url}/webhooks/stripe", "enabled_events": ["*"]}
        )
        settings = settings.model_copy(update={"stripe_webhook_secret": endpoint.secret})
        api_server.start(settings)
        stack.callback(api_server.stop)

        worker = WorkerProcess(
            settings.model_copy(
                update={"stripe_simulator_url": f"http://127.0.0.1:{stripe_proxy.port}"}
            ),
            tmp_path / "worker.log",
        )
        await worker.start()
        stack.callback(worker.stop)
        # The emails the worker queues: the sender's own process is not what these faults
        # are about, so it runs here, beside the API.
        connections = await stack.enter_async_context(worker_connections(settings))
        sender = build_email_sender(
            settings,
            stripe_client=connections.stripe,
            sessions=sessions,
            catalog=catalog,
            mail=connections.mail,
            meter=MetricMeter.noop,
        )
        await stack.enter_async_context(sending_emails(sender))
        api = await stack.enter_async_context(httpx.AsyncClient(base_url=api_server.url))
        yield ProcessStack(
            temporal, worker, sim, stripe_proxy, stripe_client, smtp, api, settings, sessions
        )
