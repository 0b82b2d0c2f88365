"""Coupons and promotion codes, and the discounts they become on subscriptions.

A coupon says how much comes off (``percent_off``, or ``amount_off`` in one currency) and for
how long (``once``: the next invoice; ``repeating``: invoices in the next
``duration_in_months`` months; ``forever``). A promotion code is a customer-facing code for a
coupon with its own limits. Applying either to a subscription creates a Discount, which every
invoice the subscription generates applies (``billing.Engine``).
"""

from __future__ import annotations

import secrets
import string
from decimal import Decimal, InvalidOperation
from typing import Any

from stripe_sim.errors import StripeError, invalid, missing_param
from stripe_sim.events import emit, tracked
from stripe_sim.listing import LIST_PARAMS, filter_created, paginate
from stripe_sim.params import as_bool, as_dict, as_int, as_str, merge_metadata
from stripe_sim.periods import add_intervals
from stripe_sim.render import render_expanded
from stripe_sim.router import Ctx, Router
from stripe_sim.store import Obj, Store

router = Router()

_ID_ALPHABET = string.ascii_letters + string.digits
_CODE_ALPHABET = string.ascii_uppercase + string.digits


# coupons ---------------------------------------------------------------------------------------
def _percent(params: dict[str, Any]) -> float | None:
    raw = params.get("percent_off")
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise invalid(f"Invalid decimal: {raw}", param="percent_off") from None
    if not Decimal(0) < value <= Decimal(100):
        raise invalid(
            "Invalid percent_off: must be greater than 0 and less than or equal to 100",
            param="percent_off",
        )
    return float(value)


def coupon_valid(coupon: Obj, at: int) -> bool:
    """Whether the coupon can be applied at ``at`` (the subscription's time): not deleted,
    not past ``redeem_by``, not used up. (Rendered ``valid``: the same on the wall clock.)"""
    return not coupon.get("_deleted") and _unexpired_and_not_used_up(coupon, "redeem_by", at)


def _unexpired_and_not_used_up(redeemable: Obj, expiry_field: str, at: int) -> bool:
    """A coupon's or promotion code's own limits: its expiry and `max_redemptions`."""
    expiry = redeemable[expiry_field]
    if expiry is not None and at >= expiry:
        return False
    limit = redeemable["max_redemptions"]
    return limit is None or redeemable["times_redeemed"] < limit


@router.route(
    "POST",
    "/v1/coupons",
    implements=(
        "id",
        "name",
        "percent_off",
        "amount_off",
        "currency",
        "duration",
        "duration_in_months",
        "max_redemptions",
        "redeem_by",
        "metadata",
        "expand",
    ),
)
def create_coupon(ctx: Ctx) -> Obj:
    store, params = ctx.store, ctx.params
    at = store.clock_now(None)
    percent = _percent(params)
    amount = as_int(params, "amount_off")
    currency = as_str(params, "currency")
    if percent is not None and amount is not None:
        raise invalid(
            "You may only specify one of these parameters: amount_off, percent_off.",
            param="amount_off",
        )
    if percent is None and amount is None:
        raise invalid("You must pass either amount_off or percent_off.", param="amount_off")
    if amount is not None:
        if amount <= 0:
            raise invalid("Invalid integer: must be at least 1", param="amount_off")
        if not currency:
            raise invalid("You must pass currency when passing amount_off.", param="currency")
    duration = as_str(params, "duration") or "once"
    months = as_int(params, "duration_in_months")
    if duration == "repeating" and months is None:
        raise missing_param("duration_in_months")
    if duration != "repeating" and months is not None:
        raise invalid(
            "You may only specify duration_in_months when duration is repeating.",
            param="duration_in_months",
        )
    if months is not None and months < 1:
        raise invalid("Invalid integer: must be at least 1", param="duration_in_months")
    max_redemptions = as_int(params, "max_redemptions")
    if max_redemptions is not None and max_redemptions < 1:
        raise invalid("Invalid integer: must be at least 1", param="max_redemptions")
    redeem_by = as_int(params, "redeem_by")
    if redeem_by is not None and redeem_by <= at:
        raise invalid("Invalid redeem_by: must be in the future", param="redeem_by")
    coupon_id = as_str(params, "id") or "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
    if store.get(coupon_id) is not None:
        raise invalid("Coupon already exists.", param="id", code="resource_already_exists")
    coupon = store.insert(
        {
            "id": coupon_id,
            "object": "coupon",
            "amount_off": amount,
            "applies_to": None,
            "created": at,
            "currency": currency.lower() if amount is not None and currency else None,
            "duration": duration,
            "duration_in_months": months,
            "livemode": False,
            "max_redemptions": max_redemptions,
            "metadata": merge_metadata({}, params),
            "name": as_str(params, "name") or None,
            "percent_off": percent,
            "redeem_by": redeem_by,
            "times_redeemed": 0,
            "valid": True,
        }
    )
    emit(store, "coupon.created", coupon, at=at)
    return render_expanded(store, coupon, ctx.expand)


