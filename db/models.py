"""The tables. Timestamps are timezone-aware UTC on the way in and on the way out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints, so later SQLite batch migrations can find and alter them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONDocument = JSON().with_variant(JSONB(), "postgresql")
# SQLite only autoincrements an INTEGER primary key.
FeedId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC; SQLite hands them back naive, so UTC is put back."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware UTC datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Account(Base):
    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CheckoutSessionRow(Base):
    """The account's latest Checkout Session: checkout reuses or expires it, so one account
    never has two it could complete."""

    __tablename__ = "checkout_sessions"

    account_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("accounts.account_id"), primary_key=True
    )
    session_id: Mapped[str] = mapped_column(String(255))
    # What it sells: a checkout for another purchase expires it rather than reusing it.
    lookup_key: Mapped[str] = mapped_column(String(128))
    seats: Mapped[int] = mapped_column(Integer)
    # The account's checkout attempts so far, this one included; it only grows. Stripe's
    # idempotency key is made from it, so concurrent checkouts get the same session.
    attempt: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EntitlementRow(Base):
    """The current answer for one account; `version` only ever grows."""

    __tablename__ = "entitlements"

    account_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("accounts.account_id"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer)
    billing_state: Mapped[str] = mapped_column(String(32))
    effective_state: Mapped[str] = mapped_column(String(32))
    plan: Mapped[str] = mapped_column(String(64))
    interval: Mapped[str | None] = mapped_column(String(16))
    access: Mapped[str] = mapped_column(String(16))
    features: Mapped[dict[str, bool]] = mapped_column(JSONDocument)
    limits: Mapped[dict[str, int]] = mapped_column(JSONDocument)
    seats: Mapped[int] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(String(64))
    period_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    grace_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    trial_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    open_invoice_url: Mapped[str | None] = mapped_column(Text)
    pending_change: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    # Opaque to the database: what the account workflow needs to rebuild itself.
    lifecycle: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EntitlementChange(Base):
    """Append-only: one row per applied entitlement write. `id` is the change-feed cursor."""

    __tablename__ = "entitlement_changes"
    # AUTOINCREMENT: SQLite never reuses an id, so a cursor never sees one twice.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(FeedId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("accounts.account_id"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    billing_state: Mapped[str] = mapped_column(String(32))
    effective_state: Mapped[str] = mapped_column(String(32))
    plan: Mapped[str] = mapped_column(String(64))
    access: Mapped[str] = mapped_column(String(16))
    document: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    cause: Mapped[str] = mapped_column(Text)
    notices: Mapped[list[str]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StripeEvent(Base):
    """Events an account workflow has taken in (its own dedupe window is in Temporal)."""

    __tablename__ = "stripe_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[str] = mapped_column(String(128), index=True)
    # Stripe's `created`, epoch seconds.
    created: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UnroutableEvent(Base):
    """A handled event no account could be found for: kept for operators, never dropped."""

    __tablename__ = "unroutable_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_account_id: Mapped[str | None] = mapped_column(String(128))


class EmailDelivery(Base):
    """The email outbox: one row per (account, billing cycle, step) key; sent at least once,
    twice only as docs/reliability.md ("Email delivery") says."""

    __tablename__ = "email_deliveries"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    # queued -> pending -> sent; attempts and the last error say what delivery went through.
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What to send (`SendEmailInput` as JSON), for the sender that claims the row; None in
    # rows written by an email activity (runs recorded before the queue).
    request: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    # When the sender may claim the row next (its first attempt, a retry, or the end of a
    # claimed attempt's lease); None once the row is done.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class OperatorAction(Base):
    """Audit trail: every operator action on an account, who, why, and what it changed."""

    __tablename__ = "operator_actions"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(FeedId, primary_key=True, autoincrement=True)
    # The workflow update's id: a retried audit write finds its row already there.
    update_id: Mapped[str] = mapped_column(String(255), unique=True)
    account_id: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    request: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    before: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    after: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReconciliationCursor(Base):
    """How far a resumable pass over a Stripe list got (the events reconciliation, a backfill).

    `last_id` is the last Stripe object fully handled and `created` its `created`: the next pass
    starts right after it.
    """

    __tablename__ = "reconciliation_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created: Mapped[int] = mapped_column(BigInteger)
    last_id: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
