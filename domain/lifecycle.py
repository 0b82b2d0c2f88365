"""The billing lifecycle as one explicit transition function.

`transition(current, input, now)` returns the next lifecycle and the notices it causes. It is
pure: the account workflow feeds it the newest Stripe subscription snapshot (re-fetched, never
taken from the event that happened to arrive last), the passing of time, or an operator action.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum


class BillingState(StrEnum):
    FREE = "free"
    INCOMPLETE = "incomplete"
    TRIALING = "trialing"
    ACTIVE = "active"
    CANCELING = "canceling"
    PAST_DUE = "past_due"
    RESTRICTED = "restricted"
    PAUSED = "paused"


class Notice(StrEnum):
    """Something the customer is told because the lifecycle moved."""

    PAYMENT_FAILED = "payment_failed"
    ACCESS_RESTRICTED = "access_restricted"
    PAYMENT_RECOVERED = "payment_recovered"
    PAYMENT_INCOMPLETE = "payment_incomplete"
    SUBSCRIPTION_STARTED = "subscription_started"
    CANCELLATION_SCHEDULED = "cancellation_scheduled"
    CANCELLATION_REVOKED = "cancellation_revoked"
    SUBSCRIPTION_ENDED = "subscription_ended"
    SUBSCRIPTION_PAUSED = "subscription_paused"
    PLAN_CHANGED = "plan_changed"
    DOWNGRADE_SCHEDULED = "downgrade_scheduled"


UNPAID_STATES = frozenset({BillingState.PAST_DUE, BillingState.RESTRICTED})
PAID_STATES = frozenset(
    {
        BillingState.TRIALING,
        BillingState.ACTIVE,
        BillingState.CANCELING,
        BillingState.PAST_DUE,
        BillingState.RESTRICTED,
        BillingState.PAUSED,
    }
)
# A change of plan needs a subscription in good standing that is not ending.
SCHEDULABLE_STATES = frozenset({BillingState.TRIALING, BillingState.ACTIVE})
# Stripe statuses after which the subscription can never charge again.
ENDED_STRIPE_STATUSES = frozenset({"canceled", "incomplete_expired"})


@dataclass(frozen=True)
class SubscriptionSnapshot:
    """What this service needs to know of a Stripe subscription, normalised."""

    subscription_id: str
    customer_id: str
    status: str
    plan: str
    interval: str
    seats: int = 1
    current_period_end: datetime | None = None
    trial_end: datetime | None = None
    cancel_at: datetime | None = None
    open_invoice_url: str | None = None


@dataclass(frozen=True)
class Purchase:
    """A self-serve plan as Stripe sells it: the price's lookup key and the seat count."""

    plan: str
    interval: str
    seats: int
    lookup_key: str


@dataclass(frozen=True)
class PendingChange:
    """A downgrade waiting for the end of the paid period."""

    purchase: Purchase
    effective_at: datetime


@dataclass(frozen=True)
class Comp:
    plan: str
    until: datetime
    reason: str
    actor: str


@dataclass(frozen=True)
class Lock:
    reason: str
    actor: str


@dataclass(frozen=True)
class Lifecycle:
    state: BillingState = BillingState.FREE
    subscription: SubscriptionSnapshot | None = None
    grace_ends_at: datetime | None = None
    # When the unpaid period began: names the dunning cycle (one ladder per cycle).
    grace_started_at: datetime | None = None
    comp: Comp | None = None
    lock: Lock | None = None
    pending_change: PendingChange | None = None


# --- inputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionObserved:
    """The account's current subscription as Stripe reports it now (None: it has none)."""

    subscription: SubscriptionSnapshot | None
    grace_days: int


@dataclass(frozen=True)
class TimePassed:
    """Durable timer fired: deadlines at or before `now` fall due."""


@dataclass(frozen=True)
class GrantComp:
    comp: Comp


@dataclass(frozen=True)
class RevokeComp:
    pass