@router.route("GET", "/v1/coupons/{coupon_id}", implements=("expand",))
def retrieve_coupon(ctx: Ctx, coupon_id: str) -> Obj:
    return render_expanded(ctx.store, ctx.store.require("coupon", coupon_id), ctx.expand)


@router.route("POST", "/v1/coupons/{coupon_id}", implements=("name", "metadata", "expand"))
def update_coupon(ctx: Ctx, coupon_id: str) -> Obj:
    coupon = ctx.store.require("coupon", coupon_id)
    with tracked(ctx.store, coupon, "coupon.updated", at=ctx.store.clock_now(None)):
        if "name" in ctx.params:
            coupon["name"] = as_str(ctx.params, "name") or None
        coupon["metadata"] = merge_metadata(coupon["metadata"], ctx.params)
    return render_expanded(ctx.store, coupon, ctx.expand)


@router.route("DELETE", "/v1/coupons/{coupon_id}", implements=())
def delete_coupon(ctx: Ctx, coupon_id: str) -> Obj:
    """Deleting a coupon stops new redemptions; discounts already made from it go on."""
    coupon = ctx.store.require("coupon", coupon_id)
    coupon["_deleted"] = True
    emit(ctx.store, "coupon.deleted", coupon)
    return {"id": coupon_id, "object": "coupon", "deleted": True}


@router.route("GET", "/v1/coupons", implements=(*LIST_PARAMS, "created"))
def list_coupons(ctx: Ctx) -> Obj:
    coupons = filter_created(ctx.store.of_kind("coupon"), ctx.params)
    return paginate(
        ctx.store, coupons, ctx.params, "/v1/coupons", lambda o: render_expanded(ctx.store, o, None)
    )


# promotion codes -------------------------------------------------------------------------------
def promotion_code_valid(promo: Obj, at: int) -> bool:
    return bool(promo["active"]) and _unexpired_and_not_used_up(promo, "expires_at", at)


