"""Every body the API reads or sends, as pydantic models: the routes' vocabulary.

One naming rule: a model a route reads is `<Thing>Request`; a model it sends, and every model
nested in one, is `<Thing>Answer`. Private bases (`_CustomerContact`, `_Rows`) only share
fields. Class names are the OpenAPI schema's component names; the clients here
(`entitlements_client`, `admin_client`) read answers by field, never by component name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter
from pydantic.dataclasses import dataclass as pydantic_dataclass

from domain.catalog import FREE_PLAN, Catalog
from domain.entitlements import (
    AccountEntitlements,
    ScheduledPlan,
    free_entitlements,
)
from domain.lifecycle import BillingState
from domain.operator_actions import (
    InvalidOperatorRequest,
    OperatorRequest,
    check_operator_request,
)
from domain.stripe_events import ACCOUNT_ID_PATTERN

if TYPE_CHECKING:  # the models themselves need nothing of Temporal's
    from api.account_workflows import LiveWorkflow


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
    def free_plan(cls, account_id: str, catalog: Catalog) -> EntitlementsAnswer:
        """An account never written: the catalog's free plan, at version 0."""
        free = asdict(free_entitlements(catalog))
        return cls.from_fields({"account_id": account_id, "version": 0, **free})

    @classmethod
    def stored_or_free(
        cls, account_id: str, record: AccountEntitlements | None, catalog: Catalog
    ) -> EntitlementsAnswer:
        return cls.free_plan(account_id, catalog) if record is None else cls.from_record(record)

    def to_json(self) -> bytes:
        return ENTITLEMENTS_ANSWER_JSON.dump_json(self)


ENTITLEMENTS_ANSWER_JSON = TypeAdapter(EntitlementsAnswer)


# --- billing (checkout, portal, plan changes) --------------------------------------------


class _CustomerContact(BaseModel):
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


class PlanRequest(BaseModel):
    plan: str = Field(examples=["team"])
    interval: Literal["month", "year"] = "month"
    seats: int = Field(1, ge=1)


class CheckoutRequest(PlanRequest, _CustomerContact):
    pass


class CheckoutAnswer(BaseModel):
    url: str
    session_id: str


class PortalAnswer(BaseModel):
    url: str


class PlanChangeAnswer(BaseModel):
    kind: str
    applied: bool
    open_invoice_url: str | None
    entitlements: EntitlementsAnswer


class CancelSubscriptionRequest(BaseModel):
    # Kept so that `false` is refused with a reason rather than silently ignored.
    at_period_end: bool = True


# --- the entitlement change feed ---------------------------------------------------------


class FeedChangeAnswer(BaseModel):
    cursor: int
    account_id: str
    version: int
    # The entitlement API's ETag for this version: a client can revalidate what it holds.
    etag: str
    # The full entitlement answer after the change, the entitlement API's shape.
    entitlements: dict[str, Any]
    changed_at: datetime


class ChangesPageAnswer(BaseModel):
    changes: list[FeedChangeAnswer]
    # Pass as `after` next time: the last change's cursor, or the cursor asked with.
    next_cursor: int


# --- operators (the admin API): shared fields --------------------------------------------


# Free text, but no control characters: PostgreSQL refuses NUL in text, and none belongs here.
_PRINTABLE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
Actor = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255, pattern=_PRINTABLE)
]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000, pattern=_PRINTABLE)
]
CustomerId = Annotated[str, StringConstraints(pattern=r"^cus_[A-Za-z0-9]{1,250}$")]
AccountId = Annotated[str, StringConstraints(pattern=ACCOUNT_ID_PATTERN)]

# Actions that take each optional field; any other action given one is refused, so a typo in
# the verb cannot silently drop the date an operator meant.
TAKES_PLAN = frozenset({"grant_comp"})
TAKES_UNTIL = frozenset({"grant_comp", "extend_grace"})

# What `GET /admin/accounts?state=` accepts: every billing state, and the two overrides.
LISTABLE_STATES = (*(str(s) for s in BillingState), "comped", "locked")


