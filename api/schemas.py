"""Request and response bodies."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from db.repository import EntitlementRecord
from domain.catalog import default_catalog
from domain.entitlements import Access, Message, free_entitlements


class CustomerContact(BaseModel):
    """Who the account's Stripe customer is, for the one a first checkout creates: Stripe's
    receipts and our emails go to `email`. Checkout asks for an email only when the customer
    has none, so one given here is the one used."""

    # One `@`, a dot in the domain, no spaces; 254: the longest address SMTP carries.
    email: str | None = Field(
        None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", examples=["ada@example.com"]
    )
    # Printable: it reaches email text and Stripe's customer name (at most 256 there).
    name: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        examples=["Ada Lovelace"],
    )


class ScheduledPlanAnswer(BaseModel):
    """A downgrade taking effect at `effective_at`, the end of the paid period."""

    plan: str
    interval: str
    seats: int
    effective_at: datetime


class EntitlementsAnswer(BaseModel):
    """What an account may do right now. Datetimes are ISO 8601 in UTC."""

    model_config = ConfigDict(from_attributes=True)

    account_id: str
    # Grows with every change; 0 for an account this service has never heard of.
    version: int
    billing_state: str
    effective_state: str
    plan: str
    interval: str | None
    access: Access
    features: dict[str, bool]
    limits: dict[str, int]
    seats: int
    message: Message | None
    period_ends_at: datetime | None
    grace_ends_at: datetime | None
    trial_ends_at: datetime | None
    cancel_at: datetime | None
    open_invoice_url: str | None
    pending_change: ScheduledPlanAnswer | None = None

    @classmethod
    def from_record(cls, record: EntitlementRecord) -> EntitlementsAnswer:
        return cls.model_validate(record)

    @classmethod
    def free_plan(cls, account_id: str) -> EntitlementsAnswer:
        return cls(account_id=account_id, version=0, **asdict(free_entitlements(default_catalog())))
