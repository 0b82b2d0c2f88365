"""The pricing catalog: plans, their prices, features, limits and grace periods.

Plain data read from `catalog.toml`; nothing here talks to Stripe. Workflows never read the
file: activities resolve what a workflow needs (such as grace days) and hand it over as data.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

INTERVALS = ("month", "year")
FREE_PLAN = "free"


class CatalogError(ValueError):
    """The catalog file or a lookup into it is invalid."""


@dataclass(frozen=True)
class Price:
    plan: str
    interval: str
    lookup_key: str
    unit_amount: int
    currency: str


@dataclass(frozen=True)
class Plan:
    id: str
    name: str
    rank: int
    features: dict[str, bool]
    limits: dict[str, int]
    prices: dict[str, Price] = field(default_factory=dict)
    trial_days: int = 0
    per_seat: bool = False
    min_seats: int = 1
    max_seats: int = 1
    seat_limit: str | None = None

    @property
    def self_serve(self) -> bool:
        return bool(self.prices)


@dataclass(frozen=True)
class DunningPolicy:
    reminders_after_days: tuple[int, ...] = (3,)
    final_reminder_days_before: int = 1


@dataclass(frozen=True)
class Catalog:
    currency: str
    plans: dict[str, Plan]
    grace_days: dict[str, int]
    dunning: dict[str, DunningPolicy] = field(default_factory=dict)

    def plan(self, plan_id: str) -> Plan:
        try:
            return self.plans[plan_id]
        except KeyError:
            raise CatalogError(f"unknown plan {plan_id!r}") from None

    def price(self, plan_id: str, interval: str) -> Price:
        plan = self.plan(plan_id)
        if interval not in plan.prices:
            raise CatalogError(f"plan {plan_id!r} has no {interval!r} price")
        return plan.prices[interval]

    def price_by_lookup_key(self, lookup_key: str) -> Price | None:
        for plan in self.plans.values():
            for price in plan.prices.values():
                if price.lookup_key == lookup_key:
                    return price
        return None

    def grace_days_for(self, interval: str | None) -> int:
        return self.grace_days.get(interval or "month", self.grace_days["month"])

    def dunning_for(self, interval: str | None) -> DunningPolicy:
        return self.dunning.get(interval or "month", DunningPolicy())


def parse_catalog(data: dict[str, Any]) -> Catalog:
    currency = data.get("currency", "usd")
    grace_days = {interval: int(days) for interval, days in data["grace_days"].items()}
    if set(grace_days) != set(INTERVALS):
        raise CatalogError(f"grace_days must name exactly {INTERVALS}")
    plans: dict[str, Plan] = {}
    for plan_id, raw in data["plans"].items():
        prices = {
            interval: Price(
                plan=plan_id,
                interval=interval,
                lookup_key=p["lookup_key"],
                unit_amount=int(p["unit_amount"]),
                currency=p.get("currency", currency),
            )
            for interval, p in raw.get("prices", {}).items()
        }
        if unknown := set(prices) - set(INTERVALS):
            raise CatalogError(f"plan {plan_id!r} has prices for unknown intervals {unknown}")
        per_seat = bool(raw.get("per_seat", False))
        plans[plan_id] = Plan(
            id=plan_id,
            name=raw["name"],
            rank=int(raw["rank"]),
            features={k: bool(v) for k, v in raw.get("features", {}).items()},
            limits={k: int(v) for k, v in raw.get("limits", {}).items()},
            prices=prices,
            trial_days=int(raw.get("trial_days", 0)),
            per_seat=per_seat,
            min_seats=int(raw.get("min_seats", 1)),
            max_seats=int(raw.get("max_seats", 1 if not per_seat else 10_000)),
            seat_limit=raw.get("seat_limit"),
        )
    dunning = {
        interval: DunningPolicy(
            reminders_after_days=tuple(int(d) for d in raw["reminders_after_days"]),
            final_reminder_days_before=int(raw["final_reminder_days_before"]),
        )
        for interval, raw in data.get("dunning", {}).items()
    }
    if unknown := set(dunning) - set(INTERVALS):
        raise CatalogError(f"dunning ladders for unknown intervals {unknown}")
    if FREE_PLAN not in plans:
        raise CatalogError("the catalog must define the free plan")
    lookup_keys = [p.lookup_key for plan in plans.values() for p in plan.prices.values()]
    if len(lookup_keys) != len(set(lookup_keys)):
        raise CatalogError("price lookup keys must be unique")
    return Catalog(currency=currency, plans=plans, grace_days=grace_days, dunning=dunning)


@cache
def default_catalog() -> Catalog:
    text = resources.files("domain").joinpath("catalog.toml").read_text(encoding="utf-8")
    return parse_catalog(tomllib.loads(text))
