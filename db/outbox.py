"""The email outbox: one row per email key, which is what keeps a retried or replayed email
from going out again once it is `sent` (delivery is at least once: docs/reliability.md).

Plain functions over a `Session`; the caller owns the transaction. A row moves
`pending` → `sent`, or ends as `no_recipient` / `failed`; only `sent` is final; every other
status is left again by the next attempt for the same key.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, cast

from sqlalchemy import Row, Table, bindparam, select, update
from sqlalchemy.orm import Session

from db.models import EmailDelivery, utcnow
from db.repository import _dialect, _dialect_insert

# Enough of an SMTP or Stripe error to act on, without storing a whole traceback per attempt.
MAX_ERROR_CHARS = 2000


class DeliveryStatus(StrEnum):
    # Written as `.value`: psycopg would store an enum member by its name.
    # Claimed for sending (committed before the SMTP conversation starts); may have failed.
    PENDING = "pending"
    SENT = "sent"
    # The Stripe customer has no email address; nothing was sent.
    NO_RECIPIENT = "no_recipient"
    # The email could not be rendered; retrying will not help.
    FAILED = "failed"
    # The account left the state the email was about before it could go out.
    OBSOLETE = "obsolete"


@dataclass(frozen=True)
class DeliveryRecord:
    key: str
    account_id: str
    kind: str
    recipient: str
    subject: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


# The table, for the statements every email runs: they skip the ORM's identity map and
# bulk-statement machinery (costlier than the statements themselves), and are built once.
_TABLE = cast(Table, EmailDelivery.__table__)
_BY_KEY = select(_TABLE).where(_TABLE.c.key == bindparam("sought_key"))
_MARK_SENT = (
    update(_TABLE)
    .where(_TABLE.c.key == bindparam("sent_key"))
    .values(status=DeliveryStatus.SENT.value, sent_at=bindparam("sent_at"))
)


def get_delivery(session: Session, key: str) -> DeliveryRecord | None:
    row = session.execute(_BY_KEY, {"sought_key": key}).first()
    return None if row is None else _record(row)


def deliveries_for_account(session: Session, account_id: str) -> list[DeliveryRecord]:
    """Every email kept for the account, newest first."""
    rows = session.scalars(
        select(EmailDelivery)
        .where(EmailDelivery.account_id == account_id)
        .order_by(EmailDelivery.created_at.desc(), EmailDelivery.key)
    )
    return [_record(row) for row in rows]


def begin_attempt(
    session: Session, *, key: str, account_id: str, kind: str, recipient: str, subject: str
) -> DeliveryRecord | None:
    """Claim `key` for a send attempt: the row becomes `pending` with one more attempt.

    Returns None, changing nothing, when the key is already `sent` (another attempt won).
    """
    return _upsert_unsent(
        session,
        key=key,
        account_id=account_id,
        kind=kind,
        recipient=recipient,
        subject=subject,
        status=DeliveryStatus.PENDING,
        count_attempt=True,
        error=None,
    )


def mark_sent(session: Session, key: str) -> None:
    session.execute(_MARK_SENT, {"sent_key": key, "sent_at": utcnow()})


def mark_failed(session: Session, key: str, error: str) -> None:
    """Record why an attempt failed; the row stays `pending` for the next attempt."""
    session.execute(
        update(EmailDelivery)
        .where(EmailDelivery.key == key, EmailDelivery.status != DeliveryStatus.SENT.value)
        .values(last_error=error[:MAX_ERROR_CHARS])
    )


# The statuses an email ends in without being sent (each one's cause: `DeliveryStatus`).
UnsentStatus = Literal[DeliveryStatus.NO_RECIPIENT, DeliveryStatus.OBSOLETE, DeliveryStatus.FAILED]


def mark_unsent(
    session: Session,
    *,
    key: str,
    account_id: str,
    kind: str,
    status: UnsentStatus,
    reason: str,
    subject: str = "",
) -> DeliveryRecord | None:
    """Keep the email, not sent, with why (`reason`, stored as its last error), so operators
    see it; `subject` once the email was rendered.

    Returns None, changing nothing, when the key is already `sent`."""
    return _upsert_unsent(
        session,
        key=key,
        account_id=account_id,
        kind=kind,
        recipient="",
        subject=subject,
        status=status,
        count_attempt=False,
        error=reason,
    )


def _upsert_unsent(
    session: Session,
    *,
    key: str,
    account_id: str,
    kind: str,
    recipient: str,
    subject: str,
    status: DeliveryStatus,
    count_attempt: bool,
    error: str | None,
) -> DeliveryRecord | None:
    """Insert the row or update it in one statement, never touching a `sent` row."""
    values = {
        "key": key,
        "account_id": account_id,
        "kind": kind,
        "recipient": recipient,
        "subject": subject,
        "status": status.value,
        "attempts": 1 if count_attempt else 0,
        "last_error": None if error is None else error[:MAX_ERROR_CHARS],
        "created_at": utcnow(),
    }
    upsert = _unsent_upsert(_dialect(session), keeps_error=error is None)
    row = session.execute(upsert, values).first()
    return None if row is None else _record(row)


@functools.cache
def _unsent_upsert(dialect: str, keeps_error: bool) -> Any:
    insert = _dialect_insert(dialect, _TABLE)
    changes = {
        "recipient": insert.excluded.recipient,
        "subject": insert.excluded.subject,
        "status": insert.excluded.status,
        "attempts": _TABLE.c.attempts + insert.excluded.attempts,
    }
    # A new attempt keeps the previous error until it fails itself: it says what happened.
    if not keeps_error:
        changes["last_error"] = insert.excluded.last_error
    return insert.on_conflict_do_update(
        index_elements=[_TABLE.c.key],
        set_=changes,
        where=_TABLE.c.status != DeliveryStatus.SENT.value,
    ).returning(_TABLE)


def _record(row: EmailDelivery | Row[Any]) -> DeliveryRecord:
    return DeliveryRecord(
        key=row.key,
        account_id=row.account_id,
        kind=row.kind,
        recipient=row.recipient,
        subject=row.subject,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
    )
