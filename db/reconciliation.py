"""Cursors of resumable passes over Stripe, and which Stripe events the service already holds.

As in `db.repository`, the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import (
    Account,
    EntitlementRow,
    ReconciliationCursor,
    StripeEvent,
    UnroutableEvent,
    utcnow,
)
from domain.lifecycle import BillingState


@dataclass(frozen=True)
class Cursor:
    created: int
    last_id: str


def read_cursor(session: Session, name: str) -> Cursor | None:
    row = session.get(ReconciliationCursor, name)
    return None if row is None else Cursor(created=row.created, last_id=row.last_id)


def save_cursor(session: Session, name: str, cursor: Cursor) -> None:
    row = session.get(ReconciliationCursor, name)
    if row is None:
        session.add(
            ReconciliationCursor(
                name=name, created=cursor.created, last_id=cursor.last_id, updated_at=utcnow()
            )
        )
    else:
        row.created, row.last_id, row.updated_at = cursor.created, cursor.last_id, utcnow()
    session.flush()


def delete_cursor(session: Session, name: str) -> None:
    session.execute(delete(ReconciliationCursor).where(ReconciliationCursor.name == name))


def held_event_ids(session: Session, event_ids: Iterable[str]) -> set[str]:
    """The ids among `event_ids` that an account workflow took in or that were stored as
    unroutable: those need no second delivery."""
    ids = list(event_ids)
    if not ids:
        return set()
    taken_in = session.scalars(select(StripeEvent.event_id).where(StripeEvent.event_id.in_(ids)))
    unroutable = session.scalars(
        select(UnroutableEvent.event_id).where(UnroutableEvent.event_id.in_(ids))
    )
    return set(taken_in) | set(unroutable)


def accounts_on_a_subscription(session: Session) -> dict[str, str | None]:
    """Accounts whose stored lifecycle holds a subscription (any state but free), with their
    Stripe customer."""
    rows = session.execute(
        select(EntitlementRow.account_id, Account.stripe_customer_id)
        .join(Account, Account.account_id == EntitlementRow.account_id)
        .where(EntitlementRow.billing_state != str(BillingState.FREE))
    )
    return {account_id: customer_id for account_id, customer_id in rows}
