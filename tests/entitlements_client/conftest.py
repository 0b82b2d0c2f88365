from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class FakeClock:
    """A monotonic clock the test moves: ages without waiting for them."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingTransport(httpx.BaseTransport):
    """httpx's own transport, keeping every change-feed answer the client received and the
    path of every entitlement API read."""

    pages: list[dict[str, Any]]
    reads: list[str] = field(default_factory=list)
    inner: httpx.BaseTransport = field(default_factory=httpx.HTTPTransport)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.startswith("/v1/accounts/"):
            self.reads.append(request.url.path)
        if request.url.path == "/v1/entitlements/changes":
            response.read()
            if response.status_code == 200:
                with self.lock:
                    self.pages.append(response.json())
        return response

    def close(self) -> None:
        self.inner.close()
