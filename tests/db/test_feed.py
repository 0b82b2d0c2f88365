"""Gap-free paging under concurrent writers, and PostgreSQL's commit-order hazard.

On PostgreSQL an id is drawn at insert while transactions commit in any order: without
`db.feed.lock_change_log`, a writer that drew id N+1 could commit while the one holding N is
still open, a reader would move its cursor past N, and N would never be read.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from db import feed, repository
from tests.conftest import wait_for
from tests.feed_changes import new_account, newest_cursor, paid, write_change

pytestmark = pytest.mark.db


def read_all_after(sessions: sessionmaker[Session], cursor: int) -> list[feed.FeedChange]:
    with sessions() as session:
        return feed.changes_after(session, cursor, 1000)


def writers_waiting_for_the_change_log(sessions: sessionmaker[Session]) -> int:
    # pg_locks shows a bigint advisory key as its high and low 32 bits.
    high, low = divmod(feed.CHANGE_LOG_LOCK_KEY, 2**32)
    with sessions() as session:
        return int(
            session.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND classid = :high AND objid = :low AND objsubid = 1"
                ),
                {"high": high, "low": low},
            )
            or 0
        )


async def test_postgresql_a_later_writer_waits_for_an_open_one_so_no_cursor_skips_it(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: ids are always visible in order")
    start = newest_cursor(session_factory)
    slow, fast = new_account(), new_account()

    with session_factory() as open_transaction:
        # The slow writer draws its id and stays open.
        assert repository.write_entitlements(open_transaction, slow, 1, paid(), {}, "test", [])
        fast_write = asyncio.create_task(asyncio.to_thread(write_change, session_factory, fast, 1))
        await wait_for(
            lambda: writers_waiting_for_the_change_log(session_factory) == 1,
            what="the fast writer to wait for the change log",
        )
        # Neither is visible: a reader cannot step over the open one.
        assert read_all_after(session_factory, start) == []
        open_transaction.commit()
    await asyncio.wait_for(fast_write, timeout=15)

    changes = read_all_after(session_factory, start)
    assert [c.account_id for c in changes] == [slow, fast]
    assert changes[0].cursor < changes[1].cursor


async def test_a_reader_following_concurrent_writers_misses_and_repeats_nothing(
    session_factory: sessionmaker[Session],
) -> None:
    start = newest_cursor(session_factory)
    accounts = [new_account() for _ in range(4)]
    versions = 25

    def write_all(account: str) -> None:
        for version in range(1, versions + 1):
            write_change(session_factory, account, version)

    seen: list[feed.FeedChange] = []
    cursor = start
    with ThreadPoolExecutor(max_workers=len(accounts)) as pool:
        writes = [pool.submit(write_all, account) for account in accounts]
        # Follow the log while the writers run, as a feed client would.
        while not all(w.done() for w in writes):
            page = await asyncio.to_thread(read_all_after, session_factory, cursor)
            seen += page
            cursor = page[-1].cursor if page else cursor
        for write in writes:
            write.result()
    seen += read_all_after(session_factory, cursor)

    ours = [(c.account_id, c.version) for c in seen if c.account_id in accounts]
    assert sorted(ours) == sorted((a, v) for a in accounts for v in range(1, versions + 1))
    for account in accounts:
        assert [v for a, v in ours if a == account] == list(range(1, versions + 1))
    assert [c.cursor for c in seen] == sorted({c.cursor for c in seen})
