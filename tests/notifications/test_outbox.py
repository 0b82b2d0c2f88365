"""The outbox functions: claiming, finishing, and what a `sent` row refuses."""

from __future__ import annotations

from uuid import uuid4

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import outbox
from db.outbox import DeliveryStatus

pytestmark = pytest.mark.db


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid4().hex[:12]}"


def claim(session: Session, key: str, account_id: str) -> outbox.DeliveryRecord | None:
    return outbox.begin_attempt(
        session,
        key=key,
        account_id=account_id,
        kind="payment_failed",
        recipient="ada@example.com",
        subject="Payment failed",
    )


def test_attempts_count_up_and_the_last_error_stays_until_sent(
    session_factory: sessionmaker[Session],
) -> None:
    account, key = new_id("acct"), new_id("key")
    with session_factory.begin() as session:
        first = claim(session, key, account)
    assert first is not None
    assert (first.status, first.attempts, first.last_error) == (DeliveryStatus.PENDING, 1, None)

    with session_factory.begin() as session:
        outbox.mark_failed(session, key, "SMTPConnectError: refused")
    with session_factory.begin() as session:
        second = claim(session, key, account)
    assert second is not None
    assert (second.attempts, second.last_error) == (2, "SMTPConnectError: refused")

    with session_factory.begin() as session:
        outbox.mark_sent(session, key)
    with session_factory() as session:
        sent = outbox.get_delivery(session, key)
    assert sent is not None and sent.status == DeliveryStatus.SENT
    assert sent.sent_at is not None and sent.sent_at.tzinfo is not None
    assert sent.recipient == "ada@example.com"


def test_a_sent_row_cannot_be_claimed_or_overwritten(
    session_factory: sessionmaker[Session],
) -> None:
    account, key = new_id("acct"), new_id("key")
    with session_factory.begin() as session:
        claim(session, key, account)
        outbox.mark_sent(session, key)
    with session_factory.begin() as session:
        assert claim(session, key, account) is None
        outbox.mark_failed(session, key, "late failure")
        for status, reason in ((DeliveryStatus.NO_RECIPIENT, "x"), (DeliveryStatus.FAILED, "y")):
            outbox.mark_unsent(
                session,
                key=key,
                account_id=account,
                kind="payment_failed",
                status=status,
                reason=reason,
            )
    with session_factory() as session:
        row = outbox.get_delivery(session, key)
    assert row is not None
    assert (row.status, row.attempts, row.last_error) == (DeliveryStatus.SENT, 1, None)


def test_no_recipient_is_recorded_without_an_attempt_and_can_be_retried(
    session_factory: sessionmaker[Session],
) -> None:
    account, key = new_id("acct"), new_id("key")
    with session_factory.begin() as session:
        outbox.mark_unsent(
            session,
            key=key,
            account_id=account,
            kind="trial_ending",
            status=DeliveryStatus.NO_RECIPIENT,
            reason="no email",
            subject="Your trial ends",
        )
    with session_factory() as session:
        row = outbox.get_delivery(session, key)
    assert row is not None
    assert (row.status, row.attempts, row.recipient, row.last_error) == (
        DeliveryStatus.NO_RECIPIENT,
        0,
        "",
        "no email",
    )
    # The customer added an address since: the next attempt claims the row.
    with session_factory.begin() as session:
        claimed = claim(session, key, account)
    assert claimed is not None and claimed.status == DeliveryStatus.PENDING


def test_deliveries_for_account_lists_only_that_account(
    session_factory: sessionmaker[Session],
) -> None:
    account, other = new_id("acct"), new_id("acct")
    keys = [new_id("key") for _ in range(3)]
    with session_factory.begin() as session:
        for key in keys:
            claim(session, key, account)
        claim(session, new_id("key"), other)
        outbox.mark_sent(session, keys[0])
    with session_factory() as session:
        rows = outbox.deliveries_for_account(session, account)
    assert sorted(row.key for row in rows) == sorted(keys)
    assert {row.key: row.status for row in rows}[keys[0]] == DeliveryStatus.SENT
    created = [row.created_at for row in rows]
    assert created == sorted(created, reverse=True)


def test_long_errors_are_cut(session_factory: sessionmaker[Session]) -> None:
    account, key = new_id("acct"), new_id("key")
    with session_factory.begin() as session:
        claim(session, key, account)
        outbox.mark_failed(session, key, "x" * 10_000)
    with session_factory() as session:
        row = outbox.get_delivery(session, key)
    assert row is not None and row.last_error == "x" * outbox.MAX_ERROR_CHARS
