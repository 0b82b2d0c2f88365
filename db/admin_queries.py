"""Read-side queries for operators, plus the bookkeeping of unroutable events.

Like `db.repository`, plain functions over a `Session`; the caller owns the transaction. Rows
come back as model instances: read them before the session closes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from db.models import (
    Account,
    EmailDelivery,
    EntitlementChange,
    EntitlementRow,
    OperatorAction,
    StripeEvent,
    UnroutableEvent,
)
from db.outbox import DeliveryStatus

# What operators may filter accounts on besides billing states: the operator overrides, which
# only show in `effective_state` (a locked account keeps its billing state underneath).
OVERRIDE_STATES = frozenset({"comped", "locked"})


@dataclass(frozen=True)
class AccountListing:
    account: Account
    # None for an account linked to a customer that no entitlement write has reached yet.
    entitlements: EntitlementRow | None


def account(session: Session, account_id: str) -> Account | None:
    return session.get(Account, account_id)


def entitlement_row(session: Session, account_id: str) -> EntitlementRow | None:
    return session.get(EntitlementRow, account_id)


def recent_entitlement_changes(
    session: Session, account_id: str, limit: int = 50
) -> Sequence[EntitlementChange]:
    """Newest first."""
    return session.scalars(
        select(EntitlementChange)
        .where(EntitlementChange.account_id == account_id)
        .order_by(EntitlementChange.id.desc())
        .limit(limit)
    ).all()


def recent_stripe_events(
    session: Session, account_id: str, limit: int = 50
) -> Sequence[StripeEvent]:
    """Newest first (by when they were taken in, then by Stripe's `created`)."""
    return session.scalars(
        select(StripeEvent)
        .where(StripeEvent.account_id == account_id)
        .order_by(StripeEvent.received_at.desc(), StripeEvent.created.desc(), StripeEvent.event_id)
        .limit(limit)
    ).all()


def email_deliveries(session: Session, account_id: str, limit: int = 50) -> Sequence[EmailDelivery]:
    """Newest first."""
    return session.scalars(
        select(EmailDelivery)
        .where(EmailDelivery.account_id == account_id)
        .order_by(EmailDelivery.created_at.desc(), EmailDelivery.key)
        .limit(limit)
    ).all()


def operator_actions(
    session: Session, account_id: str, limit: int = 50
) -> Sequence[OperatorAction]:
    """The audit trail, newest first."""
    return session.scalars(
        select(OperatorAction)
        .where(OperatorAction.account_id == account_id)
        .order_by(OperatorAction.id.desc())
        .limit(limit)
    ).all()


def accounts(
    session: Session, *, state: str | None, limit: int, after: str | None
) -> list[AccountListing]:
    """Accounts ordered by id, `limit` of them after the id `after` (keyset pagination).

    `state` is a billing state (matched whatever override sits on top) or one of
    `OVERRIDE_STATES` (matched on the effective state); None lists every account.
    """
    query = select(Account, EntitlementRow).outerjoin(
        EntitlementRow, EntitlementRow.account_id == Account.account_id
    )
    if state in OVERRIDE_STATES:
        query = query.where(EntitlementRow.effective_state == state)
    elif state == "free":
        # Linked accounts no entitlement write has reached yet are free too.
        query = query.where(
            or_(EntitlementRow.billing_state == state, EntitlementRow.account_id.is_(None))
        )
    elif state is not None:
        query = query.where(EntitlementRow.billing_state == state)
    if after is not None:
        query = query.where(Account.account_id > after)
    rows = session.execute(query.order_by(Account.account_id).limit(limit)).all()
    return [AccountListing(account=row[0], entitlements=row[1]) for row in rows]


def account_listing(session: Session, account_id: str) -> AccountListing | None:
    """One account as `accounts` lists it."""
    account = session.get(Account, account_id)
    if account is None:
        return None
    return AccountListing(account=account, entitlements=session.get(EntitlementRow, account_id))


def unroutable_events(
    session: Session,
    *,
    resolved: bool | None = None,
    customer_id: str | None = None,
    limit: int = 100,
) -> Sequence[UnroutableEvent]:
    """Oldest first: the order Stripe sent them, which is the order to replay them in."""
    query = select(UnroutableEvent)
    if resolved is True:
        query = query.where(UnroutableEvent.resolved_at.is_not(None))
    elif resolved is False:
        query = query.where(UnroutableEvent.resolved_at.is_(None))
    if customer_id is not None:
        query = query.where(UnroutableEvent.customer_id == customer_id)
    return session.scalars(
        query.order_by(UnroutableEvent.received_at, UnroutableEvent.event_id).limit(limit)
    ).all()


def unresolved_events_for_customer(session: Session, customer_id: str) -> list[UnroutableEvent]:
    """Every unresolved event of `customer_id`, oldest first."""
    return list(
        session.scalars(
            select(UnroutableEvent)
            .where(
                UnroutableEvent.customer_id == customer_id,
                UnroutableEvent.resolved_at.is_(None),
            )
            .order_by(UnroutableEvent.received_at, UnroutableEvent.event_id)
        )
    )


def mark_unroutable_resolved(
    session: Session, event_ids: Sequence[str], account_id: str, resolved_at: datetime
) -> int:
    """Mark events as delivered to `account_id`; ones already resolved keep their first record."""
    if not event_ids:
        return 0
    result = session.execute(
        update(UnroutableEvent)
        .where(UnroutableEvent.event_id.in_(event_ids), UnroutableEvent.resolved_at.is_(None))
        .values(resolved_at=resolved_at, resolved_account_id=account_id)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- what needs an operator (the console's front page) --------------------------------------

# Emails that ended without going out for a reason an operator can fix (an obsolete one was
# about a state the account already left: nothing to do).
GIVEN_UP_EMAIL_STATUSES = (DeliveryStatus.FAILED.value, DeliveryStatus.NO_RECIPIENT.value)


def state_counts(session: Session) -> dict[str, int]:
    """How many accounts are in each billing state, and comped / locked on top of one."""
    by_state = select(EntitlementRow.billing_state, func.count()).group_by(
        EntitlementRow.billing_state
    )
    counts: dict[str, int] = {state: count for state, count in session.execute(by_state)}
    never_written = session.scalar(
        select(func.count())
        .select_from(Account)
        .outerjoin(EntitlementRow, EntitlementRow.account_id == Account.account_id)
        .where(EntitlementRow.account_id.is_(None))
    )
    if never_written:
        counts["free"] = counts.get("free", 0) + never_written
    for override in sorted(OVERRIDE_STATES):
        overridden = session.scalar(
            select(func.count()).where(EntitlementRow.effective_state == override)
        )
        if overridden:
            counts[override] = overridden
    return counts


def stuck_in_state(
    session: Session, state: str, *, since_before: datetime, limit: int
) -> Sequence[EntitlementRow]:
    """Accounts in billing state `state` whose entitlements last changed before
    `since_before`, longest stuck first."""
    return session.scalars(
        select(EntitlementRow)
        .where(EntitlementRow.billing_state == state, EntitlementRow.updated_at < since_before)
        .order_by(EntitlementRow.updated_at, EntitlementRow.account_id)
        .limit(limit)
    ).all()


def emails_given_up(session: Session, limit: int) -> Sequence[EmailDelivery]:
    """Emails that ended without being sent for a reason an operator can fix, newest first."""
    return session.scalars(
        select(EmailDelivery)
        .where(EmailDelivery.status.in_(GIVEN_UP_EMAIL_STATUSES))
        .order_by(EmailDelivery.created_at.desc(), EmailDelivery.key)
        .limit(limit)
    ).all()
