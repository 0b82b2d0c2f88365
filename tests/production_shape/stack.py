"""The compose stack as local processes: the billing services run as `dataface-billing
<command>` (`python -m cli`, the image's entrypoint) with compose's environment, two APIs and
two workers, in front of the stand-ins `compose.INFRASTRUCTURE` names.

    PostgreSQL (this run's database) ◀── TcpProxy (cut = the database refuses connections)
    Temporal dev server (a process on a database file: SIGKILL, start again)
    Stripe simulator ──▶ WebhookBalancer ──▶ API 1 / API 2 (round robin, or every delivery
                                              to both in shuffled order)
    SMTP recorder (stop = the mail server is down)

Every HTTP answer an API gives the harness (webhook deliveries, entitlement reads) is kept in
`answers`, for the "no 5xx but the documented 503s" check.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import stripe
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from core.stripe_client import make_stripe_client
from db.models import EmailDelivery
from db.outbox import DeliveryStatus
from domain.catalog import default_catalog
from notifications.message import KEY_HEADER
from ops.catalog_sync import apply_catalog_changes, plan_catalog_changes
from ops.local_stack import LocalPorts, connect_when_up, start_temporal_dev_server
from stripe_sim.server import SimulatorServer
from stripe_sim.settings import SimulatorSettings
from tests.child_process import ChildProcess
from tests.conftest import wait_for
from tests.faults.checks import (
    Accounts,
    assert_converged,
    entitlement_drifts,
    lost_events,
    wall_clock,
)
from tests.faults.processes import service_environment
from tests.faults.tcp_proxy import TcpProxy
from tests.production_shape.compose import BillingService, StandIns, billing_services
from tests.smtp_server import SmtpRecorder, free_port

# How many of each long-running billing service run (compose runs one of each).
REPLICAS = {"api": 2, "worker": 2, "email-sender": 2}
APP_TOKEN = "production-shape-app-token"
ADMIN_TOKEN = "production-shape-admin-token"
# Stripe keeps retrying a refused delivery for days; here for about a minute.
SIMULATOR = SimulatorSettings(webhook_backoff_seconds=(0.2, 0.5, 1, 2), webhook_max_attempts=40)
# What compose reads from `.env` (see .env.example). The database password and the Stripe key
# are required by compose but unused here: DATABASE_URL and STRIPE_SECRET_KEY are replaced.
UNUSED_HERE = "unused-in-the-production-shape-run"


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of an API, or why there was none (`status` None, `failure` the httpx
    error: ConnectError for an API that is down, ReadTimeout for one that did not answer in
    time), and the fault the run was in."""

    api: int
    path: str
    status: int | None
    retry_after: str | None = None
    failure: str | None = None
    phase: str = ""

    @classmethod
    def of(cls, api: int, path: str, response: httpx.Response) -> Answer:
        return cls(api, path, response.status_code, response.headers.get("Retry-After"))

    @classmethod
    def none(cls, api: int, path: str, error: httpx.TransportError) -> Answer:
        return cls(api, path, None, failure=type(error).__name__)


class AnswerLog:
    def __init__(self) -> None:
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        # What the run is doing now; each answer is tagged with it.
        self.phase = "start"

    def add(self, answer: Answer) -> None:
        with self._lock:
            self._answers.append(replace(answer, phase=self.phase))

    def since(self, index: int) -> list[Answer]:
        with self._lock:
            return self._answers[index:]

    def __len__(self) -> int:
        with self._lock:
            return len(self._answers)


def errors_but_503(answers: Sequence[Answer]) -> list[Answer]:
    """5xx answers other than 503 (the documented answer to an outage), and requests an API
    took in but never answered (a dropped connection, a timeout). A refused connection is an
    API that is down, not an error of the API."""
    return [
        a
        for a in answers
        if (a.status is not None and a.status >= 500 and a.status != 503)
        or a.failure not in (None, "ConnectError")
    ]


