"""Reading Stripe subscription objects (plain dicts) into lifecycle snapshots.

Shapes follow the pinned API version: billing periods live on subscription items, and an
open invoice's payment page is `latest_invoice.hosted_invoice_url` when `latest_invoice` is
expanded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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

    A price is a plan price by its catalog lookup key, or by a `plan` metadata entry naming a
    catalog plan (a negotiated price made by hand in the Dashboard) on a recurring price.
    """
    price = item["price"]
    plan_price = catalog.price_by_lookup_key(price.get("lookup_key") or "")
    if plan_price is not None:
        return plan_price.plan, plan_price.interval
    plan_id = (price.get("metadata") or {}).get("plan")
    interval = (price.get("recurring") or {}).get("interval")
    if plan_id in catalog.plans and interval is not None:
        return plan_id, interval
    return None


def current_subscription(subscriptions: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The subscription that decides the account: the newest one still alive, if any.

    A customer may have ended subscriptions beside a live one (cancel, then subscribe again);
    the ended ones must never drag the account back to free.
    """
    alive = [s for s in subscriptions if s["status"] not in ENDED_STRIPE_STATUSES]
    return max(alive, key=lambda s: (s["created"], s["id"]), default=None)
