"""The real pieces a benchmark measures, each in its own process on loopback ports.

Temporal's dev server (from the wheel), the Stripe simulator, the API under uvicorn and the
worker run as child processes configured through the environment, exactly as they are
deployed; the database is a scratch PostgreSQL database (created here, dropped after) or a
SQLite file; the SMTP sink runs in this process (it only receives the few emails sent).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import httpx
import psycopg
from sqlalchemy.engine import make_url
from temporalio.client import Client

from core.config import Settings
from core.stripe_client import make_stripe_client
from core.temporal import installed_binary
from db.engine import migrate
from domain.catalog import default_catalog
from ops.catalog_sync import apply_catalog_changes, plan_catalog_changes
from ops.local_stack import DEV_SERVER_TUNING, search_attribute_flags
from ops.mail_sink import MailSink

REPO = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
WEBHOOK_SECRET = "whsec_bench"
APP_TOKEN = "bench-app-token"
STARTUP_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Stack:
    """What a scenario needs to reach the running pieces."""

    scratch: Path
    database_url: str
    temporal_address: str
    simulator_url: str
    smtp_port: int
    processes: ExitStack
    temporal: subprocess.Popen[bytes]
    simulator: subprocess.Popen[bytes]
    # The worker's process, once started (its peak RSS is a result), and the email sender's.
    worker: subprocess.Popen[bytes] | None = None
    email_sender: subprocess.Popen[bytes] | None = None
    # The API's process while `api()` runs.
    api_process: subprocess.Popen[bytes] | None = None
    # The peer's process while `peer()` runs.
    peer_process: subprocess.Popen[bytes] | None = None

    def settings(self, task_queue: str = "billing-bench") -> Settings:
        return Settings(
            _env_file=None,
            database_url=self.database_url,
            temporal_address=self.temporal_address,
            task_queue=task_queue,
            stripe_simulator_url=self.simulator_url,
            stripe_webhook_secret=WEBHOOK_SECRET,
            app_api_token=APP_TOKEN,
            smtp_port=self.smtp_port,
            log_level="WARNING",
        )

    def environment(self, task_queue: str = "billing-bench") -> dict[str, str]:
        """The child processes' configuration, as a deployment would set it."""
        settings = self.settings(task_queue)
        names = (
            "database_url",
            "temporal_address",
            "task_queue",
            "stripe_simulator_url",
            "stripe_webhook_secret",
            "app_api_token",
            "smtp_port",
            "log_level",
        )
        values = {name.upper(): str(getattr(settings, name)) for name in names}
        return {**os.environ, **values, "PYTHONPATH": str(REPO)}

    async def client(self) -> Client:
        from core.temporal import connect

        return await connect(self.settings())

    @contextmanager
    def api(self, task_queue: str = "billing-bench") -> Iterator[str]:
        """The API under uvicorn in its own process; yields its base URL."""
        with self._uvicorn("api", "api.main:create_app", task_queue) as (url, process):
            self.api_process = process
            try:
                yield url
            finally:
                self.api_process = None

    @contextmanager
    def peer(self) -> Iterator[str]:
        """The synchronous peer handler (bench/peer.py) under uvicorn in its own process, run
        as the API is; yields its base URL."""
        with self._uvicorn("peer", "bench.peer:create_app") as (url, process):
            self.peer_process = process
            try:
                yield url
            finally:
                self.peer_process = None

    @contextmanager
    def _uvicorn(
        self, name: str, factory: str, task_queue: str = "billing-bench"
    ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            # Access lines cost the same on every endpoint; off so the figures are the app's.
            "--no-access-log",
        ]
        process = self._spawn(name, command, self.environment(task_queue))
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_http_ok(f"{url}/healthz", process, f"the {name}")
            yield url, process
        finally:
            _stop(process)

    def start_worker(self, task_queue: str = "billing-bench") -> subprocess.Popen[bytes]:
        """One worker process (`worker.py`, settings from the environment) and the email
        sender beside it (`cli.py email-sender`), running until the stack closes."""
        environment = self.environment(task_queue)
        sender_command = [sys.executable, "cli.py", "email-sender"]
        sender = self._spawn("email-sender", sender_command, environment)
        self.processes.callback(_stop, sender)
        self.email_sender = sender
        process = self._spawn("worker", [sys.executable, "worker.py"], environment)
        self.processes.callback(_stop, process)
        self.worker = process
        return process

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.scratch / f"{name}.log").open("ab")
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


@contextmanager
def running_stack(database: str) -> Iterator[Stack]:
    """Temporal dev server, Stripe simulator (catalog synced), migrated scratch database and
    SMTP sink; the API and the worker are started by the scenarios that need them."""
    # The processes stop before their scratch directory goes: the worker may still be
    # sending mail into it.
    with tempfile.TemporaryDirectory(prefix="dfb-bench-") as tmp, ExitStack() as processes:
        scratch = Path(tmp)
        database_url = processes.enter_context(scratch_database(database, scratch))
        migrate(database_url)
        temporal_port = free_port()
        temporal = _start_temporal(scratch, temporal_port)
        processes.callback(_stop, temporal)
        simulator_port = free_port()
        simulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stripe_sim",
                "--port",
                str(simulator_port),
                "--log-level",
                "WARNING",
            ],
            cwd=REPO,
            stdout=(scratch / "stripe_sim.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        processes.callback(_stop, simulator)
        smtp_port = free_port()
        processes.enter_context(MailSink(scratch / "mail", host="127.0.0.1", port=smtp_port))
        stack = Stack(
            scratch=scratch,
            database_url=database_url,
            temporal_address=f"127.0.0.1:{temporal_port}",
            simulator_url=f"http://127.0.0.1:{simulator_port}",
            smtp_port=smtp_port,
            processes=processes,
            temporal=temporal,
            simulator=simulator,
        )
        _wait_until_http_ok(f"{stack.simulator_url}/_sim/health", simulator, "the simulator")
        stripe = make_stripe_client(stack.settings())
        apply_catalog_changes(
            stripe, default_catalog(), plan_catalog_changes(stripe, default_catalog())
        )
        asyncio.run(_wait_for_temporal(stack, temporal))
        yield stack


@contextmanager
def scratch_database(database: str, scratch: Path) -> Iterator[str]:
    if database == "sqlite":
        yield f"sqlite:///{scratch}/billing.db"
        return
    name = f"dfb_bench_{uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield str(make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg", database=name))
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def temporal_version() -> str:
    completed = subprocess.run(
        [str(installed_binary("temporal")), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.stdout.strip()


def peak_rss_bytes(process: subprocess.Popen[bytes]) -> int:
    """The process's high-water resident set (VmHWM), read while it still runs."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")


def cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """User plus system CPU the process has used so far (/proc/PID/stat, in clock ticks)."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_temporal(scratch: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        str(installed_binary("temporal")),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(free_port()),
        "--db-filename",
        str(scratch / "temporal.db"),
        *DEV_SERVER_TUNING,
        "--log-level",
        "error",
    ]
    command += search_attribute_flags()
    log = (scratch / "temporal.log").open("ab")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


async def _wait_for_temporal(stack: Stack, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the Temporal dev server exited; see {stack.scratch}/temporal.log")
        try:
            await stack.client()
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def _wait_until_http_ok(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited (code {process.returncode})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer {url}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