def unavailable_without_retry_after(answers: Sequence[Answer]) -> list[Answer]:
    """503 answers that do not say when to retry (invariant 11: 503 with `Retry-After`)."""
    return [a for a in answers if a.status == 503 and a.retry_after is None]


class OneShotFailed(AssertionError):
    def __init__(self, label: str, code: int, log_tail: str) -> None:
        super().__init__(f"{label} exited {code}: {log_tail}")
        self.label = label
        # Known (temporalio/sdk-python#300): a short-lived Temporal client process can abort
        # while the interpreter finalizes, its work done, when a thread of the SDK's runtime
        # releases the GIL too late. Compose would count it a failed one-shot.
        self.aborted_while_exiting = (
            code == -signal.SIGABRT and "Python runtime state: finalizing" in log_tail
        )


class ServiceProcess(ChildProcess):
    """One billing service (one replica) as a process; output to `<label>.log`."""

    def __init__(
        self, service: BillingService, label: str, port: int | None, run_dir: Path
    ) -> None:
        self.service = service
        self.label = label
        self.port = port
        self.url = None if port is None else f"http://127.0.0.1:{port}"
        self._run_dir = run_dir
        self._log_file = run_dir / f"{label}.log"
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        """Start it and wait as compose does: a one-shot until it exits 0, a long-running
        service until its healthcheck URL answers 200."""
        self._spawn()
        if self.service.one_shot:
            await wait_for(self._exited, within=120, what=f"{self.label} to finish")
            code = self._process.returncode
            self._process = None
            if code != 0:
                raise OneShotFailed(self.label, code, self.log_tail())
            return
        health_url = None if self.port is None else self.service.health_url(self.port)
        assert health_url is not None, f"{self.label} has no healthcheck to wait on"
        async with httpx.AsyncClient(timeout=3) as client:

            async def healthy() -> bool:
                if self._exited():
                    raise AssertionError(f"{self.label} exited: {self.log_tail()}")
                try:
                    return (await client.get(health_url)).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(healthy, within=60, what=f"{self.label} healthy")

    def _spawn(self) -> None:
        assert self._process is None, f"{self.label} is running"
        environment = service_environment()
        environment.update(self.service.environment_on(self.port))
        with self._log_file.open("ab") as log:
            # cwd: the run's folder, so a developer's `.env` cannot leak in.
            self._process = subprocess.Popen(
                [sys.executable, "-m", "cli", *self.service.command_on(self.port)],
                env=environment,
                cwd=self._run_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _exited(self) -> bool:
        assert self._process is not None
        return self._process.poll() is not None

    def log_tail(self) -> str:
        return self._log_file.read_text(errors="replace")[-3000:]


class TemporalDevServer(ChildProcess):
    """The dev server as a process on a database file: SIGKILL it, start it again on the same
    port and file, and it comes back with every workflow it had."""

    label = "the dev server"

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._ports = LocalPorts(temporal=free_port(), temporal_ui=free_port())
        self.address = f"127.0.0.1:{self._ports.temporal}"
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        assert self._process is None, "the dev server is running"
        self._process = start_temporal_dev_server(self._data_dir, self._ports)
        await connect_when_up(
            Settings(_env_file=None, temporal_address=self.address), self._process
        )


class WebhookBalancer:
    """Stripe's webhook endpoint, in front of the APIs as a load balancer would be: each
    delivery to the next API in turn, or with `fan_out` to every API in shuffled order (the
    same signed bytes, so each API sees a duplicate). An API that cannot be reached makes the
    delivery fail (502), and Stripe retries it; no failover, so the retry is what recovers."""

    def __init__(self, api_urls: Sequence[str], answers: AnswerLog, seed: int) -> None:
        self._api_urls = list(api_urls)
        self._answers = answers
        self._turns = itertools.cycle(range(len(self._api_urls)))
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.fan_out = False
        # Longer than the gateway's own limit on a signal (10 s), so its 503 gets through. A
        # connection per delivery: a kept-alive one the API closes as idle just as the next
        # delivery goes out would fail the delivery with no fault of the API's.
        self._http = httpx.Client(timeout=15, limits=httpx.Limits(max_keepalive_connections=0))
        balancer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, payload = balancer.deliver(self.path, body, self.headers)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass  # every answer is in `answers`

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="balancer")

    def deliver(self, path: str, body: bytes, headers: HTTPMessage) -> tuple[int, bytes]:
        with self._lock:
            if self.fan_out:
                targets = list(range(len(self._api_urls)))
                self._random.shuffle(targets)
            else:
                targets = [next(self._turns)]
        forwarded = {
            name: value
            for name in ("Content-Type", "Stripe-Signature", "User-Agent")
            if (value := headers.get(name)) is not None
        }
        best: tuple[int, bytes] = (502, b'{"error": "no API reachable"}')
        for api in targets:
            try:
                response = self._http.post(
                    self._api_urls[api] + path, content=body, headers=forwarded
                )
            except httpx.TransportError as error:
                self._answers.add(Answer.none(api, path, error))
                continue
            self._answers.add(Answer.of(api, path, response))
            if best[0] >= 300 or response.is_success:
                best = (response.status_code, response.content)
        return best

    def __enter__(self) -> WebhookBalancer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()
        self._http.close()


