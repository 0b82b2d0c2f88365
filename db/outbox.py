"""The email outbox: one row per email key, which is what keeps a retried or replayed email
from going out again once it is `sent` (delivery is at least once: docs/reliability.md).

Plain functions over a `Session`; the caller owns the transaction. A row is `queued` in the
transaction that decided the email (`queue`), claimed by the sender when due (`claim_due`),
and its attempt's end written (`end_attempts`): `sent`, `pending` until its retry, or ended as
`no_recipient` / `obsolete` / `failed`. (Runs recorded before the queue claim a key with
`begin_attempt` and end it with `mark_sent` / `mark_failed` / `mark_unsent`.) While queued or
pending it carries `next_attempt_at`: when the sender may claim it (again); a row that is done
has none.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, cast

from sqlalchemy import Row, String, Table, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from db.models import EmailDelivery, utcnow
from db.repository import _dialect, _dialect_insert

# Enough of an SMTP or Stripe error to act on, without storing a whole traceback per attempt.
MAX_ERROR_CHARS = 2000


class DeliveryStatus(StrEnum):
    # Written as `.value`: psycopg would store an enum member by its name.
    # Waiting for the sender (docs/reliability.md, "Email delivery").
    QUEUED = "queued"
    # Tried, failed, and waiting for its retry (`next_attempt_at`); in runs recorded before the
    # queue, also claimed by an attempt in progress (committed before its SMTP conversation).
    PENDING = "pending"
    SENT = "sent"
    # The Stripe customer has no email address; nothing was sent.
    NO_RECIPIENT = "no_recipient"
    # The email could not be rendered (retrying will not help), or SMTP refused it for three
    # days (`give_up`).
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
    .values(status=DeliveryStatus.SENT.value, sent_at=bindparam("sent_at"), next_attempt_at=None)
)
# Statuses the sender claims when due: queued, or pending (an attempt that failed, or whose
# sender died mid-send and whose lease ran out).
_CLAIMABLE = (DeliveryStatus.QUEUED.value, DeliveryStatus.PENDING.value)
# A claimed email's turn ends in one statement, run once per batch of ends (`end_attempts`).
_END_ATTEMPT = (
    update(_TABLE)
    .where(
        _TABLE.c.key == bindparam("ended_key"),
        # Not `in_`: its expanding parameter cannot run as executemany.
        or_(*(_TABLE.c.status == status for status in _CLAIMABLE)),
    )
    .values(
        status=bindparam("end_status"),
        attempts=_TABLE.c.attempts + bindparam("attempted"),
        recipient=func.coalesce(bindparam("end_recipient", type_=String), _TABLE.c.recipient),
        subject=func.coalesce(bindparam("end_subject", type_=String), _TABLE.c.subject),
        last_error=func.coalesce(bindparam("end_error", type_=String), _TABLE.c.last_error),
        next_attempt_at=bindparam("retry_at"),
        sent_at=bindparam("end_sent_at"),
    )
)


@dataclass(frozen=True)
class QueuedEmail:
    """An email to send, as `queue` stored it; `attempts` made before this claim."""

    key: str
    request: dict[str, Any]
    attempts: int
    created_at: datetime


def queue(session: Session, account_id: str, emails: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Queue each (key, kind, request) for the sender, due now. A key already kept (queued,
    sent, or ended) is left as it is: one row per email."""
    if not emails:
        return
    now = utcnow()
    session.execute(
        _queue_insert(_dialect(session)),
        [
            {
                "key": key,
                "account_id": account_id,
                "kind": kind,
                "recipient": "",
                "subject": "",
                "status": DeliveryStatus.QUEUED.value,
                "attempts": 0,
                "created_at": now,
                "request": request,
                "next_attempt_at": now,
            }
            for key, kind, request in emails
        ],
    )


@functools.cache
def _queue_insert(dialect: str) -> Any:
    return _dialect_insert(dialect, _TABLE).on_conflict_do_nothing(index_elements=[_TABLE.c.key])


def claim_due(
    session: Session, *, now: datetime, lease_until: datetime, limit: int
) -> list[QueuedEmail]:
    """Claim up to `limit` due emails, oldest due first, until `lease_until`: another sender
    skips them (and rows another sender holds locked) until then, so a sender that dies
    mid-send leaves its emails to be claimed again once the lease runs out."""
    due = (
        select(_TABLE.c.key)
        .where(
            _TABLE.c.next_attempt_at <= now,
            _TABLE.c.status.in_(_CLAIMABLE),
            _TABLE.c.request.is_not(None),
        )
        .order_by(_TABLE.c.next_attempt_at)
        .limit(limit)
    )
    if _dialect(session) == "postgresql":
        due = due.with_for_update(skip_locked=True)
    rows = session.execute(
        update(_TABLE)
        .where(_TABLE.c.key.in_(due.scalar_subquery()))
        .values(next_attempt_at=lease_until)
        .returning(_TABLE.c.key, _TABLE.c.request, _TABLE.c.attempts, _TABLE.c.created_at)
    ).all()
    return [
        QueuedEmail(key=r.key, request=r.request, attempts=r.attempts, created_at=r.created_at)
        for r in rows
    ]


@dataclass(frozen=True)
class AttemptEnd:
    """How a claimed email's turn ended: `sent`, `pending` again (failed, claimed again at
    `retry_at`), or an ending without sending. None keeps what the row says."""

    key: str
    status: DeliveryStatus
    # An attempt was made (sent, or failed on the way): it counts in `attempts`.
    attempted: bool
    recipient: str | None = None
    subject: str | None = None
    error: str | None = None
    retry_at: datetime | None = None


def end_attempts(session: Session, ends: list[AttemptEnd]) -> None:
    """Write each claimed email's end, in one statement for the batch. A row that is done
    meanwhile (sent by another attempt, or ended) is left as it is."""
    if not ends:
        return
    now = utcnow()
    session.execute(
        _END_ATTEMPT,
        [
            {
                "ended_key": end.key,
                "end_status": end.status.value,
                "attempted": int(end.attempted),
                "end_recipient": end.recipient,
                "end_subject": end.subject,
                "end_error": None if end.error is None else end.error[:MAX_ERROR_CHARS],
                "retry_at": end.retry_at,
                "end_sent_at": now if end.status is DeliveryStatus.SENT else None,
            }
            for end in ends
        ],
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
    """Insert the row or update it in one statement, never touching a `sent` row. An attempt
    keeps the row's `next_attempt_at` (its lease); an unsent ending clears it."""
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
    # A new attempt keeps the previous error until it fails itself (it says what happened),
    # and its lease; an ending (with its reason) is done.
    if not keeps_error:
        changes["last_error"] = insert.excluded.last_error
        changes["next_attempt_at"] = None
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
