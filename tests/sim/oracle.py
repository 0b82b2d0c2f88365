"""What must hold after a simulated life: the parts that read only Stripe's truth and the
database, with no knowledge of the workflow's internals."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from domain.catalog import Catalog, CatalogError
from domain.lifecycle import (
    ENDED_STRIPE_STATUSES,
    BillingState,
    Lifecycle,
    SubscriptionSnapshot,
    state_for_subscription,
)
from domain.subscriptions import snapshot_from_stripe

# Liveness bounds, in skipped time once the faults stop (SMTP may stay down: no account
# may wait on email).
UPDATE_BOUND_HOURS = 1
CONVERGE_BOUND_HOURS = 24


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def plan_snapshots(
    subscriptions: Iterable[Mapping[str, Any]], catalog: Catalog
) -> list[SubscriptionSnapshot]:
    """The customer's live subscriptions that sell a catalog plan (add-ons and unknown prices
    never decide access)."""
    found = []
    for sub in subscriptions:
        if sub["status"] in ENDED_STRIPE_STATUSES:
            continue
        lookup_key = sub["items"]["data"][0]["price"].get("lookup_key") or ""
        if catalog.price_by_lookup_key(lookup_key) is None:
            continue
        try:
            found.append(snapshot_from_stripe(sub, catalog))
        except CatalogError:
            continue
    return found


def acceptable_states(snapshot: SubscriptionSnapshot | None) -> set[BillingState]:
    state = state_for_subscription(snapshot)
    if state is BillingState.PAST_DUE:
        # Whether the grace period ran out depends on when the failure was first seen.
        return {BillingState.PAST_DUE, BillingState.RESTRICTED}
    return {state}


def convergence_violation(
    stored: Lifecycle | None, snapshots: list[SubscriptionSnapshot]
) -> Violation | None:
    """The stored billing state and plan are what one of the live plan subscriptions maps to
    (none: free). With two live plan subscriptions (made on Stripe's side) either may decide."""
    candidates: list[SubscriptionSnapshot | None] = list(snapshots) or [None]
    state = stored.state if stored is not None else BillingState.FREE
    sub = stored.subscription if stored is not None else None
    for snapshot in candidates:
        if state not in acceptable_states(snapshot):
            continue
        if snapshot is None or state is BillingState.FREE:
            return None
        if sub is not None and (sub.plan, sub.interval, sub.seats) == (
            snapshot.plan,
            snapshot.interval,
            snapshot.seats,
        ):
            return None
    wanted = [
        f"{s.status} {s.plan}/{s.interval}x{s.seats} cancel_at={s.cancel_at}" if s else "free"
        for s in candidates
    ]
    have = f"{state} {sub.plan}/{sub.interval}x{sub.seats}" if sub else str(state)
    return Violation("not_converged", f"stored {have}; Stripe says {' or '.join(wanted)}")


def email_violations(
    message_ids: Iterable[str], key_of: Mapping[str, str], crashed: Counter[str]
) -> tuple[list[Violation], int]:
    """Each email at most once, plus one per crash between SMTP accept and commit; returns the
    violations and how many duplicates such crashes explain."""
    violations, explained = [], 0
    for message_id, count in Counter(message_ids).items():
        if count == 1:
            continue
        key = key_of.get(message_id, message_id)
        allowed = 1 + crashed.get(key, 0)
        explained += min(count, allowed) - 1
        if count > allowed:
            violations.append(Violation("email_duplicate", f"{key} sent {count} times"))
    return violations, explained