@dataclass
class ProductionStack:
    sim: SimulatorServer
    smtp: SmtpRecorder
    # The billing database's only way in: cut it and the database refuses the service.
    database: TcpProxy
    temporal: TemporalDevServer
    apis: list[ServiceProcess]
    workers: list[ServiceProcess]
    balancer: WebhookBalancer
    stripe: stripe.StripeClient
    # Straight to the database (not through the proxy), for the checks.
    sessions: sessionmaker[Session]
    answers: AnswerLog
    # One-shots that aborted while exiting and were run again (see OneShotFailed).
    one_shot_aborts: list[str]
    # Email keys whose sending attempt a fault cut short after the SMTP server took the
    # message (see `note_emails_cut_short`).
    may_arrive_twice: set[str] = field(default_factory=set)

    def note_emails_cut_short(self) -> None:
        """Keys the SMTP server has taken while their outbox row still says pending: the
        attempt that sent them was cut short (its worker killed, its database gone) before it
        could mark them sent, and the next attempt sends them again — the one documented case
        of an email twice (docs/reliability.md, "Email delivery: at least once")."""
        with self.sessions() as session:
            pending = set(
                session.scalars(
                    select(EmailDelivery.key).where(
                        EmailDelivery.status == DeliveryStatus.PENDING.value
                    )
                )
            )
        received = {str(message.message[KEY_HEADER]) for message in self.smtp.messages}
        self.may_arrive_twice |= pending & received

    async def deliveries_done(self, within: float = 120) -> None:
        await asyncio.to_thread(self.sim.wait_idle, within)

    async def read_entitlements(self, account_ids: Sequence[str]) -> None:
        """Read the accounts' entitlements from every API, as the app does; the answers go
        to `answers`."""
        headers = {"Authorization": f"Bearer {APP_TOKEN}"}
        async with httpx.AsyncClient(timeout=10, headers=headers) as client:
            for api, process in enumerate(self.apis):
                for account_id in account_ids:
                    path = f"/v1/accounts/{account_id}/entitlements"
                    try:
                        response = await client.get(f"{process.url}{path}")
                    except httpx.TransportError as error:
                        self.answers.add(Answer.none(api, path, error))
                        continue
                    self.answers.add(Answer.of(api, path, response))

    async def accounts_match_stripe(self, accounts: Accounts, within: float) -> None:
        """Wait until every event is taken in and every entitlement equals the simulator's
        truth (emails aside: `assert_converged` waits for those too)."""

        def matching() -> bool:
            now = datetime.now(UTC)
            return not (
                lost_events(self.sessions, self.stripe, accounts)
                or entitlement_drifts(self.sessions, self.stripe, accounts, now)
            )

        await self.deliveries_done()
        await wait_for(
            lambda: asyncio.to_thread(matching), within=within, what="the accounts to match"
        )

    async def assert_converged(self, accounts: Accounts, within: float = 180) -> None:
        """Entitlements equal the simulator's truth, no event lost, every email once."""
        await self.deliveries_done()

        await assert_converged(
            self.sessions,
            self.stripe,
            lambda: self.smtp.messages,
            accounts,
            wall_clock,
            within=within,
            may_arrive_twice=self.may_arrive_twice,
        )


