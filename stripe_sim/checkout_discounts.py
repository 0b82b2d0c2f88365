"""Discounts on Checkout Sessions: a coupon or promotion code the integration sets at creation
(``discounts``), or a promotion code the customer types on the hosted page (allowed by
``allow_promotion_codes``). The session shows the discounted amounts; nothing is redeemed
until the customer pays, when the subscription is created with the discount (its first
invoice discounted, the coupon and code counted once, by ``coupons.redeem``)."""

from __future__ import annotations

from typing import Any

from stripe_sim.billing import discount_amounts
from stripe_sim.coupons import redeemable
from stripe_sim.errors import invalid
from stripe_sim.params import as_bool, as_list
from stripe_sim.render import render_expanded
from stripe_sim.request_schema import not_implemented
from stripe_sim.store import Obj, Store


def read_create_params(
    store: Store,
    params: dict[str, Any],
    *,
    cust: Obj | None,
    amounts: list[int],
    currency: str,
    at: int,
) -> tuple[bool | None, list[dict[str, str | None]]]:
    """``allow_promotion_codes`` and the ``discounts`` entries of a session create, checked as
    a subscription create checks them (``amounts``: the line items' before discounts)."""
    if "allow_promotion_codes" in params and "discounts" in params:
        # Stripe refuses the pair whatever the flag's value.
        raise invalid(
            "You may only specify one of these parameters: allow_promotion_codes, discounts.",
            param="allow_promotion_codes",
        )
    allow = as_bool(params, "allow_promotion_codes")
    refs = as_list(params, "discounts")
    if len(refs) > 1:
        raise invalid(
            "Only one discount may be specified on a Checkout Session.", param="discounts"
        )
    entries = []
    for index, ref in enumerate(refs):
        param = f"discounts[{index}]"
        if not isinstance(ref, dict):
            raise invalid("Invalid hash", param=param)
        redeemable(store, ref, param, cust=cust, amount=sum(amounts), currency=currency, at=at)
        entries.append(
            {
                "coupon": ref.get("coupon") or None,
                "promotion_code": ref.get("promotion_code") or None,
            }
        )
    return allow, entries


def apply_promotion_code(store: Store, session: Obj, code: str) -> None:
    """What the hosted page does with a code the customer typed: find the active promotion
    code (codes match whatever their case), check it applies to this session, and show the
    session discounted. Raises a 400 with the reason when it does not apply."""
    if session["status"] != "open":
        raise invalid(f"This Checkout Session is {session['status']}.")
    if not session["allow_promotion_codes"]:
        raise invalid("This Checkout Session does not accept promotion codes.")
    promo = next(
        (
            p
            for p in store.of_kind("promotion_code")
            if p["active"] and p["code"].lower() == code.lower()
        ),
        None,
    )
    if promo is None:
        raise invalid(f"This code is invalid: {code}")
    cust = store.get(session["customer"], "customer")
    at = store.now_for(cust) if cust else store.clock_now(None)
    redeemable(
        store,
        {"promotion_code": promo["id"]},
        "promotion_code",
        cust=cust,
        amount=sum(line_amounts(store, session)),
        currency=session["currency"],
        at=at,
    )
    session["discounts"] = [{"coupon": None, "promotion_code": promo["id"]}]
    show_discount(store, session)


def line_amounts(store: Store, session: Obj) -> list[int]:
    return [
        store.objects[item["price"]]["unit_amount"] * item["quantity"]
        for item in session["_line_items"]
    ]


def line_discounts(store: Store, session: Obj) -> list[int]:
    """What the session's discount takes off each line item (all zero without one)."""
    amounts = line_amounts(store, session)
    if not session["discounts"]:
        return [0] * len(amounts)
    return discount_amounts(_coupon(store, session["discounts"][0]), amounts)


def show_discount(store: Store, session: Obj) -> None:
    """Set the session's totals from its discount: what the first invoice will come to."""
    off = sum(line_discounts(store, session))
    session["total_details"]["amount_discount"] = off
    session["amount_total"] = session["amount_subtotal"] - off


def subscription_discounts(session: Obj) -> list[dict[str, str]]:
    """The ``discounts`` the subscription is created with when the customer pays."""
    return [
        {key: value for key, value in entry.items() if value is not None}
        for entry in session["discounts"]
    ]


def breakdown(store: Store, session: Obj) -> Obj:
    """``total_details.breakdown`` (sent only when expanded): the discount the subscription
    got, with the amount it took off the first invoice. An open session's discount is not a
    Discount object yet; what Stripe shows there is not known, so it is refused."""
    if session["discounts"] and not session["_discount_ids"]:
        raise not_implemented(
            "The Stripe simulator does not render total_details.breakdown of an open Checkout "
            "Session with a discount (its Discount object is made when the customer pays).",
            param="expand",
        )
    if session["total_details"]["amount_tax"]:
        raise not_implemented(
            "The Stripe simulator does not render total_details.breakdown of a taxed Checkout "
            "Session (its taxes entry is not modelled).",
            param="expand",
        )
    off = session["total_details"]["amount_discount"]
    return {
        "discounts": [
            {"amount": off, "discount": render_expanded(store, store.objects[di], None)}
            for di in session["_discount_ids"]
        ],
        "taxes": [],
    }


def _coupon(store: Store, entry: dict[str, Any]) -> Obj:
    if entry.get("promotion_code"):
        promo = store.objects[entry["promotion_code"]]
        return store.objects[promo["promotion"]["coupon"]]
    return store.objects[entry["coupon"]]
