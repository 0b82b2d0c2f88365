"""`GET /v1/entitlements/stream`: Server-Sent Events, resumed with Last-Event-ID."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.feed.conftest import AUTH, new_account, newest_cursor, write_change
from tests.feed.live_api import LiveApi

pytestmark = pytest.mark.db


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: dict[str, Any]


async def entitlement_events(response: httpx.Response) -> AsyncIterator[Event]:
    """The stream's `entitlements` events, parsed as an EventSource would."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if fields.get("event") == "entitlements":
                yield Event(fields["id"], fields["event"], json.loads(fields["data"]))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def read_events(
    url: str, count: int, *, after: int, last_event_id: str | None = None
) -> list[Event]:
    """Open the stream, take `count` events, hang up."""
    headers = dict(AUTH)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    events: list[Event] = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=15) as client,
        client.stream(
            "GET", "/v1/entitlements/stream", params={"after": after}, headers=headers
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event in entitlement_events(response):
            events.append(event)
            if len(events) == count:
                break
    return events


async def test_the_stream_resumes_after_its_last_event_id_with_nothing_missed_or_repeated(
    live_api: LiveApi, session_factory: sessionmaker[Session]
) -> None:
    start = newest_cursor(session_factory)
    account = new_account()
    for version in (1, 2, 3):
        write_change(session_factory, account, version)

    first = await read_events(live_api.url, 2, after=start)
    # The connection drops after two events; more changes land meanwhile.
    for version in (4, 5):
        write_change(session_factory, account, version)
    # A reconnecting EventSource repeats its URL (`after=start`) and sends Last-Event-ID.
    rest = await read_events(live_api.url, 3, after=start, last_event_id=first[-1].id)

    events = first + rest
    assert [e.data["version"] for e in events] == [1, 2, 3, 4, 5]
    assert all(e.data["account_id"] == account for e in events)
    assert [int(e.id) for e in events] == [e.data["cursor"] for e in events]
    assert [int(e.id) for e in events] == sorted({int(e.id) for e in events})
    assert events[-1].data["entitlements"]["seats"] == 5


async def test_the_stream_delivers_changes_written_after_it_opened(
    live_api: LiveApi, session_factory: sessionmaker[Session]
) -> None:
    account = new_account()
    async with (
        httpx.AsyncClient(base_url=live_api.url, timeout=15) as client,
        client.stream("GET", "/v1/entitlements/stream", headers=AUTH) as response,
    ):
        # No cursor: from now on. Written once the stream is open (headers came back).
        write_change(session_factory, account, 1, plan="team")
        event = await anext(aiter(entitlement_events(response)))

    assert (event.data["account_id"], event.data["entitlements"]["plan"]) == (account, "team")
