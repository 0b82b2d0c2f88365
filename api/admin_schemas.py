"""Request and response bodies of the operator (admin) API."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from api.account_workflows import LiveWorkflow
from api.schemas import EntitlementsAnswer
from domain.catalog import FREE_PLAN, default_catalog
from domain.lifecycle import BillingState
from domain.operator_actions import (
    InvalidOperatorRequest,
    OperatorRequest,
    check_operator_request,
)
from domain.stripe_events import ACCOUNT_ID_PATTERN

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


# --- account detail ----------------------------------------------------------------------


class EntitlementChangeOut(_Rows):
    version: int
    billing_state: str
    effective_state: str
    plan: str
    access: str
    cause: str
    notices: list[str]
    created_at: datetime


class StripeEventOut(_Rows):
    event_id: str
    event_type: str
    # Stripe's `created`, epoch seconds.
    created: int
    received_at: datetime


class EmailOut(_Rows):
    key: str
    kind: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class OperatorActionOut(BaseModel):
    action: str
    actor: str
    reason: str
    request: dict[str, Any]
    # Summaries of the lifecycle around the action (state, plan, grace, comp, lock); for a
    # customer link, what the link was and became.
    before: dict[str, Any]
    after: dict[str, Any]
    created_at: datetime


class CompOut(BaseModel):
    plan: str
    until: datetime
    reason: str
    actor: str


class LockOut(BaseModel):
    reason: str
    actor: str


class Overrides(BaseModel):
    """Operator overrides in force, with who and why."""

    comp: CompOut | None = None
    lock: LockOut | None = None


class WorkflowView(BaseModel):
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
    def of(cls, live: LiveWorkflow) -> WorkflowView:
        snapshot = asdict(live.snapshot) if live.snapshot is not None else {}
        return cls(status=live.status, error=live.error, **snapshot)


class AccountDetail(BaseModel):
    account_id: str
    stripe_customer_id: str | None
    created_at: datetime
    entitlements: EntitlementsAnswer
    overrides: Overrides
    # The newest 50 of each, newest first.
    entitlement_changes: list[EntitlementChangeOut]
    stripe_events: list[StripeEventOut]
    emails: list[EmailOut]
    operator_actions: list[OperatorActionOut]
    workflow: WorkflowView
    # Disagreements between the workflow and the database that need an operator.
    warnings: list[str] = Field(default_factory=list)


# --- account list ------------------------------------------------------------------------


class AccountSummary(BaseModel):
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


class AccountPage(BaseModel):
    accounts: list[AccountSummary]
    # Pass as `after` for the next page; None on the last page.
    next_after: str | None


# --- operator actions --------------------------------------------------------------------


class OperatorActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: Actor
    reason: Reason
    plan: str | None = None
    until: AwareDatetime | None = None

    def to_request(self, action: str, now: datetime) -> OperatorRequest:
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
            plans = default_catalog().plans
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
    workflow: WorkflowView


# --- unroutable events -------------------------------------------------------------------


class UnroutableEventOut(BaseModel):
    event_id: str
    event_type: str
    customer_id: str | None
    received_at: datetime
    resolved: bool
    resolved_at: datetime | None
    resolved_account_id: str | None


class UnroutableEventList(BaseModel):
    events: list[UnroutableEventOut]


class LinkBody(BaseModel):
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
