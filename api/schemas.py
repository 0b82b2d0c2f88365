"""Request and response bodies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter
from pydantic.dataclasses import dataclass as pydantic_dataclass

from domain.catalog import default_catalog
from domain.entitlements import AccountEntitlements, ScheduledPlan, free_entitlements


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


# The entitlement answers are pydantic dataclasses over the domain's, not models of their own:
# a dataclass can extend a dataclass, so the field list (and the order of the JSON keys and
# the OpenAPI properties) is the domain's alone.


# A class of its own for the name generated clients know it by in the OpenAPI document.
@pydantic_dataclass(frozen=True)
class ScheduledPlanAnswer(ScheduledPlan):
    """A downgrade taking effect at `effective_at`, the end of the paid period."""


@pydantic_dataclass(frozen=True)
class EntitlementsAnswer(AccountEntitlements):
    """What an account may do right now. Datetimes are ISO 8601 in UTC."""

    # Declared again (it keeps its place and default) to be documented as ScheduledPlanAnswer.
    pending_change: ScheduledPlanAnswer | None = None

    @classmethod
    def from_record(cls, record: AccountEntitlements) -> EntitlementsAnswer:
        # `asdict`: a pydantic dataclass takes a nested plan as a dict, not as another class's
        # instance. A record's storage-only fields (`updated_at`) are ignored.
        return cls.from_fields(asdict(record))

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> EntitlementsAnswer:
        """From a stored row or a change-log document (both are the answer's fields)."""
        return ENTITLEMENTS_ANSWER_JSON.validate_python(dict(fields))

    @classmethod
    def free_plan(cls, account_id: str) -> EntitlementsAnswer:
        free = asdict(free_entitlements(default_catalog()))
        return cls.from_fields({"account_id": account_id, "version": 0, **free})

    def to_json(self) -> bytes:
        return ENTITLEMENTS_ANSWER_JSON.dump_json(self)


ENTITLEMENTS_ANSWER_JSON = TypeAdapter(EntitlementsAnswer)
