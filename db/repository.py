"""Queries and writes, as plain functions over a `Session`.

The caller owns the transaction: nothing here commits. Every write is safe to repeat, because
activities retry and Stripe redelivers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pydantic import TypeAdapter
from sqlalchemy import Table, bindparam, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db import feed
from db.models import (
    Account,
    CheckoutSessionRow,
    EntitlementChange,
    EntitlementRow,
    OperatorAction,
    StripeEvent,
    UnroutableEvent,
    utcnow,
)
from domain.entitlements import Access, AccountEntitlements, Entitlements, Message, ScheduledPlan
from domain.lifecycle import Lifecycle

ENTITLEMENTS_JSON = TypeAdapter(Entitlements)
# The workflow's lifecycle as stored beside the entitlements it produced.
LIFECYCLE_JSON = TypeAdapter(Lifecycle)
SCHEDULED_PLAN_JSON = TypeAdapter(ScheduledPlan)


class CustomerConflict(Exception):
    """A Stripe customer and an account are each already linked elsewhere."""


@dataclass(frozen=True, kw_only=True)
class EntitlementRecord(AccountEntitlements):
    """An account's stored entitlements, and when they were written."""

    updated_at: datetime


@dataclass(frozen=True)
class StoredAccount:
    customer_id: str | None
    # 0 when no entitlements were ever written.
    version: int
    lifecycle: dict[str, Any] | None


@dataclass(frozen=True)
class StoredCheckout:
    """The account's latest Checkout Session and the purchase it sells."""

    session_id: str
    lookup_key: str
    seats: int
    attempt: int


def account_for_customer(session: Session, customer_id: str) -> str | None:
    return session.scalar(
        select(Account.account_id).where(Account.stripe_customer_id == customer_id)
    )


def customer_for_account(session: Session, account_id: str) -> str | None:
    return session.scalar(
        select(Account.stripe_customer_id).where(Account.account_id == account_id)
    )


def link_customer(session: Session, account_id: str, customer_id: str) -> None:
    """Link a Stripe customer to an account, creating the account if needed.

    Re-linking the same pair is a no-op; a customer or account already linked to another
    counterpart raises `CustomerConflict` (routing would otherwise go to the wrong account).
    """
    owner = account_for_customer(session, customer_id)
    if owner is not None and owner != account_id:
        raise CustomerConflict(f"customer {customer_id} is already linked to account {owner}")
    if owner == account_id:
        return
    _ensure_account(session, account_id)
    account = session.get_one(Account, account_id)
    if account.stripe_customer_id not in (None, customer_id):
        raise CustomerConflict(
            f"account {account_id} is already linked to customer {account.stripe_customer_id}"
        )
    account.stripe_customer_id = customer_id
    # Flushed now: a concurrent link of the same customer elsewhere fails here, on the unique
    # constraint, and the retried call then reports the conflict.
    session.flush()


def stored_checkout(session: Session, account_id: str) -> StoredCheckout | None:
    row = session.get(CheckoutSessionRow, account_id)
    if row is None:
        return None
    return StoredCheckout(
        session_id=row.session_id, lookup_key=row.lookup_key, seats=row.seats, attempt=row.attempt
    )


def store_checkout(session: Session, account_id: str, checkout: StoredCheckout) -> None:
    """Keep `checkout` as the account's latest, unless a later attempt is stored already.

    Concurrent checkouts of one attempt store the same session (Stripe answered them alike),
    so the check and the write are one statement and either order ends the same.
    """
    _ensure_account(session, account_id)
    values = {
        "account_id": account_id,
        "session_id": checkout.session_id,
        "lookup_key": checkout.lookup_key,
        "seats": checkout.seats,
        "attempt": checkout.attempt,
        "created_at": utcnow(),
    }
    upsert = _insert_for(session, CheckoutSessionRow).values(values)
    session.execute(
        upsert.on_conflict_do_update(
            index_elements=[CheckoutSessionRow.account_id],
            set_={name: upsert.excluded[name] for name in values if name != "account_id"},
            where=CheckoutSessionRow.attempt < upsert.excluded.attempt,
        )
    )


