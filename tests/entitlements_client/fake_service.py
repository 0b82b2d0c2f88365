"""An in-memory stand-in for the service's feed and entitlement API, as an httpx transport:
for client behaviour that the real service cannot be made to show on cue (a feed that fails
while reads work, a feed that forgets its cursor)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx


def answer(account_id: str, version: int, plan: str = "pro") -> dict[str, Any]:
    return {
        "account_id": account_id,
        "version": version,
        "plan": plan,
        "access": "full",
        "features": {"api_access": plan != "free"},
        "limits": {"projects": 3 if plan == "free" else 50},
    }


@dataclass
class FakeService:
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    feed_up: bool = True
    api_up: bool = True
    requests: list[httpx.Request] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def change(self, account_id: str, version: int, plan: str) -> None:
        with self._changed:
            self.answers[account_id] = answer(account_id, version, plan)
            self.changes.append(
                {
                    "cursor": len(self.changes) + 1,
                    "account_id": account_id,
                    "version": version,
                    "etag": self.etag(account_id),
                    "entitlements": self.answers[account_id],
                    "changed_at": "2026-01-01T00:00:00Z",
                }
            )
            self._changed.notify_all()

    def forget_changes(self) -> None:
        """As after a restore from an older backup: cursors handed out are now unknown."""
        with self._changed:
            self.changes.clear()

    def etag(self, account_id: str) -> str:
        version = self.answers.get(account_id, {}).get("version", 0)
        return f'"{account_id}-{version}"'

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def requests_to(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v1/entitlements/changes":
            return self._feed(request)
        account_id = request.url.path.split("/")[3]
        if not self.api_up:
            raise httpx.ConnectError("service down", request=request)
        etag = self.etag(account_id)
        if request.headers.get("If-None-Match") == etag:
            return httpx.Response(304, headers={"ETag": etag})
        body = self.answers.get(account_id, answer(account_id, 0, "free"))
        return httpx.Response(200, json=body, headers={"ETag": etag})

    def _feed(self, request: httpx.Request) -> httpx.Response:
        if not self.feed_up:
            raise httpx.ConnectError("feed down", request=request)
        after = request.url.params.get("after")
        with self._changed:
            newest = len(self.changes)
            if after is None:
                return httpx.Response(200, json={"changes": [], "next_cursor": newest})
            cursor = int(after)
            if cursor > newest:
                return httpx.Response(400, json={"detail": f"after {cursor} is beyond {newest}"})
            if cursor == newest:
                # A short stand-in for the long poll's wait.
                self._changed.wait(timeout=0.05)
            page = self.changes[cursor:]
        next_cursor = page[-1]["cursor"] if page else cursor
        return httpx.Response(
            200, content=json.dumps({"changes": page, "next_cursor": next_cursor})
        )
