"""Run the simulator in-process (tests) or standalone.

    with SimulatorServer() as sim:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": sim.url})
        ...
        sim.wait_idle()          # every webhook delivery finished (no sleeps in tests)

uvicorn serves the app from a background thread; a second thread delivers webhooks; a third
("ticker") performs due work for objects that live on real time rather than a test clock.

State lives in memory only, unless a ``state_path`` is given: then the server starts from that
file when it exists and rewrites it before answering each write request, after each real-time
tick that changed something, and on stop, so a restart (even after kill -9) keeps every
customer, subscription and id counter.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stripe_sim.app import Simulator
from stripe_sim.settings import SimulatorSettings
from stripe_sim.store import Store
from stripe_sim.webhooks import DeliveryRecord

log = logging.getLogger("stripe_sim")


class SimulatorServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: SimulatorSettings | None = None,
        public_url: str | None = None,
        state_path: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        # Base of the hosted page links (checkout, invoices, portal) when the listening
        # address is not what browsers should use (e.g. 0.0.0.0 in a container).
        self.public_url = public_url
        self.settings = settings or SimulatorSettings()
        self.store = Store(self.settings)
        self.state_path = state_path
        self._saved: bytes | None = None
        if state_path is not None and state_path.exists():
            self._saved = state_path.read_bytes()
            self.store.restore(self._saved)
        self.simulator = Simulator(self.store)
        self.webhooks = self.simulator.webhooks
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def deliveries(self) -> list[DeliveryRecord]:
        """Every webhook delivery attempt so far (for tests and demos)."""
        return list(self.webhooks.records)

    def start(self) -> SimulatorServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this; without it Nagle + delayed ACK cost ~40 ms on
        # every response (uvicorn writes headers and body separately).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.store.base_url = (self.public_url or self.url).rstrip("/")
        app = (
            self.simulator.app
            if self.state_path is None
            else self._saving_writes(self.simulator.app)
        )
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="stripe-sim-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Stripe simulator did not start")
            time.sleep(0.005)
        self.webhooks.start()
        self._ticker = threading.Thread(target=self._tick, name="stripe-sim-ticker", daemon=True)
        self._ticker.start()
        log.info("Stripe simulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        self.webhooks.stop()
        self.save()

    def save(self) -> None:
        """Write the state to ``state_path`` (if given) when it changed since the last write.
        The file is replaced whole, so a crash leaves the previous state or the new one."""
        if self.state_path is None:
            return
        with self.store.lock:
            snapshot = self.store.snapshot()
            if snapshot == self._saved:
                return
            written = self.state_path.with_name(self.state_path.name + ".new")
            written.write_bytes(snapshot)
            os.replace(written, self.state_path)
            self._saved = snapshot

    def _saving_writes(self, app: ASGIApp) -> ASGIApp:
        """`app`, saving the state once a write request is answered and before the client
        reads the answer: what a client saw done survives a restart."""

        async def saving_app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["method"] == "GET":
                await app(scope, receive, send)
                return

            async def send_after_saving(message: Message) -> None:
                if message["type"] == "http.response.start":
                    self.save()
                await send(message)

            await app(scope, receive, send_after_saving)

        return saving_app

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until every webhook delivery (including retries) has finished.
        Raises TimeoutError if that takes longer than ``timeout`` seconds."""
        self.webhooks.wait_idle(timeout)

    def reseed_faults(self) -> None:
        """Restart the fault-injection random sequence from ``settings.faults.seed``."""
        self.webhooks.reseed()

    def tick(self) -> None:
        """Perform now whatever is due for objects on real time (the ticker does this every
        ``realtime_tick_seconds``); lets tests avoid waiting for the ticker."""
        with self.store.lock:
            self.simulator.run_due({None})

    def _tick(self) -> None:
        # Objects that are not on a test clock live on real time: renewals, retries and
        # expiries fall due by themselves.
        while not self._stop.wait(self.settings.realtime_tick_seconds):
            try:
                self.tick()
                self.save()
            except Exception:
                log.exception("real-time tick failed")
