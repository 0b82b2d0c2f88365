from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session, sessionmaker

from db import entitlement_answers, repository
from db.models import EntitlementChange, StripeEvent, UnroutableEvent
from domain.catalog import default_catalog
from domain.entitlements import (
    Access,
    AccountEntitlements,
    Entitlements,
    Message,
    ScheduledPlan,
    free_entitlements,
)

pytestmark = pytest.mark.db

PERIOD_END = datetime(2027, 1, 31, 12, 30, tzinfo=UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid4().hex[:12]}"


def pro(**changes: object) -> Entitlements:
    active = replace(
        free_entitlements(default_catalog()),
        billing_state="active",
        effective_state="active",
        plan="pro",
        interval="month",
        message=None,
        period_ends_at=PERIOD_END,
    )
    return replace(active, **changes)  # type: ignore[arg-type]


def write(
    sessions: sessionmaker[Session],
    account_id: str,
    version: int,
    entitlements: Entitlements,
    cause: str = "test",
) -> bool:
    with sessions.begin() as session:
        return repository.write_entitlements(
            session,
            account_id,
            version,
            entitlements,
            {"state": entitlements.billing_state, "version": version},
            cause,
            [f"notice-{version}"],
        )


def changes_of(sessions: sessionmaker[Session], account_id: str) -> list[EntitlementChange]:
    with sessions() as session:
        return list(
            session.scalars(
                select(EntitlementChange)
                .where(EntitlementChange.account_id == account_id)
                .order_by(EntitlementChange.id)
            )
        )


def test_first_write_creates_account_entitlements_and_change(
    session_factory: sessionmaker[Session],
) -> None:
    account_id = new_id("acct")

    assert write(session_factory, account_id, 1, pro(), cause="stripe:evt_1,evt_2")

    with session_factory() as session:
        record = repository.read_entitlements(session, account_id)
        stored = repository.stored_account(session, account_id)
    assert record is not None
    assert (record.version, record.billing_state, record.plan) == (1, "active", "pro")
    assert record.access is Access.FULL
    assert record.message is None
    assert record.features == pro().features and record.limits == pro().limits
    assert stored == repository.StoredAccount(
        customer_id=None, version=1, lifecycle={"state": "active", "version": 1}
    )
    [change] = changes_of(session_factory, account_id)
    assert (change.version, change.plan, change.access) == (1, "pro", "full")
    assert change.cause == "stripe:evt_1,evt_2"
    assert change.notices == ["notice-1"]
    assert change.document == repository.entitlement_document(account_id, 1, pro())
    assert change.document["period_ends_at"] == "2027-01-31T12:30:00Z"


def test_newer_version_applies_and_is_logged(session_factory: sessionmaker[Session]) -> None:
    account_id = new_id("acct")
    write(session_factory, account_id, 1, pro())
    past_due = pro(
        billing_state="past_due",
        effective_state="past_due",
        message=Message.PAYMENT_FAILED,
        grace_ends_at=PERIOD_END - timedelta(days=20),
    )

    assert write(session_factory, account_id, 2, past_due)

    with session_factory() as session:
        record = repository.read_entitlements(session, account_id)
    assert record is not None
    assert (record.version, record.billing_state, record.message) == (
        2,
        "past_due",
        Message.PAYMENT_FAILED,
    )
    assert [c.version for c in changes_of(session_factory, account_id)] == [1, 2]


@pytest.mark.parametrize("stale_version", [1, 2], ids=["older", "equal"])
def test_stale_or_equal_version_changes_nothing(
    session_factory: sessionmaker[Session], stale_version: int
) -> None:
    account_id = new_id("acct")
    write(session_factory, account_id, 2, pro())

    assert not write(session_factory, account_id, stale_version, pro(plan="team", seats=9))

    with session_factory() as session:
        record = repository.read_entitlements(session, account_id)
        stored = repository.stored_account(session, account_id)
    assert record is not None and (record.version, record.plan, record.seats) == (2, "pro", 1)
    assert stored is not None and stored.lifecycle == {"state": "active", "version": 2}
    assert [c.version for c in changes_of(session_factory, account_id)] == [2]


