"""Reading Stripe subscription objects at the pinned API version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from domain.catalog import CatalogError, default_catalog
from domain.subscriptions import (
    SubscriptionChoice,
    deciding_subscription,
    products_to_expand,
    snapshot_from_stripe,
    with_products,
)

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


def negotiated_subscription(**overrides: Any) -> dict[str, Any]:
    """An enterprise deal: a price made in the Dashboard on the Team product, with a lookup
    key and metadata the catalog does not know."""
    sub = stripe_subscription(**{"id": "sub_deal", **overrides})
    sub["items"]["data"][0]["price"].update(
        lookup_key="acme_deal_2027", metadata={}, product="prod_team"
    )
    return sub


TEAM_PRODUCT = {"id": "prod_team", "object": "product", "metadata": {"plan": "team"}}


def test_a_negotiated_price_sells_the_plan_its_product_names() -> None:
    [deal] = with_products([negotiated_subscription()], {"prod_team": TEAM_PRODUCT})
    assert deal["items"]["data"][0]["price"]["product"] == TEAM_PRODUCT
    snapshot = snapshot_from_stripe(deal, CATALOG)
    assert (snapshot.plan, snapshot.interval, snapshot.seats) == ("team", "month", 3)
    assert deciding_subscription([deal], CATALOG).deciding is deal


def test_a_negotiated_price_with_its_product_unread_is_no_plan() -> None:
    with pytest.raises(CatalogError, match="no price in the catalog"):
        snapshot_from_stripe(negotiated_subscription(), CATALOG)


def test_a_product_naming_no_catalog_plan_names_nothing() -> None:
    gold = {"id": "prod_team", "metadata": {"plan": "gold"}}
    [deal] = with_products([negotiated_subscription()], {"prod_team": gold})
    assert deciding_subscription([deal], CATALOG).deciding is None


def test_only_products_that_could_name_a_missing_plan_are_read() -> None:
    plan_with_add_on = stripe_subscription(id="sub_plan")
    plan_with_add_on["items"]["data"].append(add_on_item())
    plan_with_add_on["items"]["data"][-1]["price"]["product"] = "prod_storage"
    ended_deal = negotiated_subscription(id="sub_old_deal", status="canceled")
    ended_deal["items"]["data"][0]["price"]["product"] = "prod_old"
    subscriptions = [plan_with_add_on, ended_deal, negotiated_subscription()]
    assert products_to_expand(subscriptions, CATALOG) == {"prod_team"}


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


# --- which subscription decides -----------------------------------------------------------

LIVE = ("active", "past_due", "unpaid", "trialing", "paused", "incomplete")
ENDED = ("canceled", "incomplete_expired")
STATUSES = LIVE + ENDED

# Two plan subscriptions, the older created first: which one decides?
# O the older, N the newer, - neither. Rows: the older's status; columns: the newer's, in
# the order of STATUSES. Read with the rule: active > past_due = unpaid > trialing > paused >
# incomplete, the newer on a tie, ended never.
#                          act  pdue unpd  trl  psd  inc  cncl iexp
WINNER_BY_STATUS = {
    "active":             ("N", "O", "O", "O", "O", "O", "O", "O"),
    "past_due":           ("N", "N", "N", "O", "O", "O", "O", "O"),
    "unpaid":             ("N", "N", "N", "O", "O", "O", "O", "O"),
    "trialing":           ("N", "N", "N", "N", "O", "O", "O", "O"),
    "paused":             ("N", "N", "N", "N", "N", "O", "O", "O"),
    "incomplete":         ("N", "N", "N", "N", "N", "N", "O", "O"),
    "canceled":           ("N", "N", "N", "N", "N", "N", "-", "-"),
    "incomplete_expired": ("N", "N", "N", "N", "N", "N", "-", "-"),
}  # fmt: skip


def test_the_status_table_covers_every_stripe_status() -> None:
    assert set(WINNER_BY_STATUS) == set(STATUSES)
    assert all(len(row) == len(STATUSES) for row in WINNER_BY_STATUS.values())


@pytest.mark.parametrize("older_status", STATUSES)
@pytest.mark.parametrize("newer_status", STATUSES)
def test_between_two_plan_subscriptions_the_status_rank_then_the_newest_decides(
    older_status: str, newer_status: str
) -> None:
    older = stripe_subscription(id="sub_older", created=100, status=older_status)
    newer = stripe_subscription(id="sub_newer", created=200, status=newer_status)
    winner = WINNER_BY_STATUS[older_status][STATUSES.index(newer_status)]
    for listing in ([older, newer], [newer, older]):
        choice = deciding_subscription(listing, CATALOG)
        match winner:
            case "O":
                assert choice.deciding is older
            case "N":
                assert choice.deciding is newer
            case "-":
                assert choice.deciding is None
        both_live = older_status in LIVE and newer_status in LIVE
        loser = "sub_newer" if winner == "O" else "sub_older"
        assert choice.also_live == ((loser,) if both_live else ())


def add_on_subscription(**overrides: Any) -> dict[str, Any]:
    """A subscription holding only an add-on: no item's price is in the catalog."""
    return stripe_subscription(
        **{"id": "sub_addon", "items": {"object": "list", "data": [add_on_item()]}, **overrides}
    )