class _Rows(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- operators: one account --------------------------------------------------------------


class EntitlementChangeAnswer(_Rows):
    version: int
    billing_state: str
    effective_state: str
    plan: str
    access: str
    cause: str
    notices: list[str]
    created_at: datetime


class StripeEventAnswer(_Rows):
    event_id: str
    event_type: str
    # Stripe's `created`, epoch seconds.
    created: int
    received_at: datetime


class EmailAnswer(_Rows):
    key: str
    kind: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class AuditEntryAnswer(BaseModel):
    action: str
    actor: str
    reason: str
    request: dict[str, Any]
    # Summaries of the lifecycle around the action (state, plan, grace, comp, lock); for a
    # customer link, what the link was and became.
    before: dict[str, Any]
    after: dict[str, Any]
    created_at: datetime


class CompAnswer(BaseModel):
    plan: str
    until: datetime
    reason: str
    actor: str


class LockAnswer(BaseModel):
    reason: str
    actor: str


class OverridesAnswer(BaseModel):
    """Operator overrides in force, with who and why."""

    comp: CompAnswer | None = None
    lock: LockAnswer | None = None


class WorkflowViewAnswer(BaseModel):
    """The account workflow as Temporal sees it right now; only informative.

    `status` is Temporal's execution status in lower case (running, terminated, ...),
    `not_found` when no run was ever started, or `unavailable` when Temporal did not answer.
    """

    status: str
    billing_state: str | None = None
    plan: str | None = None
    entitlement_version: int | None = None
    customer_id: str | None = None
    sync_error: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, live: LiveWorkflow) -> WorkflowViewAnswer:
        snapshot = asdict(live.snapshot) if live.snapshot is not None else {}
        return cls(status=live.status, error=live.error, **snapshot)


class AccountDetailAnswer(BaseModel):
    account_id: str
    stripe_customer_id: str | None
    created_at: datetime
    entitlements: EntitlementsAnswer
    overrides: OverridesAnswer
    # The newest 50 of each, newest first.
    entitlement_changes: list[EntitlementChangeAnswer]
    stripe_events: list[StripeEventAnswer]
    emails: list[EmailAnswer]
    operator_actions: list[AuditEntryAnswer]
    workflow: WorkflowViewAnswer
    # Disagreements between the workflow and the database that need an operator.
    warnings: list[str] = Field(default_factory=list)


# --- operators: accounts by state --------------------------------------------------------


class AccountSummaryAnswer(BaseModel):
    account_id: str
    stripe_customer_id: str | None
    version: int
    billing_state: str
    effective_state: str
    plan: str
    grace_ends_at: datetime | None
    trial_ends_at: datetime | None
    cancel_at: datetime | None
    period_ends_at: datetime | None
    updated_at: datetime


class AccountPageAnswer(BaseModel):
    accounts: list[AccountSummaryAnswer]
    # Pass as `after` for the next page; None on the last page.
    next_after: str | None


# --- operators: actions ------------------------------------------------------------------


class OperatorActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: Actor
    reason: Reason
    plan: str | None = None
    until: AwareDatetime | None = None

    def to_request(self, action: str, now: datetime, catalog: Catalog) -> OperatorRequest:
        """The request, checked as far as can be without the account's state.

        Raises `InvalidOperatorRequest` with a message for the operator.
        """
        if self.plan is not None and action not in TAKES_PLAN:
            raise InvalidOperatorRequest(f"{action} takes no plan")
        if self.until is not None and action not in TAKES_UNTIL:
            raise InvalidOperatorRequest(f"{action} takes no end date")
        request = OperatorRequest(
            action=action, actor=self.actor, reason=self.reason, plan=self.plan, until=self.until
        )
        check_operator_request(request)
        if self.plan is not None:
            plans = catalog.plans
            if self.plan not in plans or self.plan == FREE_PLAN:
                paid = ", ".join(sorted(p for p in plans if p != FREE_PLAN))
                raise InvalidOperatorRequest(f"unknown plan {self.plan!r}; comp one of: {paid}")
        if self.until is not None and self.until <= now:
            raise InvalidOperatorRequest(
                f"the end date {self.until.isoformat()} is not in the future"
            )
        return request


class OperatorActionAnswer(BaseModel):
    account_id: str
    action: str
    # Read back from the database once the workflow confirmed the action.
    entitlements: EntitlementsAnswer
    workflow: WorkflowViewAnswer


# --- operators: unroutable events --------------------------------------------------------


class UnroutableEventAnswer(BaseModel):
    event_id: str
    event_type: str
    customer_id: str | None
    received_at: datetime
    resolved: bool
    resolved_at: datetime | None
    resolved_account_id: str | None


class UnroutableEventListAnswer(BaseModel):
    events: list[UnroutableEventAnswer]


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId
    account_id: AccountId
    actor: Actor
    reason: Reason


class LinkAnswer(BaseModel):
    account_id: str
    customer_id: str
    # False when the pair was linked already (a repeated call).
    newly_linked: bool
    replayed: int = Field(description="unroutable events signalled to the account's workflow")
    replayed_event_ids: list[str]
