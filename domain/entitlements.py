"""What an account may do: the entitlement mapping from lifecycle and catalog.

Operator overrides win over Stripe: a lock removes all access, a comp grants its plan in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.catalog import FREE_PLAN, Catalog, Plan
from domain.lifecycle import BillingState, Lifecycle


class Access(StrEnum):
    FULL = "full"
    READ_ONLY = "read_only"
    NONE = "none"


class Message(StrEnum):
    """What the app shows the customer; the app owns the wording."""

    UPGRADE_PROMPT = "upgrade_prompt"
    FINISH_PAYMENT = "finish_payment"
    TRIAL_ENDS = "trial_ends"
    ENDS_ON = "ends_on"
    PAYMENT_FAILED = "payment_failed"
    RESTRICTED = "restricted"
    ADD_PAYMENT_METHOD = "add_payment_method"
    CONTACT_SUPPORT = "contact_support"


COMPED = "comped"
LOCKED = "locked"

# billing state -> (access, whether the subscribed plan applies, app message)
STATE_ACCESS: dict[BillingState, tuple[Access, bool, Message | None]] = {
    BillingState.FREE: (Access.FULL, False, Message.UPGRADE_PROMPT),
    BillingState.INCOMPLETE: (Access.FULL, False, Message.FINISH_PAYMENT),
    BillingState.TRIALING: (Access.FULL, True, Message.TRIAL_ENDS),
    BillingState.ACTIVE: (Access.FULL, True, None),
    BillingState.CANCELING: (Access.FULL, True, Message.ENDS_ON),
    BillingState.PAST_DUE: (Access.FULL, True, Message.PAYMENT_FAILED),
    BillingState.RESTRICTED: (Access.READ_ONLY, True, Message.RESTRICTED),
    BillingState.PAUSED: (Access.READ_ONLY, True, Message.ADD_PAYMENT_METHOD),
}


@dataclass(frozen=True)
class ScheduledPlan:
    """A downgrade the customer asked for, taking effect at the end of the paid period."""

    plan: str
    interval: str
    seats: int
    effective_at: datetime


@dataclass(frozen=True)
class Entitlements:
    billing_state: str
    # The state that decides access: the billing state, or `comped` / `locked`.
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
    pending_change: ScheduledPlan | None = None


@dataclass(frozen=True)
class AccountVersion:
    account_id: str
    # Grows with every change; 0 for an account this service has never heard of.
    version: int


@dataclass(frozen=True)
class AccountEntitlements(Entitlements, AccountVersion):
    """One account's entitlements at one version: what the database stores for it and what
    the entitlement API answers (`db.repository.EntitlementRecord`, `api.schemas`).

    `AccountVersion` is the second base so that `account_id` and `version` come first:
    dataclass fields are ordered from the last base to the first, and the answer's JSON keys
    follow them.
    """


def entitlements_for(lifecycle: Lifecycle, catalog: Catalog) -> Entitlements:
    access, plan_applies, message = STATE_ACCESS[lifecycle.state]
    sub = lifecycle.subscription
    plan_id = sub.plan if (plan_applies and sub is not None) else FREE_PLAN
    interval = sub.interval if plan_id != FREE_PLAN and sub is not None else None
    seats = sub.seats if plan_id != FREE_PLAN and sub is not None else 1
    limits = _limits(catalog.plan(plan_id), seats)
    effective_state = str(lifecycle.state)
    if lifecycle.comp is not None:
        comped = catalog.plan(lifecycle.comp.plan)
        seats, limits = _comped_seats_and_limits(comped, catalog.plan(plan_id), seats, limits)
        plan_id, interval, access, message = comped.id, None, Access.FULL, None
        effective_state = COMPED
    if lifecycle.lock is not None:
        access, message, effective_state = Access.NONE, Message.CONTACT_SUPPORT, LOCKED
    plan = catalog.plan(plan_id)
    return Entitlements(
        billing_state=str(lifecycle.state),
        effective_state=effective_state,
        plan=plan_id,
        interval=interval,
        access=access,
        features=dict(plan.features)
        if access is not Access.NONE
        else dict.fromkeys(plan.features, False),
        limits=limits,
        seats=seats,
        message=message,
        period_ends_at=sub.current_period_end if sub else None,
        grace_ends_at=lifecycle.grace_ends_at,
        trial_ends_at=sub.trial_end if sub and lifecycle.state is BillingState.TRIALING else None,
        cancel_at=sub.cancel_at if sub else None,
        open_invoice_url=sub.open_invoice_url if sub else None,
        pending_change=_scheduled_plan(lifecycle),
    )


def _limits(plan: Plan, seats: int) -> dict[str, int]:
    limits = dict(plan.limits)
    if plan.seat_limit is not None:
        limits[plan.seat_limit] = seats
    return limits


def _comped_seats_and_limits(
    comped: Plan, own_plan: Plan, own_seats: int, own_limits: dict[str, int]
) -> tuple[int, dict[str, int]]:
    """Seats and limits under a comp, which grants its plan in full and never takes people
    away from what the account's own plan (as its billing state applies it) already gives.

    - Seats: the comped plan's catalog minimum, or the account's own seats when it already
      pays for more of that same plan. The operator names a plan, not a seat count, so the
      comp cannot mean fewer seats than the plan is sold with.
    - A limit counted in people (a plan's `seat_limit`, "members") is the larger of the
      comped plan's and the own plan's: lowering it would lock out members already in the
      account, which no grant means to do. So a Pro customer (5 members) comped Team keeps
      5, and a Team customer with 10 seats comped Pro keeps 10.
    - Every other limit and every feature is the comped plan's: the comp names that plan.
    """
    seats = max(comped.min_seats, own_seats) if own_plan.id == comped.id else comped.min_seats
    limits = _limits(comped, seats)
    for name in {plan.seat_limit for plan in (comped, own_plan) if plan.seat_limit is not None}:
        if name in own_limits:
            limits[name] = max(limits.get(name, 0), own_limits[name])
    return seats, limits


def _scheduled_plan(lifecycle: Lifecycle) -> ScheduledPlan | None:
    change = lifecycle.pending_change
    if change is None:
        return None
    purchase = change.purchase
    return ScheduledPlan(purchase.plan, purchase.interval, purchase.seats, change.effective_at)


def free_entitlements(catalog: Catalog) -> Entitlements:
    """The answer for an account the service has never heard of."""
    return entitlements_for(Lifecycle(), catalog)
