"""What a customer may buy, and whether a change of plan is an upgrade or a downgrade.

An upgrade (a higher-ranked plan, or more per year on the same plan) applies at once,
prorated; a downgrade waits for the end of the paid period, so nothing already paid for is
taken away.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain.catalog import Catalog, Price
from domain.lifecycle import Purchase, SubscriptionSnapshot

PERIODS_PER_YEAR = {"month": 12, "year": 1}


class PlanChangeError(ValueError):
    """The requested plan, interval or seat count cannot be bought; nothing changes."""


class ChangeKind(StrEnum):
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"


@dataclass(frozen=True)
class PlanChange:
    kind: ChangeKind
    purchase: Purchase


def purchase_for(catalog: Catalog, plan: str, interval: str, seats: int) -> Purchase:
    """A self-serve price for the request, or PlanChangeError saying why there is none."""
    if plan not in catalog.plans:
        raise PlanChangeError(f"unknown plan {plan!r}")
    offered = catalog.plans[plan]
    if not offered.self_serve:
        raise PlanChangeError(f"the {offered.name} plan cannot be bought self-serve")
    if interval not in offered.prices:
        raise PlanChangeError(f"the {offered.name} plan has no {interval!r} price")
    if not offered.min_seats <= seats <= offered.max_seats:
        if offered.min_seats == offered.max_seats:
            raise PlanChangeError(f"the {offered.name} plan has exactly {offered.min_seats} seat")
        raise PlanChangeError(
            f"the {offered.name} plan takes {offered.min_seats} to {offered.max_seats} seats"
        )
    return Purchase(plan, interval, seats, offered.prices[interval].lookup_key)


def yearly_amount(price: Price, seats: int) -> int:
    return price.unit_amount * seats * PERIODS_PER_YEAR[price.interval]


def classify_change(
    catalog: Catalog, current: SubscriptionSnapshot, purchase: Purchase
) -> PlanChange:
    if (current.plan, current.interval, current.seats) == (
        purchase.plan,
        purchase.interval,
        purchase.seats,
    ):
        raise PlanChangeError("the account is already on that plan")
    old_rank, new_rank = catalog.plan(current.plan).rank, catalog.plan(purchase.plan).rank
    if old_rank != new_rank:
        # A better plan is wanted now; a lesser one waits, so no paid-for feature is lost.
        kind = ChangeKind.UPGRADE if new_rank > old_rank else ChangeKind.DOWNGRADE
        return PlanChange(kind=kind, purchase=purchase)
    before = yearly_amount(catalog.price(current.plan, current.interval), current.seats)
    after = yearly_amount(catalog.price(purchase.plan, purchase.interval), purchase.seats)
    # Same plan, other seats or interval: paying more per year applies now. A change of
    # interval at equal cost also applies now, as Stripe restarts the cycle anyway.
    kind = (
        ChangeKind.UPGRADE
        if after > before or (after == before and current.interval != purchase.interval)
        else ChangeKind.DOWNGRADE
    )
    return PlanChange(kind=kind, purchase=purchase)
