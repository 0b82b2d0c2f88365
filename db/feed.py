"""The entitlement change log read as a feed: pages of changes after a cursor, in commit order.

The cursor is `entitlement_changes.id`. Paging by `id > cursor` is only gap-free if a row with a
smaller id can never become visible after a row with a larger one. SQLite has one writer at a
time, so ids there are handed out in commit order. PostgreSQL assigns ids at insert and commits
in any order: a reader could see id 8, move its cursor past it, and never see id 7 whose
transaction committed a moment later. `lock_change_log` closes that hole by making appends
to the log take turns (see there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, text
from sqlalchemy.orm import Session

from db.models import EntitlementChange

# Any fixed bigint works; this one spells "dfbfeed1" so it is recognisable in `pg_locks`.
CHANGE_LOG_LOCK_KEY = int.from_bytes(b"dfbfeed1", "big")


@dataclass(frozen=True)
class FeedChange:
    cursor: int
    account_id: str
    version: int
    # The full entitlement answer after the change, as the entitlement API returns it.
    entitlements: dict[str, Any]
    changed_at: datetime


def lock_change_log(session: Session) -> None:
    """Make this transaction the only one appending to the change log until it ends.

    On PostgreSQL a transaction-scoped advisory lock: the next appender waits for this
    transaction's commit (or rollback) before its insert draws an id, so ids become visible in
    id order and a reader paging by cursor cannot skip one. Chosen over a read-side safety lag
    because it is exact rather than a guess about how long a transaction can stay open, costs
    no schema change, and entitlement writes are short and rare (one per billing event).
    SQLite needs nothing: a write transaction already holds the database's only write lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHANGE_LOG_LOCK_KEY})


# Built once, values as parameters: followers read the log many times a second.
_CHANGES_AFTER = (
    select(
        EntitlementChange.id,
        EntitlementChange.account_id,
        EntitlementChange.version,
        EntitlementChange.document,
        EntitlementChange.created_at,
    )
    .where(EntitlementChange.id > bindparam("cursor"))
    .order_by(EntitlementChange.id)
    .limit(bindparam("limit"))
)
_NEWEST_CURSOR = select(func.coalesce(func.max(EntitlementChange.id), 0))


def changes_after(session: Session | Connection, cursor: int, limit: int) -> list[FeedChange]:
    """Up to `limit` changes with a cursor greater than `cursor`, oldest first."""
    rows = session.execute(_CHANGES_AFTER, {"cursor": cursor, "limit": limit}).all()
    return [
        FeedChange(
            cursor=row.id,
            account_id=row.account_id,
            version=row.version,
            entitlements=dict(row.document),
            changed_at=row.created_at,
        )
        for row in rows
    ]


def newest_cursor(session: Session | Connection) -> int:
    """The cursor of the newest change, 0 when the log is empty."""
    return int(session.scalar(_NEWEST_CURSOR) or 0)