@router.route(
    "POST",
    "/v1/promotion_codes",
    implements=(
        "promotion.coupon",
        "promotion.type",
        "code",
        "active",
        "max_redemptions",
        "expires_at",
        "restrictions.first_time_transaction",
        "restrictions.minimum_amount",
        "restrictions.minimum_amount_currency",
        "metadata",
        "expand",
    ),
)
def create_promotion_code(ctx: Ctx) -> Obj:
    store, params = ctx.store, ctx.params
    at = store.clock_now(None)
    promotion = as_dict(params, "promotion")
    coupon_id = as_str(promotion, "coupon")
    if not coupon_id:
        raise missing_param("promotion[coupon]")
    coupon = store.require_referenced("coupon", coupon_id, "promotion[coupon]")
    code = as_str(params, "code") or "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    for other in store.of_kind("promotion_code"):
        if other["active"] and other["code"].lower() == code.lower():
            raise invalid(
                f"An active promotion code with `code: {code}` already exists.",
                param="code",
            )
    restrictions = as_dict(params, "restrictions")
    minimum = as_int(restrictions, "minimum_amount", param="restrictions[minimum_amount]")
    minimum_currency = as_str(restrictions, "minimum_amount_currency")
    if minimum is not None and not minimum_currency:
        raise missing_param("restrictions[minimum_amount_currency]")
    if minimum_currency and minimum is None:
        raise missing_param("restrictions[minimum_amount]")
    max_redemptions = as_int(params, "max_redemptions")
    if max_redemptions is not None and max_redemptions < 1:
        raise invalid("Invalid integer: must be at least 1", param="max_redemptions")
    expires_at = as_int(params, "expires_at")
    if expires_at is not None and expires_at <= at:
        raise invalid("Invalid expires_at: must be in the future", param="expires_at")
    active = as_bool(params, "active")
    promo = store.insert(
        {
            "id": store.new_id("promo_"),
            "object": "promotion_code",
            "active": True if active is None else active,
            "code": code,
            "created": at,
            "customer": None,
            "customer_account": None,
            "expires_at": expires_at,
            "livemode": False,
            "max_redemptions": max_redemptions,
            "metadata": merge_metadata({}, params),
            "promotion": {"coupon": coupon["id"], "type": "coupon"},
            "restrictions": {
                "first_time_transaction": bool(
                    as_bool(restrictions, "first_time_transaction") or False
                ),
                "minimum_amount": minimum,
                "minimum_amount_currency": minimum_currency.lower() if minimum_currency else None,
            },
            "times_redeemed": 0,
        }
    )
    emit(store, "promotion_code.created", promo, at=at)
    return render_expanded(store, promo, ctx.expand)


@router.route("GET", "/v1/promotion_codes/{promo_id}", implements=("expand",))
def retrieve_promotion_code(ctx: Ctx, promo_id: str) -> Obj:
    promo = ctx.store.require("promotion_code", promo_id)
    return render_expanded(ctx.store, promo, ctx.expand)


@router.route("POST", "/v1/promotion_codes/{promo_id}", implements=("active", "metadata", "expand"))
def update_promotion_code(ctx: Ctx, promo_id: str) -> Obj:
    store = ctx.store
    promo = store.require("promotion_code", promo_id)
    with tracked(store, promo, "promotion_code.updated", at=store.clock_now(None)):
        active = as_bool(ctx.params, "active")
        if active is not None:
            if active and not promo["active"]:
                for other in store.of_kind("promotion_code"):
                    if other["active"] and other["code"].lower() == promo["code"].lower():
                        raise invalid(
                            f"An active promotion code with `code: {promo['code']}` already "
                            "exists.",
                            param="active",
                        )
            promo["active"] = active
        promo["metadata"] = merge_metadata(promo["metadata"], ctx.params)
    return render_expanded(store, promo, ctx.expand)


@router.route(
    "GET",
    "/v1/promotion_codes",
    implements=(*LIST_PARAMS, "active", "code", "coupon", "created"),
)
def list_promotion_codes(ctx: Ctx) -> Obj:
    params = ctx.params
    promos = ctx.store.of_kind("promotion_code")
    active = as_bool(params, "active")
    if active is not None:
        promos = [p for p in promos if p["active"] == active]
    code = as_str(params, "code")
    if code:
        promos = [p for p in promos if p["code"].lower() == code.lower()]
    coupon = as_str(params, "coupon")
    if coupon:
        promos = [p for p in promos if p["promotion"]["coupon"] == coupon]
    promos = filter_created(promos, params)
    return paginate(
        ctx.store,
        promos,
        params,
        "/v1/promotion_codes",
        lambda o: render_expanded(ctx.store, o, None),
    )