@dataclass(frozen=True)
class LockAccount:
    lock: Lock


@dataclass(frozen=True)
class UnlockAccount:
    pass


@dataclass(frozen=True)
class ExtendGrace:
    until: datetime


@dataclass(frozen=True)
class SchedulePlanChange:
    change: PendingChange


@dataclass(frozen=True)
class CancelPlanChange:
    pass


LifecycleInput = (
    SubscriptionObserved
    | TimePassed
    | GrantComp
    | RevokeComp
    | LockAccount
    | UnlockAccount
    | ExtendGrace
    | SchedulePlanChange
    | CancelPlanChange
)


class InvalidTransition(ValueError):
    """The input makes no sense in the current lifecycle; nothing changes."""


@dataclass(frozen=True)
class Transition:
    before: Lifecycle
    after: Lifecycle
    notices: tuple[Notice, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return self.before != self.after


# --- the rules --------------------------------------------------------------------------


def state_for_subscription(sub: SubscriptionSnapshot | None) -> BillingState:
    """The billing state a subscription implies, before grace bookkeeping."""
    if sub is None or sub.status in ENDED_STRIPE_STATUSES:
        return BillingState.FREE
    match sub.status:
        case "incomplete":
            return BillingState.INCOMPLETE
        case "trialing" | "active":
            return BillingState.CANCELING if sub.cancel_at else BillingState(sub.status)
        case "past_due" | "unpaid":
            return BillingState.PAST_DUE
        case "paused":
            return BillingState.PAUSED
    raise InvalidTransition(f"unknown Stripe subscription status {sub.status!r}")


def transition(current: Lifecycle, event: LifecycleInput, now: datetime) -> Transition:
    match event:
        case SubscriptionObserved(subscription=sub, grace_days=grace_days):
            after, notices = _observe(current, sub, grace_days, now)
        case TimePassed():
            after, notices = _time_passed(current, now)
        case GrantComp(comp=comp):
            if comp.until <= now:
                raise InvalidTransition("a comp must end in the future")
            after, notices = replace(current, comp=comp), []
        case RevokeComp():
            if current.comp is None:
                raise InvalidTransition("the account has no comp to revoke")
            after, notices = replace(current, comp=None), []
        case LockAccount(lock=lock):
            after, notices = replace(current, lock=lock), []
        case UnlockAccount():
            if current.lock is None:
                raise InvalidTransition("the account is not locked")
            after, notices = replace(current, lock=None), []
        case ExtendGrace(until=until):
            if current.state not in UNPAID_STATES:
                raise InvalidTransition(f"no grace period to extend in state {current.state}")
            if until <= now:
                raise InvalidTransition("the new grace end must be in the future")
            after = replace(current, state=BillingState.PAST_DUE, grace_ends_at=until)
            notices = []
        case SchedulePlanChange(change=change):
            if current.state not in SCHEDULABLE_STATES:
                raise InvalidTransition(f"no plan change can be scheduled in state {current.state}")
            if change.effective_at <= now:
                raise InvalidTransition("a scheduled change must take effect in the future")
            after, notices = replace(current, pending_change=change), [Notice.DOWNGRADE_SCHEDULED]
        case CancelPlanChange():
            if current.pending_change is None:
                raise InvalidTransition("no plan change is scheduled")
            after, notices = replace(current, pending_change=None), []
        case _:
            raise InvalidTransition(f"unknown lifecycle input {event!r}")
    return Transition(before=current, after=after, notices=tuple(notices))


def _observe(
    current: Lifecycle, sub: SubscriptionSnapshot | None, grace_days: int, now: datetime
) -> tuple[Lifecycle, list[Notice]]:
    target = state_for_subscription(sub)
    grace_ends_at: datetime | None = None
    grace_started_at: datetime | None = None
    if target is BillingState.PAST_DUE:
        if current.state in UNPAID_STATES and current.grace_ends_at is not None:
            # Still unpaid: the grace period that started at the first failure keeps running.
            grace_ends_at, grace_started_at = current.grace_ends_at, current.grace_started_at
            if current.state is BillingState.RESTRICTED or grace_ends_at <= now:
                target = BillingState.RESTRICTED
        else:
            grace_ends_at, grace_started_at = now + timedelta(days=grace_days), now
    after = Lifecycle(
        state=target,
        subscription=None if target is BillingState.FREE else sub,
        grace_ends_at=grace_ends_at,
        grace_started_at=grace_started_at,
        comp=current.comp,
        lock=current.lock,
        pending_change=_still_pending(current.pending_change, sub, target),
    )
    return after, _notices_between(current, after)


def _still_pending(
    change: PendingChange | None, sub: SubscriptionSnapshot | None, state: BillingState
) -> PendingChange | None:
    """A scheduled change lapses once Stripe shows it applied, or when the plan ends."""
    if change is None or sub is None or state not in SCHEDULABLE_STATES:
        return None
    purchase = change.purchase
    if (sub.plan, sub.interval, sub.seats) == (purchase.plan, purchase.interval, purchase.seats):
        return None
    return change


def _time_passed(current: Lifecycle, now: datetime) -> tuple[Lifecycle, list[Notice]]:
    after = current
    if (
        current.state is BillingState.PAST_DUE
        and current.grace_ends_at is not None
        and current.grace_ends_at <= now
    ):
        after = replace(after, state=BillingState.RESTRICTED)
    if after.comp is not None and after.comp.until <= now:
        after = replace(after, comp=None)
    return after, _notices_between(current, after)


def _notices_between(before: Lifecycle, after: Lifecycle) -> list[Notice]:
    old, new = before.state, after.state
    if old == new:
        if _plan_of(before) != _plan_of(after) and new in PAID_STATES:
            return [Notice.PLAN_CHANGED]
        return []
    if new is BillingState.PAST_DUE:
        return [Notice.PAYMENT_FAILED]
    if new is BillingState.RESTRICTED:
        return [Notice.ACCESS_RESTRICTED]
    if new is BillingState.INCOMPLETE:
        return [Notice.PAYMENT_INCOMPLETE]
    if new is BillingState.PAUSED:
        return [Notice.SUBSCRIPTION_PAUSED]
    if new is BillingState.FREE:
        return [Notice.SUBSCRIPTION_ENDED] if old in PAID_STATES else []
    if new is BillingState.CANCELING:
        return [Notice.CANCELLATION_SCHEDULED]
    # new is trialing or active
    if old in UNPAID_STATES:
        return [Notice.PAYMENT_RECOVERED]
    if old is BillingState.CANCELING:
        return [Notice.CANCELLATION_REVOKED]
    if old in (BillingState.FREE, BillingState.INCOMPLETE):
        return [Notice.SUBSCRIPTION_STARTED]
    return []


def _plan_of(lifecycle: Lifecycle) -> tuple[str, str, int] | None:
    sub = lifecycle.subscription
    return None if sub is None else (sub.plan, sub.interval, sub.seats)


def due_plan_change(lifecycle: Lifecycle, now: datetime) -> PendingChange | None:
    change = lifecycle.pending_change
    return change if change is not None and change.effective_at <= now else None


def next_deadline(lifecycle: Lifecycle) -> datetime | None:
    """When the workflow must next look at the clock: grace end, comp expiry, or a scheduled
    plan change falling due."""
    deadlines = []
    if lifecycle.state is BillingState.PAST_DUE and lifecycle.grace_ends_at is not None:
        deadlines.append(lifecycle.grace_ends_at)
    if lifecycle.comp is not None:
        deadlines.append(lifecycle.comp.until)
    if lifecycle.pending_change is not None:
        deadlines.append(lifecycle.pending_change.effective_at)
    return min(deadlines, default=None)