def write_entitlements(
    session: Session,
    account_id: str,
    version: int,
    entitlements: Entitlements,
    lifecycle: dict[str, Any],
    cause: str,
    notices: list[str],
) -> bool:
    """Store `entitlements` as the account's current answer if `version` is newer.

    A retried or reordered write with a stale or equal version changes nothing. The version
    check and the write are one statement, so two concurrent writers cannot both win.
    Returns whether this write applied (and was appended to the change log).
    """
    # First, before any row lock: appends to the change log take turns (see `db.feed`).
    feed.lock_change_log(session)
    _ensure_account(session, account_id)
    now = utcnow()
    values = {
        "account_id": account_id,
        "version": version,
        **_entitlement_columns(entitlements),
        "lifecycle": lifecycle,
        "updated_at": now,
    }
    upsert = _entitlement_upsert(_dialect(session), tuple(values))
    # A skipped update returns no row.
    applied = session.execute(upsert, values).first() is not None
    if applied:
        session.execute(
            _CHANGE_INSERT,
            {
                "account_id": account_id,
                "version": version,
                "billing_state": entitlements.billing_state,
                "effective_state": entitlements.effective_state,
                "plan": entitlements.plan,
                "access": str(entitlements.access),
                "document": entitlement_document(account_id, version, entitlements),
                "cause": cause,
                "notices": list(notices),
                "created_at": now,
            },
        )
    return applied


def entitlement_document(
    account_id: str, version: int, entitlements: Entitlements
) -> dict[str, Any]:
    """The full entitlement answer as JSON, the same shape the entitlement API returns."""
    return {
        "account_id": account_id,
        "version": version,
        **ENTITLEMENTS_JSON.dump_python(entitlements, mode="json"),
    }


def read_entitlements(session: Session, account_id: str) -> EntitlementRecord | None:
    row = session.get(EntitlementRow, account_id)
    if row is None:
        return None
    return EntitlementRecord(
        account_id=row.account_id,
        version=row.version,
        billing_state=row.billing_state,
        effective_state=row.effective_state,
        plan=row.plan,
        interval=row.interval,
        access=Access(row.access),
        features=dict(row.features),
        limits=dict(row.limits),
        seats=row.seats,
        message=Message(row.message) if row.message is not None else None,
        period_ends_at=row.period_ends_at,
        grace_ends_at=row.grace_ends_at,
        trial_ends_at=row.trial_ends_at,
        cancel_at=row.cancel_at,
        open_invoice_url=row.open_invoice_url,
        pending_change=(
            None
            if row.pending_change is None
            else SCHEDULED_PLAN_JSON.validate_python(row.pending_change)
        ),
        updated_at=row.updated_at,
    )


def accounts_per_billing_state(session: Session) -> dict[str, int]:
    """How many accounts have stored entitlements, per billing state; a state no account is
    in is absent."""
    rows = session.execute(
        select(EntitlementRow.billing_state, func.count()).group_by(EntitlementRow.billing_state)
    ).all()
    return {state: count for state, count in rows}


def stored_account(session: Session, account_id: str) -> StoredAccount | None:
    row = session.execute(
        select(Account.stripe_customer_id, EntitlementRow.version, EntitlementRow.lifecycle)
        .outerjoin(EntitlementRow, EntitlementRow.account_id == Account.account_id)
        .where(Account.account_id == account_id)
    ).first()
    if row is None:
        return None
    customer_id, version, lifecycle = row
    return StoredAccount(customer_id=customer_id, version=version or 0, lifecycle=lifecycle)


def stored_lifecycle(session: Session, account_id: str) -> Lifecycle | None:
    stored = session.scalar(
        select(EntitlementRow.lifecycle).where(EntitlementRow.account_id == account_id)
    )
    return None if stored is None else LIFECYCLE_JSON.validate_python(stored)


def record_stripe_events(
    session: Session, account_id: str, events: list[tuple[str, str, int]]
) -> int:
    """Insert (event_id, type, created) rows not seen before; returns how many were new."""
    if not events:
        return 0
    received_at = utcnow()
    rows = [
        {
            "event_id": event_id,
            "event_type": event_type,
            "account_id": account_id,
            "created": created,
            "received_at": received_at,
        }
        for event_id, event_type, created in events
    ]
    return len(session.execute(_event_insert(_dialect(session)), rows).all())


