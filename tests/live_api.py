"""The API on a real loopback port, in its own thread and event loop, stoppable and restartable
on the same port: streams and the sync entitlements client need a real server, and a restart
is how tests take the service away and bring it back."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn
from temporalio.client import Client

from api.main import create_app
from core.config import Settings
from core.payloads import DATA_CONVERTER


class NoTemporal:
    """Feed and entitlement reads never touch Temporal; a webhook would, and fail loudly."""

    async def start_workflow(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("this test API has no Temporal")


class LiveApi:
    def __init__(self, settings: Settings, temporal_target: str | None = None) -> None:
        self.settings = settings
        self._temporal_target = temporal_target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, settings: Settings | None = None) -> None:
        self.settings = settings or self.settings
        listener = socket.socket()
        # A restart rebinds the port while the last run's connections sit in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        self._server = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(listener),))
        self._thread.start()
        deadline = time.monotonic() + 10
        while self._server is None or not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.01)

    async def _serve(self, listener: socket.socket) -> None:
        temporal: Any = NoTemporal()
        if self._temporal_target is not None:
            temporal = await Client.connect(
                self._temporal_target,
                namespace=self.settings.temporal_namespace,
                data_converter=DATA_CONVERTER,
            )
        app = create_app(self.settings, temporal_client=temporal)
        # Long polls and streams are open requests: without a bound, shutdown waits for them.
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        await self._server.serve(sockets=[listener])

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            assert not self._thread.is_alive(), "the API did not stop"
        self._thread = None

    def __enter__(self) -> LiveApi:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
