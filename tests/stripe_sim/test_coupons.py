"""Coupons, promotion codes and subscription discounts, through stripe-python."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from stripe_sim.billing import discount_amounts
from tests.stripe_sim.conftest import DAY, HOUR, JAN_1, advance, events, make_customer

FEB_1 = JAN_1 + 31 * DAY
MAR_1 = FEB_1 + 28 * DAY
APR_1 = MAR_1 + 31 * DAY


def subscribe(client: stripe.StripeClient, cust: Any, price: Any, **extra: Any) -> Any:
    return client.v1.subscriptions.create(
        params={"customer": cust.id, "items": [{"price": price.id}], **extra}
    )


def invoices_oldest_first(client: stripe.StripeClient, sub: Any) -> list[Any]:
    return list(reversed(client.v1.invoices.list(params={"subscription": sub.id}).data))


@pytest.mark.parametrize(
    ("coupon", "totals"),
    [
        ({"percent_off": 25, "duration": "once"}, [1500, 2000, 2000, 2000]),
        (
            {"percent_off": 25, "duration": "repeating", "duration_in_months": 2},
            [1500, 1500, 2000, 2000],
        ),
        ({"amount_off": 500, "currency": "usd", "duration": "forever"}, [1500] * 4),
        # More off than the invoice: the total stops at zero and nothing is charged.
        ({"amount_off": 3000, "currency": "usd", "duration": "forever"}, [0] * 4),
    ],
    ids=["once", "repeating-2", "forever", "more-than-the-invoice"],
)
def test_discount_applies_for_the_coupons_duration(
    client: stripe.StripeClient,
    clock: Any,
    catalog: dict[str, Any],
    coupon: dict[str, Any],
    totals: list[int],
) -> None:
    made = client.v1.coupons.create(params=coupon)
    cust = make_customer(client, clock)
    sub = subscribe(
        client, cust, catalog["pro"], discounts=[{"coupon": made.id}], expand=["discounts"]
    )
    assert len(sub.discounts) == 1
    discount = sub.discounts[0]
    assert discount.object == "discount"
    assert discount.source.coupon == made.id
    assert discount.subscription == sub.id
    assert discount.start == JAN_1
    if coupon["duration"] == "repeating":
        assert discount.end == MAR_1
    else:
        assert discount.end is None
    assert client.v1.coupons.retrieve(made.id).times_redeemed == 1
    for renewal in (FEB_1, MAR_1, APR_1):
        advance(client, clock, renewal + 2 * HOUR)
    invoices = invoices_oldest_first(client, sub)
    assert [inv.total for inv in invoices] == totals
    for inv, total in zip(invoices, totals, strict=True):
        assert inv.status == "paid"
        assert inv.subtotal == 2000
        assert inv.amount_paid == total
        off = 2000 - total
        line = inv.lines.data[0]
        if off:
            assert inv.discounts == [discount.id]
            assert [(d.amount, d.discount) for d in inv.total_discount_amounts] == [
                (off, discount.id)
            ]
            assert [(d.amount, d.discount) for d in line.discount_amounts] == [(off, discount.id)]
        else:
            assert inv.discounts == []
            assert inv.total_discount_amounts == []
            assert line.discount_amounts == []
        assert line.amount == 2000  # lines keep their amount before discounts
    still = client.v1.subscriptions.retrieve(sub.id).discounts
    assert still == ([discount.id] if coupon["duration"] == "forever" else [])
    ended = events(client, "customer.discount.deleted")
    assert [e.data.object.id for e in ended] == ([] if still else [discount.id])
    assert client.v1.coupons.retrieve(made.id).times_redeemed == 1


def test_percent_off_rounds_half_up_on_the_subtotal() -> None:
    coupon = {"percent_off": 33.5, "amount_off": None}
    assert discount_amounts(coupon, [999]) == [335]  # 334.665
    assert discount_amounts(coupon, [100, 100, -50]) == [33, 34, 0]  # 67 of 200, credits none
    assert discount_amounts({"percent_off": None, "amount_off": 500}, [300, 100]) == [300, 100]


def test_fractional_percent_coupon_on_an_invoice(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    coupon = client.v1.coupons.create(params={"percent_off": 12.5, "duration": "forever"})
    assert coupon.percent_off == 12.5
    sub = subscribe(
        client,
        make_customer(client, clock),
        catalog["pro"],
        discounts=[{"coupon": coupon.id}],
        expand=["latest_invoice"],
    )
    assert (sub.latest_invoice.subtotal, sub.latest_invoice.total) == (2000, 1750)


def test_promotion_code_with_max_redemptions(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    coupon = client.v1.coupons.create(params={"percent_off": 50, "duration": "once"})
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "max_redemptions": 1}
    )
    assert promo.code and promo.active and promo.times_redeemed == 0
    assert promo.promotion.coupon == coupon.id
    first = subscribe(
        client,
        make_customer(client, clock),
        catalog["pro"],
        discounts=[{"promotion_code": promo.id}],
        expand=["discounts", "latest_invoice"],
    )
    assert first.discounts[0].promotion_code == promo.id
    assert first.latest_invoice.total == 1000
    assert client.v1.promotion_codes.retrieve(promo.id).times_redeemed == 1
    with pytest.raises(stripe.InvalidRequestError) as refused:
        subscribe(
            client,
            make_customer(client, clock),
            catalog["pro"],
            discounts=[{"promotion_code": promo.id}],
        )
    assert refused.value.http_status == 400
    assert refused.value.param == "discounts[0][promotion_code]"
    # Nothing was created or counted by the refused request.
    assert client.v1.promotion_codes.retrieve(promo.id).times_redeemed == 1
    assert client.v1.coupons.retrieve(coupon.id).times_redeemed == 1
    assert len(client.v1.subscriptions.list(params={"status": "all"}).data) == 1


def test_unknown_coupon_is_refused(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        subscribe(
            client, make_customer(client, clock), catalog["pro"], discounts=[{"coupon": "FAKE20"}]
        )
    assert refused.value.http_status == 400
    assert refused.value.code == "resource_missing"
    assert refused.value.param == "discounts[0][coupon]"
    assert refused.value.user_message == "No such coupon: 'FAKE20'"
    assert client.v1.subscriptions.list(params={"status": "all"}).data == []


def test_used_up_coupon_is_invalid_and_refused(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    coupon = client.v1.coupons.create(
        params={"id": "ONCEONLY", "amount_off": 100, "currency": "usd", "max_redemptions": 1}
    )
    assert coupon.id == "ONCEONLY" and coupon.duration == "once" and coupon.valid
    subscribe(
        client, make_customer(client, clock), catalog["pro"], discounts=[{"coupon": "ONCEONLY"}]
    )
    assert not client.v1.coupons.retrieve("ONCEONLY").valid
    with pytest.raises(stripe.InvalidRequestError) as refused:
        subscribe(
            client, make_customer(client, clock), catalog["pro"], discounts=[{"coupon": "ONCEONLY"}]
        )
    assert refused.value.code == "coupon_expired"
    assert refused.value.param == "discounts[0][coupon]"


def test_deleted_coupon_keeps_existing_discounts(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    coupon = client.v1.coupons.create(params={"percent_off": 10, "duration": "forever"})
    sub = subscribe(
        client, make_customer(client, clock), catalog["pro"], discounts=[{"coupon": coupon.id}]
    )
    deleted = client.v1.coupons.delete(coupon.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.coupons.retrieve(coupon.id)
    advance(client, clock, FEB_1 + 2 * HOUR)
    assert [inv.total for inv in invoices_oldest_first(client, sub)] == [1800, 1800]


@pytest.mark.parametrize(
    ("params", "param", "message"),
    [
        (
            {"percent_off": 10, "amount_off": 100, "currency": "usd"},
            "amount_off",
            "You may only specify one of these parameters: amount_off, percent_off.",
        ),
        ({"duration": "forever"}, "amount_off", "You must pass either amount_off or percent_off."),
        ({"amount_off": 100}, "currency", "You must pass currency when passing amount_off."),
        (
            {"percent_off": 10, "duration": "repeating"},
            "duration_in_months",
            "Missing required param: duration_in_months.",
        ),
        (
            {"percent_off": 120},
            "percent_off",
            "Invalid percent_off: must be greater than 0 and less than or equal to 100",
        ),
    ],
)
def test_invalid_coupons_are_refused(
    client: stripe.StripeClient, params: dict[str, Any], param: str, message: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.coupons.create(params=params)
    assert (refused.value.param, refused.value.user_message) == (param, message)


def test_coupon_update_list_and_duplicate_id(client: stripe.StripeClient) -> None:
    coupon = client.v1.coupons.create(params={"id": "SPRING", "percent_off": 20})
    updated = client.v1.coupons.update("SPRING", params={"name": "Spring", "metadata": {"a": "b"}})
    assert (updated.name, updated.metadata.to_dict()) == ("Spring", {"a": "b"})
    assert [c.id for c in client.v1.coupons.list().data] == [coupon.id]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.coupons.create(params={"id": "SPRING", "percent_off": 20})
    assert refused.value.code == "resource_already_exists"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.coupons.create(params={"percent_off": 20, "applies_to": {"products": ["prod_x"]}})
    assert refused.value.code == "parameter_not_implemented_by_simulator"


def test_promotion_code_update_and_list_filters(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    a = client.v1.coupons.create(params={"percent_off": 20})
    b = client.v1.coupons.create(params={"percent_off": 30})
    first = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": a.id}, "code": "FIRST"}
    )
    client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": b.id}, "code": "SECOND"}
    )
    off = client.v1.promotion_codes.update(first.id, params={"active": False})
    assert off.active is False

    def codes(**filters: Any) -> list[str]:
        return [p.code for p in client.v1.promotion_codes.list(params=filters).data]

    assert codes() == ["SECOND", "FIRST"]
    assert codes(active=True) == ["SECOND"]
    assert codes(code="FIRST") == ["FIRST"]
    assert codes(coupon=b.id) == ["SECOND"]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        subscribe(
            client,
            make_customer(client, clock),
            catalog["pro"],
            discounts=[{"promotion_code": first.id}],
        )
    assert refused.value.param == "discounts[0][promotion_code]"


def test_promotion_code_minimum_amount(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    coupon = client.v1.coupons.create(params={"percent_off": 20})
    promo = client.v1.promotion_codes.create(
        params={
            "promotion": {"type": "coupon", "coupon": coupon.id},
            "restrictions": {"minimum_amount": 5000, "minimum_amount_currency": "usd"},
        }
    )
    cust = make_customer(client, clock)
    with pytest.raises(stripe.InvalidRequestError):
        subscribe(client, cust, catalog["pro"], discounts=[{"promotion_code": promo.id}])
    sub = subscribe(
        client,
        cust,
        catalog["team"],
        discounts=[{"promotion_code": promo.id}],
        expand=["latest_invoice"],
    )
    assert sub.latest_invoice.total == 4000


def test_a_once_discount_waits_through_the_trial_for_the_first_invoice_with_an_amount(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    coupon = client.v1.coupons.create(params={"percent_off": 25, "duration": "once"})
    cust = make_customer(client, clock)
    sub = subscribe(
        client, cust, catalog["pro"], discounts=[{"coupon": coupon.id}], trial_period_days=7
    )
    assert sub.status == "trialing" and len(sub.discounts) == 1
    for renewal in (JAN_1 + 7 * DAY, JAN_1 + 7 * DAY + 31 * DAY):
        advance(client, clock, renewal + 2 * HOUR)
    trial, first, second = invoices_oldest_first(client, sub)
    # Stripe ignores coupons on zero-cost invoices: the trial's leaves the discount unused.
    assert (trial.total, trial.discounts, trial.total_discount_amounts) == (0, [], [])
    assert (first.subtotal, first.total, first.discounts) == (2000, 1500, sub.discounts)
    assert second.total == 2000
    assert client.v1.subscriptions.retrieve(sub.id).discounts == []
    assert client.v1.coupons.retrieve(coupon.id).times_redeemed == 1


def test_unmodelled_combinations_are_refused(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    coupon = client.v1.coupons.create(params={"percent_off": 20, "duration": "forever"})
    cust = make_customer(client, clock)
    sub = subscribe(client, cust, catalog["pro"], discounts=[{"coupon": coupon.id}])
    item = sub["items"].data[0]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "quantity": 2}]})
    assert refused.value.code == "parameter_not_implemented_by_simulator"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscriptions.update(
            sub.id, params={"discounts": [{"coupon": coupon.id}, {"coupon": coupon.id}]}
        )
    assert refused.value.code == "parameter_not_implemented_by_simulator"
    plain = subscribe(client, cust, catalog["team"])
    client.v1.subscriptions.update(
        plain.id,
        params={"items": [{"id": plain["items"].data[0].id, "quantity": 2}]},
    )
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscriptions.update(plain.id, params={"discounts": [{"coupon": coupon.id}]})
    assert (refused.value.code, refused.value.param) == (
        "parameter_not_implemented_by_simulator",
        "discounts",
    )


def test_update_replaces_the_discounts_for_the_next_invoices(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    coupon = client.v1.coupons.create(params={"amount_off": 300, "currency": "usd"})
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "LATER"}
    )
    sub = subscribe(client, make_customer(client, clock), catalog["pro"])
    sub = client.v1.subscriptions.update(
        sub.id, params={"discounts": [{"promotion_code": promo.id}]}
    )
    (discount_id,) = sub.discounts
    # Keeping it by id changes nothing; it is applied once, at the next renewal.
    kept = client.v1.subscriptions.update(sub.id, params={"discounts": [{"discount": discount_id}]})
    assert kept.discounts == [discount_id]
    advance(client, clock, FEB_1 + 2 * HOUR)
    advance(client, clock, MAR_1 + 2 * HOUR)
    assert [inv.total for inv in invoices_oldest_first(client, sub)] == [2000, 1700, 2000]
    assert client.v1.promotion_codes.retrieve(promo.id).times_redeemed == 1
    # A forever coupon, then removed with discounts="".
    forever = client.v1.coupons.create(params={"percent_off": 50, "duration": "forever"})
    sub = client.v1.subscriptions.update(sub.id, params={"discounts": [{"coupon": forever.id}]})
    assert len(sub.discounts) == 1
    cleared = client.v1.subscriptions.update(sub.id, params={"discounts": ""})
    assert cleared.discounts == []
    created = [e.data.object.id for e in events(client, "customer.discount.created")]
    deleted = [e.data.object.id for e in events(client, "customer.discount.deleted")]
    assert created == [discount_id, sub.discounts[0]]
    assert deleted == created
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscriptions.update(sub.id, params={"discounts": [{"discount": "di_nope"}]})
    assert (refused.value.code, refused.value.param) == (
        "resource_missing",
        "discounts[0][discount]",
    )