def store_unroutable_event(
    session: Session,
    event_id: str,
    event_type: str,
    customer_id: str | None,
    payload: dict[str, Any],
) -> None:
    """Keep an event no account could be found for; a redelivery keeps the first copy."""
    session.execute(
        _insert_for(session, UnroutableEvent)
        .values(
            event_id=event_id,
            event_type=event_type,
            customer_id=customer_id,
            payload=payload,
            received_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[UnroutableEvent.event_id])
    )


def record_operator_action(
    session: Session,
    *,
    update_id: str,
    account_id: str,
    action: str,
    actor: str,
    reason: str,
    request: dict[str, Any],
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    """Append to the audit trail; the same update recorded twice stays one row."""
    session.execute(
        _insert_for(session, OperatorAction)
        .values(
            update_id=update_id,
            account_id=account_id,
            action=action,
            actor=actor,
            reason=reason,
            request=request,
            before=before,
            after=after,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[OperatorAction.update_id])
    )


def _ensure_account(session: Session, account_id: str) -> None:
    now = utcnow()
    session.execute(
        _account_insert(_dialect(session)),
        {"account_id": account_id, "created_at": now, "updated_at": now},
    )


def _entitlement_columns(entitlements: Entitlements) -> dict[str, Any]:
    return {
        "billing_state": entitlements.billing_state,
        "effective_state": entitlements.effective_state,
        "plan": entitlements.plan,
        "interval": entitlements.interval,
        "access": str(entitlements.access),
        "features": dict(entitlements.features),
        "limits": dict(entitlements.limits),
        "seats": entitlements.seats,
        "message": str(entitlements.message) if entitlements.message is not None else None,
        "period_ends_at": entitlements.period_ends_at,
        "grace_ends_at": entitlements.grace_ends_at,
        "trial_ends_at": entitlements.trial_ends_at,
        "cancel_at": entitlements.cancel_at,
        "open_invoice_url": entitlements.open_invoice_url,
        "pending_change": (
            None
            if entitlements.pending_change is None
            else SCHEDULED_PLAN_JSON.dump_python(entitlements.pending_change, mode="json")
        ),
    }


# The statements each entitlement write runs, built once and given their values as
# parameters: on tables rather than mapped classes, so they skip the ORM's bulk-insert and
# unit-of-work machinery (with the SQL, 27 % of the worker's GIL time per event), and their
# compiled form is reused.
_CHANGE_INSERT = insert(cast(Table, EntitlementChange.__table__))


@functools.cache
def _account_insert(dialect: str) -> Any:
    table = Account.__table__
    return _dialect_insert(dialect, table).on_conflict_do_nothing(
        index_elements=[table.c.account_id]
    )


@functools.cache
def _event_insert(dialect: str) -> Any:
    """Inserts the events not recorded before, returning those it inserted."""
    table = StripeEvent.__table__
    return (
        _dialect_insert(dialect, table)
        .on_conflict_do_nothing(index_elements=[table.c.event_id])
        .returning(table.c.event_id)
    )


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _insert_for(session: Session, model: type[Any]) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite and PostgreSQL spell it alike)."""
    return _dialect_insert(_dialect(session), model)


def _dialect_insert(dialect: str, target: Any) -> Any:
    """`target`: a mapped class, or a table for a statement the ORM need not look at."""
    if dialect == "postgresql":
        return postgresql.insert(target)
    if dialect == "sqlite":
        return sqlite.insert(target)
    raise NotImplementedError(f"unsupported database dialect {dialect!r}")


@functools.cache
def _entitlement_upsert(dialect: str, columns: tuple[str, ...]) -> Any:
    """The versioned upsert of `write_entitlements`, values as parameters. Built once: building
    it (ON CONFLICT's `excluded` columns) cost more CPU than the database spent running it."""
    table = EntitlementRow.__table__
    upsert = _dialect_insert(dialect, table).values(
        {name: bindparam(name, type_=table.c[name].type) for name in columns}
    )
    return upsert.on_conflict_do_update(
        index_elements=[table.c.account_id],
        set_={name: upsert.excluded[name] for name in columns if name != "account_id"},
        where=table.c.version < upsert.excluded.version,
    ).returning(table.c.version)
