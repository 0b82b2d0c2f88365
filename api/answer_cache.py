"""Entitlement answers kept in the API process, current to within one look at the change log.

The app reads entitlements on every request. Asking the database each time caps reads at the
database's pace; here each API process keeps the answers it has served, and a background task
reads the change log (`db.feed`, gap-free by cursor) every `poll_seconds` and stores every
changed account's new answer. A served answer is then at most one poll older than the database.

Correctness rests on four rules:
- an answer only ever moves to a higher version (a fill that read an older row than the log
  already delivered is ignored);
- fills are only accepted once the log is followed (its cursor taken before any fill began),
  and not across a clear (`_epoch`), so no change can fall between a fill and the log;
- answers are only served while the log was read successfully in the last
  `MAX_STALENESS_SECONDS`; otherwise reads go to the database as if there were no cache;
- a log that ends before the cursor (a database restored from a backup) clears the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from api.schemas import EntitlementsAnswer
from db import feed

logger = logging.getLogger(__name__)

# Changes read per query when catching up after a pause.
CATCH_UP_PAGE = 1000
# Longer than a busy event loop may delay a poll; short enough that an API cut off from its
# database stops serving what it can no longer check.
MAX_STALENESS_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An entitlement answer as served: its version, its ETag and its JSON body."""

    version: int
    etag: str
    body: bytes

    @classmethod
    def of(cls, answer: EntitlementsAnswer) -> CachedAnswer:
        return cls(
            answer.version,
            etag_for(answer.account_id, answer.version),
            answer.to_json(),
        )

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> CachedAnswer:
        """From a stored row or a change-log document (both are the answer's fields)."""
        return cls.of(EntitlementsAnswer.from_fields(fields))


def etag_for(account_id: str, version: int) -> str:
    """Strong: one (account, version) pair is always the same answer."""
    digest = hashlib.sha256(f"{account_id}\n{version}".encode()).hexdigest()[:32]
    return f'"{digest}"'


@dataclass(frozen=True)
class LogRead:
    """What one look at the change log found: the new answers, oldest first, and where the
    next look starts."""

    cursor: int
    answers: list[tuple[str, CachedAnswer]]
    # The log ends before the cursor: the database was restored from a backup, and every
    # answer held may be newer than the database's.
    rewound: bool = False


def read_log(sessions: sessionmaker[Session], after: int | None) -> LogRead:
    """The log from `after` to its end; only its newest cursor when `after` is None."""
    with sessions() as session:
        if after is None:
            return LogRead(feed.newest_cursor(session), [])
        cursor, answers = after, []
        while True:
            changes = feed.changes_after(session, cursor, CATCH_UP_PAGE)
            for change in changes:
                answers.append((change.account_id, CachedAnswer.from_fields(change.entitlements)))
                cursor = change.cursor
            if len(changes) < CATCH_UP_PAGE:
                break
        if not answers and (newest := feed.newest_cursor(session)) < after:
            return LogRead(newest, [], rewound=True)
        return LogRead(cursor, answers)


class AnswerCache:
    """Touched from the event loop only (database reads happen in threads and hand their
    results back), so a check-then-store is never interleaved with another."""

    def __init__(self, max_entries: int) -> None:
        self._answers: dict[str, CachedAnswer] = {}
        self._max_entries = max_entries
        # None until the log's newest cursor is known: no fill is accepted before that.
        self.cursor: int | None = None
        # Grows when the cursor is first taken and at every clear: a fill that began in an
        # earlier epoch may be older than a change the cache has already dropped.
        self._epoch = 0
        self._fresh_until = 0.0

    def get(self, account_id: str) -> CachedAnswer | None:
        if time.monotonic() >= self._fresh_until:
            return None
        return self._answers.get(account_id)

    def fill_ticket(self) -> int:
        """Taken before reading an answer from the database, handed back to `fill`."""
        return self._epoch if self.cursor is not None else -1

    def fill(self, account_id: str, answer: CachedAnswer, ticket: int) -> None:
        if ticket == self._epoch:
            self._store(account_id, answer)

    def caught_up(self, read: LogRead) -> None:
        if read.rewound:
            logger.warning("the change log was rewound (a restore?): entitlement cache cleared")
            self._answers.clear()
        if self.cursor is None or read.rewound:
            self._epoch += 1
        for account_id, answer in read.answers:
            self._store(account_id, answer)
        self.cursor = read.cursor
        self._fresh_until = time.monotonic() + MAX_STALENESS_SECONDS

    def _store(self, account_id: str, answer: CachedAnswer) -> None:
        held = self._answers.get(account_id)
        if held is not None and held.version >= answer.version:
            return
        if held is None and len(self._answers) >= self._max_entries:
            # Dropping all is simpler than an eviction order and safe: fills begun before
            # it are refused (new epoch), and every later change is still read from the log.
            self._answers.clear()
            self._epoch += 1
        self._answers[account_id] = answer


async def keep_current(
    cache: AnswerCache, sessions: sessionmaker[Session], poll_seconds: float
) -> None:
    """Follow the change log for as long as the app runs."""
    failing = False
    while True:
        try:
            cache.caught_up(await run_in_threadpool(read_log, sessions, cache.cursor))
        except Exception as err:  # the database is down: answers stop being served when stale
            if not failing:
                logger.warning("entitlement cache cannot read the change log: %r", err)
            failing = True
        else:
            if failing:
                logger.info("entitlement cache follows the change log again")
            failing = False
        await asyncio.sleep(poll_seconds)