def test_timestamps_round_trip_as_aware_utc(session_factory: sessionmaker[Session]) -> None:
    account_id = new_id("acct")
    in_paris = datetime(2027, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    write(session_factory, account_id, 1, pro(trial_ends_at=in_paris))

    with session_factory() as session:
        record = repository.read_entitlements(session, account_id)
    assert record is not None
    assert record.trial_ends_at == in_paris
    assert record.trial_ends_at is not None and record.trial_ends_at.tzinfo is UTC
    assert record.period_ends_at == PERIOD_END and record.period_ends_at.tzinfo is UTC
    assert record.updated_at.tzinfo is UTC
    assert abs(datetime.now(UTC) - record.updated_at) < timedelta(minutes=1)


def test_the_record_holds_every_field_written(session_factory: sessionmaker[Session]) -> None:
    account_id = new_id("acct")
    written = pro(
        cancel_at=PERIOD_END,
        open_invoice_url="https://invoice.example/in_1",
        pending_change=ScheduledPlan("free", "month", 1, PERIOD_END),
    )
    write(session_factory, account_id, 3, written)

    with session_factory() as session:
        record = repository.read_entitlements(session, account_id)

    assert record is not None
    assert (record.account_id, record.version) == (account_id, 3)
    assert Entitlements(**{f.name: getattr(record, f.name) for f in fields(Entitlements)}) == (
        written
    )
    assert isinstance(record.pending_change, ScheduledPlan)


def test_the_stored_answer_is_the_account_entitlements_fields(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    account_id = new_id("acct")
    write(session_factory, account_id, 2, pro())

    stored = entitlement_answers.stored_answer(engine, account_id)

    assert stored is not None
    assert list(stored) == [f.name for f in fields(AccountEntitlements)]
    assert (stored["account_id"], stored["version"], stored["plan"]) == (account_id, 2, "pro")
    assert entitlement_answers.stored_answer(engine, new_id("acct")) is None


def test_accounts_are_counted_per_billing_state(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        before = repository.accounts_per_billing_state(session)
    for state in ("active", "active", "past_due"):
        write(session_factory, new_id("acct"), 1, pro(billing_state=state))

    with session_factory() as session:
        after = repository.accounts_per_billing_state(session)

    grown = {state: after[state] - before.get(state, 0) for state in after}
    assert {state: n for state, n in grown.items() if n} == {"active": 2, "past_due": 1}


def test_naive_timestamps_are_refused(session_factory: sessionmaker[Session]) -> None:
    naive = datetime(2027, 1, 1)
    with pytest.raises(StatementError, match="naive datetime"):
        write(session_factory, new_id("acct"), 1, pro(period_ends_at=naive))


def test_unknown_account_reads_none(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        assert repository.read_entitlements(session, new_id("acct")) is None
        assert repository.stored_account(session, new_id("acct")) is None
        assert repository.account_for_customer(session, new_id("cus")) is None
        assert repository.customer_for_account(session, new_id("acct")) is None


def test_link_customer_is_idempotent(session_factory: sessionmaker[Session]) -> None:
    account_id, customer_id = new_id("acct"), new_id("cus")

    for _ in range(2):
        with session_factory.begin() as session:
            repository.link_customer(session, account_id, customer_id)

    with session_factory() as session:
        assert repository.account_for_customer(session, customer_id) == account_id
        assert repository.customer_for_account(session, account_id) == customer_id
        assert repository.stored_account(session, account_id) == repository.StoredAccount(
            customer_id=customer_id, version=0, lifecycle=None
        )


def test_link_customer_keeps_existing_entitlements(
    session_factory: sessionmaker[Session],
) -> None:
    account_id, customer_id = new_id("acct"), new_id("cus")
    write(session_factory, account_id, 3, pro())

    with session_factory.begin() as session:
        repository.link_customer(session, account_id, customer_id)

    with session_factory() as session:
        stored = repository.stored_account(session, account_id)
    assert stored is not None and (stored.customer_id, stored.version) == (customer_id, 3)


def test_customer_linked_elsewhere_conflicts(session_factory: sessionmaker[Session]) -> None:
    owner, other, customer_id = new_id("acct"), new_id("acct"), new_id("cus")
    with session_factory.begin() as session:
        repository.link_customer(session, owner, customer_id)

    with session_factory.begin() as session, pytest.raises(repository.CustomerConflict):
        repository.link_customer(session, other, customer_id)

    with session_factory() as session:
        assert repository.account_for_customer(session, customer_id) == owner
        assert repository.stored_account(session, other) is None


def test_account_linked_to_another_customer_conflicts(
    session_factory: sessionmaker[Session],
) -> None:
    account_id, first, second = new_id("acct"), new_id("cus"), new_id("cus")
    with session_factory.begin() as session:
        repository.link_customer(session, account_id, first)

    with session_factory.begin() as session, pytest.raises(repository.CustomerConflict):
        repository.link_customer(session, account_id, second)

    with session_factory() as session:
        assert repository.customer_for_account(session, account_id) == first
        assert repository.account_for_customer(session, second) is None


def test_record_stripe_events_counts_only_new_ones(
    session_factory: sessionmaker[Session],
) -> None:
    account_id = new_id("acct")
    first, second, third = new_id("evt"), new_id("evt"), new_id("evt")

    with session_factory.begin() as session:
        assert (
            repository.record_stripe_events(
                session,
                account_id,
                [(first, "invoice.paid", 100), (second, "customer.subscription.updated", 101)],
            )
            == 2
        )
    with session_factory.begin() as session:
        assert (
            repository.record_stripe_events(
                session, account_id, [(second, "ignored", 0), (third, "invoice.paid", 102)]
            )
            == 1
        )
        assert repository.record_stripe_events(session, account_id, []) == 0

    with session_factory() as session:
        rows = session.scalars(
            select(StripeEvent).where(StripeEvent.account_id == account_id)
        ).all()
    by_id = {row.event_id: row for row in rows}
    assert set(by_id) == {first, second, third}
    assert (by_id[second].event_type, by_id[second].created) == (
        "customer.subscription.updated",
        101,
    )
    assert by_id[third].received_at.tzinfo is UTC


def test_unroutable_event_is_stored_once(session_factory: sessionmaker[Session]) -> None:
    event_id, customer_id = new_id("evt"), new_id("cus")
    payload = {
        "id": event_id,
        "type": "invoice.paid",
        "data": {"object": {"customer": customer_id}},
    }

    for attempt in range(2):
        with session_factory.begin() as session:
            repository.store_unroutable_event(
                session, event_id, "invoice.paid", customer_id, {**payload, "attempt": attempt}
            )

    with session_factory() as session:
        count = session.scalar(select(func.count()).where(UnroutableEvent.event_id == event_id))
        stored = session.get_one(UnroutableEvent, event_id)
    assert count == 1
    assert stored.payload == {**payload, "attempt": 0}
    assert (stored.customer_id, stored.resolved_at, stored.resolved_account_id) == (
        customer_id,
        None,
        None,
    )


def test_a_stored_checkout_is_replaced_only_by_a_later_attempt(
    session_factory: sessionmaker[Session],
) -> None:
    account = new_id("acct")
    second = repository.StoredCheckout("cs_second", "team_monthly_per_seat", 2, attempt=2)
    first = repository.StoredCheckout("cs_first", "pro_monthly", 1, attempt=1)
    third = repository.StoredCheckout("cs_third", "pro_monthly", 1, attempt=3)

    for checkout, expected in ((second, second), (first, second), (third, third)):
        with session_factory.begin() as session:
            repository.store_checkout(session, account, checkout)
        with session_factory() as session:
            assert repository.stored_checkout(session, account) == expected
