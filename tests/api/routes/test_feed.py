"""The entitlement change feed: `GET /v1/entitlements/changes` (ordered pages from any cursor,
long polls, bad cursors) in-process, and `GET /v1/entitlements/stream` (Server-Sent Events,
resumed with Last-Event-ID) on a real port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from core.config import Settings
from db import feed
from tests.conftest import wait_for
from tests.feed_changes import APP_TOKEN, AUTH, new_account, newest_cursor, write_change
from tests.live_api import LiveApi, NoTemporal

pytestmark = pytest.mark.db

URL = "/v1/entitlements/changes"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(_env_file=None, database_url=database_url, app_api_token=APP_TOKEN)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, temporal_client=NoTemporal())  # type: ignore[arg-type]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client


@pytest.fixture
def live_api(settings: Settings) -> Iterator[LiveApi]:
    with LiveApi(settings) as live:
        yield live


async def page(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await api.get(URL, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.parametrize("path", [URL, "/v1/entitlements/stream"])
async def test_requires_the_app_token(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path, headers={"Authorization": "Bearer wrong"})

    assert response.status_code == 401


async def test_changes_after_a_cursor_come_in_order_with_the_full_answer(
    api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    start = newest_cursor(session_factory)
    first, second = new_account(), new_account()
    write_change(session_factory, first, 1, plan="pro")
    write_change(session_factory, second, 1, plan="team")
    write_change(session_factory, first, 2, plan="team")

    answer = await page(api, after=start)

    changes = answer["changes"]
    assert [(c["account_id"], c["version"]) for c in changes] == [
        (first, 1),
        (second, 1),
        (first, 2),
    ]
    cursors = [c["cursor"] for c in changes]
    assert cursors == sorted(cursors) and cursors[0] > start
    assert answer["next_cursor"] == cursors[-1]
    latest = changes[-1]
    assert latest["entitlements"]["plan"] == "team"
    assert latest["entitlements"]["account_id"] == first
    assert latest["entitlements"]["version"] == 2
    assert latest["changed_at"].endswith(("Z", "+00:00"))
    # The same ETag the entitlement API serves for that version.
    current = await api.get(f"/v1/accounts/{first}/entitlements", headers=AUTH)
    assert latest["etag"] == current.headers["ETag"]


async def test_pages_of_limit_changes_resume_from_next_cursor_without_gaps_or_repeats(
    api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    start = newest_cursor(session_factory)
    account = new_account()
    for version in range(1, 8):
        write_change(session_factory, account, version)

    seen: list[int] = []
    cursor = start
    for _ in range(10):
        answer = await page(api, after=cursor, limit=3)
        if not answer["changes"]:
            break
        assert len(answer["changes"]) <= 3
        seen += [c["version"] for c in answer["changes"]]
        cursor = answer["next_cursor"]

    assert seen == list(range(1, 8))
    assert cursor == newest_cursor(session_factory)


async def test_without_a_cursor_the_feed_starts_at_the_newest_change(
    api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    write_change(session_factory, new_account(), 1)

    answer = await page(api)

    assert answer == {"changes": [], "next_cursor": newest_cursor(session_factory)}


async def test_an_empty_long_poll_ends_with_the_cursor_it_was_given(
    api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    head = newest_cursor(session_factory)

    answer = await page(api, after=head, wait=0.3)

    assert answer == {"changes": [], "next_cursor": head}


async def test_a_long_poll_answers_with_a_change_written_while_it_waits(
    api: httpx.AsyncClient,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    head = newest_cursor(session_factory)
    looks = 0
    read_changes = feed.changes_after

    def counting_changes_after(*args: Any) -> list[feed.FeedChange]:
        nonlocal looks
        looks += 1
        return read_changes(*args)

    monkeypatch.setattr(feed, "changes_after", counting_changes_after)
    poll = asyncio.create_task(page(api, after=head, wait=20))
    # The request has looked, found nothing, and is waiting.
    await wait_for(lambda: looks >= 1, what="the long poll's first look")
    assert not poll.done()

    account = new_account()
    await asyncio.to_thread(write_change, session_factory, account, 1)
    answer = await asyncio.wait_for(poll, timeout=15)

    assert [(c["account_id"], c["version"]) for c in answer["changes"]] == [(account, 1)]


@pytest.mark.parametrize("path", [URL, "/v1/entitlements/stream"])
@pytest.mark.parametrize("cursor", ["-1", "abc", "1.5", ""])
async def test_a_malformed_cursor_is_refused(
    api: httpx.AsyncClient, path: str, cursor: str
) -> None:
    response = await api.get(path, params={"after": cursor}, headers=AUTH)

    assert response.status_code == 400
    assert "non-negative integer cursor" in response.json()["detail"]


@pytest.mark.parametrize("path", [URL, "/v1/entitlements/stream"])
async def test_a_cursor_beyond_the_newest_change_is_refused(
    api: httpx.AsyncClient, session_factory: sessionmaker[Session], path: str
) -> None:
    beyond = newest_cursor(session_factory) + 1

    response = await api.get(path, params={"after": beyond}, headers=AUTH)

    assert response.status_code == 400
    assert "beyond the newest change" in response.json()["detail"]


async def test_a_bad_last_event_id_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.get(
        "/v1/entitlements/stream", headers={**AUTH, "Last-Event-ID": "not-a-cursor"}
    )

    assert response.status_code == 400
    assert response.json()["detail"].startswith("Last-Event-ID must be")


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"wait": 31}, {"wait": -1}])
async def test_out_of_range_limit_and_wait_are_refused(
    api: httpx.AsyncClient, params: dict[str, int]
) -> None:
    response = await api.get(URL, params={"after": 0, **params}, headers=AUTH)

    assert response.status_code == 422


@pytest.mark.parametrize("path", [URL, "/v1/entitlements/stream"])
@pytest.mark.parametrize("token", [None, "wrong"])
async def test_a_request_without_the_token_is_refused_before_the_database_is_read(
    settings: Settings, session_factory: sessionmaker[Session], path: str, token: str | None
) -> None:
    write_change(session_factory, new_account(), 1)
    newest = newest_cursor(session_factory)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    # Without the entitlement cache's follower, every statement on the engine is this request's.
    app = create_app(
        settings.model_copy(update={"entitlement_cache_size": 0}),
        temporal_client=NoTemporal(),  # type: ignore[arg-type]
    )
    statements: list[str] = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        event.listen(
            app.state.engine, "before_cursor_execute", lambda *args: statements.append(args[2])
        )
        response = await client.get(path, params={"after": newest + 10}, headers=headers)

    assert response.status_code == 401
    assert str(newest) not in response.text
    assert statements == []


# --- the stream ----------------------------------------------------------------------------


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