# discounts -------------------------------------------------------------------------------------
def _check_restrictions(
    store: Store, promo: Obj, cust: Obj | None, amount: int, currency: str, param: str
) -> None:
    """``amount`` in ``currency``: what the first invoice comes to before discounts (a
    minimum in another currency cannot be met: currency options are not implemented).
    ``cust`` None: the customer Checkout is about to create, who has no prior transactions."""
    rules = promo["restrictions"]
    if (
        rules["first_time_transaction"]
        and cust is not None
        and any(inv["amount_paid"] > 0 for inv in store.where("invoice", "customer", cust["id"]))
    ):
        raise invalid(
            "This promotion code cannot be redeemed because the associated customer has prior "
            "transactions.",
            param=param,
        )
    minimum = rules["minimum_amount"]
    if minimum is not None and (amount < minimum or currency != rules["minimum_amount_currency"]):
        raise invalid(
            "This promotion code cannot be redeemed because the amount is below the minimum "
            f"of {minimum} {rules['minimum_amount_currency']}.",
            param=param,
        )


def redeemable(
    store: Store,
    ref: dict[str, Any],
    param: str,
    *,
    cust: Obj | None,
    amount: int,
    currency: str,
    at: int,
) -> tuple[Obj, Obj | None]:
    """The coupon (and promotion code) one ``discounts[]`` entry names, once checked that it
    can be redeemed now by ``cust`` on a first invoice of ``amount`` in ``currency`` before
    discounts; else Stripe's 400. Counts nothing."""
    coupon_id = as_str(ref, "coupon")
    promo_id = as_str(ref, "promotion_code")
    if coupon_id and promo_id:
        raise invalid(
            "You may only specify one of these parameters: coupon, promotion_code.", param=param
        )
    promo: Obj | None = None
    if promo_id:
        promo = store.require_referenced("promotion_code", promo_id, f"{param}[promotion_code]")
        if not promotion_code_valid(promo, at):
            raise invalid(
                f"This promotion code cannot be redeemed: {promo['code']}",
                param=f"{param}[promotion_code]",
            )
        _check_restrictions(store, promo, cust, amount, currency, f"{param}[promotion_code]")
        coupon = store.objects[promo["promotion"]["coupon"]]
    elif coupon_id:
        coupon = store.require_referenced("coupon", coupon_id, f"{param}[coupon]")
    else:
        raise missing_param(f"{param}[coupon]")
    if not coupon_valid(coupon, at):
        raise StripeError(
            400,
            "invalid_request_error",
            f"Coupon expired: {coupon['id']}",
            code="coupon_expired",
            param=f"{param}[promotion_code]" if promo else f"{param}[coupon]",
        )
    if coupon["amount_off"] is not None and coupon["currency"] != currency:
        raise invalid(
            f"The currency of the coupon ({coupon['currency']}) must match the currency of "
            f"the subscription ({currency}).",
            param=f"{param}[coupon]",
        )
    return coupon, promo


def redeem(
    store: Store,
    ref: dict[str, Any],
    param: str,
    *,
    cust: Obj,
    sub: Obj,
    amount: int,
    at: int,
) -> Obj:
    """Turn one ``discounts[]`` entry (``coupon`` or ``promotion_code``) into a Discount on
    ``sub``: check the coupon / code can be redeemed now (``amount``: the first invoice before
    discounts, for a code's minimum), count the redemption."""
    coupon, promo = redeemable(
        store, ref, param, cust=cust, amount=amount, currency=sub["currency"], at=at
    )
    end = None
    if coupon["duration"] == "repeating":
        end = add_intervals(at, "month", coupon["duration_in_months"])
    discount = store.insert(
        {
            "id": store.new_id("di_"),
            "object": "discount",
            "checkout_session": None,
            "customer": cust["id"],
            "customer_account": None,
            "end": end,
            "invoice": None,
            "invoice_item": None,
            "promotion_code": promo["id"] if promo else None,
            "source": {"coupon": coupon["id"], "type": "coupon"},
            "start": at,
            "subscription": sub["id"],
            "subscription_item": None,
        }
    )
    emit(store, "customer.discount.created", discount, at=at)
    # Stripe sends no coupon.updated / promotion_code.updated for a redemption.
    coupon["times_redeemed"] += 1
    if promo is not None:
        promo["times_redeemed"] += 1
    return discount