def unknown_price_subscription(**overrides: Any) -> dict[str, Any]:
    sub = stripe_subscription(**{"id": "sub_unknown", **overrides})
    sub["items"]["data"][0]["price"].update(lookup_key="legacy_gold", metadata={"plan": "gold"})
    return sub


NOT_PLANS = {"add-on": add_on_subscription, "unknown price": unknown_price_subscription}


@pytest.mark.parametrize("kind", NOT_PLANS)
@pytest.mark.parametrize("plan_status", STATUSES)
@pytest.mark.parametrize("other_status", STATUSES)
def test_add_ons_and_unknown_prices_never_decide(
    kind: str, plan_status: str, other_status: str
) -> None:
    plan = stripe_subscription(id="sub_plan", created=100, status=plan_status)
    # Newer than the plan, so under "the newest decides" it would have won.
    other = NOT_PLANS[kind](created=200, status=other_status)
    choice = deciding_subscription([plan, other], CATALOG)
    assert choice.deciding is (plan if plan_status in LIVE else None)
    assert choice.also_live == ()


@pytest.mark.parametrize("kind", NOT_PLANS)
def test_without_a_plan_subscription_nothing_decides(kind: str) -> None:
    choice = deciding_subscription([NOT_PLANS[kind]()], CATALOG)
    assert choice == SubscriptionChoice(deciding=None, also_live=())


def test_a_plan_priced_by_metadata_decides_like_a_catalog_price() -> None:
    by_metadata = stripe_subscription(id="sub_negotiated", created=200, status="active")
    by_metadata["items"]["data"][0]["price"].update(lookup_key=None, metadata={"plan": "pro"})
    older = stripe_subscription(id="sub_old", created=100, status="active")
    choice = deciding_subscription([older, by_metadata], CATALOG)
    assert choice.deciding is by_metadata
    assert choice.also_live == ("sub_old",)


def test_a_plan_subscription_with_an_add_on_item_still_decides() -> None:
    plan_with_add_on = stripe_subscription(id="sub_plan", status="past_due")
    plan_with_add_on["items"]["data"].insert(0, add_on_item())
    choice = deciding_subscription([plan_with_add_on], CATALOG)
    assert choice.deciding is plan_with_add_on


def test_an_older_active_plan_outranks_a_newer_stuck_checkout() -> None:
    """Defect 4: a second, unpaid checkout must not put a paying account on the free plan."""
    pro = stripe_subscription(id="sub_pro", created=100, status="active")
    stuck = stripe_subscription(id="sub_stuck", created=200, status="incomplete")
    choice = deciding_subscription([stuck, pro], CATALOG)
    assert choice.deciding is pro
    assert choice.also_live == ("sub_stuck",)


def test_every_other_live_plan_is_flagged_best_first() -> None:
    subs = [
        stripe_subscription(id="sub_trial", created=400, status="trialing"),
        stripe_subscription(id="sub_gone", created=500, status="canceled"),
        stripe_subscription(id="sub_paid_old", created=100, status="active"),
        stripe_subscription(id="sub_paid_new", created=200, status="active"),
        stripe_subscription(id="sub_stuck", created=300, status="incomplete"),
        add_on_subscription(created=600, status="active"),
    ]
    choice = deciding_subscription(subs, CATALOG)
    assert choice.deciding is subs[3]
    assert choice.also_live == ("sub_paid_old", "sub_trial", "sub_stuck")


def test_equal_status_and_creation_time_fall_back_to_the_id() -> None:
    a = stripe_subscription(id="sub_a", created=100)
    b = stripe_subscription(id="sub_b", created=100)
    for listing in ([a, b], [b, a]):
        assert deciding_subscription(listing, CATALOG).deciding is b


def test_a_status_stripe_adds_later_ranks_below_every_known_one() -> None:
    future = stripe_subscription(id="sub_future", created=200, status="on_hold")
    stuck = stripe_subscription(id="sub_stuck", created=100, status="incomplete")
    assert deciding_subscription([future, stuck], CATALOG).deciding is stuck
    assert deciding_subscription([future], CATALOG).deciding is future


def test_no_subscriptions_means_none() -> None:
    assert deciding_subscription([], CATALOG) == SubscriptionChoice(deciding=None)
