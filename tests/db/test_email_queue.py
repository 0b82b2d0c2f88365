"""The outbox as a queue: `queue` keeps one row per key, `claim_due` hands out due rows once
per lease, `end_attempts` writes a batch of attempts' ends and touches only rows still waiting
to be sent.

Each test has a database of its own: `claim_due` claims every due row, whoever queued it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import text, update
from sqlalchemy.orm import Session, sessionmaker

from db import outbox
from db.models import EmailDelivery, utcnow
from db.outbox import DeliveryStatus

pytestmark = pytest.mark.db

LEASE = timedelta(minutes=2)


@pytest.fixture
def sessions(own_database: tuple[str, sessionmaker[Session]]) -> sessionmaker[Session]:
    return own_database[1]


def new_key() -> str:
    return f"acct_{uuid4().hex[:12]}:2026-11:payment_failed"


def queue_email(
    sessions: sessionmaker[Session], key: str, request: dict[str, Any] | None = None
) -> None:
    account_id = key.split(":")[0]
    with sessions.begin() as session:
        outbox.queue(session, account_id, [(key, "payment_failed", request or {"key": key})])


def stored(sessions: sessionmaker[Session], key: str) -> EmailDelivery:
    with sessions() as session:
        row = session.get(EmailDelivery, key)
        assert row is not None, f"no outbox row for {key}"
        session.expunge(row)
    return row


def claim(
    sessions: sessionmaker[Session], now: datetime, *, limit: int = 10, lease: timedelta = LEASE
) -> list[outbox.QueuedEmail]:
    with sessions.begin() as session:
        return outbox.claim_due(session, now=now, lease_until=now + lease, limit=limit)


def claimed_keys(sessions: sessionmaker[Session], now: datetime, *, limit: int = 10) -> set[str]:
    return {email.key for email in claim(sessions, now, limit=limit)}


def force_next_attempt(sessions: sessionmaker[Session], key: str, when: datetime) -> None:
    """Set the row's `next_attempt_at` whatever its status, so that only the status or the
    request can keep `claim_due` from it."""
    with sessions.begin() as session:
        session.execute(
            update(EmailDelivery).where(EmailDelivery.key == key).values(next_attempt_at=when)
        )


def begin_old_style_attempt(session: Session, key: str) -> None:
    """What the `send_email` activity (runs recorded before the queue) writes: no request."""
    outbox.begin_attempt(
        session,
        key=key,
        account_id=key.split(":")[0],
        kind="payment_failed",
        recipient="ada@example.com",
        subject="Payment failed",
    )


def end_without_sending(session: Session, key: str, status: outbox.UnsentStatus) -> None:
    outbox.mark_unsent(
        session,
        key=key,
        account_id=key.split(":")[0],
        kind="payment_failed",
        status=status,
        reason=f"ended as {status.value}",
    )


# --- queue -------------------------------------------------------------------------------------


def test_a_queued_email_waits_due_now_with_its_request(
    sessions: sessionmaker[Session],
) -> None:
    key = new_key()
    request = {"key": key, "context": {"plan": "pro"}, "only_in_states": ["past_due"]}
    before = utcnow()
    queue_email(sessions, key, request)

    row = stored(sessions, key)
    assert (row.status, row.attempts, row.request, row.last_error, row.sent_at) == (
        DeliveryStatus.QUEUED.value,
        0,
        request,
        None,
        None,
    )
    assert row.next_attempt_at == row.created_at
    assert before <= row.created_at <= utcnow()


def test_queueing_a_key_again_changes_nothing(sessions: sessionmaker[Session]) -> None:
    key = new_key()
    queue_email(sessions, key, {"version": "first"})
    first = stored(sessions, key)
    account_id = key.split(":")[0]

    with sessions.begin() as session:
        outbox.queue(session, account_id, [(key, "final_reminder", {"version": "second"})])

    again = stored(sessions, key)
    assert (again.kind, again.request, again.next_attempt_at, again.created_at) == (
        "payment_failed",
        {"version": "first"},
        first.next_attempt_at,
        first.created_at,
    )


def test_queueing_a_sent_key_leaves_it_sent(sessions: sessionmaker[Session]) -> None:
    key = new_key()
    with sessions.begin() as session:
        begin_old_style_attempt(session, key)
        outbox.mark_sent(session, key)

    queue_email(sessions, key)

    row = stored(sessions, key)
    assert (row.status, row.request, row.next_attempt_at) == (DeliveryStatus.SENT.value, None, None)
    assert claim(sessions, utcnow() + timedelta(days=1)) == []


def test_queue_writes_every_email_of_the_batch(sessions: sessionmaker[Session]) -> None:
    account_id = f"acct_{uuid4().hex[:12]}"
    keys = [f"{account_id}:2026-11:{kind}" for kind in ("payment_failed", "final_reminder")]
    with sessions.begin() as session:
        outbox.queue(session, account_id, [(key, "payment_failed", {"key": key}) for key in keys])
        outbox.queue(session, account_id, [])

    assert [stored(sessions, key).request for key in keys] == [{"key": key} for key in keys]


# --- claim_due ---------------------------------------------------------------------------------


def test_only_due_rows_are_claimed(sessions: sessionmaker[Session]) -> None:
    due, later = new_key(), new_key()
    queue_email(sessions, due)
    queue_email(sessions, later)
    now = utcnow()
    force_next_attempt(sessions, later, now + timedelta(seconds=1))

    assert claimed_keys(sessions, now) == {due}
    assert claimed_keys(sessions, now + timedelta(seconds=1)) == {later}


def test_a_claim_hands_out_the_request_and_the_attempts_so_far(
    sessions: sessionmaker[Session],
) -> None:
    key = new_key()
    queue_email(sessions, key, {"key": key, "context": {"seats": "3"}})

    [email] = claim(sessions, utcnow())

    row = stored(sessions, key)
    assert email == outbox.QueuedEmail(
        key=key,
        request={"key": key, "context": {"seats": "3"}},
        attempts=0,
        created_at=row.created_at,
    )


def test_the_oldest_due_rows_are_claimed_first_up_to_the_limit(
    sessions: sessionmaker[Session],
) -> None:
    now = utcnow()
    keys = [new_key() for _ in range(5)]
    # Queued in one order, due in another: the claim follows when they are due.
    due_minutes_ago = [3, 5, 1, 4, 2]
    for key, minutes in zip(keys, due_minutes_ago, strict=True):
        queue_email(sessions, key)
        force_next_attempt(sessions, key, now - timedelta(minutes=minutes))
    oldest_first = [key for _, key in sorted(zip(due_minutes_ago, keys, strict=True), reverse=True)]

    assert claimed_keys(sessions, now, limit=2) == set(oldest_first[:2])
    assert claimed_keys(sessions, now, limit=2) == set(oldest_first[2:4])
    assert claimed_keys(sessions, now, limit=2) == set(oldest_first[4:])
    assert claimed_keys(sessions, now, limit=2) == set()


def test_a_claimed_row_is_leased_and_claimed_again_when_the_lease_runs_out(
    sessions: sessionmaker[Session],
) -> None:
    key = new_key()
    queue_email(sessions, key)
    now = utcnow()

    assert claimed_keys(sessions, now) == {key}
    assert stored(sessions, key).next_attempt_at == now + LEASE
    assert claimed_keys(sessions, now) == set()
    assert claimed_keys(sessions, now + LEASE - timedelta(microseconds=1)) == set()
    assert claimed_keys(sessions, now + LEASE) == {key}


def test_a_claim_skips_the_rows_another_claim_holds(
    own_database: tuple[str, sessionmaker[Session]],
) -> None:
    url, sessions = own_database
    if not url.startswith("postgresql"):
        pytest.skip("SKIP LOCKED is PostgreSQL's: SQLite lets one writer in at a time")
    now = utcnow()
    keys = [new_key() for _ in range(4)]
    for minutes_ago, key in enumerate(reversed(keys), start=1):
        queue_email(sessions, key)
        force_next_attempt(sessions, key, now - timedelta(minutes=minutes_ago))

    with sessions.begin() as holding:
        held = outbox.claim_due(holding, now=now, lease_until=now + LEASE, limit=2)
        # Not committed yet: a claim that waited for these rows would time out here.
        with sessions.begin() as other:
            other.execute(text("SET LOCAL lock_timeout = '5s'"))
            skipped_to = outbox.claim_due(other, now=now, lease_until=now + LEASE, limit=10)

    assert {email.key for email in held} == set(keys[:2])
    assert {email.key for email in skipped_to} == set(keys[2:])


def test_a_pending_row_whose_sender_died_is_claimed_again_with_its_attempts(
    sessions: sessionmaker[Session],
) -> None:
    key = new_key()
    queue_email(sessions, key)
    now = utcnow()
    claim(sessions, now)
    with sessions.begin() as session:
        begin_old_style_attempt(session, key)  # the sender's attempt: pending, one more attempt
    assert stored(sessions, key).status == DeliveryStatus.PENDING.value

    [again] = claim(sessions, now + LEASE)

    assert (again.key, again.attempts) == (key, 1)


def test_rows_without_a_request_are_never_claimed(sessions: sessionmaker[Session]) -> None:
    key = new_key()
    with sessions.begin() as session:
        begin_old_style_attempt(session, key)
        outbox.mark_failed(session, key, "SMTPConnectError: refused")
    now = utcnow()
    force_next_attempt(sessions, key, now - timedelta(hours=1))

    assert claim(sessions, now) == []
    row = stored(sessions, key)
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING.value, 1)


@pytest.mark.parametrize(
    "status",
    [
        DeliveryStatus.SENT,
        DeliveryStatus.OBSOLETE,
        DeliveryStatus.NO_RECIPIENT,
        DeliveryStatus.FAILED,
    ],
)
def test_finished_rows_are_never_claimed(
    sessions: sessionmaker[Session], status: DeliveryStatus
) -> None:
    key = new_key()
    queue_email(sessions, key)
    with sessions.begin() as session:
        if status == DeliveryStatus.SENT:
            outbox.mark_sent(session, key)
        else:
            end_without_sending(session, key, status)  # type: ignore[arg-type]
    assert stored(sessions, key).next_attempt_at is None
    # Even due again, the status alone keeps the claim off it.
    now = utcnow()
    force_next_attempt(sessions, key, now - timedelta(hours=1))

    assert claim(sessions, now) == []
    assert stored(sessions, key).status == status.value


# --- end_attempts ------------------------------------------------------------------------------


def end(sessions: sessionmaker[Session], *ends: outbox.AttemptEnd) -> None:
    with sessions.begin() as session:
        outbox.end_attempts(session, list(ends))


def test_a_failed_attempt_waits_for_its_retry_with_its_error(
    sessions: sessionmaker[Session],
) -> None:
    key = new_key()
    queue_email(sessions, key)
    now = utcnow()
    claim(sessions, now)
    retry = now + timedelta(seconds=10)

    end(
        sessions,
        outbox.AttemptEnd(
            key,
            DeliveryStatus.PENDING,
            attempted=True,
            recipient="ada@example.com",
            subject="Payment failed",
            error="SMTPConnectError: refused",
            retry_at=retry,
        ),
    )

    row = stored(sessions, key)
    assert (row.status, row.attempts, row.recipient, row.last_error) == (
        DeliveryStatus.PENDING.value,
        1,
        "ada@example.com",
        "SMTPConnectError: refused",
    )
    assert row.next_attempt_at == retry
    assert claimed_keys(sessions, retry - timedelta(microseconds=1)) == set()
    assert claimed_keys(sessions, retry) == {key}


def test_a_sent_attempt_counts_and_keeps_the_last_error(sessions: sessionmaker[Session]) -> None:
    key = new_key()
    queue_email(sessions, key)
    claim(sessions, utcnow())
    end(sessions, outbox.AttemptEnd(key, DeliveryStatus.PENDING, attempted=True, error="busy"))

    end(
        sessions,
        outbox.AttemptEnd(
            key, DeliveryStatus.SENT, attempted=True, recipient="ada@example.com", subject="Hi"
        ),
    )

    row = stored(sessions, key)
    assert (row.status, row.attempts, row.last_error, row.next_attempt_at) == (
        DeliveryStatus.SENT.value,
        2,
        "busy",
        None,
    )
    assert (row.recipient, row.subject) == ("ada@example.com", "Hi")
    assert row.sent_at is not None


def test_a_given_up_email_fails_for_good(sessions: sessionmaker[Session]) -> None:
    key = new_key()
    queue_email(sessions, key)
    claim(sessions, utcnow())

    end(
        sessions,
        outbox.AttemptEnd(
            key, DeliveryStatus.FAILED, attempted=True, error="given up: " + "x" * 10_000
        ),
    )

    row = stored(sessions, key)
    assert (row.status, row.next_attempt_at) == (DeliveryStatus.FAILED.value, None)
    assert row.last_error == ("given up: " + "x" * 10_000)[: outbox.MAX_ERROR_CHARS]
    assert claim(sessions, utcnow() + timedelta(days=30)) == []


def test_one_call_ends_every_attempt_of_the_batch(sessions: sessionmaker[Session]) -> None:
    sent, failed, nobody = new_key(), new_key(), new_key()
    for key in (sent, failed, nobody):
        queue_email(sessions, key)
    now = utcnow()
    claim(sessions, now)

    end(
        sessions,
        outbox.AttemptEnd(sent, DeliveryStatus.SENT, attempted=True, recipient="a@example.com"),
        outbox.AttemptEnd(
            failed, DeliveryStatus.PENDING, attempted=True, error="down", retry_at=now
        ),
        outbox.AttemptEnd(
            nobody, DeliveryStatus.NO_RECIPIENT, attempted=False, recipient="", error="no email"
        ),
    )

    rows = {key: stored(sessions, key) for key in (sent, failed, nobody)}
    assert {key: (row.status, row.attempts) for key, row in rows.items()} == {
        sent: (DeliveryStatus.SENT.value, 1),
        failed: (DeliveryStatus.PENDING.value, 1),
        nobody: (DeliveryStatus.NO_RECIPIENT.value, 0),
    }
    assert claimed_keys(sessions, now) == {failed}


@pytest.mark.parametrize(
    "status", [DeliveryStatus.SENT, DeliveryStatus.OBSOLETE, DeliveryStatus.NO_RECIPIENT]
)
def test_an_attempts_end_leaves_a_finished_row_alone(
    sessions: sessionmaker[Session], status: DeliveryStatus
) -> None:
    key = new_key()
    queue_email(sessions, key)
    with sessions.begin() as session:
        if status == DeliveryStatus.SENT:
            outbox.mark_sent(session, key)
        else:
            end_without_sending(session, key, status)  # type: ignore[arg-type]
    before = stored(sessions, key)

    end(
        sessions,
        outbox.AttemptEnd(
            key, DeliveryStatus.PENDING, attempted=True, error="late", retry_at=utcnow()
        ),
    )
    end(sessions, outbox.AttemptEnd(key, DeliveryStatus.FAILED, attempted=True, error="too late"))

    after = stored(sessions, key)
    assert (after.status, after.attempts, after.next_attempt_at, after.last_error) == (
        status.value,
        before.attempts,
        None,
        before.last_error,
    )
