"""Reading Stripe subscription objects at the pinned API version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from domain.catalog import CatalogError, default_catalog
from domain.subscriptions import current_subscription, snapshot_from_stripe

CATALOG = default_catalog()
PERIOD_END = 1_767_225_600


def stripe_subscription(**overrides: Any) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "id": "sub_1",
        "object": "subscription",
        "customer": "cus_1",
        "status": "active",
        "created": 1_764_547_200,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "trial_end": None,
        "latest_invoice": "in_1",
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_1",
                    "quantity": 3,
                    "current_period_start": 1_764_547_200,
                    "current_period_end": PERIOD_END,
                    "price": {
                        "id": "price_1",
                        "lookup_key": "team_monthly_per_seat",
                        "recurring": {"interval": "month"},
                        "metadata": {},
                    },
                }
            ],
        },
    }
    sub.update(overrides)
    return sub


def test_plan_interval_seats_and_period_come_from_the_item() -> None:
    snap = snapshot_from_stripe(stripe_subscription(), CATALOG)
    assert (snap.plan, snap.interval, snap.seats) == ("team", "month", 3)
    assert snap.current_period_end == datetime.fromtimestamp(PERIOD_END, UTC)
    assert snap.cancel_at is None


def test_cancel_at_period_end_means_cancel_at_the_period_end() -> None:
    snap = snapshot_from_stripe(stripe_subscription(cancel_at_period_end=True), CATALOG)
    assert snap.cancel_at == datetime.fromtimestamp(PERIOD_END, UTC)


def test_open_latest_invoice_gives_the_payment_link() -> None:
    invoice = {"id": "in_1", "status": "open", "hosted_invoice_url": "https://pay/in_1"}
    snap = snapshot_from_stripe(stripe_subscription(latest_invoice=invoice), CATALOG)
    assert snap.open_invoice_url == "https://pay/in_1"
    paid = {**invoice, "status": "paid"}
    assert (
        snapshot_from_stripe(stripe_subscription(latest_invoice=paid), CATALOG).open_invoice_url
        is None
    )


def test_expanded_customer_object_is_read_by_id() -> None:
    snap = snapshot_from_stripe(stripe_subscription(customer={"id": "cus_9"}), CATALOG)
    assert snap.customer_id == "cus_9"


def test_price_outside_the_catalog_falls_back_to_plan_metadata() -> None:
    sub = stripe_subscription()
    sub["items"]["data"][0]["price"].update(lookup_key=None, metadata={"plan": "pro"})
    assert snapshot_from_stripe(sub, CATALOG).plan == "pro"


def test_price_unknown_to_the_catalog_is_refused() -> None:
    sub = stripe_subscription()
    sub["items"]["data"][0]["price"].update(lookup_key="legacy_gold", metadata={})
    with pytest.raises(CatalogError, match="sub_1 has no price in the catalog \\(price_1\\)"):
        snapshot_from_stripe(sub, CATALOG)


def test_metadata_naming_no_catalog_plan_is_refused() -> None:
    sub = stripe_subscription()
    sub["items"]["data"][0]["price"].update(lookup_key=None, metadata={"plan": "gold"})
    with pytest.raises(CatalogError, match="no price in the catalog"):
        snapshot_from_stripe(sub, CATALOG)


def test_subscription_without_items_is_refused() -> None:
    sub = stripe_subscription(items={"object": "list", "data": []})
    with pytest.raises(CatalogError, match="no price in the catalog \\(no items\\)"):
        snapshot_from_stripe(sub, CATALOG)


def add_on_item(quantity: int = 7, period_end: int = PERIOD_END + 86_400) -> dict[str, Any]:
    """An item whose price the catalog does not know, as an add-on made in the Dashboard."""
    return {
        "id": "si_addon",
        "quantity": quantity,
        "current_period_start": 1_764_547_200,
        "current_period_end": period_end,
        "price": {
            "id": "price_addon",
            "lookup_key": "extra_storage",
            "recurring": {"interval": "month"},
            "metadata": {},
        },
    }


def test_an_add_on_item_is_ignored_wherever_it_is_listed() -> None:
    for position in (0, 1):
        sub = stripe_subscription()
        sub["items"]["data"].insert(position, add_on_item())
        snap = snapshot_from_stripe(sub, CATALOG)
        assert (snap.plan, snap.interval, snap.seats) == ("team", "month", 3)
        assert snap.current_period_end == datetime.fromtimestamp(PERIOD_END, UTC)


def test_two_plan_items_on_one_subscription_are_refused() -> None:
    sub = stripe_subscription()
    pro_item = {
        "id": "si_2",
        "quantity": 1,
        "current_period_end": PERIOD_END,
        "price": {"id": "price_pro", "lookup_key": "pro_monthly", "metadata": {}},
    }
    sub["items"]["data"].append(pro_item)
    with pytest.raises(CatalogError, match="sub_1 has 2 prices in the catalog"):
        snapshot_from_stripe(sub, CATALOG)


def test_current_subscription_is_the_newest_live_one() -> None:
    old_active = stripe_subscription(id="sub_old", created=100, status="active")
    ended = stripe_subscription(id="sub_ended", created=300, status="canceled")
    new_trial = stripe_subscription(id="sub_new", created=200, status="trialing")
    chosen = current_subscription([old_active, ended, new_trial])
    assert chosen is not None and chosen["id"] == "sub_new"


def test_only_ended_subscriptions_means_none() -> None:
    subs = [
        stripe_subscription(status="canceled"),
        stripe_subscription(status="incomplete_expired"),
    ]
    assert current_subscription(subs) is None
