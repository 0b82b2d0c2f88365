"""Reading Stripe subscription objects (plain dicts): which one decides the account, and
its lifecycle snapshot.

Shapes follow the pinned API version: billing periods live on subscription items, and an
open invoice's payment page is `latest_invoice.hosted_invoice_url` when `latest_invoice` is
expanded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain.catalog import Catalog, CatalogError
from domain.lifecycle import ENDED_STRIPE_STATUSES, SubscriptionSnapshot


def _timestamp(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value), tz=UTC)


def snapshot_from_stripe(subscription: Mapping[str, Any], catalog: Catalog) -> SubscriptionSnapshot:
    """The subscription as this service sees it, read from its one plan item.

    Other items (an add-on added in the Dashboard, say) are ignored: they never change the
    plan, its seats or its period. A subscription with no plan item, or with two, cannot be
    read as one plan and is refused.
    """
    items = subscription["items"]["data"]
    plan_items = [(item, plan) for item in items if (plan := _plan_of(item, catalog))]
    if len(plan_items) != 1:
        prices = ", ".join(item["price"]["id"] for item in items) or "no items"
        found = "no price" if not plan_items else f"{len(plan_items)} prices"
        raise CatalogError(
            f"subscription {subscription['id']} has {found} in the catalog ({prices}); "
            "it must have exactly one plan price"
        )
    [(item, (plan_id, interval))] = plan_items
    period_end = _timestamp(item.get("current_period_end"))
    cancel_at = _timestamp(subscription.get("cancel_at"))
    if cancel_at is None and subscription.get("cancel_at_period_end"):
        cancel_at = period_end
    customer = subscription["customer"]
    invoice = subscription.get("latest_invoice")
    open_invoice_url = (
        invoice.get("hosted_invoice_url")
        if isinstance(invoice, Mapping) and invoice.get("status") == "open"
        else None
    )
    return SubscriptionSnapshot(
        subscription_id=subscription["id"],
        customer_id=customer if isinstance(customer, str) else customer["id"],
        status=subscription["status"],
        plan=plan_id,
        interval=interval,
        seats=int(item.get("quantity") or 1),
        current_period_end=period_end,
        trial_end=_timestamp(subscription.get("trial_end")),
        cancel_at=cancel_at,
        open_invoice_url=open_invoice_url,
    )


def _plan_of(item: Mapping[str, Any], catalog: Catalog) -> tuple[str, str] | None:
    """The (plan, interval) an item's price sells, or None for an add-on or unknown price.

    A price is a plan price by its catalog lookup key, else (a negotiated price made by hand
    in the Dashboard for an enterprise deal) a recurring price whose own `plan` metadata, or
    its product's when the product is expanded (`with_products`), names a catalog plan. The
    catalog's products carry that metadata (`ops/catalog_sync.py`), so a new price on the
    plan's product is that plan.
    """
    price = item["price"]
    plan_price = catalog.price_by_lookup_key(price.get("lookup_key") or "")
    if plan_price is not None:
        return plan_price.plan, plan_price.interval
    interval = (price.get("recurring") or {}).get("interval")
    product = price.get("product")
    for named_by in (price, product if isinstance(product, Mapping) else {}):
        plan_id = (named_by.get("metadata") or {}).get("plan")
        if plan_id in catalog.plans and interval is not None:
            return plan_id, interval
    return None


def products_to_expand(subscriptions: Iterable[Mapping[str, Any]], catalog: Catalog) -> set[str]:
    """The products whose metadata could make a live subscription a plan subscription: those
    of its prices when none of them is a plan price by lookup key or price metadata. A
    subscription that already has its plan item costs no product read."""
    return {
        item["price"]["product"]
        for s in subscriptions
        if s["status"] not in ENDED_STRIPE_STATUSES
        and not any(_plan_of(item, catalog) for item in s["items"]["data"])
        for item in s["items"]["data"]
        if isinstance(item["price"].get("product"), str)
    }


def with_products(
    subscriptions: Iterable[Mapping[str, Any]], products: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The subscriptions with each price's product id replaced by that product, as Stripe
    renders an expanded `items.data.price.product`, for the products given."""

    def expanded(item: Mapping[str, Any]) -> Mapping[str, Any]:
        product_id = item["price"].get("product")
        product = products.get(product_id) if isinstance(product_id, str) else None
        return item if product is None else {**item, "price": {**item["price"], "product": product}}

    return [
        {**s, "items": {**s["items"], "data": [expanded(item) for item in s["items"]["data"]]}}
        for s in subscriptions
    ]


# Which live plan subscription decides access when a customer has more than one, best first.
# Paid money outranks owed money, owed money outranks a promise (a trial), and a stuck first
# payment never displaces anything: see `deciding_subscription`.
LIVE_STATUS_RANK: tuple[frozenset[str], ...] = (
    frozenset({"active"}),
    frozenset({"past_due", "unpaid"}),
    frozenset({"trialing"}),
    frozenset({"paused"}),
    frozenset({"incomplete"}),
)


def _status_rank(status: str) -> int:
    # A status Stripe adds later ranks below every known one; if it alone is left it still
    # decides, and `state_for_subscription` refuses it loudly.
    return next(
        (rank for rank, statuses in enumerate(LIVE_STATUS_RANK) if status in statuses),
        len(LIVE_STATUS_RANK),
    )


@dataclass(frozen=True)
class SubscriptionChoice:
    """The subscription that decides the account, and the other live plan subscriptions.

    `also_live` is not empty when the customer pays (or owes) for two plans at once, which
    no flow of this service creates: operators must look at it.
    """

    deciding: Mapping[str, Any] | None
    also_live: tuple[str, ...] = ()


def deciding_subscription(
    subscriptions: Iterable[Mapping[str, Any]], catalog: Catalog
) -> SubscriptionChoice:
    """Pick the one subscription whose plan and status decide the account's access.

    1. Only plan subscriptions decide: one item must have a catalog price (see `_plan_of`).
       A subscription holding only add-ons or unknown prices is not about access, so it can
       neither hide the plan (a newer add-on) nor break the account with a catalog error.
    2. Ended subscriptions (`canceled`, `incomplete_expired`) never decide: an ended one
       means the same as none (free), and must never drag a live plan back to free.
    3. Among live plan subscriptions, the best status wins (`LIVE_STATUS_RANK`):
       `active` (paid for: another subscription's trouble must not take paid access away)
       > `past_due`/`unpaid` (owed money: it must decide so dunning starts, rather than a
       trial or a stuck checkout hiding it) >
       `trialing` (full access, nothing paid yet) > `paused` (read-only) > `incomplete` (the
       first payment never happened: a stuck checkout must not put a paying account on free).
    4. Between equal statuses the newest wins (`created`, then id so the pick is stable).

    Every other live plan subscription is returned in `also_live` for operators.
    """
    live_plans = sorted(
        (
            s
            for s in subscriptions
            if s["status"] not in ENDED_STRIPE_STATUSES
            and any(_plan_of(item, catalog) for item in s["items"]["data"])
        ),
        # Reversed: the best rank (the lowest number) and then the newest come first.
        key=lambda s: (-_status_rank(s["status"]), s["created"], s["id"]),
        reverse=True,
    )
    if not live_plans:
        return SubscriptionChoice(deciding=None)
    deciding, *others = live_plans
    return SubscriptionChoice(deciding=deciding, also_live=tuple(s["id"] for s in others))
