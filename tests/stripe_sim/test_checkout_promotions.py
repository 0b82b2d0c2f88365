"""Discounts on Checkout Sessions: `discounts` set at creation, promotion codes typed on the
hosted page (`allow_promotion_codes`), and the discounted subscription they make."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from tests.stripe_sim.conftest import DAY, HOUR, JAN_1, advance, events, make_customer

FEB_1 = JAN_1 + 31 * DAY


def open_session(
    client: stripe.StripeClient, cust: Any, price: Any, quantity: int = 1, **extra: Any
) -> Any:
    return client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": cust.id,
            "line_items": [{"price": price.id, "quantity": quantity}],
            "success_url": "https://app.example/ok",
            **extra,
        }
    )


def promotion_code(client: stripe.StripeClient, code: str = "SPRING20", **extra: Any) -> Any:
    coupon = client.v1.coupons.create(params={"percent_off": 20, "duration": "once"})
    return client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": code, **extra}
    )


def pay(session: Any, **form: str) -> httpx.Response:
    return httpx.post(session.url, data={"payment_method": "pm_card_visa", **form})


def test_a_promotion_code_typed_on_the_page_discounts_the_first_invoice_only(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    promo = promotion_code(client)
    cust = make_customer(client, clock, pm=None)
    session = open_session(client, cust, catalog["pro"], allow_promotion_codes=True)
    assert session.allow_promotion_codes is True
    assert "Promotion code" in httpx.get(session.url).text
    # Codes match whatever their case, as customers type them.
    assert pay(session, promotion_code="spring20").status_code == 303
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.status == "complete" and session.payment_status == "paid"
    assert [(d.coupon, d.promotion_code) for d in session.discounts] == [(None, promo.id)]
    assert (session.amount_subtotal, session.amount_total) == (2000, 1600)
    assert session.total_details.amount_discount == 400
    line = client.v1.checkout.sessions.line_items.list(session.id).data[0]
    assert (line.amount_subtotal, line.amount_discount, line.amount_total) == (2000, 400, 1600)
    sub = client.v1.subscriptions.retrieve(session.subscription, params={"expand": ["discounts"]})
    assert sub.discounts[0].promotion_code == promo.id
    first = client.v1.invoices.retrieve(session.invoice)
    assert (first.subtotal, first.total, first.amount_paid) == (2000, 1600, 1600)
    assert first.discounts == [sub.discounts[0].id]
    # Redeemed once, when the customer paid.
    assert client.v1.promotion_codes.retrieve(promo.id).times_redeemed == 1
    assert client.v1.coupons.retrieve(promo.promotion.coupon).times_redeemed == 1
    advance(client, clock, FEB_1 + 2 * HOUR)
    renewal = client.v1.subscriptions.retrieve(sub.id).latest_invoice
    assert client.v1.invoices.retrieve(renewal).total == 2000


def test_the_completed_event_and_the_breakdown_show_the_discount(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    promo = promotion_code(client)
    session = open_session(
        client, make_customer(client, clock, pm=None), catalog["pro"], allow_promotion_codes=True
    )
    assert pay(session, promotion_code="SPRING20").status_code == 303
    (completed,) = events(client, "checkout.session.completed")
    shown = completed.data.object
    assert shown.discounts[0].promotion_code == promo.id
    assert (shown.amount_total, shown.total_details.amount_discount) == (1600, 400)
    assert "breakdown" not in shown.total_details
    expanded = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["total_details.breakdown"]}
    )
    (discounted,) = expanded.total_details.breakdown.discounts
    assert discounted.amount == 400
    assert discounted.discount.object == "discount"
    assert discounted.discount.promotion_code == promo.id
    assert discounted.discount.subscription == expanded.subscription
    assert expanded.total_details.breakdown.taxes == []


def test_the_hosted_apply_button_shows_the_discounted_total_before_paying(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    promo = promotion_code(client)
    session = open_session(
        client, make_customer(client, clock, pm=None), catalog["pro"], allow_promotion_codes=True
    )
    applied = httpx.post(session.url, data={"promotion_code": "SPRING20", "apply": "1"})
    assert applied.status_code == 303 and applied.headers["location"].endswith(session.id)
    page = httpx.get(session.url).text
    assert "SPRING20" in page and "$16.00" in page
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.status == "open" and session.amount_total == 1600
    assert client.v1.promotion_codes.retrieve(promo.id).times_redeemed == 0
    # Paying without typing the code again keeps it.
    assert pay(session).status_code == 303
    assert client.v1.invoices.retrieve(
        client.v1.checkout.sessions.retrieve(session.id).invoice
    ).total == (1600)


@pytest.mark.parametrize(
    ("promo_extra", "quantity", "typed", "reason"),
    [
        ({}, 1, "NOPE", "This code is invalid: NOPE"),
        ({"active": False}, 1, "SPRING20", "This code is invalid: SPRING20"),
        ({"max_redemptions": 1}, 1, "USED", "cannot be redeemed: USED"),
        (
            {"restrictions": {"minimum_amount": 5000, "minimum_amount_currency": "usd"}},
            2,
            "SPRING20",
            "below the minimum of 5000 usd",
        ),
        ({"restrictions": {"first_time_transaction": True}}, 1, "SPRING20", "prior transactions"),
    ],
    ids=["unknown", "inactive", "used-up", "below-minimum", "not-first-transaction"],
)
def test_a_code_that_does_not_apply_is_refused_with_the_reason(
    client: stripe.StripeClient,
    clock: Any,
    catalog: dict[str, Any],
    promo_extra: dict[str, Any],
    quantity: int,
    typed: str,
    reason: str,
) -> None:
    promo = promotion_code(client, code=typed if typed != "NOPE" else "SPRING20", **promo_extra)
    cust = make_customer(client, clock)
    if promo_extra.get("max_redemptions"):
        client.v1.subscriptions.create(
            params={
                "customer": cust.id,
                "items": [{"price": catalog["team"].id}],
                "discounts": [{"promotion_code": promo.id}],
            }
        )
    if promo_extra.get("restrictions", {}).get("first_time_transaction"):
        client.v1.subscriptions.create(
            params={"customer": cust.id, "items": [{"price": catalog["team"].id}]}
        )
    session = open_session(client, cust, catalog["pro"], quantity, allow_promotion_codes=True)
    refused = pay(session, promotion_code=typed)
    assert refused.status_code == 400
    assert reason in refused.text and "Promotion code not applied" in refused.text
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.status == "open" and session.discounts == []
    assert session.amount_total == 2000 * quantity
    assert client.v1.promotion_codes.retrieve(promo.id).times_redeemed == (
        1 if promo_extra.get("max_redemptions") else 0
    )
    # Without the code the customer can still pay the full price.
    assert pay(session).status_code == 303


def test_a_code_is_refused_when_the_session_does_not_allow_codes(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    promotion_code(client)
    cust = make_customer(client, clock, pm=None)
    for extra in ({}, {"allow_promotion_codes": False}):
        session = open_session(client, cust, catalog["pro"], **extra)
        assert session.allow_promotion_codes == extra.get("allow_promotion_codes")
        assert "Promotion code" not in httpx.get(session.url).text
        refused = pay(session, promotion_code="SPRING20")
        assert refused.status_code == 400
        assert "does not accept promotion codes" in refused.text
        assert client.v1.checkout.sessions.retrieve(session.id).status == "open"


def test_discounts_set_at_creation(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    coupon = client.v1.coupons.create(
        params={"amount_off": 500, "currency": "usd", "duration": "forever"}
    )
    promo = promotion_code(client)
    cust = make_customer(client, clock, pm=None)
    by_coupon = open_session(client, cust, catalog["pro"], discounts=[{"coupon": coupon.id}])
    assert [(d.coupon, d.promotion_code) for d in by_coupon.discounts] == [(coupon.id, None)]
    assert (by_coupon.amount_total, by_coupon.total_details.amount_discount) == (1500, 500)
    assert by_coupon.allow_promotion_codes is None
    by_code = open_session(client, cust, catalog["pro"], discounts=[{"promotion_code": promo.id}])
    assert [(d.coupon, d.promotion_code) for d in by_code.discounts] == [(None, promo.id)]
    assert by_code.amount_total == 1600
    # Nothing is redeemed until the customer pays.
    assert client.v1.coupons.retrieve(coupon.id).times_redeemed == 0
    assert pay(by_coupon).status_code == 303
    done = client.v1.checkout.sessions.retrieve(by_coupon.id)
    assert client.v1.invoices.retrieve(done.invoice).total == 1500
    assert client.v1.coupons.retrieve(coupon.id).times_redeemed == 1
    advance(client, clock, FEB_1 + 2 * HOUR)
    renewal = client.v1.subscriptions.retrieve(done.subscription).latest_invoice
    assert client.v1.invoices.retrieve(renewal).total == 1500  # forever


def test_create_validates_the_discount(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    cust = make_customer(client, clock, pm=None)
    promo = promotion_code(client)

    def refusal(**extra: Any) -> stripe.InvalidRequestError:
        with pytest.raises(stripe.InvalidRequestError) as refused:
            open_session(client, cust, catalog["pro"], **extra)
        return refused.value

    for allow in (True, False):
        both = refusal(allow_promotion_codes=allow, discounts=[{"promotion_code": promo.id}])
        assert both.user_message == (
            "You may only specify one of these parameters: allow_promotion_codes, discounts."
        )
    unknown = refusal(discounts=[{"coupon": "FAKE20"}])
    assert (unknown.code, unknown.param) == ("resource_missing", "discounts[0][coupon]")
    assert unknown.user_message == "No such coupon: 'FAKE20'"
    unknown_code = refusal(discounts=[{"promotion_code": "promo_nope"}])
    assert (unknown_code.code, unknown_code.param) == (
        "resource_missing",
        "discounts[0][promotion_code]",
    )
    client.v1.promotion_codes.update(promo.id, params={"active": False})
    inactive = refusal(discounts=[{"promotion_code": promo.id}])
    assert inactive.param == "discounts[0][promotion_code]"
    coupon = client.v1.coupons.create(params={"percent_off": 10})
    two = refusal(discounts=[{"coupon": coupon.id}, {"coupon": coupon.id}])
    assert two.param == "discounts"
    assert client.v1.checkout.sessions.list().data == []


def test_a_code_on_a_trial_discounts_the_first_invoice_after_the_trial(
    client: stripe.StripeClient, clock: Any, catalog: dict[str, Any]
) -> None:
    promo = promotion_code(client)
    cust = make_customer(client, clock, pm=None)
    session = open_session(
        client,
        cust,
        catalog["pro"],
        allow_promotion_codes=True,
        subscription_data={"trial_period_days": 14},
    )
    assert pay(session, promotion_code="SPRING20").status_code == 303
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.payment_status == "no_payment_required"
    sub = client.v1.subscriptions.retrieve(session.subscription)
    assert sub.status == "trialing" and len(sub.discounts) == 1
    assert client.v1.invoices.retrieve(session.invoice).total == 0
    assert client.v1.promotion_codes.retrieve(promo.id).times_redeemed == 1
    trial_end = JAN_1 + 14 * DAY
    advance(client, clock, trial_end + 2 * HOUR)
    after_trial = client.v1.invoices.retrieve(
        client.v1.subscriptions.retrieve(sub.id).latest_invoice
    )
    assert (after_trial.subtotal, after_trial.total, after_trial.status) == (2000, 1600, "paid")
    advance(client, clock, trial_end + 31 * DAY + 2 * HOUR)
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert renewal.total == 2000