@asynccontextmanager
async def production_stack(
    run_dir: Path, database_url: str, sessions: sessionmaker[Session], *, seed: int = 0
) -> AsyncIterator[ProductionStack]:
    """The compose stack on this machine, on the empty PostgreSQL database `database_url`
    (the `migrate` service creates the schema)."""
    database = make_url(database_url)
    async with AsyncExitStack() as stack:
        sim = stack.enter_context(SimulatorServer(settings=SIMULATOR))
        smtp = stack.enter_context(SmtpRecorder())
        proxy = stack.enter_context(
            TcpProxy(target_port=database.port or 5432, target_host=database.host or "127.0.0.1")
        )
        temporal = TemporalDevServer(run_dir)
        # Stopped on the way out even if it never came up.
        stack.callback(temporal.stop)
        await temporal.start()

        stripe_client = make_stripe_client(Settings(_env_file=None, stripe_simulator_url=sim.url))
        catalog = default_catalog()
        apply_catalog_changes(stripe_client, catalog, plan_catalog_changes(stripe_client, catalog))

        api_ports = [free_port() for _ in range(REPLICAS["api"])]
        answers = AnswerLog()
        balancer = WebhookBalancer([f"http://127.0.0.1:{p}" for p in api_ports], answers, seed)
        stack.enter_context(balancer)
        endpoint = stripe_client.v1.webhook_endpoints.create(
            params={"url": f"{balancer.url}/webhooks/stripe", "enabled_events": ["*"]}
        )

        env_file = {
            "POSTGRES_PASSWORD": UNUSED_HERE,
            "STRIPE_SECRET_KEY": UNUSED_HERE,
            "STRIPE_WEBHOOK_SECRET": str(endpoint.secret),
            "APP_API_TOKEN": APP_TOKEN,
            "ADMIN_API_TOKEN": ADMIN_TOKEN,
        }
        here = StandIns(
            database_url=database.set(host="127.0.0.1", port=proxy.port).render_as_string(
                hide_password=False
            ),
            temporal_address=temporal.address,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            stripe_simulator_url=sim.url,
        )
        running: dict[str, list[ServiceProcess]] = {}
        one_shot_aborts: list[str] = []
        for service in billing_services(env_file, here):
            replicas = 1 if service.one_shot else REPLICAS[service.name]
            for replica in range(1, replicas + 1):
                port = (
                    None
                    if service.port is None
                    else (api_ports[replica - 1] if service.name == "api" else free_port())
                )
                process = ServiceProcess(service, f"{service.name}-{replica}", port, run_dir)
                stack.callback(process.stop)
                try:
                    await process.start()
                except OneShotFailed as failure:
                    if not failure.aborted_while_exiting:
                        raise
                    # The one-shots are idempotent: run it again, as an operator would, and
                    # keep the abort for the report.
                    one_shot_aborts.append(failure.label)
                    await process.start()
                if not service.one_shot:
                    running.setdefault(service.name, []).append(process)

        yield ProductionStack(
            sim=sim,
            smtp=smtp,
            database=proxy,
            temporal=temporal,
            apis=running["api"],
            workers=running["worker"],
            balancer=balancer,
            stripe=stripe_client,
            sessions=sessions,
            answers=answers,
            one_shot_aborts=one_shot_aborts,
        )
