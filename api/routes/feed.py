"""The entitlement change feed: every applied entitlement change, in order, from any cursor.

Two ways to follow it, same cursor, same changes: a long-poll page
(`GET /v1/entitlements/changes?after=&wait=`) and a Server-Sent Events stream
(`GET /v1/entitlements/stream`, each event's `id:` is its cursor, so `Last-Event-ID` resumes).
Ordering and the absence of gaps are the database layer's job (`db.feed`); here the
server waits for new changes by asking the database in small steps, which works the same on
SQLite and PostgreSQL and across processes (entitlements are written by the worker, not here).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy.orm import Session, sessionmaker

from api.answer_cache import etag_for
from api.deps import AppTokenDep, SessionFactoryDep
from api.schemas import ChangesPageAnswer, FeedChangeAnswer
from db import feed

router = APIRouter(prefix="/v1/entitlements", tags=["entitlement feed"])

# How often a waiting request looks for new changes: the feed's added latency is at most this.
# Each look is one primary-key range probe.
POLL_INTERVAL_SECONDS = 0.1
MAX_WAIT_SECONDS = 30.0
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# What an EventSource waits before reconnecting after the stream drops.
STREAM_RETRY_MILLISECONDS = 1000


def _starting_cursor(sessions: sessionmaker[Session], raw: str | None, source: str) -> int:
    """The cursor to read after: `raw` checked against the log, or the newest when absent."""
    with sessions() as session:
        newest = feed.newest_cursor(session)
    if raw is None:
        return newest
    try:
        cursor = int(raw.strip())
    except ValueError:
        cursor = -1
    if cursor < 0:
        raise HTTPException(
            status_code=status.HTTP_400_BAD_REQUEST,
            detail=f"{source} must be a non-negative integer cursor, got {raw!r}",
        )
    if cursor > newest:
        raise HTTPException(
            status_code=status.HTTP_400_BAD_REQUEST,
            detail=(
                f"{source} {cursor} is beyond the newest change ({newest}): it does not come "
                "from this feed; start again without a cursor (from now) or from 0 (everything)"
            ),
        )
    return cursor


# The cursor dependencies take the token first: FastAPI resolves a dependency's own
# dependencies before it, so an unauthenticated request is refused before the log is read
# (it would cost a query, and the 400 would tell it the newest cursor).
def changes_cursor(
    _: AppTokenDep,
    sessions: SessionFactoryDep,
    after: Annotated[
        str | None,
        Query(description="Cursor to read after; omitted means from the newest change on."),
    ] = None,
) -> int:
    return _starting_cursor(sessions, after, "after")


def stream_cursor(
    _: AppTokenDep,
    sessions: SessionFactoryDep,
    after: Annotated[
        str | None,
        Query(description="Cursor to read after; omitted means from the newest change on."),
    ] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> int:
    # A reconnecting EventSource repeats the original URL: its Last-Event-ID is the newer news.
    if last_event_id is not None:
        return _starting_cursor(sessions, last_event_id, "Last-Event-ID")
    return _starting_cursor(sessions, after, "after")


# Dependencies rather than checks in the handlers: a bad cursor is answered 400 before a
# stream's 200 and headers go out. The routes name the token too, to read as what they need;
# FastAPI checks it once per request.
ChangesCursorDep = Annotated[int, Depends(changes_cursor)]
StreamCursorDep = Annotated[int, Depends(stream_cursor)]


def _read_changes(
    sessions: sessionmaker[Session], cursor: int, limit: int
) -> list[FeedChangeAnswer]:
    # A session per look: nothing is held between looks, and each one sees the newest commits.
    with sessions() as session:
        return [_answer(change) for change in feed.changes_after(session, cursor, limit)]


def _answer(change: feed.FeedChange) -> FeedChangeAnswer:
    return FeedChangeAnswer(
        cursor=change.cursor,
        account_id=change.account_id,
        version=change.version,
        etag=etag_for(change.account_id, change.version),
        entitlements=change.entitlements,
        changed_at=change.changed_at,
    )


@router.get("/changes", response_model=ChangesPageAnswer)
async def read_changes(
    _: AppTokenDep,
    request: Request,
    cursor: ChangesCursorDep,
    sessions: SessionFactoryDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Seconds to hold the request when there is nothing after the cursor.",
        ),
    ] = 0.0,
) -> ChangesPageAnswer:
    """Changes after the cursor, oldest first; with `wait`, a long poll."""
    deadline = time.monotonic() + wait
    while True:
        changes = await run_in_threadpool(_read_changes, sessions, cursor, limit)
        remaining = deadline - time.monotonic()
        if changes or remaining <= 0 or await request.is_disconnected():
            break
        await asyncio.sleep(min(POLL_INTERVAL_SECONDS, remaining))
    return ChangesPageAnswer(changes=changes, next_cursor=changes[-1].cursor if changes else cursor)


@router.get("/stream", response_class=EventSourceResponse)
async def stream_changes(
    _: AppTokenDep, cursor: StreamCursorDep, sessions: SessionFactoryDep
) -> AsyncIterator[ServerSentEvent]:
    """The same changes as Server-Sent Events (`event: entitlements`, `id:` = cursor), live.

    Idle streams carry a `: ping` comment every 15 s, so proxies keep them open.
    """
    yield ServerSentEvent(retry=STREAM_RETRY_MILLISECONDS)
    while True:
        changes = await run_in_threadpool(_read_changes, sessions, cursor, DEFAULT_PAGE_SIZE)
        for change in changes:
            yield ServerSentEvent(id=str(change.cursor), event="entitlements", data=change)
        if changes:
            cursor = changes[-1].cursor
        else:
            await asyncio.sleep(POLL_INTERVAL_SECONDS)
